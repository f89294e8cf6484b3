#!/usr/bin/env bash
# Build the serving image (Dockerfile at the repository root).
# Usage: scripts/image.sh [TAG]      (default: $IMAGE or mlops-serving:local)
# Needs a Docker daemon (scripts/dockerd.sh start where none runs). The base image is
# pulled, or built as a stand-in by scripts/base-image.sh when no registry is reachable.
set -euo pipefail
image=${1:-${IMAGE:-mlops-serving:local}}
here=$(cd "$(dirname "$0")" && pwd)

"$here/base-image.sh" python:3.11-slim
if [ -x /usr/bin/docker ]; then
  # Debian's client has no buildx: the classic builder builds this Dockerfile as it is.
  DOCKER_BUILDKIT=0 /usr/bin/docker build --network host --tag "$image" "$here/.."
else
  docker build --network host --tag "$image" "$here/.."
fi
echo "built $image"

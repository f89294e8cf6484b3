#!/usr/bin/env bash
# Make sure the Dockerfile's base image (python:3.11-slim) is present in the daemon.
# Pulls it when a registry is reachable; otherwise builds a stand-in with the same tag
# from Debian's own packages (debootstrap), once: later runs find it and return at once.
# Usage: scripts/base-image.sh [IMAGE]   (needs a running daemon: scripts/dockerd.sh start)
set -euo pipefail

image=${1:-python:3.11-slim}
home=${MLOPS_DOCKER_HOME:-.mlops/docker}
docker_cli() { if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else docker "$@"; fi; }

if docker_cli image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image is present"
  exit 0
fi
if timeout 60 docker_cli pull -q "$image" >/dev/null 2>&1; then
  echo "pulled base image $image"
  exit 0
fi

echo "cannot pull $image: building a stand-in from Debian packages (about a minute) ..." >&2
if ! command -v debootstrap >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: cannot pull $image and no debootstrap to build a stand-in" >&2
    exit 2
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null; }
fi
mkdir -p "$home"
rootfs=$(mktemp -d "$home/rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase \
  --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$rootfs" >"$home/debootstrap.log" 2>&1 \
  || { echo "error: debootstrap failed (log $home/debootstrap.log)" >&2; exit 2; }
# Make it look like the official image where the Dockerfile relies on it.
rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python3"
ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker_cli import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' - "$image" >/dev/null
echo "built stand-in base image $image"

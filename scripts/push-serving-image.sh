#!/usr/bin/env bash
# Build the serving image once, push it to the stack's ECR repository under the commit's
# tag (the repository is IMMUTABLE: a tag never moves) and print its digest; in a GitHub
# job, the digest also goes to the step's outputs (`digest`) for the deploy job.
# Usage: SERVING_REPOSITORY_URL=ACCOUNT.dkr.ecr.REGION.amazonaws.com/PREFIX/serving \
#        scripts/push-serving-image.sh      (AWS credentials that may push there)
set -euo pipefail
repository=${SERVING_REPOSITORY_URL:?set SERVING_REPOSITORY_URL (the stack output servingRepositoryUrl)}
case "$repository" in
  *.dkr.ecr.*.amazonaws.com/*) ;;
  *) echo "error: SERVING_REPOSITORY_URL is not an ECR repository URL: $repository" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
tag=$(git -C "$here/.." rev-parse HEAD)
image="$repository:$tag"

"$here/image.sh" "$image"
aws ecr get-login-password | docker login --username AWS --password-stdin "${repository%%/*}"
docker push "$image"
digest=$(docker inspect --format '{{index .RepoDigests 0}}' "$image")
digest=${digest##*@}
echo "pushed $image as $digest"
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  echo "digest=$digest" >> "$GITHUB_OUTPUT"
fi

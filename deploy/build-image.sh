#!/usr/bin/env bash
# Builds the raftkv image from target/release/raftkv with podman, buildah or docker
# (whichever is found first). Usage: deploy/build-image.sh [TAG] [extra build arguments...]
# e.g. deploy/build-image.sh localhost/raftkv:dev --build-arg BASE_IMAGE=debian:bookworm-slim
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-localhost/raftkv:dev}"
shift || true
binary=target/release/raftkv
[ -x "$binary" ] || { echo "build-image.sh: no $binary: run 'cargo build --release --bin raftkv' first" >&2; exit 1; }
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$binary" "$context/raftkv"
for tool in podman buildah docker; do
  if command -v "$tool" >/dev/null 2>&1; then
    case "$tool" in
      buildah) exec_args=(bud) ;;
      *) exec_args=(build) ;;
    esac
    "$tool" "${exec_args[@]}" -f deploy/Containerfile -t "$tag" "$@" "$context"
    exit 0
  fi
done
echo "build-image.sh: none of podman, buildah or docker is installed (apt-get install podman)" >&2
exit 1

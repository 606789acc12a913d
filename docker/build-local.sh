#!/bin/sh
# docker/build-local.sh: builds the herd image without pulling anything
# (for a Docker engine with no registry access). cargo builds herd and
# herdctl on this machine, docker/rootfs.sh packs them with their shared
# libraries, and docker/Dockerfile.local turns that into an image FROM
# scratch.
#
# usage: docker/build-local.sh [TAG]      (default tag: herd:latest)
# CARGO (default cargo) and CARGO_TARGET_DIR are honoured.
set -eu

tag=${1:-herd:latest}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}

"${CARGO:-cargo}" build --release --bin herd --bin herdctl

stage=$(mktemp -d "${TMPDIR:-/tmp}/herd-image.XXXXXX")
trap 'rm -rf "$stage"' EXIT INT TERM
"$root/docker/rootfs.sh" "$target_dir/release" "$stage/rootfs"
mkdir -p "$stage/data" "$stage/secret"
cp "$root/docker/Dockerfile.local" "$stage/Dockerfile"
docker build --quiet --tag "$tag" "$stage" >/dev/null
echo "built $tag ($(docker image inspect --format '{{.Size}}' "$tag") bytes)"

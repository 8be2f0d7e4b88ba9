#!/usr/bin/env bash
# The Python base image, made from Debian's own packages: no image registry needed.
#   deploy/base-image.sh [IMAGE]        default localhost/semsearch-base:bookworm
# Then build on it:  deploy/build-image.py --base IMAGE  (or --build-arg PYTHON_IMAGE=IMAGE).
# Run it, and podman after it, as the same user (root here): root's and a user's image stores
# are separate, so an image imported with sudo is not seen by a rootless podman.
#
# Where a registry is reachable, the Dockerfile's default base (python:3.11-slim-bookworm) does
# the same job; this is for machines that reach Debian's package mirror and nothing else. It
# needs root (debootstrap) and podman. The rootfs is Debian bookworm's minbase plus
# python3 (3.11, the version the project is tested on), python3-venv and ca-certificates,
# trimmed as the official slim images are: no apt lists or caches, docs, man pages or message
# catalogues (nothing in the image runs apt or reads them).
#
# Optional environment:
#   DEBIAN_MIRROR   default http://deb.debian.org/debian
set -euo pipefail

IMAGE="${1:-localhost/semsearch-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

rootfs="$(mktemp -d "${TMPDIR:-/tmp}/semsearch-rootfs.XXXXXX")"
trap 'rm -rf "$rootfs"' EXIT
echo "base image: debootstrap bookworm from $MIRROR" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || {
    tail -20 "$rootfs.log" >&2
    rm -f "$rootfs.log"
    exit 1
}
rm -f "$rootfs.log"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
tar --numeric-owner -C "$rootfs" -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$IMAGE" >/dev/null
echo "base image: $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)" >&2

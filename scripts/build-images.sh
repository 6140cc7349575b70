#!/usr/bin/env bash
# Builds the container images Keelson's tests use, from distro packages, without docker.
# Output goes to $KEELSON_IMAGES (default /var/lib/keelson/images). Safe to run again: an image
# whose archive is already up to date is left alone.
#
#   busybox.tar  OCI image-layout archive of Debian's busybox-static, docker.io/library/busybox:latest
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${KEELSON_IMAGES:-/var/lib/keelson/images}"

mkdir -p "$out"
python3 "$here/build_busybox_image.py" "$out/busybox.tar"

#!/usr/bin/env bash
# Builds the container images Keelson's tests use, from distro packages, without docker.
# Output goes to $KEELSON_IMAGES (default /var/lib/keelson/images). Safe to run again: an image
# whose archive is already up to date is left alone.
#
#   busybox.tar  OCI image-layout archive of Debian's busybox-static, docker.io/library/busybox:latest
#
# and the guestbook's (examples/guestbook), each with busybox for /bin/sh:
#
#   redis-master.tar              Debian's redis-server and its libraries,
#                                 docker.io/kubeguide/redis-master:latest
#   guestbook-redis-slave.tar     the same, replicating the master (redis-slave-run.sh),
#                                 docker.io/kubeguide/guestbook-redis-slave:latest
#   guestbook-php-frontend.tar    the keelson-guestbook-frontend binary (built here) and its
#                                 libraries, docker.io/kubeguide/guestbook-php-frontend:latest
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
out="${KEELSON_IMAGES:-/var/lib/keelson/images}"
guestbook="$repo/examples/guestbook/images"

mkdir -p "$out"
python3 "$here/build_busybox_image.py" "$out/busybox.tar"

redis_server=/usr/bin/redis-server
if [ ! -e "$redis_server" ]; then
  echo "build-images: $redis_server not found: install Debian's redis-server (scripts/setup.sh does)" >&2
  exit 1
fi
# Debian's redis-server is a symlink to redis-check-rdb; redis picks its mode by argv[0], and
# the image gets the binary itself under the name redis-server.
redis=(
  --binary "$(readlink -f "$redis_server"):usr/bin/redis-server"
  --file "$guestbook/redis.conf:etc/redis/redis.conf"
  --dir data --workdir /data --port 6379
)
python3 "$here/build_rootfs_image.py" "$out/redis-master.tar" \
  --name docker.io/kubeguide/redis-master:latest "${redis[@]}" \
  --cmd '["redis-server", "/etc/redis/redis.conf"]'
python3 "$here/build_rootfs_image.py" "$out/guestbook-redis-slave.tar" \
  --name docker.io/kubeguide/guestbook-redis-slave:latest "${redis[@]}" \
  --file "$guestbook/redis-slave-run.sh:run.sh:755" \
  --cmd '["/run.sh"]'

# The frontend, built from this workspace; stripped, since the release profile keeps line tables.
(cd "$repo" && cargo build --release -p keelson-guestbook-frontend --locked --quiet)
target="${CARGO_TARGET_DIR:-$repo/target}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
strip -o "$work/guestbook-frontend" "$target/release/guestbook-frontend"
python3 "$here/build_rootfs_image.py" "$out/guestbook-php-frontend.tar" \
  --name docker.io/kubeguide/guestbook-php-frontend:latest \
  --binary "$work/guestbook-frontend:usr/bin/guestbook-frontend" \
  --port 80 --cmd '["guestbook-frontend"]'

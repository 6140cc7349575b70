#!/usr/bin/env bash
# Installs everything Keelson needs to build, run and test on Debian 12, as root.
# Safe to run again: it only installs what is missing.
set -euo pipefail

log() { printf '[setup] %s\n' "$*"; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: this script installs system packages and must run as root" >&2
    exit 1
  fi
}

apt_packages=(
  protobuf-compiler libprotobuf-dev   # etcd-client and containerd-client build with protoc
  build-essential pkg-config ca-certificates curl
  containerd runc      # container runtime
  etcd-server          # store backend for HA clusters and the etcd test suite
  iproute2 nftables iptables
  conntrack            # keelson proxy flushes UDP flows of removed endpoints
  openvswitch-switch
  docker-registry      # OCI registry for image-pull tests
  busybox-static redis-server iperf3
  python3 python3-venv python3-pip
  sqlite3
)

install_apt() {
  local missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing distro packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Services shipped by these packages must not start on their own: tests and
    # `keelson up` start private instances.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
    rm -f /usr/sbin/policy-rc.d
  fi
}

install_kubectl() {
  if ! command -v kubectl >/dev/null 2>&1; then
    log "no kubectl found: installing Debian's kubernetes-client"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client
  fi
}

install_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust with rustup first" >&2
    exit 1
  fi
  if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
    rustup target list --installed 2>/dev/null | grep -q '^wasm32-wasip2$' || rustup target add wasm32-wasip2 || true
  fi
  command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
}

# Python test environment: the official Kubernetes client, in a venv of the project's own.
install_python() {
  local venv="${KEELSON_VENV:-/var/lib/keelson/venv}"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import kubernetes, pytest' 2>/dev/null; then
    log "creating python venv at $venv with the kubernetes client"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q 'kubernetes>=29' 'pytest>=7' 'pyyaml'
  fi
}

need_root
install_apt
install_kubectl
install_rust
install_python
# Test images (busybox.tar, ...) built from the distro packages above.
bash "$(dirname "${BASH_SOURCE[0]}")/build-images.sh"
log "ok"

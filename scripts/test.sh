#!/usr/bin/env bash
# Installs what is missing, then runs every check and test: formatting, clippy, and the
# unit, integration and end-to-end tests (real etcd, real kubectl, the Python client).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
  bash scripts/setup.sh
else
  echo "test: not root; assuming scripts/setup.sh has been run" >&2
fi

export KEELSON_VENV="${KEELSON_VENV:-/var/lib/keelson/venv}"
export CARGO_TERM_COLOR=never

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo nextest (unit, integration and end-to-end tests)"
cargo build --workspace --locked --bins
cargo nextest run --workspace --locked --no-fail-fast --profile ci

echo "== cargo test --doc (the examples in the API docs)"
cargo test --workspace --locked --doc

#!/usr/bin/env bash
# Installs what is missing, builds Keelson and its images, starts the whole system with
# `keelson up` (embedded store, kubelet, service proxy, cluster DNS), deploys the book's
# guestbook and prints its URL; stays in the foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR="${KEELSON_DATA_DIR:-/var/lib/keelson}"
PORT="${KEELSON_PORT:-6443}"
IMAGES="${KEELSON_IMAGES:-/var/lib/keelson/images}"

bash scripts/setup.sh
cargo build --release --locked --bin keelson
BIN="$PWD/target/release/keelson"

"$BIN" up --data-dir "$DATA_DIR" --secure-port "$PORT" --import "$IMAGES" &
PID=$!
trap 'kill -INT $PID 2>/dev/null; wait $PID 2>/dev/null' INT TERM EXIT

export KUBECONFIG="$DATA_DIR/kubeconfig.yaml"
ready=""
for _ in $(seq 1 300); do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "up.sh: keelson up exited; see its messages above" >&2
    exit 1
  fi
  if [ -f "$KUBECONFIG" ] &&
    kubectl get nodes 2>/dev/null | grep -qw Ready; then
    ready=1
    break
  fi
  sleep 0.5
done
if [ -z "$ready" ]; then
  echo "up.sh: the node did not become Ready within 150 s" >&2
  exit 1
fi

kubectl apply -f examples/guestbook/
for app in redis-master redis-slave frontend; do
  # The replication controllers create the pods a moment after the apply.
  for _ in $(seq 1 60); do
    kubectl get pods -l "name=$app" -o name 2>/dev/null | grep -q . && break
    sleep 1
  done
  kubectl wait --for=condition=Ready pod -l "name=$app" --timeout=300s
done

NODE_IP=$(kubectl get nodes -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}')
cat <<MSG

Keelson is running (data in $DATA_DIR) with the guestbook:

  http://$NODE_IP:30001

  export KUBECONFIG=$KUBECONFIG
  kubectl get rc,svc,pods -o wide

Ctrl-C stops Keelson; its pods keep running and the next start adopts them
(\`$BIN down --data-dir $DATA_DIR\` removes them).
MSG
wait $PID

#!/usr/bin/env bash
# Installs what is missing, builds Keelson, starts it with the embedded store, deploys the
# guestbook, and keeps running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR="${KEELSON_DATA_DIR:-/var/lib/keelson}"
PORT="${KEELSON_PORT:-6443}"

bash scripts/setup.sh
cargo build --release --locked --bin keelson
BIN="$PWD/target/release/keelson"

"$BIN" server --data-dir "$DATA_DIR" --secure-port "$PORT" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null' INT TERM EXIT

KUBECONFIG="$DATA_DIR/kubeconfig.yaml"
for _ in $(seq 1 100); do
  if [ -f "$KUBECONFIG" ] && kubectl --kubeconfig "$KUBECONFIG" get --raw /readyz >/dev/null 2>&1; then
    break
  fi
  sleep 0.2
done
kubectl --kubeconfig "$KUBECONFIG" apply -f examples/guestbook/

NODE_IP=$(ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i=1;i<NF;i++) if ($i=="src") print $(i+1)}' | head -n1)
NODE_IP=${NODE_IP:-127.0.0.1}
cat <<MSG

Keelson is running (data in $DATA_DIR).
  export KUBECONFIG=$KUBECONFIG
  kubectl get rc,svc,pods
The guestbook's replication controllers have created its pods and its Services have
Endpoints (kubectl get pods,endpoints); the controller manager and the scheduler are running
(kubectl -n kube-system get lease). Its frontend will answer at http://$NODE_IP:30001 once
Keelson's kubelet and service proxy run its pods.
Press Ctrl-C to stop.
MSG
wait $PID

#!/usr/bin/env bash
# The whole stack on loopback, without Docker: 3 backend replicas, the
# frontend and the lb with static discovery (deploy/examples/local.yaml). For
# development and the benchmarks. Ctrl-C stops everything.
#
#   deploy/run-local.sh            release build, then run
#   PROFILE=debug deploy/run-local.sh
#
# Ports: lb 8080 (admin 127.0.0.1:9901), backends 5252-5254, frontend 9000.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-release}"
if [ "$profile" = release ]; then
  cargo build --release -p lb -p backend -p frontend
else
  cargo build -p lb -p backend -p frontend
fi
bin="${CARGO_TARGET_DIR:-target}/$profile"

pids=()
cleanup() {
  trap - INT TERM EXIT
  [ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

for i in 0 1 2; do
  "$bin/backend" --listen "127.0.0.1:$((5252 + i))" --replica-id "local-$((i + 1))" &
  pids+=($!)
done
"$bin/frontend" --listen 127.0.0.1:9000 --root frontend/site &
pids+=($!)
"$bin/lb" -c deploy/examples/local.yaml &
pids+=($!)

echo "run-local: http://127.0.0.1:8080/ (Ctrl-C to stop)"
wait -n "${pids[@]}"
echo "run-local: a process exited; stopping the rest" >&2

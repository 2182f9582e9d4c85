#!/bin/bash
# Instructions the lb spends per keep-alive request, counted by callgrind (repeatable,
# whatever else the machine does): the lb (1 thread, access log on, as shipped) in front
# of three backends, `oha -c 4` keep-alive GETs of /api/hello, run once with 1,000 and once
# with 5,000 requests; the difference over 4,000 cancels startup and shutdown.
#
#   benches/callgrind.sh [UPSTREAM_YAML]     e.g. benches/callgrind.sh '    selection: least_requests'
#   SERVER_YAML='  fast_path: false' benches/callgrind.sh
#   OHA_EXTRA=--disable-keepalive benches/callgrind.sh      a new connection per request
#   LB_BIN=/tmp/lb-before benches/callgrind.sh               another lb binary
#   CALLGRIND_ARGS='--toggle-collect=*accept::connection::serve*' ...  count inside connections only
#   KEEP_OUT=/tmp/cg benches/callgrind.sh      keep both runs' callgrind.out files (for callgrind_annotate)
#   TARGET=nginx benches/callgrind.sh          nginx instead, the bench's config (benchlib/configs.py)
#                                              in one process (user space only, as for the lb)
#
# Each run checks that nothing listens on its ports before it starts, that every backend
# answers before the proxy starts and, for the lb with metrics on, that it made one try per
# request (nginx: no upstream errors in its error.log). Before those checks a backend still
# holding its port from the previous run could leave connect failures, retries and ejections
# in the count: the lb of adebe47 then gave about 80,000 instructions per request where a
# clean run gives 26,000 (keep-alive) and 38,000 (a new connection per request). Clean runs
# of one build agree within about 1 % (adebe47: keep-alive 26,240 and 25,897, new connections
# 37,752 and 38,030; 1388102: 23,215 and 23,282, 27,712 and 27,818). Compare builds over two
# runs each, never one against one.
#
# UPSTREAM_YAML: more lines of the `api` upstream (4-space indent). SERVER_YAML: more lines
# of `server` (2-space indent). Needs dist/bin (deploy/build.sh),
# valgrind and oha. Uses loopback ports 19001-19003, 19080 and 19081.
set -euo pipefail
shopt -s inherit_errexit # `run` runs inside $(...), where bash would otherwise drop -e
cd "$(dirname "$0")/.."
EXTRA="${1:-}"
SERVER_EXTRA="${SERVER_YAML:-}"
LB_BIN="${LB_BIN:-dist/bin/lb}"
TARGET="${TARGET:-lb}"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
OHA_EXTRA="${OHA_EXTRA:-}"
OHA=$(command -v oha || echo ~/.cargo/bin/oha)

run() {
  local n=$1 d vg=
  d=$(mktemp -d)
  # Nothing may listen on the ports yet (a leftover backend would pass the check below,
  # and a leftover nginx would share its port with the new one).
  for p in 19001 19002 19003 19080 19081; do
    if curl -s -o /dev/null "http://127.0.0.1:$p/"; then echo "port $p is in use" >&2; exit 1; fi
  done
  # Whatever this run started stops with it, also when a check below fails.
  trap 'kill $(cat "$d/pids" 2>/dev/null) ${vg:-} 2>/dev/null || true' EXIT
  for p in 19001 19002 19003; do
    BACKEND_LISTEN=127.0.0.1:$p RUST_LOG=warn dist/bin/backend >/dev/null 2>&1 &
    echo $! >>"$d/pids"
  done
  # Every backend answers before the lb starts: a backend that could not bind (its port
  # still held by the last run's) would make the count one of connect failures and retries.
  for p in 19001 19002 19003; do
    local up=0
    for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$p/api/hello" && { up=1; break; }; sleep 0.1; done
    [ $up = 1 ] || { echo "backend on port $p does not answer" >&2; exit 1; }
  done
  cat >"$d/lb.yaml" <<YAML
version: 1
server:
  listen: ["127.0.0.1:19080"]
  admin: "127.0.0.1:19081"
  threads: 1
  grace_period: 1s
  shutdown_timeout: 1s
  pid_file: "$d/lb.pid"
  upgrade_sock: "$d/up.sock"
$SERVER_EXTRA
routes:
  - { prefix: /, upstream: api }
upstreams:
  api:
    discovery: { static: ["127.0.0.1:19001", "127.0.0.1:19002", "127.0.0.1:19003"] }
$EXTRA
YAML
  if [ "$TARGET" = nginx ]; then
    # The bench's nginx config (benchlib/configs.py), one process: no master, no daemon.
    mkdir -p "$d/client_body" "$d/proxy"
    { echo "master_process off; daemon off;"
      python3 -c 'import sys; sys.path.insert(0, "benches"); from benchlib import configs
print(configs.nginx_proxy_conf(tmp=sys.argv[1], listen="127.0.0.1:19080", threads=1,
      backends=["127.0.0.1:19001", "127.0.0.1:19002", "127.0.0.1:19003"],
      frontend="127.0.0.1:19003", access_log=True))' "$d"
    } >"$d/nginx.conf"
    valgrind --tool=callgrind ${CALLGRIND_ARGS:-} --callgrind-out-file="$d/cg.out" \
      "$NGINX" -p "$d" -c "$d/nginx.conf" >"$d/lb.log" 2>&1 &
  else
    valgrind --tool=callgrind ${CALLGRIND_ARGS:-} --callgrind-out-file="$d/cg.out" "$LB_BIN" -c "$d/lb.yaml" >"$d/lb.log" 2>&1 &
  fi
  vg=$!
  for _ in $(seq 1 300); do curl -sf -o /dev/null http://127.0.0.1:19080/api/hello && break; sleep 0.2; done
  "$OHA" -n "$n" -c 4 --no-tui $OHA_EXTRA http://127.0.0.1:19080/api/hello >"$d/oha.txt" 2>&1
  grep -q "Success rate:.*100.00%" "$d/oha.txt" || { echo "oha: not every request succeeded ($d)" >&2; exit 1; }
  # One try per request (the readiness probe's included), or the count is not of the
  # path it claims to measure.
  local tries
  if [ "$TARGET" = lb ]; then
    tries=$(curl -s http://127.0.0.1:19081/metrics | awk '/^lb_upstream_tries_total/ {print $2}' || true)
    if [ -z "$tries" ] || [ "$tries" = 0 ]; then
      echo "tries not checked (server.metrics off, or /metrics unreadable)" >&2
    elif [ "$tries" != $((n + 1)) ]; then
      echo "the lb made $tries tries for $((n + 1)) requests ($d)" >&2; exit 1
    fi
  fi
  if [ "$TARGET" = nginx ] && grep -q "upstream" "$d/error.log" 2>/dev/null; then
    echo "nginx logged upstream errors ($d/error.log)" >&2; exit 1
  fi
  kill -TERM $vg; wait $vg || true
  local pid
  for pid in $(cat "$d/pids"); do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  # Less the startup report of the bound ports in builds before bf16a83, which parsed
  # /proc/net/tcp: its cost grew with the sockets in TIME_WAIT (thousands after a
  # new-connection run), not with requests. Later builds have no such function (0).
  local total report
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$d/cg.out")
  [ -n "$total" ] || { echo "no callgrind output ($d)" >&2; exit 1; }
  report=$(callgrind_annotate --inclusive=yes --threshold=100 "$d/cg.out" 2>/dev/null \
    | awk '/ListenReport as pingora_core::services::background::BackgroundService>::start/ {gsub(",", "", $1); print $1; exit}')
  echo $(( total - ${report:-0} ))
  if [ -n "${KEEP_OUT:-}" ]; then mkdir -p "$KEEP_OUT" && cp "$d/cg.out" "$KEEP_OUT/callgrind.out.$n"; fi
  rm -rf "$d"
}

small=$(run 1000)
large=$(run 5000)
echo "instructions per request: $(( (large - small) / 4000 ))"

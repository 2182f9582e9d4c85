#!/usr/bin/env bash
# The README's run command: from a fresh machine to a healthy stack.
#   1. install what is missing (cmake, the Compose v2 plugin, ...),
#   2. build static binaries on the host and assemble the FROM-scratch images,
#   3. start the stack and wait until every container is healthy.
# Then open http://127.0.0.1:${SOFTY_PORT:-8080}/ or https://localhost:${SOFTY_TLS_PORT:-8443}/ ; stop with `docker compose down`.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/bootstrap.sh
./deploy/build.sh
docker compose up -d --wait
docker compose ps
port="${SOFTY_PORT:-8080}"
tls_port="${SOFTY_TLS_PORT:-8443}"
# The lb's development CA (made on its first start, kept in the lb-data volume): trust it once.
# (compose prints its progress on stderr: shown only if the copy fails)
if ! cp_out=$(docker compose cp lb:/var/lib/lb/local-ca/ca.pem ./ca.pem 2>&1); then
  echo "$cp_out" >&2
  exit 1
fi
echo
echo "Softy Pinko is up: http://127.0.0.1:${port}/"
echo "                   https://localhost:${tls_port}/ (h2; trust ./ca.pem: the stack's development CA)"
printf 'GET /api/hello -> '
curl -fsS "http://127.0.0.1:${port}/api/hello" 2>/dev/null || python3 -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:${port}/api/hello').read().decode(),end='')"
echo
if command -v curl >/dev/null; then
  printf 'GET https://localhost:%s/api/hello -> ' "$tls_port"
  curl -fsS --http2 --cacert ./ca.pem -w ' (HTTP/%{http_version})' "https://localhost:${tls_port}/api/hello"
  echo
fi
echo "The lb's admin API (port 9901 on the stack's network) wants a bearer token for /status,"
echo "/metrics and /reload: print it with   docker compose exec lb /lb admin-token"

#!/usr/bin/env bash
# The README's run command: from a fresh machine to a healthy stack.
#   1. install what is missing (cmake, the Compose v2 plugin, ...),
#   2. build static binaries on the host and assemble the FROM-scratch images,
#   3. start the stack and wait until every container is healthy.
# Then open http://127.0.0.1:${SOFTY_PORT:-8080}/ ; stop with `docker compose down`.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/bootstrap.sh
./deploy/build.sh
docker compose up -d --wait
docker compose ps
port="${SOFTY_PORT:-8080}"
echo
echo "Softy Pinko is up: http://127.0.0.1:${port}/"
printf 'GET /api/hello -> '
curl -fsS "http://127.0.0.1:${port}/api/hello" 2>/dev/null || python3 -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:${port}/api/hello').read().decode(),end='')"
echo

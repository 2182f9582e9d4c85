#!/usr/bin/env bash
# The README's test command: every layer of tests, in order, on a fresh machine.
#   1. install what is missing (deploy/bootstrap.sh),
#   2. formatting and lints,
#   3. cargo tests on loopback (unit, handler, real-socket, real-browser, lb),
#   4. the end-to-end suite against the real compose stack in Docker,
#   5. a one-round smoke of the benchmark harness, so it does not rot.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/bootstrap.sh

echo "== cargo fmt / clippy"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked

echo "== images (static binaries, FROM scratch)"
./deploy/build.sh

echo "== end-to-end (docker compose)"
python3 deploy/e2e.py

echo "== benchmark smoke (1 round x 2 s, results in benches/out/)"
# Reuses the static release binaries deploy/build.sh just built.
python3 benches/run.py --smoke --no-build \
  --bin-dir "target/$(rustc -vV | sed -n 's/^host: //p')/release"

#!/usr/bin/env bash
# The README's test command: every layer of tests, in order, on a fresh machine.
# It stops at the first failing stage, and its last line counts the stages
# ("stages: N passed, N failed, N skipped").
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0
skipped=0
current=""
stage() {
  current="$1"
  echo
  echo "== $1"
  # Disk is the one resource a stage can run out of without saying why: print what is left
  # where the builds go (a CI run once ended "No space left on device" in the fuzz build).
  echo "disk: $(df -h --output=avail . | tail -n 1 | tr -d ' ') free here; docker: $(docker system df --format '{{.Type}} {{.Size}}' 2>/dev/null | tr '\n' ' ')"
}
# In CI (CI=true) the build artifacts of a stage are thrown away once no later stage needs
# them, and cargo keeps no incremental state, so the run fits a small disk. Locally they
# stay, so a second run is quick.
reclaim() {
  if [ "${CI:-}" = true ]; then
    echo "reclaim (CI): $*"
    "$@" || true
  fi
}
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL=0
fi
finish() {
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "stages: $passed passed, 0 failed, $skipped skipped"
  else
    echo "FAILED stage: $current (exit $rc)"
    echo "stages: $passed passed, 1 failed, $skipped skipped"
  fi
}
trap finish EXIT
triple=""

stage "bootstrap: install what is missing (cmake, chromium, nginx-light, haproxy, oha, cargo-fuzz, h2load, curl, openssl, Compose v2)"
./deploy/bootstrap.sh
triple=$(rustc -vV | sed -n 's/^host: //p')
passed=$((passed + 1))

stage "formatting and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
passed=$((passed + 1))

stage "cargo tests on loopback (handlers, real sockets, headless Chromium, the lb binary)"
cargo test --workspace --locked
passed=$((passed + 1))

stage "static binaries and FROM-scratch images"
./deploy/build.sh
# The debug build of the tests (several GB) is not used again.
reclaim rm -rf target/debug
passed=$((passed + 1))

stage "end-to-end in real Docker (deploy/e2e.py)"
python3 deploy/e2e.py
passed=$((passed + 1))

stage "end-to-end HTTPS in real Docker: h2, rotation under load, Chromium (deploy/e2e_tls.py)"
python3 deploy/e2e_tls.py
passed=$((passed + 1))

stage "end-to-end on a one-node Docker Swarm (deploy/e2e_swarm.py)"
python3 deploy/e2e_swarm.py
passed=$((passed + 1))

stage "in-Docker build on a clean clone: docker compose -f compose.yaml up --build --wait (deploy/e2e_from_source.py)"
# A second release build of the whole workspace, inside Docker: about 25
# minutes the first time on a 2-core machine, which takes the whole command
# past an hour there. So it runs in CI (CI=true) only.
if [ "${CI:-}" = true ]; then
  # Where no registry serves the official Rust image, a local stand-in takes its
  # place (the script skips when an image of that name is here already).
  ./deploy/rust-stand-in.sh
  python3 deploy/e2e_from_source.py
  # The builder image and BuildKit's cache of that build: a few GB nothing later reads.
  reclaim docker builder prune -af
  reclaim docker image rm "$(sed -n 's/^FROM \(rust:[^ ]*\) AS build$/\1/p' deploy/Dockerfile)"
  passed=$((passed + 1))
else
  echo "SKIPPED: runs with CI=true; alone: ./deploy/rust-stand-in.sh && python3 deploy/e2e_from_source.py"
  skipped=$((skipped + 1))
fi

stage "benchmark smoke: 1 round x 2 s, results in benches/out/"
# Reuses the static release binaries deploy/build.sh just built.
python3 benches/run.py --smoke --no-build --bin-dir "target/$triple/release"
passed=$((passed + 1))

stage "fuzz: every lb fuzz target for ${FUZZ_SECONDS:-60}s from the committed seeds (deploy/fuzz.sh)"
./deploy/fuzz.sh
passed=$((passed + 1))

#!/usr/bin/env bash
# The README's test command: every layer of tests, in order, on a fresh machine.
# It stops at the first failing stage, and its last line counts the stages
# ("stages: N passed, N failed, N skipped").
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0
skipped=0
current=""
# Each stage's wall time, printed as a table at the end: CI gives the whole run 90 minutes,
# and this table says where they went.
times=()
stage_started=$SECONDS
close_stage() {
  if [ -n "$current" ]; then
    times+=("$(printf '%6d s  %s' $((SECONDS - stage_started)) "${current%%:*}")")
  fi
}
stage() {
  close_stage
  current="$1"
  stage_started=$SECONDS
  echo
  echo "== $1 ($(date -u +%H:%M:%S))"
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
  close_stage
  echo
  echo "stage times (${SECONDS} s in all):"
  printf '%s\n' "${times[@]}"
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
# The debug build of the tests (several GB) is not used again.
reclaim rm -rf target/debug
passed=$((passed + 1))

stage "in-Docker build on a clean clone: docker compose -f compose.yaml up --build --wait (deploy/e2e_from_source.py)"
# A release build of the whole workspace inside Docker: about 20 minutes on a 2-core
# machine. So it runs in CI (CI=true) only, and there it is the run's one release build:
# its binaries (this commit's, compiled from a clean clone) are copied out for the stages
# below instead of compiling the same commit again on the host.
bins_from_docker=false
if [ "${CI:-}" = true ]; then
  # Where no registry serves the official Rust image, a local stand-in takes its
  # place (the script skips when an image of that name is here already).
  ./deploy/rust-stand-in.sh
  dirty=$(git status --porcelain) || dirty="(git status failed)"
  if [ -z "$dirty" ]; then
    python3 deploy/e2e_from_source.py --export-bins dist/bin
    bins_from_docker=true
  else
    # The clone builds HEAD; with local changes the stages below must build the tree.
    echo "the working tree differs from HEAD, so the host build below compiles it:"
    echo "$dirty"
    python3 deploy/e2e_from_source.py
  fi
  # The builder image and BuildKit's cache of that build: a few GB nothing later reads.
  reclaim docker builder prune -af
  reclaim docker image rm "$(sed -n 's/^FROM \(rust:[^ ]*\) AS build$/\1/p' deploy/Dockerfile)"
  passed=$((passed + 1))
else
  echo "SKIPPED: runs with CI=true; alone: ./deploy/rust-stand-in.sh && python3 deploy/e2e_from_source.py"
  skipped=$((skipped + 1))
fi

stage "static binaries and FROM-scratch images"
if [ "$bins_from_docker" = true ]; then
  ./deploy/build.sh --prebuilt
  bench_bins=dist/bin
else
  ./deploy/build.sh
  bench_bins="target/$triple/release"
fi
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

stage "benchmark smoke: 1 round x 2 s, results in benches/out/"
# Reuses the static release binaries of the stages above.
python3 benches/run.py --smoke --no-build --bin-dir "$bench_bins"
passed=$((passed + 1))

stage "fuzz: every lb fuzz target for ${FUZZ_SECONDS:-60}s from the committed seeds (deploy/fuzz.sh)"
./deploy/fuzz.sh
passed=$((passed + 1))

#!/usr/bin/env bash
# Runs every fuzz target in lb/fuzz (cargo-fuzz, libFuzzer, nightly) for FUZZ_SECONDS
# each (default 60), starting from the committed seeds in lb/fuzz/seeds/<target>/.
# Fails on the first target that crashes (a panic, a failed property, an out-of-memory or
# an input slower than 10 s) and prints the input that did it, base64, with the command
# that replays it. New inputs the fuzzer finds go to a scratch corpus that is thrown away,
# so every run starts from the same seeds.
#
#   FUZZ_SECONDS=300 ./deploy/fuzz.sh           # longer
#   FUZZ_TARGETS="config request" ./deploy/fuzz.sh   # some targets only
#   FUZZ_JOBS=1 ./deploy/fuzz.sh                 # one target at a time (default: one per core)
#
# Needs the nightly toolchain (`cargo +nightly`), cargo-fuzz (deploy/bootstrap.sh
# installs it) and bash 5.1 or later (`wait -n -p`). The build goes to lb/fuzz/target (or $CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/../lb/fuzz"

seconds=${FUZZ_SECONDS:-60}
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain (cargo +nightly); cargo fuzz needs one" >&2
  exit 1
fi

started=$(date +%s)
echo "fuzz: building the targets (cargo +nightly fuzz build, address sanitizer)"
cargo +nightly fuzz build
echo "fuzz: built in $(($(date +%s) - started)) s"

targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
# Targets run side by side, one per core by default: each is one single-threaded
# libFuzzer process, so on 2 cores two at once halve the stage's wall time and give each
# target the same CPU time as running them in turn.
jobs=${FUZZ_JOBS:-$(nproc)}
if ! [ "$jobs" -ge 1 ] 2>/dev/null; then
  echo "fuzz: FUZZ_JOBS must be a number of at least 1, not '$jobs'" >&2
  exit 1
fi
scratch=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$scratch"' EXIT

fuzz_one() {
  local t=$1
  mkdir -p "$scratch/$t" "artifacts/$t"
  local args=(-max_total_time="$seconds" -timeout=10 -artifact_prefix="artifacts/$t/" -print_final_stats=1)
  if [ -f "dicts/$t.dict" ]; then args+=(-dict="dicts/$t.dict"); fi
  # libFuzzer writes new inputs into the first corpus directory only: the scratch one.
  cargo +nightly fuzz run "$t" "$scratch/$t" "seeds/$t" -- "${args[@]}" >"$scratch/$t.log" 2>&1
}

# What a finished target did: its final stats, or (failed) what failed and the input.
report() {
  local t=$1 rc=$2
  if [ "$rc" -ne 0 ]; then
    # what failed (a panic's message, a sanitizer's report), else the end of the log
    grep -m1 -A12 -E "panicked at|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)" "$scratch/$t.log" \
      || tail -n 60 "$scratch/$t.log"
    echo
    echo "fuzz: target $t FAILED. The input (kept in lb/fuzz/artifacts/$t/):"
    for f in "artifacts/$t"/*; do
      [ -f "$f" ] || continue
      echo "  $f, base64: $(base64 -w0 "$f" | head -c 4000)"
      echo "  replay: (cd lb/fuzz && cargo +nightly fuzz run $t $f)"
    done
    echo "Make it a regression test in plain cargo test (lb/src/fuzzing/regressions.rs), then fix it."
    return 1
  fi
  # libFuzzer's final stats: how many inputs ran, and how much of the code they reached
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|^#[0-9]+ *DONE' "$scratch/$t.log" \
    | sed "s/^/  $t: /"
}

declare -A running=()  # pid -> target
failed=0
finish_one() {
  local pid rc=0
  wait -n -p pid "${!running[@]}" || rc=$?
  local t=${running[$pid]}
  unset "running[$pid]"
  echo
  echo "fuzz: $t done"
  report "$t" "$rc" || failed=1
}
for t in $targets; do
  while [ ${#running[@]} -ge "$jobs" ]; do finish_one; done
  [ "$failed" -eq 0 ] || break
  echo "fuzz: $t for ${seconds}s from $(find "seeds/$t" -type f | wc -l) seeds"
  fuzz_one "$t" &
  running[$!]=$t
done
while [ ${#running[@]} -gt 0 ]; do finish_one; done
if [ "$failed" -ne 0 ]; then
  exit 1
fi
echo
echo "fuzz: every target ran ${seconds}s without a crash ($(($(date +%s) - started)) s in all)"

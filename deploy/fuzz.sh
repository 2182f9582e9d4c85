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
#
# Needs the nightly toolchain (`cargo +nightly`) and cargo-fuzz (deploy/bootstrap.sh
# installs it). The build goes to lb/fuzz/target (or $CARGO_TARGET_DIR).
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
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in $targets; do
  mkdir -p "$scratch/$t" "artifacts/$t"
  args=(-max_total_time="$seconds" -timeout=10 -artifact_prefix="artifacts/$t/" -print_final_stats=1)
  if [ -f "dicts/$t.dict" ]; then args+=(-dict="dicts/$t.dict"); fi
  echo
  echo "fuzz: $t for ${seconds}s from $(find "seeds/$t" -type f | wc -l) seeds"
  # libFuzzer writes new inputs into the first corpus directory only: the scratch one.
  if ! cargo +nightly fuzz run "$t" "$scratch/$t" "seeds/$t" -- "${args[@]}" \
      >"$scratch/$t.log" 2>&1; then
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
    exit 1
  fi
  # libFuzzer's final stats: how many inputs ran, and how much of the code they reached
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|^#[0-9]+ *DONE' "$scratch/$t.log" \
    | sed "s/^/  $t: /"
done
echo
echo "fuzz: every target ran ${seconds}s without a crash ($(($(date +%s) - started)) s in all)"

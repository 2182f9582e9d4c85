#!/usr/bin/env bash
# The README's test command: every layer of tests, in order.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/bootstrap.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace

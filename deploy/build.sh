#!/usr/bin/env bash
# The fast build path: static release binaries on the host, then the three
# images assembled from them (deploy/compose.host.yaml: no Rust image needed).
#
#   deploy/build.sh               binaries into dist/bin/, then the images
#   deploy/build.sh --no-images   binaries only (also what deploy/Dockerfile's
#                                 `build` stage runs, inside Docker)
#   deploy/build.sh --prebuilt    no compile: the images from the binaries already in
#                                 dist/bin/ (CI puts there the ones its in-Docker build of
#                                 the same commit made: deploy/test.sh)
#
# glibc static linking (+crt-static) needs no extra rustup target. The flag is
# set for the target triple only, so build scripts and proc-macros stay
# dynamic, as they must.
set -euo pipefail
cd "$(dirname "$0")/.."

triple=$(rustc -vV | sed -n 's/^host: //p')
flags_var="CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_RUSTFLAGS"
export "$flags_var"="-C target-feature=+crt-static"

if [ "${1:-}" = --prebuilt ]; then
  for bin in lb backend frontend; do
    if [ ! -x "dist/bin/$bin" ]; then
      echo "build: --prebuilt, but dist/bin/$bin is missing" >&2
      exit 1
    fi
  done
  echo "build: using the binaries in dist/bin/ (--prebuilt)"
else
  echo "build: static release binaries for $triple"
  cargo build --locked --release --target "$triple" -p lb -p backend -p frontend

  mkdir -p dist/bin
  for bin in lb backend frontend; do
    # Symbols stay in target/ for profiling; the images get stripped copies.
    install -m 0755 -s "target/$triple/release/$bin" "dist/bin/$bin"
  done
fi
# A static binary has no interpreter; refuse to ship one that does.
if command -v file >/dev/null && file dist/bin/* | grep -q 'dynamically linked'; then
  file dist/bin/*
  echo "build: a binary is dynamically linked; the scratch images cannot run it" >&2
  exit 1
fi
ls -l dist/bin

if [ "${1:-}" != "--no-images" ]; then
  docker compose -f compose.yaml -f deploy/compose.host.yaml build
fi

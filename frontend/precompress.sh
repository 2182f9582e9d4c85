#!/usr/bin/env bash
# Run after editing anything in site/. Two steps, checked by `cargo test -p frontend`:
#  1. stamp each `/assets/NAME?v=HASH` reference in the HTML files with the first 8 hex
#     digits of the asset's SHA-256, so the year-long `immutable` caching of /assets/
#     can never serve a stale file after a change;
#  2. write a gzip twin (`FILE.gz`) of every text file, served to clients that accept
#     gzip (no compression work per request).
set -euo pipefail
cd "$(dirname "$0")/site"

for asset in assets/*; do
  case "$asset" in *.gz|*.br) continue ;; esac
  hash=$(sha256sum "$asset" | cut -c1-8)
  name=$(basename "$asset")
  sed -i -E "s#(/assets/${name//./\\.})\?v=[0-9a-f]+#\1?v=${hash}#g" ./*.html
done

find . -type f \( -name '*.html' -o -name '*.css' -o -name '*.js' -o -name '*.svg' \) \
  -exec gzip -9 -n -k -f {} \;
echo "precompress: $(find . -name '*.gz' | wc -l) gzip twins written"

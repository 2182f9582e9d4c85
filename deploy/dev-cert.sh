#!/usr/bin/env bash
# The development certificate for the compose stack's HTTPS listener (:8443):
# a local CA and a leaf for localhost / 127.0.0.1 signed by it, made with openssl.
#
#   deploy/dev-cert.sh [DIR]      default DIR: deploy/dev-cert/ (gitignored)
#
# Idempotent: an existing CA is kept (so a CA you trusted once stays trusted), and
# the leaf is issued again only when it is missing, no longer matches the CA, or
# expires within 30 days. Files:
#   ca.pem          the CA certificate: trust this one (curl --cacert DIR/ca.pem ...)
#   ca.key          the CA's private key (mode 0600; never leaves this machine)
#   localhost.pem   the leaf, as the lb serves it
#   localhost.key   its key, readable by the lb's user in the container (uid 10001):
#                   mode 0644, which is acceptable for a development key only.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-deploy/dev-cert}"
mkdir -p "$dir"
cd "$dir"

if [ ! -s ca.pem ] || [ ! -s ca.key ]; then
  echo "dev-cert: new local CA in $dir/ca.pem"
  rm -f localhost.pem localhost.key
  (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout ca.key -out ca.pem -days 3650 -subj "/CN=Softy Pinko development CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null)
  chmod 0644 ca.pem
fi

if [ -s localhost.pem ] && [ -s localhost.key ] \
  && openssl verify -CAfile ca.pem localhost.pem >/dev/null 2>&1 \
  && openssl x509 -in localhost.pem -noout -checkend $((30 * 86400)) >/dev/null; then
  echo "dev-cert: $dir/localhost.pem is current"
  exit 0
fi

echo "dev-cert: new leaf for localhost, 127.0.0.1 in $dir/localhost.pem"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/leaf.key" \
  -out "$tmp/leaf.csr" -subj "/CN=localhost" 2>/dev/null
cat >"$tmp/ext" <<'EOF'
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
EOF
# 397 days: the longest validity browsers accept for a server certificate.
openssl x509 -req -in "$tmp/leaf.csr" -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" \
  -days 397 -extfile "$tmp/ext" -out "$tmp/leaf.pem" 2>/dev/null
chmod 0644 "$tmp/leaf.pem" "$tmp/leaf.key"
mv "$tmp/leaf.key" localhost.key
mv "$tmp/leaf.pem" localhost.pem

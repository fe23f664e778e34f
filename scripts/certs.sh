#!/usr/bin/env bash
# Test certificates: a private CA, a server certificate for 127.0.0.1 and
# localhost signed by it, and a client certificate for mutual TLS.
#
#   scripts/certs.sh DIR     writes DIR/ca.pem, DIR/ca.key, DIR/server.pem,
#                            DIR/server.key, DIR/client.pem, DIR/client.key
#
# For tests and the quickstart only: keys are unencrypted.
set -euo pipefail

DIR="${1:?usage: scripts/certs.sh DIR}"
mkdir -p "$DIR"
cd "$DIR"
if ! command -v openssl >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openssl >/dev/null
fi
quiet() { "$@" >/dev/null 2>&1 || { echo "certs.sh: $* failed" >&2; "$@"; exit 1; }; }

quiet openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=dts test CA" \
    -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

issue() {
    local name=$1 cn=$2 ext=$3
    quiet openssl req -newkey rsa:2048 -nodes -subj "/CN=$cn" -keyout "$name.key" -out "$name.csr"
    printf '%s\n' "$ext" > "$name.ext"
    quiet openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
        -out "$name.pem" -extfile "$name.ext"
    rm -f "$name.csr" "$name.ext"
}
issue server localhost "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
issue client dts-client "extendedKeyUsage=clientAuth"
chmod 600 ./*.key

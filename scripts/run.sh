#!/usr/bin/env bash
# Builds dts and starts `dts standalone` (control plane + local worker,
# embedded SQLite store in ./data), installing what is missing first.
#
#   scripts/run.sh [dts standalone flags...]
#
# Settings come from flags, DTS_* variables or a config file (see README).
# With no users configured, the first start prints a generated password.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if ! command -v cc >/dev/null 2>&1; then
    sudo_cmd=; [ "$(id -u)" -ne 0 ] && sudo_cmd=sudo
    $sudo_cmd apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq build-essential pkg-config >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is missing: install Rust (https://rustup.rs) and run this again" >&2
    exit 1
fi
cargo build --release --bin dts
exec target/release/dts standalone "$@"

#!/usr/bin/env bash
# Runs the whole test suite against real servers, from a fresh machine.
#
#   scripts/test.sh [extra cargo test/nextest args]
#
# Installs what is missing (Debian packages, cargo-nextest if it can),
# starts private MariaDB and PostgreSQL servers (scripts/services.sh), runs
# every test of the workspace with DTS_REQUIRE_SERVICES=1 (so no backend is
# silently skipped), then stops the servers.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[test] %s\n' "$*" >&2; }

ensure_build_deps() {
    local want=()
    command -v cc >/dev/null 2>&1 || want+=(build-essential)
    command -v pkg-config >/dev/null 2>&1 || want+=(pkg-config)
    command -v python3 >/dev/null 2>&1 || want+=(python3)
    # rdkafka builds its bundled librdkafka with cmake, which includes curl's headers.
    command -v cmake >/dev/null 2>&1 || want+=(cmake)
    [ -e /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -e /usr/include/curl/curl.h ] || want+=(libcurl4-openssl-dev)
    if [ ${#want[@]} -gt 0 ]; then
        log "installing ${want[*]}"
        local sudo=; [ "$(id -u)" -ne 0 ] && sudo=sudo
        $sudo apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${want[@]}" >/dev/null
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        log "cargo is missing: install Rust (https://rustup.rs) and run this again"
        exit 1
    fi
}

ensure_build_deps
scripts/services.sh up
trap 'scripts/services.sh down' EXIT
# shellcheck disable=SC1091
. "$(scripts/services.sh env)"
export DTS_REQUIRE_SERVICES=1

if cargo nextest --version >/dev/null 2>&1; then
    # nextest does not run doc tests; run them first so its summary closes the output.
    cargo test --workspace --doc "$@"
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi

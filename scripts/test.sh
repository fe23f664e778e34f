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

# shellcheck source=scripts/build-deps.sh
. "$ROOT/scripts/build-deps.sh"

ensure_build_deps
ensure_test_browser
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

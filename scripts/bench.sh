#!/usr/bin/env bash
# Benchmarks dts against real servers, from a fresh machine.
#
#   scripts/bench.sh [--scenarios cdc,snapshot] [--rows N] [--out DIR]
#
# Starts a private MariaDB and a Kafka-protocol broker (scripts/services.sh),
# builds release binaries, runs the scenarios and writes DIR/results.json
# and DIR/results.md (default DIR: bench-results/), then stops the servers.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export DTS_SERVICES_DIR="${DTS_SERVICES_DIR:-$ROOT/.services/bench}"
scripts/services.sh up mariadb kafka
trap 'scripts/services.sh down' EXIT
# shellcheck disable=SC1091
. "$(scripts/services.sh env)"
cargo build --release -p dts-bench
target/release/dts-bench "$@"

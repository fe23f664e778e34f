#!/usr/bin/env bash
# Benchmarks dts against real servers, from a fresh machine.
#
#   scripts/bench.sh [--scenarios cdc,snapshot] [--rows N] [--runs N] [--clients N] [--snapshot-readers N] [--snapshot-chunk-rows N] [--out DIR]
#
# Starts a private MariaDB and a Kafka-protocol broker (scripts/services.sh),
# installs the Python baseline (python-mysql-replication + confluent-kafka,
# from PyPI, in a venv), builds release binaries, runs the scenarios and
# writes DIR/results.json and DIR/results.md (default DIR: bench-results/),
# then stops the servers.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export DTS_SERVICES_DIR="${DTS_SERVICES_DIR:-$ROOT/.services/bench}"
scripts/services.sh up mariadb kafka
trap 'scripts/services.sh down' EXIT
# shellcheck disable=SC1091
. "$(scripts/services.sh env)"
venv="$DTS_SERVICES_DIR/tools/baseline-venv"
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/python" -c 'import pymysqlreplication, confluent_kafka' 2>/dev/null \
    || "$venv/bin/pip" install -q mysql-replication confluent-kafka
export DTS_BENCH_BASELINE="$venv/bin/python $ROOT/scripts/baseline/pipeline.py"
cargo build --release -p dts-bench -p dts
target/release/dts-bench "$@"

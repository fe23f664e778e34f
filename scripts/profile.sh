#!/usr/bin/env bash
# Profiles the CDC catch-up: runs `dts-bench --scenarios cdc --runs 1` under
# `perf record` and writes where the bench process (the worker in-process)
# spent its CPU time to DIR/profile.txt (default DIR: bench-results/).
#
#   scripts/profile.sh [--rows N] [--out DIR]
#
# Needs perf (Debian: linux-perf). Hardware counters are often unavailable
# in VMs, so it samples the cpu-clock software event.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
rows=1000000 out=bench-results
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) rows="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "unknown flag $1 (known: --rows N --out DIR)" >&2; exit 2 ;;
    esac
done
command -v perf >/dev/null 2>&1 || { echo "perf is missing (Debian: apt-get install linux-perf)" >&2; exit 1; }
export DTS_SERVICES_DIR="${DTS_SERVICES_DIR:-$ROOT/.services/bench}"
scripts/services.sh up mariadb kafka
trap 'scripts/services.sh down' EXIT
# shellcheck disable=SC1091
. "$(scripts/services.sh env)"
# No Python baseline here: only dts's own work is sampled.
unset DTS_BENCH_BASELINE
# The release binary keeps its symbol names, enough for a flat profile.
cargo build --release -p dts-bench
mkdir -p "$out"
perf record -e cpu-clock -F 999 -o "$out/perf.data" -- \
    target/release/dts-bench --scenarios cdc --runs 1 --rows "$rows" --out "$out/profiled-run"
{
    echo "# perf report: dts-bench --scenarios cdc --runs 1 --rows $rows (cpu-clock, every thread of the bench process: tokio workers, librdkafka)"
    echo
    echo "## By shared object"
    perf report -i "$out/perf.data" --stdio --no-children --sort comm,dso 2>/dev/null | grep -v '^#' | grep -v '^$' | head -20
    echo
    echo "## Top symbols"
    perf report -i "$out/perf.data" --stdio --no-children --sort symbol 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | sed -E 's/ +- +- *$//; s/ *$//' | head -50
} > "$out/profile.txt"
echo "wrote $out/profile.txt" >&2

#!/usr/bin/env bash
# Profiles the CDC catch-up: runs `dts-bench --scenarios cdc --runs 1`,
# attaches `perf record` to the `dts standalone` process it starts, and
# writes where dts spent its CPU time to DIR/profile.txt (default DIR:
# bench-results/). The load generator's own work is not sampled.
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
cargo build --release -p dts-bench -p dts
mkdir -p "$out"
target/release/dts-bench --scenarios cdc --runs 1 --rows "$rows" --out "$out/profiled-run" &
bench=$!
dts=""
for _ in $(seq 300); do
    dts="$(pgrep -P "$bench" -x dts || true)"
    [ -n "$dts" ] && break
    kill -0 "$bench" 2>/dev/null || break
    sleep 0.1
done
[ -n "$dts" ] || { echo "dts-bench started no dts process within 30 s" >&2; wait "$bench"; exit 1; }
# perf ends with the process: the bench kills dts when the scenario is done.
perf record -e cpu-clock -F 999 -p "$dts" -o "$out/perf.data" &
perf_pid=$!
wait "$bench"
wait "$perf_pid" || true
# `head` closes the report pipes early; that is not a failure.
set +o pipefail
{
    echo "# perf report: the dts standalone process during dts-bench --scenarios cdc --runs 1 --rows $rows (cpu-clock, all its threads: tokio workers, actix, librdkafka)"
    echo
    echo "## By shared object"
    perf report -i "$out/perf.data" --stdio --no-children --sort comm,dso 2>/dev/null | grep -v '^#' | grep -v '^$' | head -20
    echo
    echo "## Top symbols"
    perf report -i "$out/perf.data" --stdio --no-children --sort symbol 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | sed -E 's/ +- +- *$//; s/ *$//' | head -50
} > "$out/profile.txt"
echo "wrote $out/profile.txt" >&2

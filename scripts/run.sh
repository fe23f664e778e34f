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

# shellcheck source=scripts/build-deps.sh
. "$ROOT/scripts/build-deps.sh"
ensure_build_deps
cargo build --release --bin dts
exec target/release/dts standalone "$@"

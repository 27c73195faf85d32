#!/usr/bin/env bash
# Does WMSS help on the demo's task? Set everything up, then 3 seeds × 3 values of λ (docs/compare.md).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
exec node dist/client/cli.js compare "$@"

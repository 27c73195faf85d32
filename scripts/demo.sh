#!/usr/bin/env bash
# The main job: set everything up, then run steps 0–7 of the pipeline on a tiny model.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
exec node dist/client/cli.js demo "$@"

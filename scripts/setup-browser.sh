#!/usr/bin/env bash
# Headless Chromium for the Web UI test (test/integration/userFacing.test.ts), from the Debian
# package; nothing is downloaded from anywhere else. Skipped when already installed.
# WMSS_CHROMIUM points the test at another binary.
set -euo pipefail
source "$(dirname "$0")/debian-package.sh"
ensure_debian_package setup-browser "${WMSS_CHROMIUM:-/usr/bin/chromium}" WMSS_CHROMIUM chromium

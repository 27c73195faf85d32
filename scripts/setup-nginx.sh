#!/usr/bin/env bash
# nginx for the TLS/mTLS connection test (test/integration/tls.test.ts): a TLS-terminating
# gRPC proxy (grpc_pass, ssl_verify_client) in front of the plain-text dev server. From the Debian
# package; nothing is downloaded from anywhere else. Skipped when already installed. The test
# runs its own nginx process (its own config and prefix in a temp dir), never the system service,
# so the package may not start that service (port 80) while it installs.
# WMSS_NGINX points the test at another binary.
set -euo pipefail
source "$(dirname "$0")/debian-package.sh"
ensure_debian_package setup-nginx "${WMSS_NGINX:-/usr/sbin/nginx}" WMSS_NGINX nginx no-services

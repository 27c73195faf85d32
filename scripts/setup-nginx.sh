#!/usr/bin/env bash
# nginx for the TLS/mTLS connection test (test/integration/tls.test.ts): a TLS-terminating
# gRPC proxy (grpc_pass, ssl_verify_client) in front of the plain-text dev server. From the Debian
# package; nothing is downloaded from anywhere else. Skipped when already installed. The test
# runs its own nginx process (its own config and prefix in a temp dir), never the system service.
# WMSS_NGINX points the test at another binary.
set -euo pipefail
bin="${WMSS_NGINX:-/usr/sbin/nginx}"
if [[ -x "$bin" ]]; then exit 0; fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "setup-nginx: $bin is missing; install Debian's nginx package (apt-get install nginx) or set WMSS_NGINX" >&2
  exit 1
fi
echo "setup-nginx: installing nginx (Debian package)" >&2
export DEBIAN_FRONTEND=noninteractive
# the package must not start the system's nginx service (port 80): forbid service starts while it installs
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends nginx >/dev/null

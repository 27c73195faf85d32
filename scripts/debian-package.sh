#!/usr/bin/env bash
# Sourced by the setup scripts that need a Debian package for a test (chromium, nginx):
# ensure_debian_package TAG BIN ENV_VAR PACKAGE [no-services]
# Does nothing when BIN is executable; else installs PACKAGE through apt (as root), or fails
# saying how to install it or which variable points at another binary. With no-services, the
# package may not start its system service while it installs.
ensure_debian_package() {
  local tag=$1 bin=$2 var=$3 package=$4 services=${5:-}
  if [[ -x "$bin" ]]; then return 0; fi
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "$tag: $bin is missing; install Debian's $package package (apt-get install $package) or set $var" >&2
    return 1
  fi
  echo "$tag: installing $package (Debian package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  local policy=/usr/sbin/policy-rc.d
  if [[ $services == no-services && ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$package" >/dev/null
}

#!/bin/sh
# Creates the namespace the workers use and registers wmss-flow's search attributes, both named
# in docker-compose.yml (WMSS_NAMESPACE; WMSS_SEARCH_ATTRIBUTES as name=Type pairs), so the Web UI
# can filter runs by them. scripts/prod-stack.sh runs this same file against a local server.
set -eu
ns="${WMSS_NAMESPACE:?WMSS_NAMESPACE is not set}"
attrs="$(echo "${WMSS_SEARCH_ATTRIBUTES:?WMSS_SEARCH_ATTRIBUTES is not set}" | tr ',' ' ')"
t() { temporal "$@" --address "$TEMPORAL_ADDRESS"; }
until t operator cluster health; do echo 'waiting for temporal'; sleep 2; done
t operator namespace describe --namespace "$ns" >/dev/null 2>&1 || t operator namespace create --namespace "$ns" --retention 30d
# A new namespace reaches the server's namespace cache some seconds after it is created; the
# search attribute commands read that cache.
tries=0
until t operator search-attribute list --namespace "$ns" >/dev/null 2>&1; do
  tries=$((tries + 1)); [ "$tries" -lt 60 ] || { echo "namespace $ns not visible after 60 s" >&2; exit 1; }
  sleep 1
done
for pair in $attrs; do
  # fails for an attribute that is already there (a second `up`); the list below is the check
  t operator search-attribute create --namespace "$ns" --name "${pair%%=*}" --type "${pair#*=}" || echo "(${pair%%=*}: kept as it is)"
done
registered="$(t operator search-attribute list --namespace "$ns")"
for pair in $attrs; do
  echo "$registered" | grep -Eq "^ *${pair%%=*} +${pair#*=} *\$" || { echo "search attribute ${pair%%=*} (${pair#*=}) is not registered in $ns:" >&2; echo "$registered" >&2; exit 1; }
done
echo "namespace $ns ready (search attributes: $attrs)"

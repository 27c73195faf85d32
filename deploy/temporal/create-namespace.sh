#!/bin/sh
# Creates the namespace the workers use and registers wmss-flow's search attributes
# (pipeline/searchAttributes.ts), so the Web UI can filter runs by them.
set -eu
ns="${WMSS_NAMESPACE:-default}"
until temporal operator cluster health --address "$TEMPORAL_ADDRESS"; do echo 'waiting for temporal'; sleep 2; done
temporal operator namespace describe --namespace "$ns" --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1 \
  || temporal operator namespace create --namespace "$ns" --retention 30d --address "$TEMPORAL_ADDRESS"
for name in WmssRunName WmssStep WmssStatus WmssBaseModel; do
  temporal operator search-attribute create --namespace "$ns" --name "$name" --type Keyword --address "$TEMPORAL_ADDRESS" || true
done
echo "namespace $ns ready"

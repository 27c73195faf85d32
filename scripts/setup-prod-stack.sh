#!/usr/bin/env bash
# What scripts/prod-stack.sh needs, at the versions docker-compose.yml pins: Debian's PostgreSQL
# of the pinned major version, and the Temporal server (cmd/server) and SQL schema tool
# (cmd/tools/sql, installed as temporal-sql-tool) built from the go.temporal.io/server Go module,
# with the module's schema files beside them. Built once into .prod-stack/v<version>/ (ignored by
# git) and reused: nothing is built when both binaries of the pinned version are there.
# The Go build and module caches default to the user's own (`go env GOCACHE GOMODCACHE`), so a
# second checkout on the same machine (CI's fresh clone) links in seconds instead of compiling
# for minutes; WMSS_GO_CACHE=DIR puts both under DIR instead.
# Needs `make setup` first (dist/scripts/prodStackSpec.js reads the pins) and Go (the version go.temporal.io/server's go.mod asks for).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
source "$root/scripts/debian-package.sh"
[[ -f "$root/dist/scripts/prodStackSpec.js" ]] || { echo "setup-prod-stack: dist/ is missing; run make setup" >&2; exit 1; }
eval "$(node "$root/dist/scripts/prodStackSpec.js" shell)"

ensure_debian_package setup-prod-stack "${WMSS_PG_BIN:-/usr/lib/postgresql/$POSTGRES_MAJOR/bin}/initdb" WMSS_PG_BIN "postgresql-$POSTGRES_MAJOR" no-services

build="${WMSS_PROD_STACK_BUILD:-$root/.prod-stack}/v$TEMPORAL_VERSION"
stamp="$build/built-from"
module="go.temporal.io/server@v$TEMPORAL_VERSION"
if [[ -x "$build/bin/temporal-server" && -x "$build/bin/temporal-sql-tool" && -d "$build/schema/postgresql" && "$(cat "$stamp" 2>/dev/null)" == "$module" ]]; then
  exit 0
fi

command -v go >/dev/null || { echo "setup-prod-stack: Go is needed to build $module (https://go.dev/doc/install)" >&2; exit 1; }
if [[ -n "${WMSS_GO_CACHE:-}" ]]; then export GOCACHE="$WMSS_GO_CACHE/build" GOMODCACHE="$WMSS_GO_CACHE/mod"; fi
echo "setup-prod-stack: building temporal-server and temporal-sql-tool from $module ($(go version | awk '{print $3}'); a few minutes the first time)" >&2
started=$SECONDS
tmp="$build.tmp"
rm -rf "$tmp"
mkdir -p "$tmp/bin"
# Only the two commands, without debug info or local paths; -modcacherw keeps the module cache
# deletable by a plain rm -rf.
GOFLAGS="-modcacherw -buildvcs=false" GOBIN="$tmp/bin" \
  go install -trimpath -ldflags='-s -w' "go.temporal.io/server/cmd/server@v$TEMPORAL_VERSION" "go.temporal.io/server/cmd/tools/sql@v$TEMPORAL_VERSION"
mv "$tmp/bin/server" "$tmp/bin/temporal-server"
mv "$tmp/bin/sql" "$tmp/bin/temporal-sql-tool"
# The schema files, laid out as the admin-tools image has them under /etc/temporal/schema.
src="$(GOFLAGS=-modcacherw go mod download -json "$module" | node -e 'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>console.log(JSON.parse(s).Dir))')"
cp -r "$src/schema" "$tmp/schema"
chmod -R u+w "$tmp/schema"
echo "$module" >"$tmp/built-from"
rm -rf "$build"
mv "$tmp" "$build"
echo "setup-prod-stack: built $("$build/bin/temporal-server" --version) in $((SECONDS - started)) s into $build" >&2

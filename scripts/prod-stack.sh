#!/usr/bin/env bash
# The production stack of docker-compose.yml without containers, on loopback: a PostgreSQL
# cluster in a temporary directory, Temporal's schema job (deploy/temporal/setup-postgres.sh with
# temporal-sql-tool), the Temporal server with the environment of compose's `temporal` service,
# and the namespace job (deploy/temporal/create-namespace.sh). Versions, database names, namespace
# and search attributes come from docker-compose.yml (scripts/prodStackSpec.ts); the server and
# the SQL tool are the ones scripts/setup-prod-stack.sh built from go.temporal.io/server at the
# version compose pins. The workers are not started here: run compose's worker commands against
# the printed TEMPORAL_ADDRESS (docs/production.md).
#
#   scripts/prod-stack.sh start DIR            start everything; DIR holds logs, PIDs and stack.env
#   scripts/prod-stack.sh restart-server DIR   stop the Temporal server (SIGTERM) and start it again
#   scripts/prod-stack.sh stop DIR             stop what `start` started, by PID
#
# DIR/stack.env (for `source`): TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, PGHOST, PGPORT, PGUSER,
# PGPASSWORD, the two database names and the PIDs. Ports are free ones the OS hands out, or
# WMSS_STACK_PG_PORT / WMSS_STACK_TEMPORAL_PORT. As root, PostgreSQL runs as the `postgres` user
# (it refuses root). Needs `make setup` (dist/, .venv with the temporal CLI) and
# scripts/setup-prod-stack.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cmd="${1:-}"
state="${2:-}"
if [[ -z "$cmd" || -z "$state" ]]; then
  sed -n '11,13p' "$0" | sed 's/^# *//' >&2
  exit 2
fi
die() { echo "prod-stack: $*" >&2; exit 1; }
[[ -f "$root/dist/scripts/prodStackSpec.js" ]] || die "dist/ is missing; run make setup"
spec="$(node "$root/dist/scripts/prodStackSpec.js" shell)" || die "cannot read docker-compose.yml"
eval "$spec"

build="${WMSS_PROD_STACK_BUILD:-$root/.prod-stack}/v$TEMPORAL_VERSION"
server_bin="$build/bin/temporal-server"
sql_tool_dir="$build/bin"
temporal_cli="${WMSS_TEMPORAL_CLI:-$root/.venv/bin/temporal}"
pg_bin="${WMSS_PG_BIN:-/usr/lib/postgresql/$POSTGRES_MAJOR/bin}"

alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

# Sends $2 to PID $1, then SIGKILL if it is still there after $3 seconds.
stop_pid() {
  local pid=$1 signal=$2 grace=$3
  alive "$pid" || return 0
  kill "-$signal" "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do alive "$pid" || return 0; sleep 0.1; done
  echo "prod-stack: PID $pid still running ${grace}s after SIG$signal; SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

# PostgreSQL refuses to run as root: as root, its commands run as the cluster's owner.
pg_user=""
if [[ $(id -u) -eq 0 ]]; then pg_user="$(getent passwd postgres >/dev/null && echo postgres || echo nobody)"; fi
as_pg() { if [[ -n "$pg_user" ]]; then runuser -u "$pg_user" -- "$@"; else "$@"; fi; }

# KEY=value lines of DIR/ports.env, read by start and restart-server.
load_state() { [[ -f "$state/ports.env" ]] || die "$state/ports.env is missing: was the stack started there?"; source "$state/ports.env"; }

start_server() {
  load_state
  mkdir -p "$state/server"
  # The environment of compose's `temporal` service and nothing else, then loopback instead of the
  # container network: the database on this host, every service bound to 127.0.0.1.
  env -i PATH=/usr/bin:/bin HOME="$state/server" "${SERVER_ENV[@]}" \
    POSTGRES_SEEDS=127.0.0.1 DB_PORT="$PG_PORT" BIND_ON_IP=127.0.0.1 \
    FRONTEND_GRPC_PORT="$FRONTEND_PORT" FRONTEND_HTTP_PORT="$FRONTEND_HTTP_PORT" FRONTEND_MEMBERSHIP_PORT="$FRONTEND_MEMBERSHIP_PORT" \
    HISTORY_GRPC_PORT="$HISTORY_PORT" HISTORY_MEMBERSHIP_PORT="$HISTORY_MEMBERSHIP_PORT" \
    MATCHING_GRPC_PORT="$MATCHING_PORT" MATCHING_MEMBERSHIP_PORT="$MATCHING_MEMBERSHIP_PORT" \
    WORKER_GRPC_PORT="$WORKER_PORT" WORKER_MEMBERSHIP_PORT="$WORKER_MEMBERSHIP_PORT" \
    setsid "$server_bin" start >>"$state/server/temporal.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$state/server/pid"
  local deadline=$((SECONDS + 120))
  until "$temporal_cli" operator cluster health --address "127.0.0.1:$FRONTEND_PORT" >/dev/null 2>&1; do
    alive "$pid" || die "the Temporal server exited; see $state/server/temporal.log"
    ((SECONDS < deadline)) || { stop_pid "$pid" TERM 10; die "the Temporal server did not answer within 120 s; see $state/server/temporal.log"; }
    sleep 0.5
  done
}

stop_server() {
  [[ -f "$state/server/pid" ]] || return 0
  stop_pid "$(cat "$state/server/pid")" TERM 30
  rm -f "$state/server/pid"
}

stop_postgres() {
  [[ -f "$state/postgres/pid" ]] || return 0
  # SIGINT is PostgreSQL's fast shutdown: roll back open transactions, checkpoint, exit.
  stop_pid "$(cat "$state/postgres/pid")" INT 30
  rm -f "$state/postgres/pid"
  local pg_root
  pg_root="$(cat "$state/postgres/root" 2>/dev/null || true)"
  if [[ -n "$pg_root" && -d "$pg_root" ]]; then
    cp "$pg_root/postgres.log" "$state/postgres/postgres.log" 2>/dev/null || true
    rm -rf "$pg_root"
  fi
}

stop_all() { stop_server; stop_postgres; }

# Free TCP ports on 127.0.0.1, held open together so that they differ. Below 32768: Temporal keeps
# membership ports in a smallint column, and the kernel hands out ephemeral ports above that.
free_ports() {
  node -e '
    const net = require("net"); const n = Number(process.argv[1]); const held = [];
    const next = (tries) => {
      if (held.length === n) { console.log(held.map((s) => s.address().port).join(" ")); return held.forEach((s) => s.close()); }
      if (tries > 2000) { console.error("prod-stack: no free ports between 20000 and 32767"); process.exit(1); }
      const s = net.createServer();
      s.once("error", () => next(tries + 1));
      s.listen(20000 + Math.floor(Math.random() * 12768), "127.0.0.1", () => (held.push(s), next(tries + 1)));
    };
    next(0);' "$1"
}

start() {
  [[ -x "$server_bin" && -x "$sql_tool_dir/temporal-sql-tool" ]] || die "no Temporal server $TEMPORAL_VERSION in $build; run scripts/setup-prod-stack.sh"
  [[ -x "$pg_bin/initdb" && -x "$pg_bin/pg_ctl" ]] || die "no PostgreSQL $POSTGRES_MAJOR in $pg_bin (docker-compose.yml pins postgres:$POSTGRES_VERSION); run scripts/setup-prod-stack.sh or set WMSS_PG_BIN"
  [[ -x "$temporal_cli" ]] || die "no temporal CLI at $temporal_cli; run make setup"
  [[ ! -f "$state/ports.env" ]] || die "$state already holds a stack; stop it first"
  mkdir -p "$state/postgres" "$state/jobs"
  start_ok=0
  trap '[[ $start_ok == 1 ]] || { echo "prod-stack: start failed; stopping what was started" >&2; stop_all; rm -f "$state/ports.env"; }' EXIT

  local ports
  read -r -a ports <<<"$(free_ports 10)"
  cat >"$state/ports.env" <<EOF
PG_PORT=${WMSS_STACK_PG_PORT:-${ports[0]}}
FRONTEND_PORT=${WMSS_STACK_TEMPORAL_PORT:-${ports[1]}}
FRONTEND_HTTP_PORT=${ports[2]}
FRONTEND_MEMBERSHIP_PORT=${ports[3]}
HISTORY_PORT=${ports[4]}
HISTORY_MEMBERSHIP_PORT=${ports[5]}
MATCHING_PORT=${ports[6]}
MATCHING_MEMBERSHIP_PORT=${ports[7]}
WORKER_PORT=${ports[8]}
WORKER_MEMBERSHIP_PORT=${ports[9]}
EOF
  load_state

  # PostgreSQL: its own directory (readable by the cluster's owner when that is not us), a
  # password-protected TCP listener on loopback, its socket inside that directory.
  local pg_root
  pg_root="$(mktemp -d "${TMPDIR:-/tmp}/wmss-pg.XXXXXX")"
  echo "$pg_root" >"$state/postgres/root"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pg_root/pwfile"
  [[ -z "$pg_user" ]] || chown -R "$pg_user" "$pg_root"
  as_pg "$pg_bin/initdb" -D "$pg_root/data" -U "$POSTGRES_USER" --pwfile="$pg_root/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-instructions >"$state/postgres/initdb.log" 2>&1 \
    || die "initdb failed; see $state/postgres/initdb.log"
  rm -f "$pg_root/pwfile"
  as_pg "$pg_bin/pg_ctl" -D "$pg_root/data" -l "$pg_root/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $pg_root" start >/dev/null \
    || die "PostgreSQL did not start; see $pg_root/postgres.log"
  head -1 "$pg_root/data/postmaster.pid" >"$state/postgres/pid"

  # compose's temporal-schema job, with the SQL tool and schema files of the server built here
  env -i PATH="$sql_tool_dir:/usr/bin:/bin" HOME="$state/jobs" "${SCHEMA_ENV[@]}" \
    POSTGRES_SEEDS=127.0.0.1 DB_PORT="$PG_PORT" TEMPORAL_SCHEMA_DIR="$build/schema" \
    sh "$SCHEMA_JOB" >"$state/jobs/schema.log" 2>&1 || die "the schema job failed; see $state/jobs/schema.log"

  start_server

  # compose's temporal-namespace job, with the temporal CLI of the project's .venv
  env -i PATH="$(dirname "$temporal_cli"):/usr/bin:/bin" HOME="$state/jobs" "${NAMESPACE_ENV[@]}" \
    TEMPORAL_ADDRESS="127.0.0.1:$FRONTEND_PORT" \
    sh "$NAMESPACE_JOB" >"$state/jobs/namespace.log" 2>&1 || die "the namespace job failed; see $state/jobs/namespace.log"
  start_ok=1

  cat >"$state/stack.env" <<EOF
TEMPORAL_ADDRESS=127.0.0.1:$FRONTEND_PORT
TEMPORAL_NAMESPACE=$NAMESPACE
TEMPORAL_VERSION=$TEMPORAL_VERSION
PGHOST=127.0.0.1
PGPORT=$PG_PORT
PGUSER=$POSTGRES_USER
PGPASSWORD=$POSTGRES_PASSWORD
WMSS_STACK_HISTORY_DB=$HISTORY_DB
WMSS_STACK_VISIBILITY_DB=$VISIBILITY_DB
WMSS_STACK_POSTGRES_PID=$(cat "$state/postgres/pid")
WMSS_STACK_SERVER_PID=$(cat "$state/server/pid")
EOF
  echo "prod-stack: Temporal $TEMPORAL_VERSION at 127.0.0.1:$FRONTEND_PORT (namespace $NAMESPACE) on PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') at 127.0.0.1:$PG_PORT; $state/stack.env"
}

case "$cmd" in
  start) start ;;
  restart-server)
    stop_server
    start_server
    sed -i "s/^WMSS_STACK_SERVER_PID=.*/WMSS_STACK_SERVER_PID=$(cat "$state/server/pid")/" "$state/stack.env"
    echo "prod-stack: Temporal server restarted (PID $(cat "$state/server/pid"))"
    ;;
  stop)
    if [[ ! -f "$state/server/pid" && ! -f "$state/postgres/pid" ]]; then echo "prod-stack: nothing running from $state"; exit 0; fi
    stop_all
    rm -f "$state/ports.env"
    echo "prod-stack: stopped"
    ;;
  *) die "unknown command $cmd (start, restart-server, stop)" ;;
esac

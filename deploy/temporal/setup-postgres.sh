#!/bin/sh
# Creates Temporal's two PostgreSQL databases and brings their schemas to the version the
# admin-tools image ships. Everything it connects to and creates comes from the environment that
# docker-compose.yml gives it (scripts/prod-stack.sh runs this same file against a local cluster,
# with TEMPORAL_SCHEMA_DIR pointing at the schema files of the server it built). Idempotent:
# `create` fails harmlessly when the database exists, and update-schema skips applied versions.
# The compose service starts only once PostgreSQL is healthy (depends_on).
set -eu
schema="${TEMPORAL_SCHEMA_DIR:-/etc/temporal/schema}/postgresql/v12"
tool() { temporal-sql-tool --plugin "$DB" --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" --pw "$POSTGRES_PWD" "$@"; }
tool --db "$DBNAME" create || true
tool --db "$DBNAME" setup-schema -v 0.0
tool --db "$DBNAME" update-schema -d "$schema/temporal/versioned"
tool --db "$VISIBILITY_DBNAME" create || true
tool --db "$VISIBILITY_DBNAME" setup-schema -v 0.0
tool --db "$VISIBILITY_DBNAME" update-schema -d "$schema/visibility/versioned"
echo "schema ready ($DBNAME, $VISIBILITY_DBNAME)"

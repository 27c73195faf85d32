#!/bin/sh
# Creates Temporal's two PostgreSQL databases and brings their schemas to the version the
# admin-tools image ships (idempotent: `create` fails harmlessly when the database exists).
set -eu
tool() { temporal-sql-tool --plugin postgres12 --ep postgresql -p 5432 -u temporal --pw "$SQL_PASSWORD" "$@"; }
until nc -z postgresql 5432; do echo 'waiting for postgresql:5432'; sleep 1; done
schema=/etc/temporal/schema/postgresql/v12
tool --db temporal create || true
tool --db temporal setup-schema -v 0.0
tool --db temporal update-schema -d "$schema/temporal/versioned"
tool --db temporal_visibility create || true
tool --db temporal_visibility setup-schema -v 0.0
tool --db temporal_visibility update-schema -d "$schema/visibility/versioned"
echo 'schema ready'

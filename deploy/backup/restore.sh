#!/usr/bin/env bash
# Restore an aml-triage dump made by backup.sh, then verify the audit chain.
#
#   DATABASE_URL=postgres://USER@HOST:5432/DB deploy/backup/restore.sh [--force] DUMP
#
# The target database is created when it does not exist (through the server's `postgres`
# database). An existing database that already has tables is refused unless --force, which
# replaces its objects with the dump's (pg_restore --clean).
# The dump's .sha256 must match (ALLOW_UNVERIFIED_DUMP=1 skips a missing, never a wrong, one).
# After the restore, `aml-triage audit verify` runs when the binary is found (AML_TRIAGE_BIN or
# PATH); a broken chain makes the restore fail. Give passwords through ~/.pgpass or PGPASSFILE.
set -euo pipefail

force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
dump=${1:?usage: restore.sh [--force] DUMP}
: "${DATABASE_URL:?DATABASE_URL must name the database to restore into}"
[ -f "$dump" ] || { echo "restore: no such dump: $dump" >&2; exit 2; }

# 1. Integrity of the file itself.
if [ -f "$dump.sha256" ]; then
    expected=$(cut -d' ' -f1 <"$dump.sha256")
    actual=$(sha256sum "$dump" | cut -d' ' -f1)
    if [ "$expected" != "$actual" ]; then
        echo "restore: checksum mismatch for $dump: refusing to restore a changed dump" >&2
        exit 3
    fi
    echo "restore: checksum ok" >&2
elif [ "${ALLOW_UNVERIFIED_DUMP:-0}" != 1 ]; then
    echo "restore: $dump.sha256 is missing (ALLOW_UNVERIFIED_DUMP=1 to restore anyway)" >&2
    exit 3
fi
pg_restore --list "$dump" >/dev/null

# 2. The target database: create it if missing, refuse to overwrite one in use.
if ! [[ $DATABASE_URL =~ ^(postgres(ql)?://[^/?]*)/([^?]+)(\?.*)?$ ]]; then
    echo "restore: DATABASE_URL must be postgres://[user@]host[:port]/database[?options]" >&2
    exit 2
fi
server=${BASH_REMATCH[1]}
db=${BASH_REMATCH[3]}
options=${BASH_REMATCH[4]}
if ! [[ $db =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    echo "restore: database name '$db' must be a plain identifier" >&2
    exit 2
fi
maintenance="$server/postgres$options"
exists=$(psql --no-psqlrc -tA --dbname="$maintenance" \
    -c "SELECT 1 FROM pg_database WHERE datname = '$db'")
clean=()
if [ "$exists" != 1 ]; then
    echo "restore: creating database $db" >&2
    psql --no-psqlrc -q -v ON_ERROR_STOP=1 --dbname="$maintenance" -c "CREATE DATABASE \"$db\""
else
    tables=$(psql --no-psqlrc -tA --dbname="$DATABASE_URL" \
        -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    if [ "$tables" != 0 ]; then
        if [ "$force" != 1 ]; then
            echo "restore: database $db already has $tables table(s); use --force to replace them" >&2
            exit 4
        fi
        clean=(--clean --if-exists)
    fi
fi

# 3. Restore in one transaction: all of it or nothing.
echo "restore: restoring into $db" >&2
pg_restore --exit-on-error --single-transaction --no-owner --no-privileges "${clean[@]}" \
    --dbname="$DATABASE_URL" "$dump"

# 4. The audit chain must verify on the restored data.
bin=${AML_TRIAGE_BIN:-$(command -v aml-triage || true)}
if [ -n "$bin" ]; then
    echo "restore: verifying the audit chain" >&2
    "$bin" audit verify --database-url "$DATABASE_URL" >/dev/null
    echo "restore: audit chain verified" >&2
else
    echo "restore: done; run 'aml-triage audit verify' against $db before using it" >&2
fi

#!/usr/bin/env bash
# Back up the aml-triage PostgreSQL database with pg_dump (custom format) and prune dumps
# older than the retention period.
#
#   DATABASE_URL=postgres://USER@HOST:5432/DB deploy/backup/backup.sh [BACKUP_DIR]
#
# BACKUP_DIR            where dumps go (default /var/backups/aml-triage)
# BACKUP_RETENTION_DAYS dumps older than this are deleted after a good backup (default 30)
#
# Give the password through ~/.pgpass or PGPASSFILE rather than inside DATABASE_URL: the URL is
# passed to pg_dump on its command line. This script never prints the URL.
# Writes <dir>/aml-triage-<db>-<UTC time>.dump and a .sha256 beside it; prints the dump's path
# as the last line of standard output.
set -euo pipefail

: "${DATABASE_URL:?DATABASE_URL must name the database to back up}"
backup_dir=${1:-${BACKUP_DIR:-/var/backups/aml-triage}}
retention_days=${BACKUP_RETENTION_DAYS:-30}
if ! [[ $retention_days =~ ^[0-9]+$ ]] || [ "$retention_days" -lt 1 ]; then
    echo "backup: BACKUP_RETENTION_DAYS must be a whole number of days >= 1, got '$retention_days'" >&2
    exit 2
fi

# The database name, for the file name only (everything after the last '/', before any '?').
db_name=${DATABASE_URL%%\?*}
db_name=${db_name##*/}
[[ $db_name =~ ^[A-Za-z0-9_.-]+$ ]] || db_name=database

umask 077
mkdir -p "$backup_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
dump="$backup_dir/aml-triage-$db_name-$stamp.dump"
partial="$dump.partial"
trap 'rm -f "$partial"' EXIT

echo "backup: dumping database $db_name" >&2
pg_dump --format=custom --compress=6 --no-owner --no-privileges \
    --dbname="$DATABASE_URL" --file="$partial"
# A dump that pg_restore cannot list is no backup: check before keeping it or pruning others.
pg_restore --list "$partial" >/dev/null
mv "$partial" "$dump"
(cd "$backup_dir" && sha256sum "$(basename "$dump")" >"$(basename "$dump").sha256")
echo "backup: wrote $dump ($(stat -c %s "$dump") bytes)" >&2

# Retention: only after a good backup, only our own files, only older than the period.
pruned=0
while IFS= read -r -d '' old; do
    rm -f -- "$old" "$old.sha256"
    pruned=$((pruned + 1))
done < <(find "$backup_dir" -maxdepth 1 -type f -name 'aml-triage-*.dump' \
    -mmin "+$((retention_days * 1440))" -print0)
echo "backup: pruned $pruned dump(s) older than $retention_days days" >&2

echo "$dump"

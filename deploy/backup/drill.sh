#!/usr/bin/env bash
# Restore drill: prove that today's backup restores and verifies, without touching the live
# database. Backs up DATABASE_URL, restores the dump into a scratch database on the same server
# (<db>_restore_drill), runs `aml-triage audit verify` there, compares row counts with the
# source, and drops the scratch database.
#
#   DATABASE_URL=postgres://USER@HOST:5432/DB AML_TRIAGE_BIN=/usr/local/bin/aml-triage \
#       deploy/backup/drill.sh [BACKUP_DIR]
#
# Exit 0 only when every step passed. Run it monthly (docs/operations.md) and keep its output
# as evidence.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${DATABASE_URL:?DATABASE_URL must name the database to drill}"
bin=${AML_TRIAGE_BIN:-$(command -v aml-triage || true)}
[ -n "$bin" ] || { echo "drill: aml-triage not found (set AML_TRIAGE_BIN)" >&2; exit 2; }

if ! [[ $DATABASE_URL =~ ^(postgres(ql)?://[^/?]*)/([^?]+)(\?.*)?$ ]]; then
    echo "drill: DATABASE_URL must be postgres://[user@]host[:port]/database[?options]" >&2
    exit 2
fi
server=${BASH_REMATCH[1]}
db=${BASH_REMATCH[3]}
options=${BASH_REMATCH[4]}
scratch="${db}_restore_drill"
scratch_url="$server/$scratch$options"
maintenance="$server/postgres$options"
drop_scratch() {
    PGOPTIONS="-c client_min_messages=warning" psql --no-psqlrc -q --dbname="$maintenance" -c "DROP DATABASE IF EXISTS \"$scratch\"" || true
}
drop_scratch
trap drop_scratch EXIT

started=$(date -u +%s)
dump=$("$here/backup.sh" "${1:-${BACKUP_DIR:-/var/backups/aml-triage}}" | tail -n1)
DATABASE_URL=$scratch_url AML_TRIAGE_BIN=$bin "$here/restore.sh" "$dump"

count() { # url table
    psql --no-psqlrc -tA --dbname="$1" -c "SELECT count(*) FROM $2"
}
status=0
for table in alerts decisions audit_entries step_journal; do
    a=$(count "$DATABASE_URL" "$table")
    b=$(count "$scratch_url" "$table")
    # The source keeps taking writes during the drill: the copy may lag, never exceed.
    if [ "$b" -gt "$a" ] || { [ "$a" -gt 0 ] && [ "$b" -eq 0 ]; }; then
        echo "drill: $table has $b rows restored against $a in the source" >&2
        status=1
    else
        echo "drill: $table $b rows restored (source now $a)" >&2
    fi
done
echo "drill: $( [ $status = 0 ] && echo PASSED || echo FAILED ) in $(( $(date -u +%s) - started )) s, dump $dump" >&2
exit $status

#!/usr/bin/env bash
# How far the engine is from PostgreSQL's own limit for the same writes (issue 17).
#
# Each run: a fresh database, the engine benchmark on it (release build, offline provider),
# then rows and bytes per alert as the engine stored them, then pgbench writing the very same
# rows (copied from a sample of the engine's own alerts: same columns, sizes and JSON) in two
# shapes, each with CLIENTS clients for DURATION seconds:
#   * one transaction per alert (all its rows);
#   * batched: 10 alerts per multi-row statement, one transaction per 10 alerts.
# It prints the engine's throughput as a % of each, per run and as the median of RUNS runs.
#
# Usage: scripts/pgbench-limit.sh [FILE] (default ../shared/data/amlsim-dev.eval.jsonl)
# Environment: REPEAT (4: 5,384 alerts), CONCURRENCY (100), RUNS (3), CLIENTS (50),
#   DURATION (15 s per pgbench run), PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres).
set -euo pipefail

FILE=${1:-../shared/data/amlsim-dev.eval.jsonl}
REPEAT=${REPEAT:-4}
CONCURRENCY=${CONCURRENCY:-100}
RUNS=${RUNS:-3}
CLIENTS=${CLIENTS:-50}
SECONDS_EACH=${DURATION:-15}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
DB=aml_pgbench_limit
SAMPLE=500
TABLES="alerts step_journal decisions audit_entries version_sets"

cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }

# The rows of sample alert k (0 <= k < SAMPLE) are copied under a fresh id. Audit entries go to
# a chain per client with unique seqs, so no two clients contend on a key.
cat > "$work/per_alert.sql" <<SQL
SELECT nextval('pgb_ids') AS id \gset
\set k :id % $SAMPLE
BEGIN;
INSERT INTO alerts (alert_id, raw_json, content_hash, customer_id, alert_type, priority,
    created_at, received_at, updated_at)
  SELECT 'pgb-' || :id, raw_json, content_hash, customer_id, alert_type, priority,
    created_at, received_at, now() FROM pgb_alerts WHERE k = :k;
INSERT INTO step_journal (alert_id, step, attempt, status, input_hash, output, provider, model,
    prompt_version, tokens_in, tokens_out, cost_usd, latency_ms, error, versions_id, recorded_at)
  SELECT 'pgb-' || :id, step, attempt, status, input_hash, output, provider, model,
    prompt_version, tokens_in, tokens_out, cost_usd, latency_ms, error, versions_id, now()
  FROM pgb_steps WHERE k = :k;
INSERT INTO decisions (alert_id, disposition, risk_score, confidence, requires_human_review,
    decision, versions_id, decided_at, recorded_at)
  SELECT 'pgb-' || :id, disposition, risk_score, confidence, requires_human_review, decision,
    versions_id, decided_at, now() FROM pgb_decisions WHERE k = :k;
INSERT INTO audit_entries (chain_id, seq, alert_id, actor, action, payload, versions,
    created_at, prev_hash, hash)
  SELECT 'pgb-' || :client_id, :id * 64 + n, 'pgb-' || :id, actor, action, payload, versions,
    now(), prev_hash, hash FROM pgb_audit WHERE k = :k;
COMMIT;
SQL

cat > "$work/batched.sql" <<SQL
SELECT nextval('pgb_ids') AS id \gset
BEGIN;
INSERT INTO alerts (alert_id, raw_json, content_hash, customer_id, alert_type, priority,
    created_at, received_at, updated_at)
  SELECT 'pgb-' || (:id * 10 + g), raw_json, content_hash, customer_id, alert_type, priority,
    created_at, received_at, now()
  FROM generate_series(0, 9) g JOIN pgb_alerts a ON a.k = (:id * 10 + g) % $SAMPLE;
INSERT INTO step_journal (alert_id, step, attempt, status, input_hash, output, provider, model,
    prompt_version, tokens_in, tokens_out, cost_usd, latency_ms, error, versions_id, recorded_at)
  SELECT 'pgb-' || (:id * 10 + g), step, attempt, status, input_hash, output, provider, model,
    prompt_version, tokens_in, tokens_out, cost_usd, latency_ms, error, versions_id, now()
  FROM generate_series(0, 9) g JOIN pgb_steps s ON s.k = (:id * 10 + g) % $SAMPLE;
INSERT INTO decisions (alert_id, disposition, risk_score, confidence, requires_human_review,
    decision, versions_id, decided_at, recorded_at)
  SELECT 'pgb-' || (:id * 10 + g), disposition, risk_score, confidence, requires_human_review,
    decision, versions_id, decided_at, now()
  FROM generate_series(0, 9) g JOIN pgb_decisions d ON d.k = (:id * 10 + g) % $SAMPLE;
INSERT INTO audit_entries (chain_id, seq, alert_id, actor, action, payload, versions,
    created_at, prev_hash, hash)
  SELECT 'pgb-' || :client_id, (:id * 10 + g) * 64 + n, 'pgb-' || (:id * 10 + g), actor, action,
    payload, versions, now(), prev_hash, hash
  FROM generate_series(0, 9) g JOIN pgb_audit e ON e.k = (:id * 10 + g) % $SAMPLE;
COMMIT;
SQL

tps() { sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: > "$work/engine"; : > "$work/one"; : > "$work/batch"; : > "$work/rows"; : > "$work/bytes"
for run in $(seq 1 "$RUNS"); do
    dropdb --if-exists "$DB"
    createdb "$DB"
    out=$(cargo bench -q --bench triage -- --file "$FILE" --repeat "$REPEAT" \
        --concurrency "$CONCURRENCY" \
        --database-url "postgres://$PGUSER@$PGHOST:$PGPORT/$DB" 2>/dev/null)
    sed "s/^/run $run engine: /" <<<"$out"
    if ! grep -q '^alerts [0-9]* failed 0 ' <<<"$out"; then
        echo "the engine benchmark failed alerts: not comparing" >&2
        exit 1
    fi
    engine=$(sed -n 's/^alerts .* throughput \([0-9.]*\) alerts\/s.*/\1/p' <<<"$out")

    # Rows and bytes per alert as the engine stored them (tables + indexes + TOAST).
    n=$(q "SELECT COUNT(*) FROM alerts")
    rows=$(q "SELECT ((SELECT COUNT(*) FROM alerts) + (SELECT COUNT(*) FROM step_journal)
              + (SELECT COUNT(*) FROM decisions) + (SELECT COUNT(*) FROM audit_entries
              WHERE alert_id IS NOT NULL))::float8 / $n")
    bytes=$(q "SELECT (SELECT SUM(pg_total_relation_size(t::regclass)) FROM
               unnest(string_to_array('$TABLES', ' ')) t)::float8 / $n")
    echo "run $run stored: $n alerts, $(printf %.2f "$rows") rows/alert, $(printf %.0f "$bytes") bytes/alert"

    # The sample the pgbench scripts copy: SAMPLE of the engine's alerts with all their rows.
    q "CREATE SEQUENCE pgb_ids;
       CREATE TABLE pgb_pick AS SELECT alert_id, (row_number() OVER (ORDER BY alert_id) - 1)::int AS k
           FROM alerts ORDER BY alert_id LIMIT $SAMPLE;
       CREATE TABLE pgb_alerts AS SELECT p.k, a.* FROM alerts a JOIN pgb_pick p USING (alert_id);
       CREATE TABLE pgb_steps AS SELECT p.k, s.* FROM step_journal s JOIN pgb_pick p USING (alert_id);
       CREATE TABLE pgb_decisions AS SELECT p.k, d.* FROM decisions d JOIN pgb_pick p USING (alert_id);
       CREATE TABLE pgb_audit AS SELECT p.k, (row_number() OVER (PARTITION BY p.k ORDER BY e.seq))::int AS n, e.*
           FROM audit_entries e JOIN pgb_pick p USING (alert_id);
       CREATE INDEX ON pgb_alerts (k); CREATE INDEX ON pgb_steps (k);
       CREATE INDEX ON pgb_decisions (k); CREATE INDEX ON pgb_audit (k);
       ANALYZE;"
    one=$(pgbench -n -M prepared -c "$CLIENTS" -j 2 -T "$SECONDS_EACH" -f "$work/per_alert.sql" "$DB" 2>/dev/null | tps)
    batch=$(pgbench -n -M prepared -c "$CLIENTS" -j 2 -T "$SECONDS_EACH" -f "$work/batched.sql" "$DB" 2>/dev/null | tps)
    batch=$(awk -v t="$batch" 'BEGIN {print t * 10}')
    printf 'run %d pgbench: one txn per alert %.0f alerts/s, 10 alerts per statement %.0f alerts/s\n' \
        "$run" "$one" "$batch"
    printf 'run %d engine %.0f alerts/s = %.1f%% of one-txn-per-alert, %.1f%% of batched\n' \
        "$run" "$engine" "$(awk -v a="$engine" -v b="$one" 'BEGIN {print 100*a/b}')" \
        "$(awk -v a="$engine" -v b="$batch" 'BEGIN {print 100*a/b}')"
    echo "$engine" >> "$work/engine"; echo "$one" >> "$work/one"; echo "$batch" >> "$work/batch"
    echo "$rows" >> "$work/rows"; echo "$bytes" >> "$work/bytes"
done
dropdb --if-exists "$DB"

e=$(median < "$work/engine"); o=$(median < "$work/one"); b=$(median < "$work/batch")
printf '\nmedian of %d: engine %.0f alerts/s; pgbench one txn per alert %.0f alerts/s (engine %.1f%%); 10 alerts per statement %.0f alerts/s (engine %.1f%%); %.2f rows/alert; %.0f bytes/alert\n' \
    "$RUNS" "$e" "$o" "$(awk -v a="$e" -v b="$o" 'BEGIN {print 100*a/b}')" \
    "$b" "$(awk -v a="$e" -v b="$b" 'BEGIN {print 100*a/b}')" \
    "$(median < "$work/rows")" "$(median < "$work/bytes")"

//! PostgreSQL backend: connection, migrations, and the chain lock.
//!
//! Timestamps are `TIMESTAMPTZ`, which keeps microseconds: values are truncated to microseconds
//! before they are bound (PostgreSQL would round instead), so what is read back is exactly what
//! was hashed.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, SqlSafeStr};

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use super::StoreOptions;
use super::audit::{AuditRow, sha256_hex, truncate_micros};
use super::error::{StoreError, redact_url, scrub};
use super::records::{AlertRecord, STEP_COMPLETED};
use super::writer::{QueuedDecision, QueuedStep};

fn ts_to_db(t: DateTime<Utc>) -> DateTime<Utc> {
    truncate_micros(t)
}

fn ts_from_db(t: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    Ok(t)
}

super::sql::sql_backend!(
    db: sqlx::Postgres,
    ts: DateTime<Utc>,
    to_db: super::ts_to_db,
    from_db: super::ts_from_db,
    begin: "BEGIN"
);

/// One statement per table per batch: every column is bound as one array and the rows come
/// from `UNNEST`, so the statement text is the same whatever the batch size (prepared once,
/// no chunking, one round trip per table).
impl db::Tx {
    pub(crate) async fn array_insert_alerts(
        &mut self,
        rows: &[&AlertRecord],
        now: DateTime<Utc>,
    ) -> Option<Result<HashSet<String>, StoreError>> {
        Some(self.unnest_alerts(rows, now).await)
    }

    async fn unnest_alerts(
        &mut self,
        rows: &[&AlertRecord],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>, StoreError> {
        let col =
            |f: fn(&AlertRecord) -> &str| -> Vec<&str> { rows.iter().map(|a| f(a)).collect() };
        let now = ts_to_db(now);
        let out = sqlx::query(
            "INSERT INTO alerts (alert_id, raw_json, content_hash, customer_id, alert_type, \
             priority, created_at, received_at, updated_at) \
             SELECT a, r, h, c, t, p, ca, ra, $9 FROM UNNEST($1::text[], $2::text[], \
             $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], \
             $8::timestamptz[]) AS u(a, r, h, c, t, p, ca, ra) \
             ON CONFLICT (alert_id) DO NOTHING RETURNING alert_id",
        )
        .bind(col(|a| &a.alert_id))
        .bind(col(|a| &a.raw_json))
        .bind(col(|a| &a.content_hash))
        .bind(col(|a| &a.customer_id))
        .bind(col(|a| &a.alert_type))
        .bind(col(|a| &a.priority))
        .bind(
            rows.iter()
                .map(|a| ts_to_db(a.created_at))
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|a| ts_to_db(a.received_at))
                .collect::<Vec<_>>(),
        )
        .bind(now)
        .fetch_all(&mut *self.tx)
        .await?;
        out.iter()
            .map(|r| r.try_get::<String, _>("alert_id").map_err(StoreError::from))
            .collect()
    }

    pub(crate) async fn array_insert_steps(
        &mut self,
        rows: &[&QueuedStep],
        version_ids: &HashMap<String, i64>,
        now: DateTime<Utc>,
    ) -> Option<Result<HashSet<(String, String)>, StoreError>> {
        Some(self.unnest_steps(rows, version_ids, now).await)
    }

    async fn unnest_steps(
        &mut self,
        rows: &[&QueuedStep],
        version_ids: &HashMap<String, i64>,
        now: DateTime<Utc>,
    ) -> Result<HashSet<(String, String)>, StoreError> {
        let text =
            |f: fn(&QueuedStep) -> &str| -> Vec<&str> { rows.iter().map(|s| f(s)).collect() };
        let int = |f: fn(&QueuedStep) -> u64| -> Vec<i64> {
            rows.iter()
                .map(|s| i64::try_from(f(s)).unwrap_or(i64::MAX))
                .collect()
        };
        // The partial unique index allows one completed row per (alert, step); a duplicate is
        // skipped here and reported to its caller by the writer.
        let out = sqlx::query(
            "INSERT INTO step_journal (alert_id, step, attempt, status, input_hash, output, \
             provider, model, prompt_version, tokens_in, tokens_out, cost_usd, latency_ms, error, \
             versions_id, recorded_at) \
             SELECT a, st, at, ss, ih, o, pr, m, pv, ti, tx, cu, l, e, v, $16 FROM UNNEST( \
             $1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::text[], $10::int8[], $11::int8[], $12::float8[], \
             $13::int8[], $14::text[], $15::int8[]) \
             AS u(a, st, at, ss, ih, o, pr, m, pv, ti, tx, cu, l, e, v) \
             ON CONFLICT (alert_id, step) WHERE status = 'completed' DO NOTHING \
             RETURNING alert_id, step, status",
        )
        .bind(text(|s| &s.alert_id))
        .bind(text(|s| &s.step))
        .bind(int(|s| u64::from(s.attempt)))
        .bind(text(|s| &s.status))
        .bind(text(|s| &s.input_hash))
        .bind(text(|s| &s.output_json))
        .bind(text(|s| &s.provider))
        .bind(text(|s| &s.model))
        .bind(text(|s| &s.prompt_version))
        .bind(int(|s| s.tokens_in))
        .bind(int(|s| s.tokens_out))
        .bind(rows.iter().map(|s| s.cost_usd).collect::<Vec<f64>>())
        .bind(int(|s| s.latency_ms))
        .bind(
            rows.iter()
                .map(|s| s.error.as_deref())
                .collect::<Vec<Option<&str>>>(),
        )
        .bind(
            rows.iter()
                .map(|s| version_ids.get(s.versions_json.as_str()).copied())
                .collect::<Vec<Option<i64>>>(),
        )
        .bind(ts_to_db(now))
        .fetch_all(&mut *self.tx)
        .await?;
        let mut completed = HashSet::new();
        for row in &out {
            let status: String = row.try_get("status")?;
            if status == STEP_COMPLETED {
                completed.insert((row.try_get("alert_id")?, row.try_get("step")?));
            }
        }
        Ok(completed)
    }

    pub(crate) async fn array_insert_decisions(
        &mut self,
        rows: &[&QueuedDecision],
        version_ids: &HashMap<String, i64>,
        now: DateTime<Utc>,
    ) -> Option<Result<HashSet<String>, StoreError>> {
        Some(self.unnest_decisions(rows, version_ids, now).await)
    }

    async fn unnest_decisions(
        &mut self,
        rows: &[&QueuedDecision],
        version_ids: &HashMap<String, i64>,
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>, StoreError> {
        let text =
            |f: fn(&QueuedDecision) -> &str| -> Vec<&str> { rows.iter().map(|d| f(d)).collect() };
        let out = sqlx::query(
            "INSERT INTO decisions (alert_id, disposition, risk_score, confidence, \
             requires_human_review, decision, versions_id, decided_at, recorded_at) \
             SELECT a, d, r, c, h, doc, v, da, $9 FROM UNNEST($1::text[], $2::text[], \
             $3::float8[], $4::float8[], $5::bool[], $6::text[], $7::int8[], \
             $8::timestamptz[]) AS u(a, d, r, c, h, doc, v, da) \
             ON CONFLICT (alert_id) DO NOTHING RETURNING alert_id",
        )
        .bind(text(|d| &d.alert_id))
        .bind(text(|d| &d.disposition))
        .bind(rows.iter().map(|d| d.risk_score).collect::<Vec<f64>>())
        .bind(rows.iter().map(|d| d.confidence).collect::<Vec<f64>>())
        .bind(
            rows.iter()
                .map(|d| d.requires_human_review)
                .collect::<Vec<bool>>(),
        )
        .bind(text(|d| &d.decision_json))
        .bind(
            rows.iter()
                .map(|d| version_ids.get(d.versions_json.as_str()).copied())
                .collect::<Vec<Option<i64>>>(),
        )
        .bind(
            rows.iter()
                .map(|d| ts_to_db(d.decided_at))
                .collect::<Vec<_>>(),
        )
        .bind(ts_to_db(now))
        .fetch_all(&mut *self.tx)
        .await?;
        out.iter()
            .map(|r| r.try_get::<String, _>("alert_id").map_err(StoreError::from))
            .collect()
    }

    pub(crate) async fn array_insert_audit(
        &mut self,
        entries: &[AuditRow],
    ) -> Option<Result<(), StoreError>> {
        Some(self.unnest_audit(entries).await)
    }

    async fn unnest_audit(&mut self, entries: &[AuditRow]) -> Result<(), StoreError> {
        let text = |f: fn(&AuditRow) -> &str| -> Vec<&str> { entries.iter().map(f).collect() };
        let opt = |f: fn(&AuditRow) -> Option<&str>| -> Vec<Option<&str>> {
            entries.iter().map(|e| f(e)).collect()
        };
        sqlx::query(
            "INSERT INTO audit_entries (chain_id, seq, alert_id, actor, action, payload, \
             versions, created_at, prev_hash, hash) \
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::timestamptz[], $9::text[], $10::text[])",
        )
        .bind(text(|e| &e.chain_id))
        .bind(entries.iter().map(|e| e.seq).collect::<Vec<i64>>())
        .bind(opt(|e| e.alert_id.as_deref()))
        .bind(text(|e| &e.actor))
        .bind(text(|e| &e.action))
        .bind(text(|e| &e.payload))
        .bind(opt(|e| e.versions.as_deref()))
        // Sealed rows always carry a timestamp (`Err` only arises when reading).
        .bind(
            entries
                .iter()
                .map(|e| ts_to_db(e.created_at.clone().unwrap_or_default()))
                .collect::<Vec<_>>(),
        )
        .bind(text(|e| &e.prev_hash))
        .bind(text(|e| &e.hash))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}

/// The embedded migrations; the binary needs no migrations folder at run time.
pub(crate) fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "review".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0003_review.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "storage v2".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0004_storage_v2.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            "login throttle".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0005_login_throttle.sql").into_sql_str(),
            false,
        ),
    ])
}

fn connect_error(url: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Connect {
        url: redact_url(url),
        message: scrub(&e.to_string(), url),
    }
}

fn options(url: &str, node_id: &str) -> Result<PgConnectOptions, StoreError> {
    Ok(PgConnectOptions::from_str(url)
        .map_err(|e| connect_error(url, e))?
        .application_name(&format!("aml-triage/{node_id}")))
}

/// Opens the pool.
pub(crate) async fn connect(
    url: &str,
    node_id: &str,
    opts: &StoreOptions,
) -> Result<Backend, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(opts.max_connections)
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(options(url, node_id)?)
        .await
        .map_err(|e| connect_error(url, e))?;
    Ok(Backend { pool })
}

/// Advisory-lock key of a chain: the first 8 bytes of a namespaced sha256 of the node id.
fn chain_lock_key(node_id: &str) -> i64 {
    let digest = sha256_hex(format!("aml-triage/audit-chain/{node_id}"));
    i64::from_str_radix(&digest[..15], 16).unwrap_or(0)
}

/// Takes the session advisory lock of `node_id`'s chain on a dedicated connection, held for the
/// store's lifetime, so that two processes with the same node id fail clearly instead of
/// interleaving one chain.
pub(crate) async fn lock_chain(url: &str, node_id: &str) -> Result<PgConnection, StoreError> {
    let mut conn = PgConnection::connect_with(&options(url, node_id)?)
        .await
        .map_err(|e| connect_error(url, e))?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(chain_lock_key(node_id))
        .fetch_one(&mut conn)
        .await?;
    if !locked {
        let _ = conn.close().await;
        return Err(StoreError::ChainLocked(node_id.to_string()));
    }
    Ok(conn)
}

/// Releases the chain lock and closes its connection.
pub(crate) async fn unlock_chain(mut conn: PgConnection, node_id: &str) {
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(chain_lock_key(node_id))
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
}

//! The SQL shared by the PostgreSQL and SQLite backends.
//!
//! Both schemas have the same tables and columns; they differ only in timestamp storage
//! (`TIMESTAMPTZ` vs fixed-width RFC 3339 text) and in how a write transaction starts. So the
//! queries are written once, in [`sql_backend!`], and instantiated for each driver: sqlx has no
//! practical way to write them generically over `Database` without repeating a dozen trait
//! bounds on every function. Placeholders are `$N`, which both drivers accept.

/// Splits `rows` into chunks whose sizes are powers of two (at most 512).
///
/// A multi-row statement's text depends on its row count, and both drivers prepare and cache
/// statements by text. Arbitrary batch sizes would make nearly every batch a new statement to
/// parse and plan (measured: most of a batch's time on PostgreSQL); with power-of-two chunks
/// there are at most ten texts per statement, all cached after warm-up, for at most nine
/// extra round trips per batch.
pub(crate) fn pow2_chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let n = rows.len().min(512);
        let size = 1usize << (usize::BITS - 1 - n.leading_zeros());
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        Some(chunk)
    })
}

/// Defines `Backend` (a pool) and `Tx` for one sqlx driver, implementing the writer and read
/// traits.
///
/// - `db`: the sqlx database type.
/// - `ts`: the Rust type timestamps are bound and decoded as.
/// - `to_db` / `from_db`: conversions between `DateTime<Utc>` and `ts`; `from_db` returns the
///   stored text as `Err` when it is not a timestamp.
/// - `begin`: the statement that opens a write transaction.
macro_rules! sql_backend {
    (db: $DB:ty, ts: $Ts:ty, to_db: $to_db:path, from_db: $from_db:path, begin: $begin:literal) => {
        /// The queries of [`sql_backend!`] for this driver.
        pub(crate) mod db {
        use std::collections::{HashMap, HashSet};

        use chrono::{DateTime, Utc};
        use sqlx::{QueryBuilder, Row};

        use $crate::store::audit::{AuditRow, ChainHead};
        use $crate::store::error::StoreError;
        use $crate::store::purge::{PurgeScan, ScanEntry};
        use $crate::store::read::{ReadBackend, RecordCheckRow};
        use $crate::store::columns::{AlertCols, DecisionCols, EntryCols, RecordColumns, StepCheckRow};
        use $crate::store::records::{
            AlertRecord, AuditAnchor, AuditVersions,
            StepRecord, StoredAlert, UnfinishedAlert,
        };
        use $crate::store::sql::pow2_chunks;
        use $crate::store::writer::{AlertState, PurgeCounts, QueuedDecision, QueuedStep, WriteBackend, WriteTx};

        type DbRow = <$DB as sqlx::Database>::Row;

        /// An alert as the API shows it. Storage v2 has no status column and never updates
        /// an alert: decided means a decision row exists, and `updated_at` is the decision's
        /// `recorded_at` once decided (the admission time before).
        const ALERT_SELECT: &str = "SELECT a.alert_id, a.raw_json, a.content_hash, a.customer_id, \
             a.alert_type, a.priority, \
             CASE WHEN d.alert_id IS NULL THEN 'received' ELSE 'decided' END AS status, \
             a.created_at, a.received_at, COALESCE(d.recorded_at, a.updated_at) AS updated_at \
             FROM alerts a LEFT JOIN decisions d ON d.alert_id = a.alert_id";
        /// Journal columns written by the store (versions by interned id).
        const STEP_COLS: &str = "alert_id, step, attempt, status, input_hash, output, provider, \
             model, prompt_version, tokens_in, tokens_out, cost_usd, latency_ms, error, \
             versions_id";
        /// Journal columns as read, with the interned version set (`FROM STEP_FROM`).
        const STEP_SELECT: &str = "s.alert_id, s.step, s.attempt, s.status, s.input_hash, \
             s.output, s.provider, s.model, s.prompt_version, s.tokens_in, s.tokens_out, \
             s.cost_usd, s.latency_ms, s.error, v.versions AS versions";
        const STEP_FROM: &str =
            "step_journal s LEFT JOIN version_sets v ON v.id = s.versions_id";
        const AUDIT_COLS: &str =
            "chain_id, seq, alert_id, actor, action, payload, versions, created_at, prev_hash, hash";

        /// A connection pool of this backend.
        #[derive(Debug, Clone)]
        pub(crate) struct Backend {
            pub(crate) pool: sqlx::Pool<$DB>,
        }

        /// A write transaction of this backend.
        pub(crate) struct Tx {
            pub(crate) tx: sqlx::Transaction<'static, $DB>,
        }

        fn ts_col(row: &DbRow, col: &str) -> Result<DateTime<Utc>, StoreError> {
            let v: $Ts = row.try_get(col)?;
            $from_db(v).map_err(|t| StoreError::Corrupt(format!("{col} `{t}`")))
        }

        fn u64_col(row: &DbRow, col: &str) -> Result<u64, StoreError> {
            let v: i64 = row.try_get(col)?;
            u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{col} {v} is negative")))
        }

        fn json_col<T: serde::de::DeserializeOwned>(
            row: &DbRow,
            col: &str,
        ) -> Result<T, StoreError> {
            let text: String = row.try_get(col)?;
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
        }

        fn i64_of(v: u64) -> i64 {
            // Validated by the writer before any insert.
            i64::try_from(v).unwrap_or(i64::MAX)
        }

        fn alert_of(row: &DbRow) -> Result<StoredAlert, StoreError> {
            Ok(StoredAlert {
                alert_id: row.try_get("alert_id")?,
                raw_json: row.try_get("raw_json")?,
                content_hash: row.try_get("content_hash")?,
                customer_id: row.try_get("customer_id")?,
                alert_type: row.try_get("alert_type")?,
                priority: row.try_get("priority")?,
                status: row.try_get("status")?,
                created_at: ts_col(row, "created_at")?,
                received_at: ts_col(row, "received_at")?,
                updated_at: ts_col(row, "updated_at")?,
            })
        }

        fn step_of(row: &DbRow) -> Result<StepRecord, StoreError> {
            let attempt: i64 = row.try_get("attempt")?;
            Ok(StepRecord {
                alert_id: row.try_get("alert_id")?,
                step: row.try_get("step")?,
                attempt: u32::try_from(attempt)
                    .map_err(|_| StoreError::Corrupt(format!("attempt {attempt}")))?,
                status: row.try_get("status")?,
                input_hash: row.try_get("input_hash")?,
                output: json_col(row, "output")?,
                provider: row.try_get("provider")?,
                model: row.try_get("model")?,
                prompt_version: row.try_get("prompt_version")?,
                tokens_in: u64_col(row, "tokens_in")?,
                tokens_out: u64_col(row, "tokens_out")?,
                cost_usd: row.try_get("cost_usd")?,
                latency_ms: u64_col(row, "latency_ms")?,
                error: row.try_get("error")?,
                versions: versions_of(row, "versions")?,
            })
        }

        /// An interned version set (joined as `col`).
        fn versions_of(row: &DbRow, col: &str) -> Result<AuditVersions, StoreError> {
            let text: Option<String> = row.try_get(col)?;
            let text = text.ok_or_else(|| StoreError::Corrupt(format!("{col}: no version set")))?;
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
        }

        /// The three version columns of a row (as the v1 schema had them) from its interned
        /// set; a missing or unreadable set gives values no audit entry vouches for.
        fn version_cols(row: &DbRow, col: &str) -> Result<(String, String, String), StoreError> {
            let text: Option<String> = row.try_get(col)?;
            let parsed = text
                .as_deref()
                .and_then(|t| serde_json::from_str::<AuditVersions>(t).ok());
            Ok(match parsed {
                Some(v) => (
                    v.policy_version,
                    v.config_version,
                    serde_json::Value::from(v.list_versions).to_string(),
                ),
                None => {
                    let shown = text.unwrap_or_else(|| "NULL".into());
                    (shown.clone(), shown.clone(), shown)
                }
            })
        }

        fn audit_of(row: &DbRow) -> Result<AuditRow, StoreError> {
            let created: $Ts = row.try_get("created_at")?;
            Ok(AuditRow {
                chain_id: row.try_get("chain_id")?,
                seq: row.try_get("seq")?,
                alert_id: row.try_get("alert_id")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                payload: row.try_get("payload")?,
                versions: row.try_get("versions")?,
                created_at: $from_db(created),
                prev_hash: row.try_get("prev_hash")?,
                hash: row.try_get("hash")?,
            })
        }

        fn anchor_of(row: &DbRow) -> Result<AuditAnchor, StoreError> {
            Ok(AuditAnchor {
                chain_id: row.try_get("chain_id")?,
                seq: row.try_get("seq")?,
                hash: row.try_get("hash")?,
            })
        }

        /// A timestamp column that may be NULL or hold text that is not a timestamp.
        fn ts_raw(row: &DbRow, col: &str) -> Result<Option<Result<DateTime<Utc>, String>>, StoreError> {
            let v: Option<$Ts> = row.try_get(col)?;
            Ok(v.map($from_db))
        }

        fn ts_req(row: &DbRow, col: &str) -> Result<Result<DateTime<Utc>, String>, StoreError> {
            Ok(ts_raw(row, col)?.unwrap_or_else(|| Err("NULL".into())))
        }

        fn entry_cols(row: &DbRow, prefix: &str) -> Result<Option<EntryCols>, StoreError> {
            let payload: Option<String> = row.try_get(format!("{prefix}_payload").as_str())?;
            let Some(payload) = payload else { return Ok(None) };
            Ok(Some(EntryCols {
                payload,
                versions: row.try_get(format!("{prefix}_versions").as_str())?,
                created_at: ts_req(row, &format!("{prefix}_created_at"))?,
            }))
        }

        fn check_of(row: &DbRow) -> Result<RecordCheckRow, StoreError> {
            let decision: Option<String> = row.try_get("decision")?;
            let decision_cols = match &decision {
                None => None,
                Some(_) => {
                    let (policy_version, config_version, list_versions) =
                        version_cols(row, "d_versions")?;
                    Some(DecisionCols {
                    disposition: row.try_get("disposition")?,
                    risk_score: row.try_get("risk_score")?,
                    confidence: row.try_get("confidence")?,
                    requires_human_review: row.try_get("requires_human_review")?,
                    policy_version,
                    config_version,
                    list_versions,
                    decided_at: ts_req(row, "decided_at")?,
                    recorded_at: ts_req(row, "recorded_at")?,
                })
                }
            };
            Ok(RecordCheckRow {
                alert_id: row.try_get("alert_id")?,
                raw_json: row.try_get("raw_json")?,
                content_hash: row.try_get("content_hash")?,
                received_payload: row.try_get("received_payload")?,
                decision,
                decision_payload: row.try_get("decision_payload")?,
                columns: Some(RecordColumns {
                    alert: AlertCols {
                        customer_id: row.try_get("customer_id")?,
                        alert_type: row.try_get("alert_type")?,
                        priority: row.try_get("priority")?,
                        status: row.try_get("status")?,
                        created_at: ts_req(row, "created_at")?,
                        received_at: ts_req(row, "received_at")?,
                        updated_at: ts_req(row, "updated_at")?,
                    },
                    received_entry: entry_cols(row, "received")?,
                    decision: decision_cols,
                    decision_entry: entry_cols(row, "decision")?,
                }),
            })
        }

        fn step_check_of(row: &DbRow) -> Result<StepCheckRow, StoreError> {
            let (policy_version, config_version, list_versions) = version_cols(row, "versions")?;
            Ok(StepCheckRow {
                id: row.try_get("id")?,
                alert_id: row.try_get("alert_id")?,
                step: row.try_get("step")?,
                attempt: row.try_get("attempt")?,
                status: row.try_get("status")?,
                input_hash: row.try_get("input_hash")?,
                output: row.try_get("output")?,
                provider: row.try_get("provider")?,
                model: row.try_get("model")?,
                prompt_version: row.try_get("prompt_version")?,
                tokens_in: row.try_get("tokens_in")?,
                tokens_out: row.try_get("tokens_out")?,
                cost_usd: row.try_get("cost_usd")?,
                latency_ms: row.try_get("latency_ms")?,
                error: row.try_get("error")?,
                policy_version,
                config_version,
                list_versions,
                recorded_at: ts_req(row, "recorded_at")?,
            })
        }

        /// Pushes `(... , ...)` of bound ids, for `IN` lists.
        fn push_in_list(qb: &mut QueryBuilder<$DB>, ids: &[&str]) {
            qb.push("(");
            let mut list = qb.separated(", ");
            for id in ids {
                list.push_bind(id.to_string());
            }
            list.push_unseparated(")");
        }

        async fn head_of<'e, E>(exec: E, chain_id: &str) -> Result<ChainHead, StoreError>
        where
            E: sqlx::Executor<'e, Database = $DB> + Copy,
        {
            let last = sqlx::query(
                "SELECT seq, hash FROM audit_entries WHERE chain_id = $1 ORDER BY seq DESC LIMIT 1",
            )
            .bind(chain_id)
            .fetch_optional(exec)
            .await?;
            let row = match last {
                Some(row) => Some(row),
                None => {
                    sqlx::query(
                        "SELECT seq, hash FROM audit_anchors WHERE chain_id = $1 \
                         ORDER BY seq DESC LIMIT 1",
                    )
                    .bind(chain_id)
                    .fetch_optional(exec)
                    .await?
                }
            };
            match row {
                Some(row) => Ok(ChainHead {
                    seq: row.try_get("seq")?,
                    hash: row.try_get("hash")?,
                }),
                None => Ok(ChainHead::genesis()),
            }
        }

        /// An alert with every column, its decision's, and the first `alert_received` and
        /// `decision` entries that vouch for them.
        const RECORD_CHECK_SELECT: &str = "SELECT a.alert_id, a.raw_json, a.content_hash, \
             a.customer_id, a.alert_type, a.priority, \
             CASE WHEN d.alert_id IS NULL THEN 'received' ELSE 'decided' END AS status, \
             a.created_at, a.received_at, \
             a.updated_at, d.decision, d.disposition, d.risk_score, d.confidence, \
             d.requires_human_review, dv.versions AS d_versions, \
             d.decided_at, d.recorded_at, \
             (SELECT e.payload FROM audit_entries e WHERE e.alert_id = a.alert_id \
                AND e.action = 'alert_received' ORDER BY e.chain_id, e.seq LIMIT 1) AS received_payload, \
             (SELECT e.versions FROM audit_entries e WHERE e.alert_id = a.alert_id \
                AND e.action = 'alert_received' ORDER BY e.chain_id, e.seq LIMIT 1) AS received_versions, \
             (SELECT e.created_at FROM audit_entries e WHERE e.alert_id = a.alert_id \
                AND e.action = 'alert_received' ORDER BY e.chain_id, e.seq LIMIT 1) AS received_created_at, \
             (SELECT e.payload FROM audit_entries e WHERE e.alert_id = a.alert_id \
                AND e.action = 'decision' ORDER BY e.chain_id, e.seq LIMIT 1) AS decision_payload, \
             (SELECT e.versions FROM audit_entries e WHERE e.alert_id = a.alert_id \
                AND e.action = 'decision' ORDER BY e.chain_id, e.seq LIMIT 1) AS decision_versions, \
             (SELECT e.created_at FROM audit_entries e WHERE e.alert_id = a.alert_id \
                AND e.action = 'decision' ORDER BY e.chain_id, e.seq LIMIT 1) AS decision_created_at \
             FROM alerts a LEFT JOIN decisions d ON d.alert_id = a.alert_id \
             LEFT JOIN version_sets dv ON dv.id = d.versions_id ";

        impl WriteBackend for Backend {
            type Tx = Tx;

            async fn begin(&self) -> Result<Tx, StoreError> {
                Ok(Tx {
                    tx: self.pool.begin_with($begin).await?,
                })
            }

            async fn load_head(&self, chain_id: &str) -> Result<ChainHead, StoreError> {
                head_of(&self.pool, chain_id).await
            }
        }

        impl WriteTx for Tx {
            async fn insert_alerts(
                &mut self,
                rows: &[&AlertRecord],
                now: DateTime<Utc>,
            ) -> Result<HashSet<String>, StoreError> {
                // A backend with one-statement (array) inserts uses them.
                if let Some(r) = self.array_insert_alerts(rows, now).await {
                    return r;
                }
                let mut inserted = HashSet::new();
                for rows in pow2_chunks(rows) {
                let mut qb = QueryBuilder::<$DB>::new(
                    "INSERT INTO alerts (alert_id, raw_json, content_hash, customer_id, \
                     alert_type, priority, created_at, received_at, updated_at) ",
                );
                qb.push_values(rows, |mut b, a| {
                    b.push_bind(a.alert_id.as_str())
                        .push_bind(a.raw_json.as_str())
                        .push_bind(a.content_hash.as_str())
                        .push_bind(a.customer_id.as_str())
                        .push_bind(a.alert_type.as_str())
                        .push_bind(a.priority.as_str())
                        .push_bind($to_db(a.created_at))
                        .push_bind($to_db(a.received_at))
                        .push_bind($to_db(now));
                });
                // DO NOTHING rather than an error: a concurrent admit of the same id (another
                // node) must turn into Duplicate/Conflict, not into a failed batch.
                qb.push(" ON CONFLICT (alert_id) DO NOTHING RETURNING alert_id");
                for row in qb.build().fetch_all(&mut *self.tx).await? {
                    inserted.insert(row.try_get::<String, _>("alert_id")?);
                }
                }
                Ok(inserted)
            }

            async fn alert_states(
                &mut self,
                ids: &[&str],
            ) -> Result<HashMap<String, AlertState>, StoreError> {
                let mut out = HashMap::new();
                for chunk in pow2_chunks(ids) {
                    let mut qb = QueryBuilder::<$DB>::new(
                        "SELECT a.alert_id, a.content_hash, d.decision FROM alerts a \
                         LEFT JOIN decisions d ON d.alert_id = a.alert_id WHERE a.alert_id IN ",
                    );
                    push_in_list(&mut qb, chunk);
                    for row in qb.build().fetch_all(&mut *self.tx).await? {
                        out.insert(
                            row.try_get("alert_id")?,
                            AlertState {
                                content_hash: row.try_get("content_hash")?,
                                decision: row.try_get("decision")?,
                            },
                        );
                    }
                }
                Ok(out)
            }

            async fn intern_versions(
                &mut self,
                sets: &[&str],
            ) -> Result<HashMap<String, i64>, StoreError> {
                let mut out = HashMap::new();
                if sets.is_empty() {
                    return Ok(out);
                }
                let mut qb = QueryBuilder::<$DB>::new("INSERT INTO version_sets (versions) ");
                qb.push_values(sets, |mut b, v| {
                    b.push_bind(v.to_string());
                });
                qb.push(" ON CONFLICT (versions) DO NOTHING");
                qb.build().execute(&mut *self.tx).await?;
                let mut qb =
                    QueryBuilder::<$DB>::new("SELECT id, versions FROM version_sets WHERE versions IN ");
                push_in_list(&mut qb, sets);
                for row in qb.build().fetch_all(&mut *self.tx).await? {
                    out.insert(row.try_get("versions")?, row.try_get("id")?);
                }
                Ok(out)
            }

            async fn insert_steps(
                &mut self,
                rows: &[&QueuedStep],
                version_ids: &HashMap<String, i64>,
                now: DateTime<Utc>,
            ) -> Result<HashSet<(String, String)>, StoreError> {
                if let Some(r) = self.array_insert_steps(rows, version_ids, now).await {
                    return r;
                }
                let mut completed = HashSet::new();
                for rows in pow2_chunks(rows) {
                let mut qb = QueryBuilder::<$DB>::new(format!(
                    "INSERT INTO step_journal ({STEP_COLS}, recorded_at) "
                ));
                qb.push_values(rows, |mut b, s| {
                    b.push_bind(s.alert_id.as_str())
                        .push_bind(s.step.as_str())
                        .push_bind(i64::from(s.attempt))
                        .push_bind(s.status.as_str())
                        .push_bind(s.input_hash.as_str())
                        .push_bind(s.output_json.as_str())
                        .push_bind(s.provider.as_str())
                        .push_bind(s.model.as_str())
                        .push_bind(s.prompt_version.as_str())
                        .push_bind(i64_of(s.tokens_in))
                        .push_bind(i64_of(s.tokens_out))
                        .push_bind(s.cost_usd)
                        .push_bind(i64_of(s.latency_ms))
                        .push_bind(s.error.as_deref())
                        .push_bind(version_ids.get(s.versions_json.as_str()).copied())
                        .push_bind($to_db(now));
                });
                // The partial unique index allows one completed row per (alert, step); a
                // duplicate is skipped here and reported to its caller by the writer.
                qb.push(
                    " ON CONFLICT (alert_id, step) WHERE status = 'completed' DO NOTHING \
                     RETURNING alert_id, step, status",
                );
                for row in qb.build().fetch_all(&mut *self.tx).await? {
                    let status: String = row.try_get("status")?;
                    if status == $crate::store::records::STEP_COMPLETED {
                        completed.insert((row.try_get("alert_id")?, row.try_get("step")?));
                    }
                }
                }
                Ok(completed)
            }

            async fn insert_decisions(
                &mut self,
                rows: &[&QueuedDecision],
                version_ids: &HashMap<String, i64>,
                now: DateTime<Utc>,
            ) -> Result<HashSet<String>, StoreError> {
                if let Some(r) = self.array_insert_decisions(rows, version_ids, now).await {
                    return r;
                }
                let mut inserted: HashSet<String> = HashSet::new();
                for rows in pow2_chunks(rows) {
                let mut qb = QueryBuilder::<$DB>::new(
                    "INSERT INTO decisions (alert_id, disposition, risk_score, confidence, \
                     requires_human_review, decision, versions_id, decided_at, recorded_at) ",
                );
                qb.push_values(rows, |mut b, d| {
                    b.push_bind(d.alert_id.as_str())
                        .push_bind(d.disposition.as_str())
                        .push_bind(d.risk_score)
                        .push_bind(d.confidence)
                        .push_bind(d.requires_human_review)
                        .push_bind(d.decision_json.as_str())
                        .push_bind(version_ids.get(d.versions_json.as_str()).copied())
                        .push_bind($to_db(d.decided_at))
                        .push_bind($to_db(now));
                });
                qb.push(" ON CONFLICT (alert_id) DO NOTHING RETURNING alert_id");
                for row in qb.build().fetch_all(&mut *self.tx).await? {
                    inserted.insert(row.try_get::<String, _>("alert_id")?);
                }
                }
                // No status UPDATE (storage v2): the decision row is what makes it decided.
                Ok(inserted)
            }

            async fn decisions(
                &mut self,
                ids: &[&str],
            ) -> Result<HashMap<String, String>, StoreError> {
                let mut out = HashMap::new();
                for chunk in pow2_chunks(ids) {
                    let mut qb = QueryBuilder::<$DB>::new(
                        "SELECT alert_id, decision FROM decisions WHERE alert_id IN ",
                    );
                    push_in_list(&mut qb, chunk);
                    for row in qb.build().fetch_all(&mut *self.tx).await? {
                        out.insert(row.try_get("alert_id")?, row.try_get("decision")?);
                    }
                }
                Ok(out)
            }

            async fn insert_audit(&mut self, entries: &[AuditRow]) -> Result<(), StoreError> {
                if let Some(r) = self.array_insert_audit(entries).await {
                    return r;
                }
                for chunk in pow2_chunks(entries) {
                    let mut qb = QueryBuilder::<$DB>::new(format!(
                        "INSERT INTO audit_entries ({AUDIT_COLS}) "
                    ));
                    qb.push_values(chunk, |mut b, e| {
                        b.push_bind(e.chain_id.as_str())
                            .push_bind(e.seq)
                            .push_bind(e.alert_id.as_deref())
                            .push_bind(e.actor.as_str())
                            .push_bind(e.action.as_str())
                            .push_bind(e.payload.as_str())
                            .push_bind(e.versions.as_deref())
                            // Sealed rows always carry a timestamp (`Err` only arises when reading).
                            .push_bind($to_db(e.created_at.clone().unwrap_or_default()))
                            .push_bind(e.prev_hash.as_str())
                            .push_bind(e.hash.as_str());
                    });
                    qb.build().execute(&mut *self.tx).await?;
                }
                Ok(())
            }

            async fn purge_scan(&mut self, cutoff: DateTime<Utc>) -> Result<PurgeScan, StoreError> {
                let latest_anchors = sqlx::query(
                    "SELECT an.chain_id, an.seq, an.hash FROM audit_anchors an \
                     WHERE an.seq = (SELECT MAX(b.seq) FROM audit_anchors b \
                                     WHERE b.chain_id = an.chain_id) \
                     ORDER BY an.chain_id",
                )
                .fetch_all(&mut *self.tx)
                .await?
                .iter()
                .map(anchor_of)
                .collect::<Result<Vec<_>, _>>()?;
                let rows = sqlx::query(
                    "SELECT e.chain_id, e.seq, e.alert_id, e.created_at, e.hash, \
                     CAST(CASE WHEN a.alert_id IS NULL THEN 0 ELSE 1 END AS BIGINT) AS alert_exists \
                     FROM audit_entries e LEFT JOIN alerts a ON a.alert_id = e.alert_id \
                     WHERE e.seq > COALESCE((SELECT MAX(an.seq) FROM audit_anchors an \
                                             WHERE an.chain_id = e.chain_id), 0) \
                     ORDER BY e.chain_id, e.seq",
                )
                .fetch_all(&mut *self.tx)
                .await?;
                let mut entries = Vec::with_capacity(rows.len());
                for row in &rows {
                    let created: $Ts = row.try_get("created_at")?;
                    let exists: i64 = row.try_get("alert_exists")?;
                    entries.push(ScanEntry {
                        chain_id: row.try_get("chain_id")?,
                        seq: row.try_get("seq")?,
                        alert_id: row.try_get("alert_id")?,
                        alert_exists: exists != 0,
                        created_at: $from_db(created).ok(),
                        hash: row.try_get("hash")?,
                    });
                }
                let old_decided = sqlx::query(
                    "SELECT a.alert_id FROM alerts a WHERE a.received_at < $1 \
                     AND EXISTS (SELECT 1 FROM decisions d WHERE d.alert_id = a.alert_id) \
                     ORDER BY a.received_at, a.alert_id",
                )
                .bind($to_db(cutoff))
                .fetch_all(&mut *self.tx)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>("alert_id"))
                .collect::<Result<Vec<_>, _>>()?;
                let old_undecided: i64 = sqlx::query(
                    "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM alerts a WHERE a.received_at < $1 \
                     AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.alert_id = a.alert_id)",
                )
                .bind($to_db(cutoff))
                .fetch_one(&mut *self.tx)
                .await?
                .try_get("n")?;
                Ok(PurgeScan {
                    entries,
                    latest_anchors,
                    old_decided,
                    old_undecided: u64::try_from(old_undecided).unwrap_or(0),
                })
            }

            async fn purge_delete(
                &mut self,
                alerts: &[String],
                anchors: &[AuditAnchor],
                now: DateTime<Utc>,
            ) -> Result<PurgeCounts, StoreError> {
                let mut counts = PurgeCounts::default();
                let ids: Vec<&str> = alerts.iter().map(String::as_str).collect();
                for chunk in pow2_chunks(&ids) {
                    for (table, count) in [
                        ("decisions", &mut counts.decisions),
                        ("step_journal", &mut counts.steps),
                        ("alerts", &mut counts.alerts),
                    ] {
                        let mut qb =
                            QueryBuilder::<$DB>::new(format!("DELETE FROM {table} WHERE alert_id IN "));
                        push_in_list(&mut qb, chunk);
                        *count += qb.build().execute(&mut *self.tx).await?.rows_affected();
                    }
                }
                for a in anchors {
                    counts.audit_entries += sqlx::query(
                        "DELETE FROM audit_entries WHERE chain_id = $1 AND seq <= $2",
                    )
                    .bind(a.chain_id.as_str())
                    .bind(a.seq)
                    .execute(&mut *self.tx)
                    .await?
                    .rows_affected();
                    sqlx::query(
                        "INSERT INTO audit_anchors (chain_id, seq, hash, created_at) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(a.chain_id.as_str())
                    .bind(a.seq)
                    .bind(a.hash.as_str())
                    .bind($to_db(now))
                    .execute(&mut *self.tx)
                    .await?;
                }
                Ok(counts)
            }

            async fn commit(self) -> Result<(), StoreError> {
                self.tx.commit().await?;
                Ok(())
            }
        }

        impl ReadBackend for Backend {
            async fn alert(&self, id: &str) -> Result<Option<StoredAlert>, StoreError> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{ALERT_SELECT} WHERE a.alert_id = $1"
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(alert_of).transpose()
            }

            async fn decision_text(&self, id: &str) -> Result<Option<String>, StoreError> {
                let row = sqlx::query("SELECT decision FROM decisions WHERE alert_id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| r.try_get("decision")).transpose()?)
            }

            async fn steps(&self, id: &str) -> Result<Vec<StepRecord>, StoreError> {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {STEP_SELECT} FROM {STEP_FROM} WHERE s.alert_id = $1 ORDER BY s.id"
                )))
                .bind(id)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(step_of)
                .collect()
            }

            async fn audit_rows_for_alert(&self, id: &str) -> Result<Vec<AuditRow>, StoreError> {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {AUDIT_COLS} FROM audit_entries WHERE alert_id = $1 \
                     ORDER BY chain_id, seq"
                )))
                .bind(id)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(audit_of)
                .collect()
            }

            async fn audit_row(
                &self,
                chain_id: &str,
                seq: i64,
            ) -> Result<Option<AuditRow>, StoreError> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {AUDIT_COLS} FROM audit_entries WHERE chain_id = $1 AND seq = $2"
                )))
                .bind(chain_id)
                .bind(seq)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(audit_of).transpose()
            }

            async fn audit_page(
                &self,
                chain_id: &str,
                after: i64,
                limit: i64,
            ) -> Result<Vec<AuditRow>, StoreError> {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {AUDIT_COLS} FROM audit_entries WHERE chain_id = $1 AND seq > $2 \
                     ORDER BY seq LIMIT $3"
                )))
                .bind(chain_id)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(audit_of)
                .collect()
            }

            async fn chains(&self) -> Result<Vec<(String, Option<AuditAnchor>)>, StoreError> {
                let ids: Vec<String> = sqlx::query(
                    "SELECT DISTINCT chain_id FROM audit_entries \
                     UNION SELECT chain_id FROM audit_anchors ORDER BY chain_id",
                )
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>("chain_id"))
                .collect::<Result<_, _>>()?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    let anchor = self.latest_anchor(&id).await?;
                    out.push((id, anchor));
                }
                Ok(out)
            }

            async fn latest_anchor(&self, chain_id: &str) -> Result<Option<AuditAnchor>, StoreError> {
                let row = sqlx::query(
                    "SELECT chain_id, seq, hash FROM audit_anchors WHERE chain_id = $1 \
                     ORDER BY seq DESC LIMIT 1",
                )
                .bind(chain_id)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(anchor_of).transpose()
            }

            async fn record_checks(
                &self,
                after: &str,
                limit: i64,
            ) -> Result<Vec<RecordCheckRow>, StoreError> {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{RECORD_CHECK_SELECT} WHERE a.alert_id > $1 ORDER BY a.alert_id LIMIT $2"
                )))
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(check_of)
                .collect()
            }

            async fn step_checks(
                &self,
                first: &str,
                last: &str,
            ) -> Result<(Vec<StepCheckRow>, Vec<AuditRow>), StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT s.id, {STEP_SELECT}, s.recorded_at FROM {STEP_FROM} \
                     WHERE s.alert_id >= $1 AND s.alert_id <= $2 ORDER BY s.alert_id, s.id"
                )))
                .bind(first)
                .bind(last)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(step_check_of)
                .collect::<Result<Vec<_>, _>>()?;
                let entries = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {AUDIT_COLS} FROM audit_entries WHERE action = 'step' \
                     AND alert_id >= $1 AND alert_id <= $2 ORDER BY chain_id, seq"
                )))
                .bind(first)
                .bind(last)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(audit_of)
                .collect::<Result<Vec<_>, _>>()?;
                Ok((rows, entries))
            }

            async fn record_check(&self, id: &str) -> Result<Option<RecordCheckRow>, StoreError> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{RECORD_CHECK_SELECT} WHERE a.alert_id = $1"
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(check_of).transpose()
            }

            async fn unfinished(&self) -> Result<Vec<UnfinishedAlert>, StoreError> {
                let alerts = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{ALERT_SELECT} WHERE d.alert_id IS NULL ORDER BY a.received_at, a.alert_id"
                )))
                .fetch_all(&self.pool)
                .await?;
                let steps = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {STEP_SELECT} FROM {STEP_FROM} WHERE s.status = 'completed' \
                     AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.alert_id = s.alert_id) \
                     ORDER BY s.id"
                )))
                .fetch_all(&self.pool)
                .await?;
                let mut by_alert: HashMap<String, Vec<StepRecord>> = HashMap::new();
                for row in &steps {
                    let s = step_of(row)?;
                    by_alert.entry(s.alert_id.clone()).or_default().push(s);
                }
                alerts
                    .iter()
                    .map(|row| {
                        let alert = alert_of(row)?;
                        let completed_steps = by_alert.remove(&alert.alert_id).unwrap_or_default();
                        Ok(UnfinishedAlert {
                            alert,
                            completed_steps,
                        })
                    })
                    .collect()
            }

            async fn unfinished_ids(&self) -> Result<Vec<String>, StoreError> {
                let rows = sqlx::query(
                    "SELECT a.alert_id FROM alerts a WHERE NOT EXISTS \
                     (SELECT 1 FROM decisions d WHERE d.alert_id = a.alert_id) \
                     ORDER BY a.received_at, a.alert_id",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| r.try_get::<String, _>("alert_id").map_err(StoreError::from))
                    .collect()
            }

            async fn customer_history(
                &self,
                customer_id: &str,
                excluding_alert: &str,
            ) -> Result<(u32, u32), StoreError> {
                // "Prior" means raised no later than the alert being triaged, so a replay after
                // a restart sees the same history as the first run did.
                let row = sqlx::query(
                    "SELECT CAST(COUNT(*) AS BIGINT) AS alerts, \
                     CAST(COALESCE(SUM(CASE WHEN d.disposition IS NOT NULL \
                          AND d.disposition <> 'AUTO_CLEAR' THEN 1 ELSE 0 END), 0) AS BIGINT) \
                          AS escalations \
                     FROM alerts a LEFT JOIN decisions d ON d.alert_id = a.alert_id \
                     WHERE a.customer_id = $1 AND a.alert_id <> $2 \
                     AND a.created_at <= COALESCE( \
                         (SELECT r.created_at FROM alerts r WHERE r.alert_id = $2), a.created_at)",
                )
                .bind(customer_id)
                .bind(excluding_alert)
                .fetch_one(&self.pool)
                .await?;
                let alerts: i64 = row.try_get("alerts")?;
                let escalations: i64 = row.try_get("escalations")?;
                Ok((
                    u32::try_from(alerts).unwrap_or(u32::MAX),
                    u32::try_from(escalations).unwrap_or(u32::MAX),
                ))
            }

            async fn stored_head(&self, chain_id: &str) -> Result<ChainHead, StoreError> {
                head_of(&self.pool, chain_id).await
            }
        }
        }
        pub(crate) use db::Backend;
    };
}

pub(crate) use sql_backend;

//! Persistence of analyst review: users, sessions, cases, comments, QA samples and canaries
//! (migration 0003). The rules live in [`crate::domain::review`]; the orchestration (check,
//! write, audit) in [`crate::review`]. This file only reads and writes rows.
//!
//! The review tables store timestamps as fixed-width RFC 3339 text on both backends, so each
//! query is written once (in `review_sql!`) and instantiated per driver. Case updates are
//! optimistic: a row carries a `version`, and an update names the version it read, so two
//! users acting at once cannot both win. The in-memory store has no review tables.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::audit::{format_ts, parse_ts};
use super::{Backend, Store, StoreError};
use crate::domain::review::{CaseState, HitDisposition, UserRole};

/// A named user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Login name.
    pub user_id: String,
    /// Name shown to others.
    pub display_name: String,
    /// Roles.
    pub roles: BTreeSet<UserRole>,
    /// argon2 PHC string of a local account; never serialised.
    #[serde(skip)]
    pub password_hash: Option<String>,
    /// `sub` of an OIDC account.
    pub oidc_subject: Option<String>,
    /// A disabled user cannot log in or act.
    pub disabled: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A server-side session with its CSRF token.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// The user (as stored now, so disabling takes effect at once).
    pub user: UserRecord,
    /// The synchronizer CSRF token of this session.
    pub csrf_token: String,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
}

/// One thing that happened to a case (also in the audit chain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseEvent {
    /// When.
    pub at: DateTime<Utc>,
    /// Who (`user:<id>`, `engine`, `qa`, ...).
    pub actor: String,
    /// What (`opened`, `assign`, `transition:request_close`, ...).
    pub action: String,
    /// Details.
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// The case data that is not filtered on: kept as one JSON document.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CaseDoc {
    /// The engine's disposition of the alert.
    pub engine_disposition: Option<String>,
    /// The engine's risk score.
    pub risk_score: Option<f64>,
    /// Entry ids of the alert's screening hits.
    pub hits: Vec<String>,
    /// The analyst's disposition of each hit.
    pub hit_dispositions: BTreeMap<String, HitDisposition>,
    /// Everyone who worked the case (four-eyes: none of them may approve).
    pub workers: BTreeSet<String>,
    /// The rationale of the pending or approved close.
    pub rationale: Option<String>,
    /// The reason for overriding the engine, if the outcome does.
    pub override_reason: Option<String>,
    /// Who requested the pending approval.
    pub requested_by: Option<String>,
    /// Who approved the close or filing.
    pub approved_by: Option<String>,
    /// When the suspicious activity was detected (the alert's time).
    pub detected_at: Option<DateTime<Utc>>,
    /// When suspicion was determined (SAR clock start).
    pub determined_at: Option<DateTime<Utc>>,
    /// Whether a suspect is identified (30 vs 60 days).
    pub suspect_identified: bool,
    /// When the SAR was filed.
    pub sar_filed_at: Option<DateTime<Utc>>,
    /// Other alerts of the same customer linked to this case.
    pub linked_alerts: Vec<String>,
    /// What happened, oldest first.
    pub history: Vec<CaseEvent>,
}

/// A case as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseRecord {
    /// Id (`case-<alert_id>`).
    pub case_id: String,
    /// The alert the case was opened for.
    pub alert_id: String,
    /// Its customer.
    pub customer_id: String,
    /// Its type (queue).
    pub alert_type: String,
    /// Its priority (queue and SLA).
    pub priority: String,
    /// Why it exists: `engine` (escalated), `qa_miss` (a QA reviewer found a missed
    /// auto-clear), `canary`.
    pub origin: String,
    /// Where it is.
    pub state: CaseState,
    /// Who holds it.
    pub assignee: Option<String>,
    /// Until when the assignee's pull-next lock holds.
    pub locked_until: Option<DateTime<Utc>>,
    /// Opened.
    pub opened_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version.
    pub version: i64,
    /// Everything else.
    pub doc: CaseDoc,
}

/// Rank of a priority in queues (higher first).
pub fn priority_rank(priority: &str) -> i64 {
    match priority {
        "CRITICAL" => 4,
        "HIGH" => 3,
        "MEDIUM" => 2,
        _ => 1,
    }
}

/// Filter of the case list.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CaseFilter {
    /// State name (`open`, `in_review`, ...).
    pub state: Option<String>,
    /// Assignee user id.
    pub assignee: Option<String>,
    /// Alert type.
    pub alert_type: Option<String>,
    /// Priority.
    pub priority: Option<String>,
    /// Customer.
    pub customer_id: Option<String>,
    /// Most rows (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// A comment on a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommentRecord {
    /// Id.
    pub comment_id: String,
    /// The case.
    pub case_id: String,
    /// Author.
    pub user_id: String,
    /// Text.
    pub body: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// An auto-clear drawn for blind QA review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QaSampleRecord {
    /// Id.
    pub sample_id: String,
    /// Period label (e.g. `2026-11`).
    pub period: String,
    /// The auto-cleared alert.
    pub alert_id: String,
    /// Score band index.
    pub band: i64,
    /// Inclusion probability within its band.
    pub inclusion: f64,
    /// The engine's risk score.
    pub risk_score: f64,
    /// The engine's verdict: hidden from the API until the reviewer has decided.
    pub engine_disposition: String,
    /// When drawn.
    pub drawn_at: DateTime<Utc>,
    /// QA reviewer.
    pub reviewer: Option<String>,
    /// `ok` or `miss`.
    pub verdict: Option<String>,
    /// Reviewer's notes.
    pub notes: Option<String>,
    /// When reviewed.
    pub reviewed_at: Option<DateTime<Utc>>,
}

/// A canary alert injected through the normal path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryRecord {
    /// The synthetic alert's id.
    pub alert_id: String,
    /// Which canary definition.
    pub name: String,
    /// When injected.
    pub injected_at: DateTime<Utc>,
    /// The disposition it got (None until decided).
    pub disposition: Option<String>,
    /// When checked.
    pub checked_at: Option<DateTime<Utc>>,
}

fn ts(t: DateTime<Utc>) -> String {
    format_ts(t)
}

fn ts_opt(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(format_ts)
}

fn parse_opt(t: Option<String>) -> Result<Option<DateTime<Utc>>, StoreError> {
    t.as_deref().map(parse_ts).transpose()
}

fn roles_text(roles: &BTreeSet<UserRole>) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn roles_of(text: &str) -> Result<BTreeSet<UserRole>, StoreError> {
    UserRole::parse_list(text).map_err(|e| StoreError::Corrupt(format!("review_users.{e}")))
}

fn json_text<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Internal(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(col: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

const USER_COLS: &str = "user_id, display_name, roles, password_hash, oidc_subject, disabled, \
     created_at, updated_at";
const CASE_COLS: &str = "case_id, alert_id, customer_id, alert_type, priority, priority_rank, \
     origin, state, assignee, locked_until, opened_at, updated_at, version, doc";
const QA_COLS: &str = "sample_id, period, alert_id, band, inclusion, risk_score, \
     engine_disposition, drawn_at, reviewer, verdict, notes, reviewed_at";
/// States a pull-next may take (nobody is working them).
const PULLABLE: &str = "('open', 'escalated', 'reopened')";

macro_rules! review_sql {
    (db: $DB:ty, decided_at: $dec:path) => {
        use sqlx::Row;

        use super::*;

        type DbRow = <$DB as sqlx::Database>::Row;
        type Pool = sqlx::Pool<$DB>;

        fn user_of(r: &DbRow) -> Result<UserRecord, StoreError> {
            let disabled: i64 = r.try_get("disabled")?;
            let roles: String = r.try_get("roles")?;
            Ok(UserRecord {
                user_id: r.try_get("user_id")?,
                display_name: r.try_get("display_name")?,
                roles: roles_of(&roles)?,
                password_hash: r.try_get("password_hash")?,
                oidc_subject: r.try_get("oidc_subject")?,
                disabled: disabled != 0,
                created_at: parse_ts(&r.try_get::<String, _>("created_at")?)?,
                updated_at: parse_ts(&r.try_get::<String, _>("updated_at")?)?,
            })
        }

        fn case_of(r: &DbRow) -> Result<CaseRecord, StoreError> {
            let doc: String = r.try_get("doc")?;
            let doc: serde_json::Value = from_json("review_cases.doc", &doc)?;
            let state = doc
                .get("state")
                .cloned()
                .ok_or_else(|| StoreError::Corrupt("review_cases.doc: no state".into()))?;
            Ok(CaseRecord {
                case_id: r.try_get("case_id")?,
                alert_id: r.try_get("alert_id")?,
                customer_id: r.try_get("customer_id")?,
                alert_type: r.try_get("alert_type")?,
                priority: r.try_get("priority")?,
                origin: r.try_get("origin")?,
                state: serde_json::from_value(state)
                    .map_err(|e| StoreError::Corrupt(format!("review_cases.state: {e}")))?,
                assignee: r.try_get("assignee")?,
                locked_until: parse_opt(r.try_get("locked_until")?)?,
                opened_at: parse_ts(&r.try_get::<String, _>("opened_at")?)?,
                updated_at: parse_ts(&r.try_get::<String, _>("updated_at")?)?,
                version: r.try_get("version")?,
                doc: serde_json::from_value(doc["doc"].clone())
                    .map_err(|e| StoreError::Corrupt(format!("review_cases.doc: {e}")))?,
            })
        }

        fn doc_text(c: &CaseRecord) -> Result<String, StoreError> {
            json_text(&serde_json::json!({"state": c.state, "doc": c.doc}))
        }

        fn qa_of(r: &DbRow) -> Result<QaSampleRecord, StoreError> {
            Ok(QaSampleRecord {
                sample_id: r.try_get("sample_id")?,
                period: r.try_get("period")?,
                alert_id: r.try_get("alert_id")?,
                band: r.try_get("band")?,
                inclusion: r.try_get("inclusion")?,
                risk_score: r.try_get("risk_score")?,
                engine_disposition: r.try_get("engine_disposition")?,
                drawn_at: parse_ts(&r.try_get::<String, _>("drawn_at")?)?,
                reviewer: r.try_get("reviewer")?,
                verdict: r.try_get("verdict")?,
                notes: r.try_get("notes")?,
                reviewed_at: parse_opt(r.try_get("reviewed_at")?)?,
            })
        }

        fn canary_of(r: &DbRow) -> Result<CanaryRecord, StoreError> {
            Ok(CanaryRecord {
                alert_id: r.try_get("alert_id")?,
                name: r.try_get("name")?,
                injected_at: parse_ts(&r.try_get::<String, _>("injected_at")?)?,
                disposition: r.try_get("disposition")?,
                checked_at: parse_opt(r.try_get("checked_at")?)?,
            })
        }

        pub(super) async fn insert_user(p: &Pool, u: &UserRecord) -> Result<bool, StoreError> {
            let done = sqlx::query(
                "INSERT INTO review_users (user_id, display_name, roles, password_hash, \
                 oidc_subject, disabled, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (user_id) DO NOTHING",
            )
            .bind(&u.user_id)
            .bind(&u.display_name)
            .bind(roles_text(&u.roles))
            .bind(&u.password_hash)
            .bind(&u.oidc_subject)
            .bind(i64::from(u.disabled))
            .bind(ts(u.created_at))
            .bind(ts(u.updated_at))
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(super) async fn update_user(p: &Pool, u: &UserRecord) -> Result<bool, StoreError> {
            let done = sqlx::query(
                "UPDATE review_users SET display_name = $2, roles = $3, password_hash = $4, \
                 oidc_subject = $5, disabled = $6, updated_at = $7 WHERE user_id = $1",
            )
            .bind(&u.user_id)
            .bind(&u.display_name)
            .bind(roles_text(&u.roles))
            .bind(&u.password_hash)
            .bind(&u.oidc_subject)
            .bind(i64::from(u.disabled))
            .bind(ts(u.updated_at))
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(super) async fn user(p: &Pool, col: &str, v: &str) -> Result<Option<UserRecord>, StoreError> {
            // `col` is one of two fixed column names, never input.
            let col = if col == "oidc_subject" { "oidc_subject" } else { "user_id" };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLS} FROM review_users WHERE {col} = $1"
            )))
            .bind(v)
            .fetch_optional(p)
            .await?
            .as_ref()
            .map(user_of)
            .transpose()
        }

        pub(super) async fn users(p: &Pool) -> Result<Vec<UserRecord>, StoreError> {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLS} FROM review_users ORDER BY user_id"
            )))
            .fetch_all(p)
            .await?
            .iter()
            .map(user_of)
            .collect()
        }

        pub(super) async fn insert_session(
            p: &Pool,
            token_hash: &str,
            user_id: &str,
            csrf: &str,
            now: DateTime<Utc>,
            expires: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO review_sessions (token_hash, user_id, csrf_token, created_at, \
                 expires_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(token_hash)
            .bind(user_id)
            .bind(csrf)
            .bind(ts(now))
            .bind(ts(expires))
            .execute(p)
            .await?;
            // Expired sessions of anyone are dropped on each login.
            sqlx::query("DELETE FROM review_sessions WHERE expires_at <= $1")
                .bind(ts(now))
                .execute(p)
                .await?;
            Ok(())
        }

        pub(super) async fn session(
            p: &Pool,
            token_hash: &str,
            now: DateTime<Utc>,
        ) -> Result<Option<SessionRecord>, StoreError> {
            let row = sqlx::query(
                "SELECT csrf_token, expires_at, user_id FROM review_sessions \
                 WHERE token_hash = $1 AND expires_at > $2",
            )
            .bind(token_hash)
            .bind(ts(now))
            .fetch_optional(p)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let user_id: String = row.try_get("user_id")?;
            let Some(user) = user(p, "user_id", &user_id).await? else {
                return Ok(None);
            };
            Ok(Some(SessionRecord {
                user,
                csrf_token: row.try_get("csrf_token")?,
                expires_at: parse_ts(&row.try_get::<String, _>("expires_at")?)?,
            }))
        }

        pub(super) async fn delete_sessions(p: &Pool, col: &str, v: &str) -> Result<(), StoreError> {
            let col = if col == "user_id" { "user_id" } else { "token_hash" };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM review_sessions WHERE {col} = $1"
            )))
            .bind(v)
            .execute(p)
            .await?;
            Ok(())
        }

        pub(super) async fn login_failures(
            p: &Pool,
            user_id: &str,
            since: DateTime<Utc>,
        ) -> Result<Vec<DateTime<Utc>>, StoreError> {
            let rows = sqlx::query(
                "SELECT failed_at FROM review_login_failures \
                 WHERE user_id = $1 AND failed_at >= $2 ORDER BY failed_at",
            )
            .bind(user_id)
            .bind(ts(since))
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| parse_ts(&r.try_get::<String, _>("failed_at")?))
                .collect()
        }

        pub(super) async fn record_login_failure(
            p: &Pool,
            user_id: &str,
            at: DateTime<Utc>,
            forget_before: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM review_login_failures WHERE failed_at < $1")
                .bind(ts(forget_before))
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO review_login_failures (user_id, failed_at) VALUES ($1, $2)")
                .bind(user_id)
                .bind(ts(at))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }

        pub(super) async fn clear_login_failures(p: &Pool, user_id: &str) -> Result<(), StoreError> {
            sqlx::query("DELETE FROM review_login_failures WHERE user_id = $1")
                .bind(user_id)
                .execute(p)
                .await?;
            Ok(())
        }

        pub(super) async fn insert_oidc(
            p: &Pool,
            state: &str,
            nonce: &str,
            verifier: &str,
            now: DateTime<Utc>,
            expires: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            sqlx::query("DELETE FROM review_oidc_pending WHERE expires_at <= $1")
                .bind(ts(now))
                .execute(p)
                .await?;
            sqlx::query(
                "INSERT INTO review_oidc_pending (state, nonce, verifier, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(state)
            .bind(nonce)
            .bind(verifier)
            .bind(ts(expires))
            .execute(p)
            .await?;
            Ok(())
        }

        pub(super) async fn take_oidc(
            p: &Pool,
            state: &str,
            now: DateTime<Utc>,
        ) -> Result<Option<(String, String)>, StoreError> {
            let row = sqlx::query(
                "DELETE FROM review_oidc_pending WHERE state = $1 AND expires_at > $2 \
                 RETURNING nonce, verifier",
            )
            .bind(state)
            .bind(ts(now))
            .fetch_optional(p)
            .await?;
            row.map(|r| Ok((r.try_get("nonce")?, r.try_get("verifier")?)))
                .transpose()
        }

        pub(super) async fn insert_case(p: &Pool, c: &CaseRecord) -> Result<bool, StoreError> {
            let done = sqlx::query(
                "INSERT INTO review_cases (case_id, alert_id, customer_id, alert_type, priority, \
                 priority_rank, origin, state, assignee, locked_until, opened_at, updated_at, \
                 version, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&c.case_id)
            .bind(&c.alert_id)
            .bind(&c.customer_id)
            .bind(&c.alert_type)
            .bind(&c.priority)
            .bind(priority_rank(&c.priority))
            .bind(&c.origin)
            .bind(c.state.name())
            .bind(&c.assignee)
            .bind(ts_opt(c.locked_until))
            .bind(ts(c.opened_at))
            .bind(ts(c.updated_at))
            .bind(c.version)
            .bind(doc_text(c)?)
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(super) async fn update_case(
            p: &Pool,
            c: &CaseRecord,
            expected_version: i64,
        ) -> Result<bool, StoreError> {
            let done = sqlx::query(
                "UPDATE review_cases SET origin = $2, state = $3, assignee = $4, \
                 locked_until = $5, updated_at = $6, version = $7, doc = $8, priority = $9, \
                 priority_rank = $10 WHERE case_id = $1 AND version = $11",
            )
            .bind(&c.case_id)
            .bind(&c.origin)
            .bind(c.state.name())
            .bind(&c.assignee)
            .bind(ts_opt(c.locked_until))
            .bind(ts(c.updated_at))
            .bind(c.version)
            .bind(doc_text(c)?)
            .bind(&c.priority)
            .bind(priority_rank(&c.priority))
            .bind(expected_version)
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(super) async fn case(p: &Pool, col: &str, v: &str) -> Result<Option<CaseRecord>, StoreError> {
            let col = if col == "alert_id" { "alert_id" } else { "case_id" };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {CASE_COLS} FROM review_cases WHERE {col} = $1"
            )))
            .bind(v)
            .fetch_optional(p)
            .await?
            .as_ref()
            .map(case_of)
            .transpose()
        }

        pub(super) async fn cases(p: &Pool, f: &CaseFilter) -> Result<Vec<CaseRecord>, StoreError> {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {CASE_COLS} FROM review_cases \
                 WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR assignee = $2) \
                 AND ($3 IS NULL OR alert_type = $3) AND ($4 IS NULL OR priority = $4) \
                 AND ($6 IS NULL OR customer_id = $6) \
                 ORDER BY priority_rank DESC, opened_at, case_id LIMIT $5"
            )))
            .bind(&f.state)
            .bind(&f.assignee)
            .bind(&f.alert_type)
            .bind(&f.priority)
            .bind(f.limit.unwrap_or(100).clamp(1, 1000))
            .bind(&f.customer_id)
            .fetch_all(p)
            .await?
            .iter()
            .map(case_of)
            .collect()
        }

        /// Ids of unassigned (or lock-expired) pullable cases, best first.
        pub(super) async fn pullable(
            p: &Pool,
            now: DateTime<Utc>,
            alert_type: Option<&str>,
        ) -> Result<Vec<String>, StoreError> {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT case_id FROM review_cases WHERE state IN {PULLABLE} \
                 AND (assignee IS NULL OR (locked_until IS NOT NULL AND locked_until <= $1)) \
                 AND ($2 IS NULL OR alert_type = $2) \
                 ORDER BY priority_rank DESC, opened_at, case_id LIMIT 20"
            )))
            .bind(ts(now))
            .bind(alert_type)
            .fetch_all(p)
            .await?;
            rows.iter().map(|r| Ok(r.try_get("case_id")?)).collect()
        }

        pub(super) async fn open_case_alerts(
            p: &Pool,
            customer_id: &str,
            limit: i64,
        ) -> Result<Vec<String>, StoreError> {
            let rows = sqlx::query(
                "SELECT alert_id FROM review_cases \
                 WHERE customer_id = $1 AND state NOT IN ('closed', 'sar_filed') \
                 ORDER BY opened_at, case_id LIMIT $2",
            )
            .bind(customer_id)
            .bind(limit)
            .fetch_all(p)
            .await?;
            rows.iter().map(|r| Ok(r.try_get("alert_id")?)).collect()
        }

        pub(super) async fn open_load(p: &Pool) -> Result<Vec<(String, i64)>, StoreError> {
            let rows = sqlx::query(
                "SELECT assignee, CAST(COUNT(*) AS BIGINT) AS n FROM review_cases \
                 WHERE assignee IS NOT NULL AND state NOT IN ('closed', 'sar_filed') \
                 GROUP BY assignee",
            )
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| Ok((r.try_get("assignee")?, r.try_get("n")?)))
                .collect()
        }

        pub(super) async fn insert_comment(p: &Pool, c: &CommentRecord) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO review_comments (comment_id, case_id, user_id, body, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&c.comment_id)
            .bind(&c.case_id)
            .bind(&c.user_id)
            .bind(&c.body)
            .bind(ts(c.created_at))
            .execute(p)
            .await?;
            Ok(())
        }

        pub(super) async fn comments(p: &Pool, case_id: &str) -> Result<Vec<CommentRecord>, StoreError> {
            let rows = sqlx::query(
                "SELECT comment_id, case_id, user_id, body, created_at FROM review_comments \
                 WHERE case_id = $1 ORDER BY created_at, comment_id",
            )
            .bind(case_id)
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(CommentRecord {
                        comment_id: r.try_get("comment_id")?,
                        case_id: r.try_get("case_id")?,
                        user_id: r.try_get("user_id")?,
                        body: r.try_get("body")?,
                        created_at: parse_ts(&r.try_get::<String, _>("created_at")?)?,
                    })
                })
                .collect()
        }

        /// `(alert_id, risk_score)` of AUTO_CLEAR decisions decided in `[from, to)`, without
        /// canaries.
        pub(super) async fn auto_clears(
            p: &Pool,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
        ) -> Result<Vec<(String, f64)>, StoreError> {
            let rows = sqlx::query(
                "SELECT d.alert_id, d.risk_score FROM decisions d \
                 WHERE d.disposition = 'AUTO_CLEAR' AND d.decided_at >= $1 AND d.decided_at < $2 \
                 AND NOT EXISTS (SELECT 1 FROM review_canaries c WHERE c.alert_id = d.alert_id) \
                 ORDER BY d.alert_id",
            )
            .bind($dec(from))
            .bind($dec(to))
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| Ok((r.try_get("alert_id")?, r.try_get("risk_score")?)))
                .collect()
        }

        /// Escalated decisions that have no case (a crash between the decision and the case).
        pub(super) async fn escalated_without_case(p: &Pool) -> Result<Vec<String>, StoreError> {
            let rows = sqlx::query(
                "SELECT d.alert_id FROM decisions d WHERE d.disposition IN \
                 ('ESCALATE_L2', 'ESCALATE_L3', 'ESCALATE_SAR', 'BLOCK_TRANSACTION') \
                 AND NOT EXISTS (SELECT 1 FROM review_cases c WHERE c.alert_id = d.alert_id) \
                 AND NOT EXISTS (SELECT 1 FROM review_canaries k WHERE k.alert_id = d.alert_id) \
                 ORDER BY d.alert_id LIMIT 1000",
            )
            .fetch_all(p)
            .await?;
            rows.iter().map(|r| Ok(r.try_get("alert_id")?)).collect()
        }

        pub(super) async fn insert_qa(p: &Pool, s: &QaSampleRecord) -> Result<bool, StoreError> {
            let done = sqlx::query(
                "INSERT INTO review_qa_samples (sample_id, period, alert_id, band, inclusion, \
                 risk_score, engine_disposition, drawn_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&s.sample_id)
            .bind(&s.period)
            .bind(&s.alert_id)
            .bind(s.band)
            .bind(s.inclusion)
            .bind(s.risk_score)
            .bind(&s.engine_disposition)
            .bind(ts(s.drawn_at))
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(super) async fn qa_samples(
            p: &Pool,
            period: Option<&str>,
        ) -> Result<Vec<QaSampleRecord>, StoreError> {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {QA_COLS} FROM review_qa_samples WHERE ($1 IS NULL OR period = $1) \
                 ORDER BY period, drawn_at, sample_id"
            )))
            .bind(period)
            .fetch_all(p)
            .await?
            .iter()
            .map(qa_of)
            .collect()
        }

        pub(super) async fn qa_sample(p: &Pool, id: &str) -> Result<Option<QaSampleRecord>, StoreError> {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {QA_COLS} FROM review_qa_samples WHERE sample_id = $1"
            )))
            .bind(id)
            .fetch_optional(p)
            .await?
            .as_ref()
            .map(qa_of)
            .transpose()
        }

        pub(super) async fn qa_verdict(
            p: &Pool,
            id: &str,
            reviewer: &str,
            verdict: &str,
            notes: &str,
            now: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            let done = sqlx::query(
                "UPDATE review_qa_samples SET reviewer = $2, verdict = $3, notes = $4, \
                 reviewed_at = $5 WHERE sample_id = $1 AND verdict IS NULL",
            )
            .bind(id)
            .bind(reviewer)
            .bind(verdict)
            .bind(notes)
            .bind(ts(now))
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(super) async fn insert_canary(p: &Pool, c: &CanaryRecord) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO review_canaries (alert_id, name, injected_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&c.alert_id)
            .bind(&c.name)
            .bind(ts(c.injected_at))
            .execute(p)
            .await?;
            Ok(())
        }

        pub(super) async fn canary(p: &Pool, alert_id: &str) -> Result<Option<CanaryRecord>, StoreError> {
            sqlx::query(
                "SELECT alert_id, name, injected_at, disposition, checked_at FROM review_canaries \
                 WHERE alert_id = $1",
            )
            .bind(alert_id)
            .fetch_optional(p)
            .await?
            .as_ref()
            .map(canary_of)
            .transpose()
        }

        pub(super) async fn canaries(p: &Pool) -> Result<Vec<CanaryRecord>, StoreError> {
            let rows = sqlx::query(
                "SELECT alert_id, name, injected_at, disposition, checked_at FROM review_canaries \
                 ORDER BY injected_at, alert_id",
            )
            .fetch_all(p)
            .await?;
            rows.iter().map(canary_of).collect()
        }

        pub(super) async fn check_canary(
            p: &Pool,
            alert_id: &str,
            disposition: &str,
            now: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "UPDATE review_canaries SET disposition = $2, checked_at = $3 WHERE alert_id = $1",
            )
            .bind(alert_id)
            .bind(disposition)
            .bind(ts(now))
            .execute(p)
            .await?;
            Ok(())
        }
    };
}

mod pg {
    fn decided_at(t: DateTime<Utc>) -> DateTime<Utc> {
        crate::store::audit::truncate_micros(t)
    }
    review_sql!(db: sqlx::Postgres, decided_at: decided_at);
}

mod lite {
    fn decided_at(t: DateTime<Utc>) -> String {
        format_ts(t)
    }
    review_sql!(db: sqlx::Sqlite, decided_at: decided_at);
}

/// Runs `$call` on the backend's pool module (`pg` or `lite`); the memory store has no review
/// tables.
macro_rules! on_pool {
    ($self:expr, $m:ident, $p:ident => $call:expr) => {
        match &$self.inner.backend {
            Backend::Postgres(b) => {
                let $p = &b.pool;
                {
                    use pg as $m;
                    $call
                }
            }
            Backend::Sqlite(b) => {
                let $p = &b.pool;
                {
                    use lite as $m;
                    $call
                }
            }
            Backend::Memory(_) => Err(StoreError::Unavailable(
                "analyst review needs a SQLite or PostgreSQL store".into(),
            )),
        }
    };
}

impl Store {
    /// Whether this store has review tables (SQLite or PostgreSQL).
    pub fn supports_review(&self) -> bool {
        !matches!(self.inner.backend, Backend::Memory(_))
    }

    /// Adds a user; `false` if the id is taken.
    pub async fn insert_user(&self, u: &UserRecord) -> Result<bool, StoreError> {
        on_pool!(self, m, p => m::insert_user(p, u).await)
    }

    /// Replaces a user's mutable fields; `false` if unknown.
    pub async fn update_user(&self, u: &UserRecord) -> Result<bool, StoreError> {
        on_pool!(self, m, p => m::update_user(p, u).await)
    }

    /// A user by id.
    pub async fn user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
        on_pool!(self, m, p => m::user(p, "user_id", user_id).await)
    }

    /// A user by OIDC subject.
    pub async fn user_by_subject(&self, subject: &str) -> Result<Option<UserRecord>, StoreError> {
        on_pool!(self, m, p => m::user(p, "oidc_subject", subject).await)
    }

    /// All users.
    pub async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        on_pool!(self, m, p => m::users(p).await)
    }

    /// Stores a session (by the hash of its token) and drops expired ones.
    pub async fn insert_session(
        &self,
        token_hash: &str,
        user_id: &str,
        csrf_token: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, m, p => m::insert_session(p, token_hash, user_id, csrf_token, now, expires_at).await)
    }

    /// The live session of a token hash at `now`.
    pub async fn session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        on_pool!(self, m, p => m::session(p, token_hash, now).await)
    }

    /// Ends one session.
    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        on_pool!(self, m, p => m::delete_sessions(p, "token_hash", token_hash).await)
    }

    /// Ends every session of a user (disable, password reset).
    pub async fn delete_user_sessions(&self, user_id: &str) -> Result<(), StoreError> {
        on_pool!(self, m, p => m::delete_sessions(p, "user_id", user_id).await)
    }

    /// Failed local logins of `user_id` since `since`, oldest first.
    pub async fn login_failures(
        &self,
        user_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        on_pool!(self, m, p => m::login_failures(p, user_id, since).await)
    }

    /// Records a failed local login at `at`, dropping every record older than `forget_before`.
    pub async fn record_login_failure(
        &self,
        user_id: &str,
        at: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, m, p => m::record_login_failure(p, user_id, at, forget_before).await)
    }

    /// Forgets the failed logins of `user_id` (after a successful one).
    pub async fn clear_login_failures(&self, user_id: &str) -> Result<(), StoreError> {
        on_pool!(self, m, p => m::clear_login_failures(p, user_id).await)
    }

    /// Records an OIDC login in progress (and drops expired ones).
    pub async fn insert_oidc_pending(
        &self,
        state: &str,
        nonce: &str,
        verifier: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, m, p => m::insert_oidc(p, state, nonce, verifier, now, expires_at).await)
    }

    /// Takes (once) the `(nonce, verifier)` of a live OIDC login by its `state`.
    pub async fn take_oidc_pending(
        &self,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, String)>, StoreError> {
        on_pool!(self, m, p => m::take_oidc(p, state, now).await)
    }

    /// Inserts a case; `false` if its alert already has one.
    pub async fn insert_case(&self, c: &CaseRecord) -> Result<bool, StoreError> {
        on_pool!(self, m, p => m::insert_case(p, c).await)
    }

    /// Writes `c` if the stored row still has `expected_version`; `false` if someone else
    /// changed it first.
    pub async fn update_case(
        &self,
        c: &CaseRecord,
        expected_version: i64,
    ) -> Result<bool, StoreError> {
        on_pool!(self, m, p => m::update_case(p, c, expected_version).await)
    }

    /// A case by id.
    pub async fn case(&self, case_id: &str) -> Result<Option<CaseRecord>, StoreError> {
        on_pool!(self, m, p => m::case(p, "case_id", case_id).await)
    }

    /// The case of an alert.
    pub async fn case_for_alert(&self, alert_id: &str) -> Result<Option<CaseRecord>, StoreError> {
        on_pool!(self, m, p => m::case(p, "alert_id", alert_id).await)
    }

    /// Cases matching `filter`, highest priority and oldest first.
    pub async fn cases(&self, filter: &CaseFilter) -> Result<Vec<CaseRecord>, StoreError> {
        on_pool!(self, m, p => m::cases(p, filter).await)
    }

    /// Ids of cases a pull-next may take at `now`, best first.
    pub async fn pullable_cases(
        &self,
        now: DateTime<Utc>,
        alert_type: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        on_pool!(self, m, p => m::pullable(p, now, alert_type).await)
    }

    /// Alert ids of a customer's unfinished cases, oldest first, at most `limit` (one indexed
    /// read of ids only: opening a case must not load the customer's whole case history).
    pub async fn open_case_alerts(
        &self,
        customer_id: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        on_pool!(self, m, p => m::open_case_alerts(p, customer_id, limit).await)
    }

    /// Unfinished cases per assignee.
    pub async fn open_case_load(&self) -> Result<Vec<(String, i64)>, StoreError> {
        on_pool!(self, m, p => m::open_load(p).await)
    }

    /// Adds a comment.
    pub async fn insert_comment(&self, c: &CommentRecord) -> Result<(), StoreError> {
        on_pool!(self, m, p => m::insert_comment(p, c).await)
    }

    /// Comments of a case, oldest first.
    pub async fn comments(&self, case_id: &str) -> Result<Vec<CommentRecord>, StoreError> {
        on_pool!(self, m, p => m::comments(p, case_id).await)
    }

    /// `(alert_id, risk_score)` of auto-clears decided in `[from, to)` (canaries excluded).
    pub async fn auto_clears(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(String, f64)>, StoreError> {
        on_pool!(self, m, p => m::auto_clears(p, from, to).await)
    }

    /// Escalated alerts without a case.
    pub async fn escalated_without_case(&self) -> Result<Vec<String>, StoreError> {
        on_pool!(self, m, p => m::escalated_without_case(p).await)
    }

    /// Stores a QA sample; `false` if the alert is already sampled in that period.
    pub async fn insert_qa_sample(&self, s: &QaSampleRecord) -> Result<bool, StoreError> {
        on_pool!(self, m, p => m::insert_qa(p, s).await)
    }

    /// QA samples of a period (or all).
    pub async fn qa_samples(
        &self,
        period: Option<&str>,
    ) -> Result<Vec<QaSampleRecord>, StoreError> {
        on_pool!(self, m, p => m::qa_samples(p, period).await)
    }

    /// One QA sample.
    pub async fn qa_sample(&self, sample_id: &str) -> Result<Option<QaSampleRecord>, StoreError> {
        on_pool!(self, m, p => m::qa_sample(p, sample_id).await)
    }

    /// Records a QA verdict once; `false` if already reviewed or unknown.
    pub async fn record_qa_verdict(
        &self,
        sample_id: &str,
        reviewer: &str,
        verdict: &str,
        notes: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        on_pool!(self, m, p => m::qa_verdict(p, sample_id, reviewer, verdict, notes, now).await)
    }

    /// Marks an alert id as a canary (before it is submitted).
    pub async fn insert_canary(&self, c: &CanaryRecord) -> Result<(), StoreError> {
        on_pool!(self, m, p => m::insert_canary(p, c).await)
    }

    /// The canary record of an alert id, if it is one.
    pub async fn canary(&self, alert_id: &str) -> Result<Option<CanaryRecord>, StoreError> {
        on_pool!(self, m, p => m::canary(p, alert_id).await)
    }

    /// All canaries.
    pub async fn canaries(&self) -> Result<Vec<CanaryRecord>, StoreError> {
        on_pool!(self, m, p => m::canaries(p).await)
    }

    /// Records the disposition a canary got.
    pub async fn check_canary(
        &self,
        alert_id: &str,
        disposition: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, m, p => m::check_canary(p, alert_id, disposition, now).await)
    }
}

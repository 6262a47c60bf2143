//! Analyst review service: the one place where review actions are checked (with the pure
//! rules of [`crate::domain::review`]), written (through [`crate::store::review`]) and
//! recorded in the audit hash chain. The HTTP API, the CLI and the browser pages all call
//! this, so a rule cannot be skipped by choosing another door.
//!
//! Every action is an audit entry with actor `user:<id>` and action `review.<name>`, whose
//! payload names the case and what changed. The entry is appended after the row is written;
//! if the node dies in between, the row exists without its entry (the case history in the
//! row's document still records it).

pub mod auth;
pub mod canary;
pub mod feedback;
/// Review metrics live with the engine's registry, in [`crate::metrics::review`].
pub use crate::metrics::review as metrics;
pub mod oidc;
pub mod qa;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::review::four_eyes::{require, require_worker};
use crate::domain::review::{
    CaseAction, CaseState, HitDisposition, Outcome, ReviewError, SarClockConfig, SlaStatus,
    UserRole, check_approval, check_close_request,
};
use crate::metrics::Metrics;
use crate::store::review::{
    CaseDoc, CaseEvent, CaseFilter, CaseRecord, CommentRecord, SessionRecord, UserRecord,
};
use crate::store::{Store, StoreError};

/// Dispositions that open a case.
pub const ESCALATED: [&str; 4] = [
    "ESCALATE_L2",
    "ESCALATE_L3",
    "ESCALATE_SAR",
    "BLOCK_TRANSACTION",
];

/// Why a review request failed.
#[derive(Debug, thiserror::Error)]
pub enum ReviewServiceError {
    /// A review rule refused the action (four-eyes, state machine, closing requirements).
    #[error(transparent)]
    Rule(#[from] ReviewError),
    /// Not logged in, or the session has ended.
    #[error("not authenticated")]
    Unauthenticated,
    /// The user is disabled or lacks a role.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// No such case, user or sample.
    #[error("{0} not found")]
    NotFound(String),
    /// Someone else changed the case first; reload and retry.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Too many failed logins for this user id: password checks pause for a while.
    #[error("too many failed logins; retry in {retry_after_seconds} s")]
    TooManyAttempts {
        /// Seconds until a login may be tried again.
        retry_after_seconds: u64,
    },
    /// Bad input, naming the field.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Review settings (defaults; an embedder or the CLI may change them).
#[derive(Debug, Clone)]
pub struct ReviewConfig {
    /// SAR deadlines.
    pub sar: SarClockConfig,
    /// Session lifetime.
    pub session_hours: i64,
    /// How long a pull-next lock holds a case.
    pub lock_minutes: i64,
    /// Confidence of the QA upper bound.
    pub qa_confidence: f64,
    /// SPRT parameters of QA periods.
    pub sprt: crate::domain::review::SprtConfig,
    /// How long a canary may stay undecided before it counts as failed.
    pub canary_deadline_seconds: i64,
    /// Service levels per priority.
    pub sla: crate::domain::review::SlaTable,
    /// Failed logins of one user id within the window after which passwords are not checked.
    pub login_max_failures: usize,
    /// The window of failed logins, in minutes.
    pub login_window_minutes: i64,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        Self {
            sar: SarClockConfig::default(),
            session_hours: 8,
            lock_minutes: 30,
            qa_confidence: 0.95,
            sprt: crate::domain::review::SprtConfig::default(),
            canary_deadline_seconds: 300,
            sla: crate::domain::review::SlaTable::default(),
            login_max_failures: 5,
            login_window_minutes: 15,
        }
    }
}

impl ReviewConfig {
    /// The review settings of a configuration (`SAR_*`, `REVIEW_*`, `QA_CONFIDENCE`,
    /// `CANARY_DEADLINE_SECONDS`, `LOGIN_*`); the SPRT parameters keep their defaults.
    pub fn from_settings(s: &crate::Settings) -> Self {
        Self {
            sar: SarClockConfig {
                file_days: i64::from(s.sar_file_days),
                file_days_no_suspect: i64::from(s.sar_file_days_no_suspect),
                continuing_review_days: i64::from(s.sar_continuing_review_days),
                continuing_file_days: i64::from(s.sar_continuing_file_days),
                ..SarClockConfig::default()
            },
            session_hours: i64::from(s.review_session_hours),
            lock_minutes: i64::from(s.review_lock_minutes),
            // Validated with the settings; a table that does not parse keeps the defaults.
            sla: crate::domain::review::SlaTable::parse(&s.review_sla_hours).unwrap_or_default(),
            qa_confidence: s.qa_confidence,
            canary_deadline_seconds: i64::from(s.canary_deadline_seconds),
            login_max_failures: s.login_max_failures as usize,
            login_window_minutes: i64::from(s.login_window_minutes),
            ..Self::default()
        }
    }
}

/// A case as the API shows it: the record plus its clocks.
#[derive(Debug, Clone, Serialize)]
pub struct CaseView {
    /// The case.
    #[serde(flatten)]
    pub case: CaseRecord,
    /// SLA warn time.
    pub sla_warn_at: DateTime<Utc>,
    /// SLA breach time.
    pub sla_breach_at: DateTime<Utc>,
    /// SLA status now (`ok` for finished cases).
    pub sla_status: SlaStatus,
    /// SAR filing deadline, once suspicion is determined.
    pub sar_due_at: Option<DateTime<Utc>>,
    /// SAR clock status now.
    pub sar_status: Option<SlaStatus>,
    /// Continuing-activity review date after a filing.
    pub continuing_review_due_at: Option<DateTime<Utc>>,
    /// Continuing SAR deadline after a filing.
    pub continuing_file_due_at: Option<DateTime<Utc>>,
}

/// At most this many other alerts are linked to a case (the customer's oldest unfinished).
const MAX_LINKED_ALERTS: i64 = 200;

/// The review service. Cheap to clone.
#[derive(Clone)]
pub struct Review {
    store: Arc<Store>,
    metrics: Metrics,
    cfg: ReviewConfig,
}

impl std::fmt::Debug for Review {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Review").field("cfg", &self.cfg).finish()
    }
}

fn actor_of(user: &UserRecord) -> String {
    format!("user:{}", user.user_id)
}

fn invalid(field: &'static str, message: impl Into<String>) -> ReviewServiceError {
    ReviewServiceError::Invalid {
        field,
        message: message.into(),
    }
}

fn check_id(field: &'static str, v: &str) -> Result<(), ReviewServiceError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            "1-64 characters of letters, digits, '.', '_', '-', '@'",
        ))
    }
}

/// Screening hit ids (`list:entry_id`) of a stored alert's JSON.
fn hits_of(raw_json: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(raw_json).unwrap_or(Value::Null);
    v.pointer("/screening/matches")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .map(|h| {
                    format!(
                        "{}:{}",
                        h["list"].as_str().unwrap_or(""),
                        h["entry_id"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Review {
    /// A service on `store`, recording metrics in `metrics`.
    pub fn new(store: Arc<Store>, metrics: Metrics, cfg: ReviewConfig) -> Self {
        Self {
            store,
            metrics,
            cfg,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ReviewConfig {
        &self.cfg
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn audit(
        &self,
        actor: &str,
        action: &str,
        alert_id: Option<&str>,
        payload: Value,
    ) -> Result<(), ReviewServiceError> {
        self.metrics.review().action(action);
        self.store
            .record_audit_event(actor, &format!("review.{action}"), alert_id, payload)
            .await?;
        Ok(())
    }

    // ---- users and sessions ----

    /// Creates a local user. `by` is who does it (`cli:<os user>` or `user:<admin>`).
    pub async fn add_user(
        &self,
        by: &str,
        user_id: &str,
        display_name: &str,
        roles: BTreeSet<UserRole>,
        password: Option<&str>,
    ) -> Result<UserRecord, ReviewServiceError> {
        check_id("user_id", user_id)?;
        if roles.is_empty() {
            return Err(invalid("roles", "at least one role is required"));
        }
        let now = Utc::now();
        let user = UserRecord {
            user_id: user_id.into(),
            display_name: if display_name.trim().is_empty() {
                user_id.into()
            } else {
                display_name.trim().into()
            },
            roles,
            password_hash: password.map(auth::hash_password).transpose()?,
            oidc_subject: None,
            disabled: false,
            created_at: now,
            updated_at: now,
        };
        if !self.store.insert_user(&user).await? {
            return Err(ReviewServiceError::Conflict(format!(
                "user_id: `{user_id}` exists"
            )));
        }
        let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
        self.audit(
            by,
            "user_add",
            None,
            json!({"user_id": user_id, "roles": roles}),
        )
        .await?;
        Ok(user)
    }

    /// Disables a user and ends their sessions.
    pub async fn disable_user(&self, by: &str, user_id: &str) -> Result<(), ReviewServiceError> {
        let mut u = self.user(user_id).await?;
        u.disabled = true;
        u.updated_at = Utc::now();
        self.store.update_user(&u).await?;
        self.store.delete_user_sessions(user_id).await?;
        self.audit(by, "user_disable", None, json!({"user_id": user_id}))
            .await
    }

    /// Replaces a user's roles, ending their sessions (so the new roles apply at once).
    pub async fn set_roles(
        &self,
        by: &str,
        user_id: &str,
        roles: BTreeSet<UserRole>,
    ) -> Result<UserRecord, ReviewServiceError> {
        if roles.is_empty() {
            return Err(invalid("roles", "at least one role is required"));
        }
        let mut u = self.user(user_id).await?;
        u.roles = roles;
        u.updated_at = Utc::now();
        self.store.update_user(&u).await?;
        self.store.delete_user_sessions(user_id).await?;
        let names: Vec<&str> = u.roles.iter().map(|r| r.as_str()).collect();
        self.audit(
            by,
            "user_roles",
            None,
            json!({"user_id": user_id, "roles": names}),
        )
        .await?;
        Ok(u)
    }

    /// Sets a new password (and re-enables the user), ending their sessions.
    pub async fn reset_password(
        &self,
        by: &str,
        user_id: &str,
        password: &str,
    ) -> Result<(), ReviewServiceError> {
        let mut u = self.user(user_id).await?;
        u.password_hash = Some(auth::hash_password(password)?);
        u.disabled = false;
        u.updated_at = Utc::now();
        self.store.update_user(&u).await?;
        self.store.delete_user_sessions(user_id).await?;
        self.audit(by, "user_reset", None, json!({"user_id": user_id}))
            .await
    }

    /// A user by id.
    pub async fn user(&self, user_id: &str) -> Result<UserRecord, ReviewServiceError> {
        self.store
            .user(user_id)
            .await?
            .ok_or_else(|| ReviewServiceError::NotFound(format!("user `{user_id}`")))
    }

    /// Checks a password and opens a session: `(token, session)`. The token goes into the
    /// cookie; only its hash is stored. Failures do not say whether the user exists. After
    /// `login_max_failures` failures of one user id within `login_window_minutes` (counted in
    /// the store, so across every node) the password is not even checked until the oldest of
    /// them leaves the window: [`ReviewServiceError::TooManyAttempts`].
    pub async fn login(
        &self,
        user_id: &str,
        password: &str,
    ) -> Result<(String, SessionRecord), ReviewServiceError> {
        let key: String = user_id.chars().take(64).collect();
        let now = Utc::now();
        let window = chrono::Duration::minutes(self.cfg.login_window_minutes.max(1));
        let max = self.cfg.login_max_failures.max(1);
        let failures = self.store.login_failures(&key, now - window).await?;
        if failures.len() >= max {
            let free_at = failures[failures.len() - max] + window;
            let retry_after_seconds = (free_at - now).num_seconds().max(1) as u64;
            tracing::warn!(
                failures = failures.len(),
                retry_after_seconds,
                "login refused: too many failed logins for one user id"
            );
            return Err(ReviewServiceError::TooManyAttempts {
                retry_after_seconds,
            });
        }
        let user = self.store.user(user_id).await?;
        let hash = user
            .as_ref()
            .and_then(|u| u.password_hash.clone())
            .unwrap_or_else(|| auth::dummy_hash().to_string());
        let ok = auth::verify_password(password, &hash);
        let user = match user {
            Some(u) if ok && u.password_hash.is_some() && !u.disabled => u,
            _ => {
                self.store
                    .record_login_failure(&key, now, now - window)
                    .await?;
                self.audit("auth", "login_failed", None, json!({"user_id": key}))
                    .await?;
                return Err(ReviewServiceError::Unauthenticated);
            }
        };
        if !failures.is_empty() {
            self.store.clear_login_failures(&key).await?;
        }
        self.open_session(user, "password").await
    }

    /// Opens a session for an authenticated user (local or OIDC).
    pub async fn open_session(
        &self,
        user: UserRecord,
        method: &str,
    ) -> Result<(String, SessionRecord), ReviewServiceError> {
        let token = auth::random_hex(32)?;
        let csrf = auth::random_hex(32)?;
        let now = Utc::now();
        let expires_at = now + Duration::hours(self.cfg.session_hours);
        self.store
            .insert_session(
                &crate::store::audit::sha256_hex(&token),
                &user.user_id,
                &csrf,
                now,
                expires_at,
            )
            .await?;
        self.audit(&actor_of(&user), "login", None, json!({"method": method}))
            .await?;
        Ok((
            token,
            SessionRecord {
                user,
                csrf_token: csrf,
                expires_at,
            },
        ))
    }

    /// The live session of a cookie token; disabled users have none.
    pub async fn session(&self, token: &str) -> Result<SessionRecord, ReviewServiceError> {
        let s = self
            .store
            .session(&crate::store::audit::sha256_hex(token), Utc::now())
            .await?
            .ok_or(ReviewServiceError::Unauthenticated)?;
        if s.user.disabled {
            return Err(ReviewServiceError::Unauthenticated);
        }
        Ok(s)
    }

    /// Ends a session.
    pub async fn logout(&self, token: &str, user: &UserRecord) -> Result<(), ReviewServiceError> {
        self.store
            .delete_session(&crate::store::audit::sha256_hex(token))
            .await?;
        self.audit(&actor_of(user), "logout", None, json!({})).await
    }

    // ---- cases ----

    /// Opens the case of an escalated decision (idempotent: `None` if it has one, if the
    /// disposition is not escalated, or if the alert is a canary). Alerts of the same
    /// customer with unfinished cases are linked both ways (the other direction when read).
    pub async fn open_case_for_decision(
        &self,
        alert_id: &str,
        disposition: &str,
        risk_score: Option<f64>,
    ) -> Result<Option<CaseRecord>, ReviewServiceError> {
        if !ESCALATED.contains(&disposition) || self.store.canary(alert_id).await?.is_some() {
            return Ok(None);
        }
        self.open_case(
            alert_id,
            "engine",
            disposition,
            risk_score,
            CaseState::Open,
            "engine",
        )
        .await
    }

    async fn open_case(
        &self,
        alert_id: &str,
        origin: &str,
        disposition: &str,
        risk_score: Option<f64>,
        state: CaseState,
        actor: &str,
    ) -> Result<Option<CaseRecord>, ReviewServiceError> {
        let Some(alert) = self.store.alert(alert_id).await? else {
            return Err(ReviewServiceError::NotFound(format!("alert `{alert_id}`")));
        };
        let now = Utc::now();
        // Links are stored one way (the new case names the customer's unfinished cases) and
        // completed when a case is read (`get`): rewriting every other open case of the
        // customer here made opening cost grow with the customer's backlog.
        let linked = self
            .store
            .open_case_alerts(&alert.customer_id, MAX_LINKED_ALERTS)
            .await?;
        let case = CaseRecord {
            case_id: format!("case-{alert_id}"),
            alert_id: alert_id.into(),
            customer_id: alert.customer_id.clone(),
            alert_type: alert.alert_type.clone(),
            priority: alert.priority.clone(),
            origin: origin.into(),
            state,
            assignee: None,
            locked_until: None,
            opened_at: now,
            updated_at: now,
            version: 1,
            doc: CaseDoc {
                engine_disposition: Some(disposition.into()),
                risk_score,
                hits: hits_of(&alert.raw_json),
                detected_at: Some(alert.created_at),
                linked_alerts: linked,
                history: vec![CaseEvent {
                    at: now,
                    actor: actor.into(),
                    action: "opened".into(),
                    detail: json!({"origin": origin, "disposition": disposition}),
                }],
                ..CaseDoc::default()
            },
        };
        if !self.store.insert_case(&case).await? {
            return Ok(None);
        }
        self.audit(
            actor,
            "case_open",
            Some(alert_id),
            json!({"case_id": case.case_id, "origin": origin, "disposition": disposition}),
        )
        .await?;
        Ok(Some(case))
    }

    /// Opens the cases missing for escalated decisions (after a crash between a decision and
    /// its case). Returns how many were opened.
    pub async fn open_missing_cases(&self) -> Result<usize, ReviewServiceError> {
        let mut n = 0;
        for alert_id in self.store.escalated_without_case().await? {
            let d = self.store.decision(&alert_id).await?.unwrap_or(Value::Null);
            let disposition = d["disposition"]
                .as_str()
                .unwrap_or("ESCALATE_L2")
                .to_string();
            if self
                .open_case_for_decision(&alert_id, &disposition, d["risk_score"].as_f64())
                .await?
                .is_some()
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The case with its clocks at `now`.
    pub fn view(&self, case: CaseRecord, now: DateTime<Utc>) -> CaseView {
        let sla = self.cfg.sla.for_priority(&case.priority);
        let (warn, breach) = sla.times(case.opened_at);
        let finished = case.state.is_terminal();
        let clocks = case.doc.determined_at.map(|d| {
            self.cfg
                .sar
                .clocks(d, case.doc.suspect_identified, case.doc.sar_filed_at)
        });
        CaseView {
            sla_warn_at: warn,
            sla_breach_at: breach,
            sla_status: if finished {
                SlaStatus::Ok
            } else {
                sla.status(case.opened_at, now)
            },
            sar_due_at: clocks.map(|c| c.file_due),
            sar_status: clocks
                .filter(|_| case.doc.sar_filed_at.is_none())
                .map(|c| self.cfg.sar.status(c.file_due, now)),
            continuing_review_due_at: clocks.and_then(|c| c.continuing_review_due),
            continuing_file_due_at: clocks.and_then(|c| c.continuing_file_due),
            case,
        }
    }

    /// Cases matching `filter`, with clocks. `sla` filters on the SLA status name.
    pub async fn list(
        &self,
        filter: &CaseFilter,
        sla: Option<&str>,
    ) -> Result<Vec<CaseView>, ReviewServiceError> {
        let now = Utc::now();
        Ok(self
            .store
            .cases(filter)
            .await?
            .into_iter()
            .map(|c| self.view(c, now))
            .filter(|v| sla.is_none_or(|s| v.sla_status.as_str() == s))
            .collect())
    }

    /// One case with clocks.
    pub async fn get(&self, case_id: &str) -> Result<CaseView, ReviewServiceError> {
        let mut case = self.case(case_id).await?;
        // Cases opened later for the same customer link to this one; show them here too.
        for other in self
            .store
            .open_case_alerts(&case.customer_id, MAX_LINKED_ALERTS)
            .await?
        {
            if other != case.alert_id && !case.doc.linked_alerts.contains(&other) {
                case.doc.linked_alerts.push(other);
            }
        }
        Ok(self.view(case, Utc::now()))
    }

    async fn case(&self, case_id: &str) -> Result<CaseRecord, ReviewServiceError> {
        self.store
            .case(case_id)
            .await?
            .ok_or_else(|| ReviewServiceError::NotFound(format!("case `{case_id}`")))
    }

    /// Reads a case, applies `f`, writes it back if nobody changed it meanwhile, and records
    /// `action` in the case history and the audit chain. `f` returns the audit payload.
    async fn mutate<F>(
        &self,
        case_id: &str,
        actor: &str,
        action: &str,
        f: F,
    ) -> Result<CaseRecord, ReviewServiceError>
    where
        F: FnOnce(&mut CaseRecord) -> Result<Value, ReviewServiceError>,
    {
        let before = self.case(case_id).await?;
        let mut case = before.clone();
        let detail = f(&mut case)?;
        let now = Utc::now();
        case.version = before.version + 1;
        case.updated_at = now;
        case.doc.history.push(CaseEvent {
            at: now,
            actor: actor.into(),
            action: action.into(),
            detail: detail.clone(),
        });
        if !self.store.update_case(&case, before.version).await? {
            return Err(ReviewServiceError::Conflict(format!(
                "case `{case_id}` was changed by someone else; reload it"
            )));
        }
        let mut payload = json!({
            "case_id": case_id,
            "from": before.state.name(),
            "to": case.state.name(),
            "version": case.version,
        });
        if let (Some(p), Value::Object(d)) = (payload.as_object_mut(), detail) {
            p.extend(d);
        }
        self.audit(actor, action, Some(&case.alert_id), payload)
            .await?;
        Ok(case)
    }

    fn active(user: &UserRecord) -> Result<(), ReviewServiceError> {
        if user.disabled {
            Err(ReviewServiceError::Forbidden("user is disabled".into()))
        } else {
            Ok(())
        }
    }

    /// Assigns a case. Analysts may take a case themselves; assigning it to someone else
    /// needs `supervisor`. `assignee: None` picks the least-loaded active analyst.
    pub async fn assign(
        &self,
        user: &UserRecord,
        case_id: &str,
        assignee: Option<&str>,
    ) -> Result<CaseRecord, ReviewServiceError> {
        Self::active(user)?;
        let target = match assignee {
            Some(a) if a == user.user_id => {
                require_worker(&user.roles, "assign")?;
                a.to_string()
            }
            Some(a) => {
                require(&user.roles, UserRole::Supervisor, "assign")?;
                let t = self.user(a).await?;
                if t.disabled || !crate::domain::review::four_eyes::can_work(&t.roles) {
                    return Err(invalid("assignee", format!("`{a}` cannot work cases")));
                }
                a.to_string()
            }
            None => {
                require(&user.roles, UserRole::Supervisor, "assign")?;
                self.least_loaded().await?
            }
        };
        let me = user.user_id.clone();
        self.mutate(case_id, &actor_of(user), "assign", move |c| {
            if c.state.is_terminal() {
                return Err(invalid("case_id", "the case is finished"));
            }
            if target == me {
                c.doc.workers.insert(me.clone());
            }
            c.assignee = Some(target.clone());
            c.locked_until = None;
            Ok(json!({"assignee": target}))
        })
        .await
    }

    async fn least_loaded(&self) -> Result<String, ReviewServiceError> {
        let load: BTreeMap<String, i64> = self.store.open_case_load().await?.into_iter().collect();
        self.store
            .users()
            .await?
            .into_iter()
            .filter(|u| !u.disabled && u.roles.contains(&UserRole::Analyst))
            .min_by_key(|u| {
                (
                    load.get(&u.user_id).copied().unwrap_or(0),
                    u.user_id.clone(),
                )
            })
            .map(|u| u.user_id)
            .ok_or_else(|| invalid("assignee", "no active analyst to assign to"))
    }

    /// Takes the best unassigned case (highest priority, oldest) and locks it to `user` for
    /// the lock time. Two users pulling at once never get the same case.
    pub async fn pull_next(
        &self,
        user: &UserRecord,
        alert_type: Option<&str>,
    ) -> Result<Option<CaseRecord>, ReviewServiceError> {
        Self::active(user)?;
        require_worker(&user.roles, "pull_next")?;
        let now = Utc::now();
        for case_id in self.store.pullable_cases(now, alert_type).await? {
            let me = user.user_id.clone();
            let until = now + Duration::minutes(self.cfg.lock_minutes);
            let r = self
                .mutate(&case_id, &actor_of(user), "pull_next", move |c| {
                    let free = c.assignee.is_none() || c.locked_until.is_some_and(|l| l <= now);
                    if !free {
                        return Err(ReviewServiceError::Conflict("taken".into()));
                    }
                    c.assignee = Some(me.clone());
                    c.locked_until = Some(until);
                    c.doc.workers.insert(me);
                    Ok(json!({"locked_until": until}))
                })
                .await;
            match r {
                Ok(c) => return Ok(Some(c)),
                Err(ReviewServiceError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// `start_review`, `escalate` or `reopen` (closing, filing, approving and rejecting have
    /// their own calls because they carry data and four-eyes checks).
    pub async fn transition(
        &self,
        user: &UserRecord,
        case_id: &str,
        action: &str,
        reason: Option<&str>,
    ) -> Result<CaseRecord, ReviewServiceError> {
        Self::active(user)?;
        let action = match action {
            "start_review" => CaseAction::StartReview,
            "escalate" => CaseAction::Escalate,
            "reopen" => CaseAction::Reopen,
            other => {
                return Err(invalid(
                    "action",
                    format!("unknown action {other:?} (start_review, escalate, reopen)"),
                ));
            }
        };
        require_worker(&user.roles, action.name())?;
        if action == CaseAction::Reopen && reason.is_none_or(|r| r.trim().is_empty()) {
            return Err(invalid("reason", "reopening a case needs a reason"));
        }
        let me = user.user_id.clone();
        let reason = reason.map(str::to_string);
        self.mutate(case_id, &actor_of(user), action.name(), move |c| {
            c.state = c.state.apply(action)?;
            c.doc.workers.insert(me.clone());
            if action == CaseAction::StartReview && c.assignee.is_none() {
                c.assignee = Some(me);
            }
            if action == CaseAction::Reopen {
                c.doc.approved_by = None;
            }
            Ok(json!({"reason": reason}))
        })
        .await
    }

    /// Records the disposition of one screening hit.
    pub async fn disposition_hit(
        &self,
        user: &UserRecord,
        case_id: &str,
        hit: &str,
        disposition: &str,
    ) -> Result<CaseRecord, ReviewServiceError> {
        Self::active(user)?;
        require_worker(&user.roles, "disposition_hit")?;
        let d = HitDisposition::parse(disposition)?;
        let me = user.user_id.clone();
        let hit = hit.to_string();
        self.mutate(case_id, &actor_of(user), "disposition_hit", move |c| {
            if !matches!(c.state, CaseState::InReview) {
                return Err(ReviewError::InvalidTransition {
                    state: c.state.name().into(),
                    action: "disposition_hit".into(),
                }
                .into());
            }
            if !c.doc.hits.contains(&hit) {
                return Err(invalid(
                    "hit",
                    format!("`{hit}` is not a hit of this alert"),
                ));
            }
            c.doc.hit_dispositions.insert(hit.clone(), d);
            c.doc.workers.insert(me);
            Ok(json!({"hit": hit, "disposition": d.as_str()}))
        })
        .await
    }

    /// Adds a comment (recorded in the audit chain as its hash, not its text).
    pub async fn comment(
        &self,
        user: &UserRecord,
        case_id: &str,
        body: &str,
    ) -> Result<CommentRecord, ReviewServiceError> {
        Self::active(user)?;
        let body = body.trim();
        if body.is_empty() || body.len() > 20_000 {
            return Err(invalid("body", "1 to 20000 characters"));
        }
        let case = self.case(case_id).await?;
        let c = CommentRecord {
            comment_id: auth::random_hex(8)?,
            case_id: case_id.into(),
            user_id: user.user_id.clone(),
            body: body.into(),
            created_at: Utc::now(),
        };
        self.store.insert_comment(&c).await?;
        self.audit(
            &actor_of(user),
            "comment",
            Some(&case.alert_id),
            json!({"case_id": case_id, "comment_id": c.comment_id,
                   "body_sha256": crate::store::audit::sha256_hex(body)}),
        )
        .await?;
        Ok(c)
    }

    /// Comments of a case.
    pub async fn comments(&self, case_id: &str) -> Result<Vec<CommentRecord>, ReviewServiceError> {
        Ok(self.store.comments(case_id).await?)
    }

    /// Asks for approval to close with `outcome`: needs a rationale, every hit dispositioned,
    /// and a reason when the outcome overrides a severe automated decision.
    pub async fn request_close(
        &self,
        user: &UserRecord,
        case_id: &str,
        outcome: &str,
        rationale: &str,
        override_reason: Option<&str>,
    ) -> Result<CaseRecord, ReviewServiceError> {
        Self::active(user)?;
        require_worker(&user.roles, "request_close")?;
        let outcome = Outcome::parse(outcome)?;
        if outcome == Outcome::TruePositiveSar {
            return Err(invalid(
                "outcome",
                "true_positive_sar is reached by filing a SAR (sar-request), which starts the SAR clock",
            ));
        }
        let me = user.user_id.clone();
        let (rationale, override_reason) =
            (rationale.to_string(), override_reason.map(str::to_string));
        self.mutate(case_id, &actor_of(user), "request_close", move |c| {
            check_close_request(
                outcome,
                &rationale,
                &c.doc.hits,
                &c.doc.hit_dispositions,
                c.doc.engine_disposition.as_deref(),
                override_reason.as_deref(),
            )?;
            c.state = c.state.apply(CaseAction::RequestClose { outcome })?;
            c.doc.rationale = Some(rationale.clone());
            c.doc.override_reason = override_reason.clone();
            c.doc.requested_by = Some(me.clone());
            c.doc.workers.insert(me);
            Ok(json!({"outcome": outcome.as_str(),
                      "rationale_sha256": crate::store::audit::sha256_hex(&rationale),
                      "override_reason": override_reason}))
        })
        .await
    }

    /// Asks for approval to file a SAR. Starts the SAR clock (determination time, now unless
    /// given) if not started.
    pub async fn request_sar(
        &self,
        user: &UserRecord,
        case_id: &str,
        rationale: &str,
        suspect_identified: bool,
        determined_at: Option<DateTime<Utc>>,
    ) -> Result<CaseRecord, ReviewServiceError> {
        Self::active(user)?;
        require_worker(&user.roles, "request_sar")?;
        let me = user.user_id.clone();
        let rationale = rationale.to_string();
        self.mutate(case_id, &actor_of(user), "request_sar", move |c| {
            check_close_request(
                Outcome::TruePositiveSar,
                &rationale,
                &c.doc.hits,
                &c.doc.hit_dispositions,
                None,
                None,
            )?;
            c.state = c.state.apply(CaseAction::RequestSar)?;
            let determined = c
                .doc
                .determined_at
                .or(determined_at)
                .unwrap_or_else(Utc::now);
            c.doc.determined_at = Some(determined);
            c.doc.suspect_identified = suspect_identified;
            c.doc.rationale = Some(rationale.clone());
            c.doc.requested_by = Some(me.clone());
            c.doc.workers.insert(me);
            Ok(
                json!({"determined_at": determined, "suspect_identified": suspect_identified,
                      "rationale_sha256": crate::store::audit::sha256_hex(&rationale)}),
            )
        })
        .await
    }

    /// Four-eyes approval of the pending request: the approver needs `reviewer` and must not
    /// have worked the case; no role relaxes this.
    pub async fn approve(
        &self,
        user: &UserRecord,
        case_id: &str,
        note: Option<&str>,
    ) -> Result<CaseRecord, ReviewServiceError> {
        Self::active(user)?;
        let me = user.user_id.clone();
        let roles = user.roles.clone();
        let note = note.map(str::to_string);
        self.mutate(case_id, &actor_of(user), "approve", move |c| {
            check_approval(&me, &roles, &c.doc.workers)?;
            c.state = c.state.apply(CaseAction::Approve)?;
            if c.state == CaseState::SarFiled {
                c.doc.sar_filed_at = Some(Utc::now());
            }
            c.doc.approved_by = Some(me.clone());
            c.locked_until = None;
            Ok(json!({"approver": me, "note": note, "outcome": c.state.outcome().map(|o| o.as_str())}))
        })
        .await
    }

    /// Sends the pending request back to review, with a reason; same four-eyes check.
    pub async fn reject(
        &self,
        user: &UserRecord,
        case_id: &str,
        reason: &str,
    ) -> Result<CaseRecord, ReviewServiceError> {
        Self::active(user)?;
        if reason.trim().is_empty() {
            return Err(invalid("reason", "a rejection needs a reason"));
        }
        let me = user.user_id.clone();
        let roles = user.roles.clone();
        let reason = reason.to_string();
        self.mutate(case_id, &actor_of(user), "reject", move |c| {
            check_approval(&me, &roles, &c.doc.workers)?;
            c.state = c.state.apply(CaseAction::Reject)?;
            c.doc.requested_by = None;
            Ok(json!({"reviewer": me, "reason": reason}))
        })
        .await
    }

    /// Recomputes the queue gauges (open cases per queue and SLA status, SAR overdue).
    pub async fn refresh_gauges(&self) -> Result<(), ReviewServiceError> {
        let now = Utc::now();
        let m = self.metrics.review();
        m.cases_open.clear();
        let mut overdue = 0;
        for state in [
            "open",
            "in_review",
            "escalated",
            "pending_approval",
            "reopened",
        ] {
            let f = CaseFilter {
                state: Some(state.into()),
                limit: Some(1000),
                ..CaseFilter::default()
            };
            for c in self.store.cases(&f).await? {
                let v = self.view(c, now);
                if v.sar_status == Some(SlaStatus::Breach) {
                    overdue += 1;
                }
                m.cases_open
                    .get_or_create(&metrics::QueueLabels {
                        alert_type: v.case.alert_type.clone(),
                        priority: v.case.priority.clone(),
                        sla: v.sla_status.as_str().into(),
                    })
                    .inc();
            }
        }
        m.sar_overdue.set(overdue);
        Ok(())
    }
}

/// Engine hook, called once a decision is persisted: opens a case when the disposition is
/// escalated. It runs as a task of its own, so the decision is not held up by the case's
/// writes (on SQLite they wait for the store's writer); closing the store waits for it. It never fails the decision; a case
/// it could not open (an error, or a crash first) is opened later by
/// [`Review::open_missing_cases`], which `serve` runs at start and every minute.
pub async fn on_decision(store: &Arc<Store>, metrics: &Metrics, decision: &crate::Decision) {
    let disposition = decision.disposition.as_str();
    if !store.supports_review() || !ESCALATED.contains(&disposition) {
        return;
    }
    // Opening a case reads no setting.
    let review = Review::new(store.clone(), metrics.clone(), ReviewConfig::default());
    let (alert_id, score) = (decision.alert_id.clone(), decision.risk_score);
    // Tracked by the store, whose close waits for it.
    store.spawn_follow_up(async move {
        if let Err(e) = review
            .open_case_for_decision(&alert_id, disposition, Some(score))
            .await
        {
            tracing::warn!(alert_id = %alert_id, error = %e, "could not open a review case; the next sweep will");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Settings;

    #[test]
    fn review_settings_are_read_and_checked() {
        let s = Settings {
            sar_file_days: 20,
            sar_file_days_no_suspect: 40,
            review_session_hours: 2,
            ..Settings::default()
        };
        s.validate().unwrap();
        let c = ReviewConfig::from_settings(&s);
        assert_eq!((c.sar.file_days, c.sar.file_days_no_suspect), (20, 40));
        assert_eq!(c.session_hours, 2);
        let bad = Settings {
            sar_file_days_no_suspect: 10,
            ..Settings::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("SAR_FILE_DAYS_NO_SUSPECT"), "{e}");
        let half_oidc = Settings {
            oidc_issuer: Some("https://idp.example".into()),
            ..Settings::default()
        };
        let e = half_oidc.validate().unwrap_err().to_string();
        assert!(e.contains("OIDC_CLIENT_ID"), "{e}");
    }
}

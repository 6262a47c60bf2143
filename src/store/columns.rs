//! Every stored column checked against the audit entry that vouches for it.
//!
//! The audit entries of an alert carry, in their hashed payloads and versions, the value of
//! every column of the rows they describe (large documents as their sha256). `verify` derives
//! each column's expected value from the entry and compares it with the stored one, so a plain
//! SQL `UPDATE` of any column of `alerts`, `decisions` or `step_journal` is caught and named
//! (table, row, column), even though the entry itself was not touched. Which payload key
//! vouches for which column is listed in `docs/audit.md`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::audit::{AuditRow, format_ts, sha256_canonical, sha256_hex};

/// A timestamp column as read: `Err` holds the stored text when it is not a timestamp.
pub(crate) type Ts = Result<DateTime<Utc>, String>;

/// The columns of an audit entry that vouch for a row.
#[derive(Debug, Clone)]
pub(crate) struct EntryCols {
    pub payload: String,
    pub versions: Option<String>,
    pub created_at: Ts,
}

/// The columns of an `alerts` row not checked by the content hashes.
#[derive(Debug, Clone)]
pub(crate) struct AlertCols {
    pub customer_id: String,
    pub alert_type: String,
    pub priority: String,
    pub status: String,
    pub created_at: Ts,
    pub received_at: Ts,
    pub updated_at: Ts,
}

/// The columns of a `decisions` row.
#[derive(Debug, Clone)]
pub(crate) struct DecisionCols {
    pub disposition: String,
    pub risk_score: f64,
    pub confidence: f64,
    pub requires_human_review: bool,
    pub policy_version: String,
    pub config_version: String,
    pub list_versions: String,
    pub decided_at: Ts,
    pub recorded_at: Ts,
}

/// Everything about an alert's rows that the SQL backends can check column by column.
#[derive(Debug, Clone)]
pub(crate) struct RecordColumns {
    pub alert: AlertCols,
    pub received_entry: Option<EntryCols>,
    pub decision: Option<DecisionCols>,
    pub decision_entry: Option<EntryCols>,
}

/// One `step_journal` row, every column as stored.
#[derive(Debug, Clone)]
pub(crate) struct StepCheckRow {
    pub id: i64,
    pub alert_id: String,
    pub step: String,
    pub attempt: i64,
    pub status: String,
    pub input_hash: String,
    pub output: String,
    pub provider: String,
    pub model: String,
    pub prompt_version: String,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub cost_usd: f64,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub policy_version: String,
    pub config_version: String,
    pub list_versions: String,
    pub recorded_at: Ts,
}

/// A stored column that disagrees with its audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mismatch {
    pub table: &'static str,
    pub alert_id: String,
    /// The row, in words (`alert X`, `step_journal id 7 (alert X, step S, attempt 0)`).
    pub row: String,
    pub column: &'static str,
    pub reason: String,
}

fn ts_text(t: &Ts) -> String {
    match t {
        Ok(t) => format_ts(*t),
        Err(raw) => format!("{raw} (not a timestamp)"),
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// The value the entry vouches for, as a string, for a message.
fn shown(v: Option<&Value>) -> String {
    v.map_or("nothing".into(), Value::to_string)
}

struct Checker<'a> {
    table: &'static str,
    alert_id: &'a str,
    row: String,
}

impl Checker<'_> {
    fn differs(&self, column: &'static str, stored: String, vouched: String) -> Mismatch {
        Mismatch {
            table: self.table,
            alert_id: self.alert_id.to_string(),
            row: self.row.clone(),
            column,
            reason: format!(
                "{} {}: column `{column}` holds {stored} but its audit entry vouches for {vouched}",
                self.table, self.row
            ),
        }
    }

    /// Compares a stored value with the entry's, both as JSON.
    fn eq(
        &self,
        column: &'static str,
        stored: Value,
        vouched: Option<&Value>,
    ) -> Result<(), Mismatch> {
        if vouched == Some(&stored) {
            Ok(())
        } else {
            Err(self.differs(column, stored.to_string(), shown(vouched)))
        }
    }

    fn ts(&self, column: &'static str, stored: &Ts, vouched: Option<&str>) -> Result<(), Mismatch> {
        match stored {
            Ok(t) if Some(format_ts(*t).as_str()) == vouched => Ok(()),
            _ => Err(self.differs(
                column,
                ts_text(stored),
                vouched.unwrap_or("nothing").to_string(),
            )),
        }
    }
}

/// The versions object of an entry: `{policy_version, config_version, list_versions}`.
fn versions_of(entry: &EntryCols) -> Value {
    entry.versions.as_deref().map(parse).unwrap_or(Value::Null)
}

fn check_versions(
    c: &Checker<'_>,
    versions: &Value,
    policy: &str,
    config: &str,
    lists: &str,
) -> Result<(), Mismatch> {
    c.eq(
        "policy_version",
        json!(policy),
        versions.get("policy_version"),
    )?;
    c.eq(
        "config_version",
        json!(config),
        versions.get("config_version"),
    )?;
    // Stored as JSON text: compared as the list it holds.
    let stored: Value = serde_json::from_str(lists).unwrap_or_else(|_| json!(lists));
    c.eq("list_versions", stored, versions.get("list_versions"))
}

/// Checks an alert's columns (and its decision's) against their `alert_received` and
/// `decision` entries. `raw_json` and `content_hash` are checked by the caller.
pub(crate) fn check_record(alert_id: &str, cols: &RecordColumns) -> Result<(), Mismatch> {
    let a = &cols.alert;
    let c = Checker {
        table: "alerts",
        alert_id,
        row: format!("alert `{alert_id}`"),
    };
    if let Some(received) = &cols.received_entry {
        let p = parse(&received.payload);
        c.eq("customer_id", json!(a.customer_id), p.get("customer_id"))?;
        c.eq("alert_type", json!(a.alert_type), p.get("alert_type"))?;
        c.eq("priority", json!(a.priority), p.get("priority"))?;
        c.ts(
            "created_at",
            &a.created_at,
            p.get("created_at").and_then(Value::as_str),
        )?;
        c.ts(
            "received_at",
            &a.received_at,
            p.get("received_at").and_then(Value::as_str),
        )?;
        let decided = cols.decision.is_some();
        let status = if decided { "decided" } else { "received" };
        if a.status != status {
            return Err(c.differs(
                "status",
                json!(a.status).to_string(),
                format!(
                    "{status:?} (the alert {} a decision)",
                    if decided { "has" } else { "has no" }
                ),
            ));
        }
        // Storage v2 writes `updated_at` with the admission (in the transaction of its
        // entry) and never updates the row; a v1 row of a decided alert holds the time of its
        // decision's entry instead.
        if let Ok(at) = &received.created_at {
            let admitted = c.ts("updated_at", &a.updated_at, Some(&format_ts(*at)));
            let v1_decided = match (&cols.decision_entry, decided) {
                (Some(d), true) => match &d.created_at {
                    Ok(t) => c
                        .ts("updated_at", &a.updated_at, Some(&format_ts(*t)))
                        .is_ok(),
                    Err(_) => false,
                },
                _ => false,
            };
            if !v1_decided {
                admitted?;
            }
        }
    }
    if let (Some(d), Some(entry)) = (&cols.decision, &cols.decision_entry) {
        let c = Checker {
            table: "decisions",
            alert_id,
            row: format!("of alert `{alert_id}`"),
        };
        let p = parse(&entry.payload);
        c.eq("disposition", json!(d.disposition), p.get("disposition"))?;
        c.eq("risk_score", json!(d.risk_score), p.get("risk_score"))?;
        c.eq("confidence", json!(d.confidence), p.get("confidence"))?;
        c.eq(
            "requires_human_review",
            json!(d.requires_human_review),
            p.get("requires_human_review"),
        )?;
        c.ts(
            "decided_at",
            &d.decided_at,
            p.get("decided_at").and_then(Value::as_str),
        )?;
        check_versions(
            &c,
            &versions_of(entry),
            &d.policy_version,
            &d.config_version,
            &d.list_versions,
        )?;
        if let Ok(t) = &entry.created_at {
            c.ts("recorded_at", &d.recorded_at, Some(&format_ts(*t)))?;
        }
    }
    Ok(())
}

/// Payload key of a `step` entry -> the `step_journal` column it vouches for.
const STEP_KEYS: [(&str, &str); 13] = [
    ("step", "step"),
    ("attempt", "attempt"),
    ("status", "status"),
    ("input_hash", "input_hash"),
    ("output_sha256", "output"),
    ("provider", "provider"),
    ("model", "model"),
    ("prompt_version", "prompt_version"),
    ("tokens_in", "tokens_in"),
    ("tokens_out", "tokens_out"),
    ("cost_usd", "cost_usd"),
    ("latency_ms", "latency_ms"),
    ("error", "error"),
];

/// What a journal row's `step` entry must say, derived from the row.
fn step_payload_of(r: &StepCheckRow) -> Value {
    let output = match serde_json::from_str::<Value>(&r.output) {
        Ok(v) => sha256_canonical(&v),
        Err(_) => sha256_hex(&r.output),
    };
    json!({
        "step": r.step,
        "attempt": r.attempt,
        "status": r.status,
        "input_hash": r.input_hash,
        "output_sha256": output,
        "provider": r.provider,
        "model": r.model,
        "prompt_version": r.prompt_version,
        "tokens_in": r.tokens_in,
        "tokens_out": r.tokens_out,
        "cost_usd": r.cost_usd,
        "latency_ms": r.latency_ms,
        "error": r.error,
    })
}

/// A `step` entry as the values it vouches for.
struct Vouched {
    payload: Value,
    versions: Value,
    created_at: Option<String>,
}

fn vouched(e: &AuditRow) -> Vouched {
    Vouched {
        payload: parse(&e.payload),
        versions: e.versions.as_deref().map(parse).unwrap_or(Value::Null),
        created_at: e.created_at.as_ref().ok().map(|t| format_ts(*t)),
    }
}

/// The first column of `r` that `v` does not vouch for.
fn step_mismatch(r: &StepCheckRow, v: &Vouched) -> Result<(), Mismatch> {
    let c = Checker {
        table: "step_journal",
        alert_id: &r.alert_id,
        row: format!(
            "id {} (alert `{}`, step `{}`, attempt {})",
            r.id, r.alert_id, r.step, r.attempt
        ),
    };
    let derived = step_payload_of(r);
    for (key, column) in STEP_KEYS {
        let stored = derived.get(key).cloned().unwrap_or(Value::Null);
        if column == "output" {
            if v.payload.get(key) != Some(&stored) {
                return Err(c.differs(
                    "output",
                    format!("a document with sha256 {stored}"),
                    format!("sha256 {}", shown(v.payload.get(key))),
                ));
            }
            continue;
        }
        c.eq(column, stored, v.payload.get(key))?;
    }
    check_versions(
        &c,
        &v.versions,
        &r.policy_version,
        &r.config_version,
        &r.list_versions,
    )?;
    c.ts("recorded_at", &r.recorded_at, v.created_at.as_deref())
}

/// Matches every journal row with a `step` entry of its alert that vouches for all its columns;
/// names the first row and column that has none. `entries` are the `step` entries of the same
/// alerts.
pub(crate) fn check_steps(rows: &[StepCheckRow], entries: &[AuditRow]) -> Result<(), Mismatch> {
    let mut by_alert: HashMap<&str, Vec<(Vouched, bool)>> = HashMap::new();
    for e in entries {
        if let Some(id) = e.alert_id.as_deref() {
            by_alert.entry(id).or_default().push((vouched(e), false));
        }
    }
    let mut unmatched = Vec::new();
    // First every row that some unused entry vouches for entirely.
    for r in rows {
        let candidates = by_alert.entry(r.alert_id.as_str()).or_default();
        match candidates
            .iter_mut()
            .find(|(v, used)| !*used && step_mismatch(r, v).is_ok())
        {
            Some((_, used)) => *used = true,
            None => unmatched.push(r),
        }
    }
    // Then say what is wrong with the first row left: compared with the unused entry of the
    // same step and attempt (else of the same step), the column that differs.
    if let Some(r) = unmatched.first() {
        let candidates = by_alert.get(r.alert_id.as_str());
        let unused = || candidates.into_iter().flatten().filter(|(_, used)| !*used);
        let same = |v: &Vouched, key: &str, stored: Value| v.payload.get(key) == Some(&stored);
        let best = unused()
            .find(|(v, _)| {
                same(v, "step", json!(r.step))
                    && same(v, "attempt", json!(r.attempt))
                    && same(v, "status", json!(r.status))
            })
            .or_else(|| unused().find(|(v, _)| same(v, "step", json!(r.step))))
            .or_else(|| unused().next());
        return Err(match best {
            Some((v, _)) => step_mismatch(r, v).err().unwrap_or_else(|| Mismatch {
                table: "step_journal",
                alert_id: r.alert_id.clone(),
                row: format!("id {}", r.id),
                column: "step",
                reason: format!("step_journal id {}: no audit entry vouches for it", r.id),
            }),
            None => Mismatch {
                table: "step_journal",
                alert_id: r.alert_id.clone(),
                row: format!("id {}", r.id),
                column: "id",
                reason: format!(
                    "step_journal id {} (alert `{}`, step `{}`): no `step` audit entry vouches \
                     for this row (inserted behind the store's back)",
                    r.id, r.alert_id, r.step
                ),
            },
        });
    }
    // Entries left without a row: a journal row was deleted.
    for (alert_id, list) in &by_alert {
        if let Some((v, _)) = list.iter().find(|(_, used)| !*used) {
            return Err(Mismatch {
                table: "step_journal",
                alert_id: alert_id.to_string(),
                row: format!("of alert `{alert_id}`"),
                column: "id",
                reason: format!(
                    "step_journal: the row of alert `{alert_id}` step {} attempt {} recorded in \
                     the audit trail is missing",
                    shown(v.payload.get("step")),
                    shown(v.payload.get("attempt"))
                ),
            });
        }
    }
    Ok(())
}

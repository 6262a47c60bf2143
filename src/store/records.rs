//! The records the store accepts and returns.
//!
//! These are plain data: validation of the alert itself happens before it reaches the store
//! (see `crate::domain::alert`); the store only checks what its schema depends on.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Alert status: admitted, no decision yet.
pub const STATUS_RECEIVED: &str = "received";
/// Alert status: a decision has been recorded.
pub const STATUS_DECIDED: &str = "decided";
/// Journal status of a step that produced its full result.
pub const STEP_COMPLETED: &str = "completed";
/// Journal status of a step that produced a degraded (fallback) result.
pub const STEP_DEGRADED: &str = "degraded";

/// An alert to admit, exactly as received plus the columns the store indexes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// The idempotency key.
    pub alert_id: String,
    /// The request body exactly as received; stored byte for byte.
    pub raw_json: String,
    /// sha256 hex of the canonical JSON of the parsed alert, computed by the caller
    /// (see [`crate::store::audit::sha256_canonical`]); decides Duplicate vs Conflict.
    pub content_hash: String,
    /// Customer identifier, indexed for customer history.
    pub customer_id: String,
    /// Alert type as its wire name, e.g. `SANCTIONS`.
    pub alert_type: String,
    /// Priority as its wire name, e.g. `HIGH`.
    pub priority: String,
    /// When the source raised the alert.
    pub created_at: DateTime<Utc>,
    /// When this engine received it; retention counts from here.
    pub received_at: DateTime<Utc>,
}

/// Versions of the policy, configuration and lists in force when a record was produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVersions {
    /// Version of the triage policy.
    pub policy_version: String,
    /// Version (hash) of the loaded configuration.
    pub config_version: String,
    /// Versions of the screening lists, e.g. `OFAC_SDN@2024-05-01`.
    pub list_versions: Vec<String>,
}

/// One step of the pipeline, as journalled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Alert the step belongs to.
    pub alert_id: String,
    /// Step name: `data_enrichment`, `risk_scoring`, `context_builder`, `decision_maker`,
    /// `supervisor_check`.
    pub step: String,
    /// Attempt number, counted by the engine.
    pub attempt: u32,
    /// [`STEP_COMPLETED`] or [`STEP_DEGRADED`].
    pub status: String,
    /// Hash of the step's input, so a replay can be checked against the original run.
    pub input_hash: String,
    /// The step's output.
    pub output: Value,
    /// Model provider, or `rules` for deterministic steps.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Prompt template version.
    pub prompt_version: String,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Cost of the call in US dollars.
    pub cost_usd: f64,
    /// Wall-clock latency of the step.
    pub latency_ms: u64,
    /// Why the step degraded, if it did.
    pub error: Option<String>,
    /// Versions in force.
    pub versions: AuditVersions,
}

/// The final decision on an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Alert decided.
    pub alert_id: String,
    /// Disposition, e.g. `AUTO_CLEAR`, `ESCALATE`.
    pub disposition: String,
    /// Risk score.
    pub risk_score: f64,
    /// Confidence of the decision.
    pub confidence: f64,
    /// Whether a human must review it.
    pub requires_human_review: bool,
    /// The full decision document returned to callers.
    pub decision: Value,
    /// Versions in force.
    pub versions: AuditVersions,
    /// When the engine decided.
    pub decided_at: DateTime<Utc>,
}

/// Result of [`crate::store::Store::admit`].
#[derive(Debug, Clone, PartialEq)]
pub enum AdmitOutcome {
    /// New alert, stored.
    Inserted,
    /// Same alert id and same content hash already stored; carries its decision if any.
    Duplicate {
        /// The stored decision, if the alert has been decided.
        decision: Option<Value>,
    },
    /// Same alert id with a different content hash; nothing was stored.
    Conflict {
        /// Content hash of the alert already stored under that id.
        existing_content_hash: String,
    },
}

/// Result of [`crate::store::Store::record_decision`].
#[derive(Debug, Clone, PartialEq)]
pub enum DecisionOutcome {
    /// The decision was stored.
    Inserted,
    /// The alert already had a decision; it is returned unchanged and nothing was written.
    AlreadyDecided(Value),
}

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredAlert {
    /// The idempotency key.
    pub alert_id: String,
    /// The body exactly as received.
    pub raw_json: String,
    /// Content hash given at admission.
    pub content_hash: String,
    /// Customer identifier.
    pub customer_id: String,
    /// Alert type.
    pub alert_type: String,
    /// Priority.
    pub priority: String,
    /// [`STATUS_RECEIVED`] or [`STATUS_DECIDED`].
    pub status: String,
    /// When the source raised it.
    pub created_at: DateTime<Utc>,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// Last status change.
    pub updated_at: DateTime<Utc>,
}

/// An alert with no decision, to resume after a restart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnfinishedAlert {
    /// The alert as stored.
    pub alert: StoredAlert,
    /// Its completed steps, in journal order; a resumed run skips these.
    pub completed_steps: Vec<StepRecord>,
}

/// One entry of an audit hash chain, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Chain the entry belongs to (the node id of the writer).
    pub chain_id: String,
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// Alert concerned, if any.
    pub alert_id: Option<String>,
    /// Who acted: `ingest`, `engine`, `retention`, or a user.
    pub actor: String,
    /// What happened: `alert_received`, `step`, `decision`, `purge`, ...
    pub action: String,
    /// Details of the action.
    pub payload: Value,
    /// Versions in force, when relevant.
    pub versions: Option<AuditVersions>,
    /// When the entry was written, truncated to microseconds.
    pub created_at: DateTime<Utc>,
    /// Hash of the previous entry (64 zeros for the first).
    pub prev_hash: String,
    /// sha256 hex of `prev_hash + "\n" + canonical JSON of this entry without hashes`.
    pub hash: String,
}

/// Where a chain restarts after a purge removed its prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditAnchor {
    /// Chain.
    pub chain_id: String,
    /// Last removed seq.
    pub seq: i64,
    /// Hash of the last removed entry; the next entry's `prev_hash`.
    pub hash: String,
}

/// The first problem [`crate::store::Store::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyFailure {
    /// Chain of the bad entry; `None` when the problem is a record without a usable entry.
    pub chain_id: Option<String>,
    /// Seq of the bad entry (or of the missing one).
    pub seq: Option<i64>,
    /// Alert the entry or record belongs to, if known.
    pub alert_id: Option<String>,
    /// What is wrong.
    pub reason: String,
    /// Table of the bad row, when a stored column disagrees with what its audit entry vouches
    /// for (`alerts`, `decisions`, `step_journal`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<&'static str>,
    /// The column that disagrees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<&'static str>,
}

/// Result of [`crate::store::Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// True when nothing is wrong.
    pub ok: bool,
    /// Chains examined.
    pub chains: u64,
    /// Audit entries whose hash was recomputed.
    pub entries_checked: u64,
    /// Alerts and decisions checked against their audit entries.
    pub records_checked: u64,
    /// The first problem, if any.
    pub failure: Option<VerifyFailure>,
}

/// Result of [`crate::store::Store::purge`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Alerts received before this instant were eligible.
    pub cutoff: DateTime<Utc>,
    /// Alerts removed.
    pub alerts: u64,
    /// Decisions removed.
    pub decisions: u64,
    /// Journal rows removed.
    pub steps: u64,
    /// Audit entries removed.
    pub audit_entries: u64,
    /// Old alerts kept because they have no decision yet.
    pub kept_undecided: u64,
    /// Old alerts kept because their audit entries are not yet in a removable chain prefix.
    pub kept_interleaved: u64,
    /// Anchors written (one per chain whose prefix was removed).
    pub anchors: Vec<AuditAnchor>,
}

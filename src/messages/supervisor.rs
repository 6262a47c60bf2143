//! Messages of the Supervisor.

use std::sync::Arc;

use actix::Message;
use chrono::{DateTime, Utc};
use tokio::sync::OwnedSemaphorePermit;

use crate::domain::alert::Alert;
use crate::domain::decision::Decision;
use crate::error::TriageError;
use crate::protocol::AgentHealth;
use crate::store::StepRecord;

/// Triage one admitted alert to its decision.
#[derive(Debug)]
pub struct TriageAlert {
    /// The validated alert.
    pub alert: Arc<Alert>,
    /// The alert as received (stored verbatim).
    pub raw: Arc<str>,
    /// SHA-256 of the alert's canonical JSON: the idempotency fingerprint.
    pub content_hash: String,
    /// When the engine received it.
    pub received_at: DateTime<Utc>,
    /// The admission permit, released when the alert is decided or fails.
    pub permit: OwnedSemaphorePermit,
    /// On resume: the steps already journalled, which are not run again.
    pub resume: Option<Vec<StepRecord>>,
    /// Told once the alert row is committed (or found already stored), before the agents
    /// start: what an ingress waits for before answering "accepted".
    pub admitted: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Message for TriageAlert {
    type Result = Result<Decision, TriageError>;
}

/// Ask for every agent's health.
#[derive(Debug, Clone, Copy)]
pub struct GetHealth;

impl Message for GetHealth {
    type Result = Vec<AgentHealth>;
}

/// Stop one agent (operators, tests); the supervisor restarts it under its policy.
#[derive(Debug, Clone, Copy)]
pub struct StopAgentOf(pub crate::domain::AgentKind);

impl Message for StopAgentOf {
    type Result = ();
}

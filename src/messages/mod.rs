//! Typed actix messages, one file per agent's message family, plus the envelope every step
//! message carries (attempt, deadline, cancellation, trace span).

pub mod context;
pub mod control;
pub mod decision;
pub mod enrichment;
pub mod scoring;
pub mod supervisor;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::alert::Alert;
use crate::llm::LlmError;

/// What every step message carries besides its input.
#[derive(Debug, Clone)]
pub struct StepEnvelope {
    /// The alert being triaged.
    pub alert: Arc<Alert>,
    /// 1-based attempt number.
    pub attempt: u32,
    /// The agent must give up by then.
    pub deadline: Instant,
    /// Cancelled when the caller stops waiting (timeout, shutdown): the agent drops the work.
    pub cancel: CancellationToken,
    /// The alert's trace span, so agent spans join the alert's trace.
    pub span: tracing::Span,
}

/// Provenance of a step's output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMeta {
    /// Provider (`deterministic` when no model was involved).
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Prompt version, empty when no prompt was used.
    pub prompt_version: String,
    /// Tokens sent.
    pub tokens_in: u64,
    /// Tokens received.
    pub tokens_out: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
    /// Notes on partial degradation inside the step (e.g. model output rejected, fell back).
    pub notes: Vec<String>,
}

impl StepMeta {
    /// Provenance of a step's deterministic fallback (no model was involved).
    pub fn fallback() -> Self {
        Self {
            provider: crate::actors::data_enrichment::DETERMINISTIC.into(),
            model: "fallback".into(),
            ..Default::default()
        }
    }
}

/// A step's successful answer.
#[derive(Debug, Clone)]
pub struct StepReply<O> {
    /// The output.
    pub output: O,
    /// Its provenance.
    pub meta: StepMeta,
}

/// Why a step attempt failed, classified for the retry policy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AgentError {
    /// The attempt overran its timeout; the work was cancelled.
    #[error("timed out")]
    Timeout,
    /// The caller cancelled the work.
    #[error("cancelled")]
    Cancelled,
    /// The request's work panicked. Only this request failed; the agent is not restarted. A
    /// second panic on the same input is deterministic and not retried.
    #[error("agent panicked: {0}")]
    Panicked(String),
    /// The agent's mailbox is closed (it stopped or crashed); it is being restarted.
    #[error("agent stopped")]
    Stopped,
    /// The agent is between restarts.
    #[error("agent restarting")]
    Restarting,
    /// The agent exceeded its restart limit and is marked failed.
    #[error("agent failed: restart limit reached")]
    Failed,
    /// A model call failed.
    #[error("model: {0}")]
    Llm(#[from] LlmError),
    /// The step's input cannot be processed (deterministic: never retried).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A data source failed.
    #[error("data source: {0}")]
    Source(String),
    /// A remote agent (over RabbitMQ) failed, or the broker could not carry the call.
    #[error("remote agent: {message}")]
    Remote {
        /// What failed, as the worker or the client reported it.
        message: String,
        /// Whether another attempt may succeed.
        retryable: bool,
    },
}

impl AgentError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            AgentError::Timeout
            | AgentError::Panicked(_)
            | AgentError::Stopped
            | AgentError::Restarting
            | AgentError::Source(_) => true,
            AgentError::Llm(e) => e.is_retryable(),
            AgentError::Remote { retryable, .. } => *retryable,
            AgentError::Cancelled | AgentError::Failed | AgentError::InvalidInput(_) => false,
        }
    }

    /// Delay the failing dependency asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AgentError::Llm(e) => e.retry_after(),
            _ => None,
        }
    }

    /// Short kind label for metrics and journal entries.
    pub fn kind(&self) -> &'static str {
        match self {
            AgentError::Timeout => "timeout",
            AgentError::Cancelled => "cancelled",
            AgentError::Panicked(_) => "panic",
            AgentError::Stopped => "stopped",
            AgentError::Restarting => "restarting",
            AgentError::Failed => "failed",
            AgentError::Llm(_) => "llm",
            AgentError::Source(_) => "source",
            AgentError::InvalidInput(_) => "invalid_input",
            AgentError::Remote { .. } => "remote",
        }
    }
}

/// Result type of every step message.
pub type StepResult<O> = Result<StepReply<O>, AgentError>;

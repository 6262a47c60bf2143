//! The step protocol: what a caller and an agent exchange for one step, whether the agent runs
//! in this process (an actix actor) or on a worker (over RabbitMQ). A leaf module: it imports
//! only the pure domain (and std/serde/tokio-level crates), so agents, the message queue, the
//! model clients and metrics can all use it without importing each other.
//!
//! Holds the envelope ([`StepEnvelope`]), step provenance ([`StepMeta`]), the reply and error
//! types ([`StepReply`], [`AgentError`], [`LlmError`]) and agent health ([`AgentHealth`]).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::assessment::context::CaseContext;
use crate::assessment::scoring::RiskAssessment;
use crate::domain::AgentKind;
use crate::domain::alert::Alert;
use crate::domain::facts::EnrichmentFacts;

/// Provider name recorded for steps that involve no model.
pub const DETERMINISTIC: &str = "deterministic";

/// A provider failure, classified for the retry policy. Messages never carry API keys.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// The call took too long.
    #[error("model call timed out")]
    Timeout,
    /// The provider asked us to slow down.
    #[error("rate limited by the provider")]
    RateLimited {
        /// How long the provider asked us to wait.
        retry_after: Option<Duration>,
    },
    /// The provider failed or is overloaded (5xx).
    #[error("provider error (status {status})")]
    Server {
        /// HTTP status.
        status: u16,
    },
    /// The provider refused our credentials.
    #[error("provider rejected the credentials")]
    Unauthorized,
    /// The provider rejected the request as malformed.
    #[error("provider rejected the request: {0}")]
    BadRequest(String),
    /// The answer could not be used.
    #[error("model output unusable: {0}")]
    Malformed(String),
    /// The provider could not be reached.
    #[error("provider unreachable: {0}")]
    Transport(String),
    /// The provider's daily token or cost budget is spent: no call is made until the next
    /// UTC day (never retried; the step degrades).
    #[error("daily budget of provider {0} exhausted")]
    BudgetExhausted(String),
}

impl LlmError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LlmError::Timeout
                | LlmError::RateLimited { .. }
                | LlmError::Server { .. }
                | LlmError::Transport(_)
        )
    }

    /// Delay the provider asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

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
    /// Tokens and cost of every model call made for this step, over all its attempts,
    /// whatever becomes of the step (a degraded step's calls are still paid for).
    pub spend: Spend,
}

/// What the model calls of one step cost so far: shared by the step's attempts and the
/// providers they call, so calls whose answers were rejected or abandoned are counted too.
#[derive(Debug, Clone, Default)]
pub struct Spend(Arc<std::sync::Mutex<Ledger>>);

/// The totals and the (provider, model) that took the calls.
type Ledger = (SpendTotals, Option<(String, String)>);

/// Totals of a [`Spend`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpendTotals {
    /// Calls that reported usage.
    pub calls: u64,
    /// Tokens sent.
    pub tokens_in: u64,
    /// Tokens received.
    pub tokens_out: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
}

impl Spend {
    /// Adds one call's usage.
    pub fn add(&self, tokens_in: u64, tokens_out: u64, cost_usd: f64) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let t = &mut g.0;
        t.calls += 1;
        t.tokens_in += tokens_in;
        t.tokens_out += tokens_out;
        if cost_usd.is_finite() && cost_usd > 0.0 {
            t.cost_usd += cost_usd;
        }
    }

    /// The totals so far.
    pub fn totals(&self) -> SpendTotals {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Names the provider and model that took the calls (the last one named wins).
    pub fn bill_to(&self, provider: &str, model: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).1 =
            Some((provider.to_string(), model.to_string()));
    }

    /// (provider, model) that took the calls, when a call was made.
    pub fn source(&self) -> Option<(String, String)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).1.clone()
    }
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
    /// Notes on partial degradation inside the step (e.g. model output rejected and repaired);
    /// recorded as the step's contribution note (`repaired: ...`) in the decision.
    pub notes: Vec<String>,
}

impl StepMeta {
    /// Provenance of a step's deterministic fallback (no model was involved).
    pub fn fallback() -> Self {
        Self {
            provider: DETERMINISTIC.into(),
            model: "fallback".into(),
            ..Default::default()
        }
    }

    /// This provenance with the usage of every call of the step (all attempts, including
    /// answers that were rejected and calls of a step that finally degraded).
    pub fn with_spend(mut self, spend: &Spend) -> Self {
        let t = spend.totals();
        if t.calls > 0 {
            self.tokens_in = self.tokens_in.max(t.tokens_in);
            self.tokens_out = self.tokens_out.max(t.tokens_out);
            self.cost_usd = self.cost_usd.max(t.cost_usd);
        }
        self
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

/// Health of one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Serving.
    Running,
    /// Between a crash and its restart.
    Restarting,
    /// Past its restart limit: alerts take the degraded path.
    Failed,
}

/// A snapshot of an agent's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentHealth {
    /// Which agent.
    pub agent: AgentKind,
    /// Its status.
    pub status: AgentStatus,
    /// Restarts since the engine started.
    pub restarts_total: u64,
    /// Instance number (0 for the first).
    pub generation: u64,
}

/// The earlier steps' outputs a step needs (empty for enrichment).
#[derive(Debug, Clone, Default)]
pub struct StepInputs {
    /// Enrichment facts.
    pub facts: Option<EnrichmentFacts>,
    /// Risk assessment.
    pub risk: Option<RiskAssessment>,
    /// Case context.
    pub context: Option<CaseContext>,
    /// Steps that degraded before this one.
    pub degraded_steps: Vec<String>,
}

/// Where an agent's steps run when they do not run in this process: implemented by the
/// RabbitMQ remote agent (`crate::mq::remote::RemoteAgent`). The engine hands one to each agent
/// listed in `REMOTE_AGENTS`; the agents hold it as `Arc<dyn RemoteSteps>`, so they never import
/// the message queue, and the message queue never imports them.
pub trait RemoteSteps: Send + Sync {
    /// Runs one step elsewhere; the output comes back as JSON (see [`call_remote`]). Dropping
    /// the future forgets the call.
    fn call_json(
        &self,
        env: &StepEnvelope,
        inputs: StepInputs,
    ) -> futures_util::future::LocalBoxFuture<'static, StepResult<serde_json::Value>>;
}

/// Runs one step through `remote` and reads its output as `O`.
pub fn call_remote<O: serde::de::DeserializeOwned + 'static>(
    remote: &dyn RemoteSteps,
    env: &StepEnvelope,
    inputs: StepInputs,
) -> impl std::future::Future<Output = StepResult<O>> + 'static {
    let call = remote.call_json(env, inputs);
    async move {
        let reply = call.await?;
        serde_json::from_value(reply.output)
            .map(|output| StepReply {
                output,
                meta: reply.meta,
            })
            .map_err(|e| AgentError::Remote {
                message: format!("unreadable output from worker: {e}"),
                retryable: true,
            })
    }
}

/// One step of one alert, as sent to a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRequest {
    /// Which agent must run it.
    pub agent: AgentKind,
    /// The alert.
    pub alert: Alert,
    /// 1-based attempt number, as the supervisor counts them.
    pub attempt: u32,
    /// Time left for the step when it was sent, in milliseconds.
    pub timeout_ms: u64,
    /// Enrichment facts (scoring, context, decision).
    #[serde(default)]
    pub facts: Option<EnrichmentFacts>,
    /// Risk assessment (context, decision).
    #[serde(default)]
    pub risk: Option<RiskAssessment>,
    /// Case context (decision).
    #[serde(default)]
    pub context: Option<CaseContext>,
    /// Steps that degraded before this one (decision).
    #[serde(default)]
    pub degraded_steps: Vec<String>,
}

/// A worker's answer to one [`StepRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepResponse {
    /// The step's output and provenance.
    Ok {
        /// The output (the agent's output type as JSON).
        output: serde_json::Value,
        /// Provenance.
        meta: StepMeta,
    },
    /// The step failed on the worker.
    Failed {
        /// The error kind (as in the `agent_step_errors` metric).
        kind: String,
        /// What failed.
        message: String,
        /// Whether another attempt may succeed.
        retryable: bool,
    },
}

impl StepResponse {
    /// The response for a local step result.
    pub fn from_result<O: Serialize>(result: StepResult<O>) -> Self {
        match result {
            Ok(reply) => match serde_json::to_value(&reply.output) {
                Ok(output) => StepResponse::Ok {
                    output,
                    meta: reply.meta,
                },
                Err(e) => StepResponse::failed("encode", e, false),
            },
            Err(e) => StepResponse::Failed {
                kind: e.kind().to_string(),
                message: e.to_string(),
                retryable: e.is_retryable(),
            },
        }
    }

    /// A failure response.
    pub fn failed(kind: &str, message: impl std::fmt::Display, retryable: bool) -> Self {
        StepResponse::Failed {
            kind: kind.to_string(),
            message: message.to_string(),
            retryable,
        }
    }

    /// Back to the step result the supervisor expects.
    pub fn into_result<O: serde::de::DeserializeOwned>(self) -> StepResult<O> {
        match self {
            StepResponse::Ok { output, meta } => serde_json::from_value(output)
                .map(|output| StepReply { output, meta })
                .map_err(|e| AgentError::Remote {
                    message: format!("unreadable output from worker: {e}"),
                    retryable: true,
                }),
            StepResponse::Failed {
                kind,
                message,
                retryable,
            } => Err(match kind.as_str() {
                // Kept as a panic so the caller can tell a deterministic one (twice on the
                // same input) and stop retrying it.
                "panic" => AgentError::Panicked(message),
                _ => AgentError::Remote {
                    message: format!("{kind}: {message}"),
                    retryable,
                },
            }),
        }
    }
}

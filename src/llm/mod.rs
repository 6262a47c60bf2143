//! Language-model providers behind one trait, and the versioned prompts.
//!
//! The default provider is [`offline::OfflineProvider`]: deterministic text built from the
//! structured facts, so the engine runs with no API key and the same input always gives the
//! same output. Every response records the provider, model and prompt version that made it.

pub mod anthropic;
pub mod check;
pub mod gate;
pub mod http;
pub mod offline;
pub mod openai;
pub mod pii;
pub use crate::pricing;
pub mod prompts;
pub mod registry;
pub use crate::secret;
pub mod structured;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::assessment::context::TimelineEvent;
use crate::assessment::scoring::RiskAssessment;
use crate::domain::AgentKind;
use crate::domain::decision::Disposition;
use crate::domain::facts::EnrichmentFacts;

/// What the agent asks for, in structured form. Remote providers receive `prompt`; the
/// offline provider reads the structured task directly.
#[derive(Debug, Clone)]
pub enum LlmTask {
    /// An investigation narrative for the ContextBuilder.
    Narrative {
        /// The facts (shared with the agent, not copied per call).
        facts: std::sync::Arc<EnrichmentFacts>,
        /// The risk assessment.
        risk: std::sync::Arc<RiskAssessment>,
        /// The timeline.
        timeline: Vec<TimelineEvent>,
    },
    /// A disposition proposal for the DecisionMaker, as JSON.
    Decision {
        /// The deterministic policy floor.
        floor: Disposition,
        /// Confidence derived from the evidence.
        confidence: f64,
        /// The policy's reasons.
        reasons: Vec<String>,
        /// Evidence ids the proposal may cite.
        evidence_ids: Vec<String>,
    },
    /// The supervisor's second look at a finished decision.
    Check {
        /// What the deterministic consistency check found (empty: consistent).
        findings: Vec<String>,
    },
}

/// One request to a provider.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    /// The agent asking.
    pub agent: AgentKind,
    /// Model to use.
    pub model: String,
    /// Version of the prompt template.
    pub prompt_version: String,
    /// System prompt.
    pub system: String,
    /// User prompt, with untrusted text fenced.
    pub prompt: String,
    /// The structured task.
    pub task: LlmTask,
    /// Output limit.
    pub max_tokens: u32,
    /// JSON schema of the expected answer, for providers with a structured-output mode.
    pub schema: Option<serde_json::Value>,
    /// Personal data in the prompt, pseudonymised before an external provider sees it.
    pub sensitive: Vec<pii::Sensitive>,
    /// Where the call's usage is recorded, whether or not its answer is used (the step's
    /// ledger; a fresh one when nobody reads it).
    pub spend: Spend,
}

/// One response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmResponse {
    /// The text produced.
    pub text: String,
    /// Provider name.
    pub provider: String,
    /// Model that answered.
    pub model: String,
    /// Tokens sent.
    pub tokens_in: u64,
    /// Tokens received.
    pub tokens_out: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
}

/// A provider failure (defined in the step protocol; re-exported here).
pub use crate::protocol::LlmError;
/// A step's usage ledger (defined in the step protocol; re-exported here).
pub use crate::protocol::{Spend, SpendTotals};

/// A language-model provider.
pub trait LlmProvider: Send + Sync + 'static {
    /// Short provider name recorded on each step (`offline`, `anthropic`, `openai`).
    fn name(&self) -> &str;

    /// Whether the provider reads the text prompt. The offline provider reads the structured
    /// task only, so the engine skips building the prompt for it.
    fn needs_prompt(&self) -> bool {
        true
    }

    /// Runs one completion. The returned future must stop all work when dropped: that is how
    /// timeouts cancel a call.
    fn complete(&self, request: LlmRequest) -> BoxFuture<'static, Result<LlmResponse, LlmError>>;
}

//! The output: one explainable decision per alert.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::AgentKind;
use super::facts::{Factor, ScreeningHit};

/// What happens to the alert. Ordered by severity: a later variant is more severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Disposition {
    /// Closed as a false positive without human review.
    AutoClear,
    /// Escalated to an analyst.
    #[serde(rename = "ESCALATE_L2")]
    EscalateL2,
    /// Escalated to a senior investigator.
    #[serde(rename = "ESCALATE_L3")]
    EscalateL3,
    /// A suspicious activity report filing is recommended.
    EscalateSar,
    /// Confirmed sanctions hit: the transaction is to be blocked.
    BlockTransaction,
}

impl Disposition {
    /// All dispositions, least severe first.
    pub const ALL: [Disposition; 5] = [
        Disposition::AutoClear,
        Disposition::EscalateL2,
        Disposition::EscalateL3,
        Disposition::EscalateSar,
        Disposition::BlockTransaction,
    ];

    /// The wire name (`AUTO_CLEAR`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::AutoClear => "AUTO_CLEAR",
            Disposition::EscalateL2 => "ESCALATE_L2",
            Disposition::EscalateL3 => "ESCALATE_L3",
            Disposition::EscalateSar => "ESCALATE_SAR",
            Disposition::BlockTransaction => "BLOCK_TRANSACTION",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == name)
    }
}

impl std::fmt::Display for Disposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Risk level derived from the score and the configured thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RiskLevel {
    /// Below the medium threshold.
    Low,
    /// From the medium threshold.
    Medium,
    /// From the high threshold.
    High,
    /// From the severe threshold.
    Severe,
}

/// How urgently a human should look at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EscalationPriority {
    /// No human review needed.
    None,
    /// Routine queue.
    Low,
    /// Normal queue.
    Medium,
    /// Within the day.
    High,
    /// Immediately.
    Urgent,
}

/// What one agent contributed to the decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentContribution {
    /// Which agent.
    pub agent: AgentKind,
    /// Provider that produced the step (`offline`, `deterministic`, `anthropic`, ...).
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Version (content hash) of the prompt used, if any.
    pub prompt_version: String,
    /// Wall time of the successful attempt.
    pub latency_ms: u64,
    /// Attempts made (1 = first try succeeded).
    pub attempts: u32,
    /// Tokens sent.
    pub tokens_in: u64,
    /// Tokens received.
    pub tokens_out: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
    /// The step fell back to the deterministic path or failed.
    pub degraded: bool,
    /// Why it degraded, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Whether the step was taken from the journal on resume rather than run again.
    #[serde(default)]
    pub resumed: bool,
}

/// The decision on one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The alert decided.
    pub alert_id: String,
    /// What happens to it.
    pub disposition: Disposition,
    /// Confidence in the disposition, 0..=1, derived from the evidence.
    pub confidence: f64,
    /// Risk score 0..=100.
    pub risk_score: f64,
    /// Level from the configured thresholds.
    pub risk_level: RiskLevel,
    /// The contributions that made the score.
    pub factors: Vec<Factor>,
    /// Every screening candidate with its class, discount reason and per-field breakdown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub screening_hits: Vec<ScreeningHit>,
    /// Why, in words, citing evidence ids.
    pub rationale: String,
    /// Evidence ids the rationale cites.
    pub evidence_ids: Vec<String>,
    /// Whether a human must review it.
    pub requires_human_review: bool,
    /// How urgently.
    pub escalation_priority: EscalationPriority,
    /// What to do next.
    pub recommended_actions: Vec<String>,
    /// SAR filing deadline (30 days from detection) when a SAR is recommended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sar_filing_deadline: Option<NaiveDate>,
    /// Investigation narrative from the ContextBuilder.
    pub narrative: String,
    /// Per-agent contributions.
    pub agents: Vec<AgentContribution>,
    /// Tokens (in + out) over every model call of the decision.
    #[serde(default)]
    pub total_tokens: u64,
    /// Cost in US dollars over every model call of the decision (from the price table).
    #[serde(default)]
    pub total_cost_usd: f64,
    /// Whether any step degraded; when true the reasons say which and why.
    pub degraded: bool,
    /// Why the decision took a degraded path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub degradation_reasons: Vec<String>,
    /// Version of the policy function that bounded the decision.
    pub policy_version: String,
    /// Hash of the decision-relevant configuration.
    pub config_version: String,
    /// Versions of the reference lists used.
    pub list_versions: Vec<String>,
    /// Time from admission to decision.
    pub processing_time_ms: u64,
    /// When it was decided.
    pub decided_at: DateTime<Utc>,
}

/// The DecisionMaker's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionProposal {
    /// Final disposition: the policy floor raised by the model where it asked.
    pub disposition: Disposition,
    /// Final confidence: the evidence's, lowered by the model where it asked.
    pub confidence: f64,
    /// Rationale citing evidence ids.
    pub rationale: String,
    /// Evidence ids cited.
    pub evidence_ids: Vec<String>,
    /// The deterministic policy outcome (the floor).
    pub policy: super::policy::PolicyOutcome,
    /// What the model proposed before bounding, when a model answered usably.
    pub model_disposition: Option<Disposition>,
}

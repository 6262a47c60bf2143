//! Messages of the DecisionMaker agent.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{StepEnvelope, StepResult};
use crate::domain::context::CaseContext;
use crate::domain::decision::Disposition;
use crate::domain::facts::EnrichmentFacts;
use crate::domain::policy::PolicyOutcome;
use crate::domain::scoring::RiskAssessment;

/// Propose a disposition, bounded by policy.
#[derive(Debug)]
pub struct Decide {
    /// Envelope.
    pub env: StepEnvelope,
    /// The enrichment facts.
    pub facts: Arc<EnrichmentFacts>,
    /// The risk assessment.
    pub risk: Arc<RiskAssessment>,
    /// The case context.
    pub context: Arc<CaseContext>,
    /// Steps that degraded before this one.
    pub degraded_steps: Vec<String>,
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
    pub policy: PolicyOutcome,
    /// What the model proposed before bounding, when a model answered usably.
    pub model_disposition: Option<Disposition>,
}

impl actix::Message for Decide {
    type Result = StepResult<DecisionProposal>;
}

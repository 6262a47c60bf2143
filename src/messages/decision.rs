//! Messages of the DecisionMaker agent.

use std::sync::Arc;

use super::{StepEnvelope, StepResult};
use crate::assessment::context::CaseContext;
use crate::assessment::scoring::RiskAssessment;
use crate::domain::facts::EnrichmentFacts;

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

/// The DecisionMaker's output (defined in the domain; re-exported here).
pub use crate::domain::decision::DecisionProposal;

impl actix::Message for Decide {
    type Result = StepResult<DecisionProposal>;
}

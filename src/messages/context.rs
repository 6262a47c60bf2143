//! Messages of the ContextBuilder agent.

use std::sync::Arc;

use actix::Message;

use super::{StepEnvelope, StepResult};
use crate::assessment::context::CaseContext;
use crate::assessment::scoring::RiskAssessment;
use crate::domain::facts::EnrichmentFacts;

/// Build the timeline, narrative and guidance.
#[derive(Debug)]
pub struct BuildContext {
    /// Envelope.
    pub env: StepEnvelope,
    /// The enrichment facts.
    pub facts: Arc<EnrichmentFacts>,
    /// The risk assessment.
    pub risk: Arc<RiskAssessment>,
}

impl Message for BuildContext {
    type Result = StepResult<CaseContext>;
}

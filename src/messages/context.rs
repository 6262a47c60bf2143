//! Messages of the ContextBuilder agent.

use std::sync::Arc;

use actix::Message;

use super::{StepEnvelope, StepResult};
use crate::domain::context::CaseContext;
use crate::domain::facts::EnrichmentFacts;
use crate::domain::scoring::RiskAssessment;

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

//! Messages of the RiskScoring agent.

use std::sync::Arc;

use actix::Message;

use super::{StepEnvelope, StepResult};
use crate::assessment::scoring::RiskAssessment;
use crate::domain::facts::EnrichmentFacts;

/// Score an alert from its facts.
#[derive(Debug)]
pub struct Score {
    /// Envelope.
    pub env: StepEnvelope,
    /// The enrichment facts.
    pub facts: Arc<EnrichmentFacts>,
}

impl Message for Score {
    type Result = StepResult<RiskAssessment>;
}

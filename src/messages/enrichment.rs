//! Messages of the DataEnrichment agent.

use actix::Message;

use super::{StepEnvelope, StepResult};
use crate::domain::facts::EnrichmentFacts;

/// Establish the facts about an alert.
#[derive(Debug)]
pub struct Enrich {
    /// Envelope.
    pub env: StepEnvelope,
}

impl Message for Enrich {
    type Result = StepResult<EnrichmentFacts>;
}

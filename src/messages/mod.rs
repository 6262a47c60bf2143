//! Typed actix messages, one file per agent's message family, plus the envelope every step
//! message carries (attempt, deadline, cancellation, trace span).

pub mod context;
pub mod control;
pub mod decision;
pub mod enrichment;
pub mod scoring;
pub mod supervisor;

// The step protocol lives in the leaf module `crate::protocol`; re-exported here.
pub use crate::protocol::{AgentError, StepEnvelope, StepMeta, StepReply, StepResult};

//! Analyst review, as pure rules: the case state machine, the four-eyes rule, closing
//! requirements, SAR clocks, queue SLAs, and the statistics of QA sampling of auto-clears
//! (exact Clopper-Pearson bound, Wald SPRT, stratified sampling plan).
//!
//! Nothing here does I/O or reads configuration: the store, the HTTP API, the CLI and (later)
//! the browser pages all call these same functions, so the rules cannot differ between them.

pub mod case;
pub mod clocks;
pub mod four_eyes;
pub mod sampling;
pub mod stats;

pub use case::{CaseAction, CaseState, HitDisposition, Outcome, PendingRequest};
pub use clocks::{SarClockConfig, SarClocks, Sla, SlaStatus, SlaTable};
pub use four_eyes::{UserRole, check_approval, check_close_request};
pub use sampling::{Drawn, SampleItem, SamplingPlan, draw_stratified, period_bounds};
pub use stats::{SprtConfig, SprtDecision, SprtState, clopper_pearson_upper, sprt};

/// Why a review action is refused. Each message names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// The action is not allowed from the case's current state.
    #[error("action `{action}` is not allowed in state `{state}`")]
    InvalidTransition {
        /// The case's state.
        state: String,
        /// The refused action.
        action: String,
    },
    /// Four-eyes: the approver worked the case (or requested the approval).
    #[error("four-eyes: approver `{0}` worked this case and cannot approve it")]
    ApproverWorkedCase(String),
    /// The user lacks the role the action needs.
    #[error("role `{needed}` is required for `{action}`")]
    MissingRole {
        /// The role needed.
        needed: &'static str,
        /// The action.
        action: &'static str,
    },
    /// Closing needs a written rationale.
    #[error("rationale: a written rationale is required to close a case")]
    MissingRationale,
    /// Closing needs a disposition for every screening hit.
    #[error("hit_dispositions: screening hit `{0}` has no disposition")]
    UndispositionedHit(String),
    /// Overriding the engine's decision needs a reason.
    #[error(
        "override_reason: closing as `{outcome}` overrides the engine's `{disposition}` and needs a reason"
    )]
    OverrideNeedsReason {
        /// The requested outcome.
        outcome: String,
        /// The engine's disposition.
        disposition: String,
    },
    /// A value is out of range or unknown.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

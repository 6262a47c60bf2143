//! Panic isolation for the supervisor's own work: its check step and the deterministic
//! fallbacks. A panic there ends in a degraded, escalated outcome for that alert, never in an
//! alert left `received` (nor in a stopped supervisor).

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use super::agent::panic_message;
use crate::domain::decision::{Disposition, RiskLevel};
use crate::domain::policy::{self, PolicyOutcome};
use crate::messages::AgentError;
use crate::messages::decision::DecisionProposal;

/// Runs `f`; on a panic logs it and returns `or(panic message)` instead.
pub fn contain<T>(what: &str, f: impl FnOnce() -> T, or: impl FnOnce(String) -> T) -> T {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            let msg = panic_message(p.as_ref());
            tracing::error!(step = what, panic = %msg, "supervisor step panicked: contained");
            or(msg)
        }
    }
}

/// Awaits `fut`; a panic while polling it becomes [`AgentError::Panicked`].
pub async fn contain_async<T, E>(fut: impl Future<Output = Result<T, E>>) -> Result<T, AgentError>
where
    E: Into<AgentError>,
{
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r.map_err(Into::into),
        Err(p) => Err(AgentError::Panicked(panic_message(p.as_ref()))),
    }
}

/// The last-resort proposal when even the deterministic decision path panicked: escalate to
/// a person (L2, or `floor` if that is higher), with the reason in the rationale.
pub fn escalated_proposal(
    why: &str,
    floor: Disposition,
    evidence: Vec<String>,
) -> DecisionProposal {
    let disposition = floor.max(Disposition::EscalateL2);
    DecisionProposal {
        disposition,
        confidence: 0.0,
        rationale: format!("Escalated for review: the decision could not be computed ({why})."),
        evidence_ids: evidence,
        policy: PolicyOutcome {
            disposition,
            level: RiskLevel::Medium,
            reasons: vec![format!("decision path failed: {why}")],
            requires_human_review: true,
            escalation_priority: policy::escalation_priority(disposition, false),
            sar_filing_deadline: None,
            recommended_actions: Vec::new(),
            policy_version: policy::POLICY_VERSION.to_string(),
        },
        model_disposition: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contain_turns_a_panic_into_the_fallback() {
        let v = contain("t", || -> u32 { panic!("boom") }, |m| m.len() as u32);
        assert_eq!(v, 4);
        let p = escalated_proposal("x", Disposition::AutoClear, vec![]);
        assert_eq!(p.disposition, Disposition::EscalateL2);
        assert!(p.policy.requires_human_review);
    }
}

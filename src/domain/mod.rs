//! Pure domain logic: the alert and decision models, enrichment facts, features, the scorecard
//! and policy. Nothing here knows about actors, storage or I/O, nor about the screening and
//! typology engines (which build on these types), so every rule is testable alone.

pub mod alert;
pub mod decision;
pub mod facts;
pub mod features;
pub mod policy;
pub mod review;
pub mod scorecard;

use serde::{Deserialize, Serialize};

/// The four agents of the pipeline, in the order an alert visits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// Customer history, screening, jurisdiction risk, typologies.
    DataEnrichment,
    /// 0-100 score with per-factor contributions.
    RiskScoring,
    /// Timeline, narrative, investigation guidance.
    ContextBuilder,
    /// Disposition, confidence and rationale, bounded by policy.
    DecisionMaker,
    /// The supervisor's second-model check of the finished decision. Not an actor and not in
    /// [`AgentKind::ALL`]: a step the supervisor runs itself after the DecisionMaker.
    SupervisorCheck,
}

impl AgentKind {
    /// All agents in pipeline order.
    pub const ALL: [AgentKind; 4] = [
        AgentKind::DataEnrichment,
        AgentKind::RiskScoring,
        AgentKind::ContextBuilder,
        AgentKind::DecisionMaker,
    ];

    /// Stable snake_case name, used as the journal's step name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::DataEnrichment => "data_enrichment",
            AgentKind::RiskScoring => "risk_scoring",
            AgentKind::ContextBuilder => "context_builder",
            AgentKind::DecisionMaker => "decision_maker",
            AgentKind::SupervisorCheck => "supervisor_check",
        }
    }
}

impl std::fmt::Display for AgentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

//! Metrics of analyst review, registered in the engine's registry (see [`crate::metrics`]).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use crate::metrics::{ActionLabels, QueueLabels};

/// Review metric handles.
#[derive(Clone, Debug, Default)]
pub struct ReviewMetrics {
    /// Unfinished cases per queue and SLA status.
    pub cases_open: Family<QueueLabels, Gauge>,
    /// Unfinished cases whose SAR filing deadline has passed.
    pub sar_overdue: Gauge,
    /// Review actions done.
    pub actions: Family<ActionLabels, Counter>,
    /// QA reviews that found a missed auto-clear.
    pub qa_misses: Counter,
    /// QA periods whose SPRT decided "fail" (set by the last report).
    pub qa_periods_failed: Gauge,
    /// Canaries that were not escalated (or not decided in time) at the last check.
    pub canary_failures: Gauge,
}

impl ReviewMetrics {
    /// Exported names (see [`crate::metrics::Metrics::NAMES`]).
    pub const NAMES: &'static [&'static str] = &[
        "aml_triage_review_cases_open",
        "aml_triage_review_sar_overdue",
        "aml_triage_review_actions_total",
        "aml_triage_qa_misses_total",
        "aml_triage_qa_periods_failed",
        "aml_triage_canary_failures",
    ];

    /// Registers every family in `registry` (which carries the `aml_triage` prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "review_cases_open",
            "Unfinished review cases by queue and SLA status (ok, warn, breach)",
            m.cases_open.clone(),
        );
        registry.register(
            "review_sar_overdue",
            "Unfinished cases past their SAR filing deadline",
            m.sar_overdue.clone(),
        );
        registry.register(
            "review_actions",
            "Analyst review actions, by action",
            m.actions.clone(),
        );
        registry.register(
            "qa_misses",
            "Sampled auto-clears a QA reviewer found to be misses",
            m.qa_misses.clone(),
        );
        registry.register(
            "qa_periods_failed",
            "QA periods whose sequential test failed, at the last report",
            m.qa_periods_failed.clone(),
        );
        registry.register(
            "canary_failures",
            "Canary alerts not escalated (or not decided in time) at the last check",
            m.canary_failures.clone(),
        );
        m
    }

    /// Counts one review action.
    pub fn action(&self, action: &str) {
        self.actions
            .get_or_create(&ActionLabels {
                action: action.to_string(),
            })
            .inc();
    }
}

//! Prometheus metrics of one engine (prometheus-client).
//!
//! Design: each [`crate::Engine`] owns one [`Metrics`] (a registry plus typed handles, cheap to
//! clone). The supervisor records per-step and per-decision figures through the handle it gets
//! in [`crate::actors::supervisor::PipelineConfig`]; the engine records admission refusals;
//! the HTTP layer records requests. Figures that already live elsewhere (in-flight alerts,
//! agent restarts and status) are sampled when the registry is encoded, so the hot path does
//! not pay for them. A per-engine registry (not a process-global one) keeps several engines in
//! one process (tests, multi-tenant embedders) from mixing their counts.
//!
//! Every metric name starts with [`PREFIX`]; [`Metrics::NAMES`] lists the exported families
//! (the Grafana dashboard is checked against it).

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::error::TriageError;
use crate::protocol::{AgentHealth, AgentStatus};

pub mod review;

/// Prefix of every metric name.
pub const PREFIX: &str = "aml_triage";

/// Seconds; the agent-step and HTTP histograms use these so P50/P95/P99 can be read from
/// sub-millisecond deterministic steps up to model calls near the default 30 s timeout.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Labels: one agent.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabels {
    /// Agent name, e.g. `context_builder`.
    pub agent: String,
}

/// Labels: an agent and an error kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Agent name.
    pub agent: String,
    /// Error kind (`timeout`, `panic`, `llm`, ...).
    pub kind: String,
}

/// Labels: a screening list.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListLabels {
    /// List id, e.g. `OFAC_SDN`.
    pub list: String,
}

/// Labels: an outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Outcome, e.g. `swapped` or `refused`.
    pub outcome: String,
}

/// Labels: a disposition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DispositionLabels {
    /// Disposition, e.g. `ESCALATE_L2`.
    pub disposition: String,
}

/// Labels: a reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why.
    pub reason: String,
}

/// Labels: an agent, its provider and model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LlmLabels {
    /// Agent name.
    pub agent: String,
    /// Provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
}

/// Labels: token direction.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// Agent name.
    pub agent: String,
    /// Provider name.
    pub provider: String,
    /// `in` (prompt) or `out` (completion).
    pub direction: String,
}

/// Labels: an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Route pattern (`/v1/alerts/{id}`), never the raw path, to bound cardinality.
    pub route: String,
    /// Method.
    pub method: String,
    /// Status code.
    pub status: String,
}

/// Labels: an HTTP route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route pattern.
    pub route: String,
}

/// Labels: a cache lookup.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `historical` or `screening`.
    pub cache: String,
    /// `hit` or `miss`.
    pub result: String,
}

/// Per-agent step counts since start, for the agent state published to other nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentTally {
    /// Steps started.
    pub started: u64,
    /// Steps ended (completed or degraded).
    pub processed: u64,
    /// Failed attempts.
    pub failed: u64,
    /// Kind of the last failed attempt.
    pub last_error: Option<String>,
}

/// Labels: what the RabbitMQ bridge did with a message.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MqLabels {
    /// `published` (decision published, alert acked), `dead_lettered` (poison moved to the
    /// dead-letter queue), `requeued` (nacked for a later try), `reply` (remote step served).
    pub outcome: String,
    /// Why, for dead-lettered and requeued messages (`invalid_alert`, `conflict`, `busy`...);
    /// empty otherwise.
    pub reason: String,
}

/// Labels: a queue (alert type and priority).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// Alert type, e.g. `SANCTIONS`.
    pub alert_type: String,
    /// Priority, e.g. `HIGH`.
    pub priority: String,
    /// `ok`, `warn` or `breach`.
    pub sla: String,
}

/// Labels: a model provider.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// `anthropic` or `openai`.
    pub provider: String,
}

/// Labels: a review action.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// The action, e.g. `approve`.
    pub action: String,
}

struct Inner {
    registry: Registry,
    cache_requests: Family<CacheLabels, Counter>,
    lease_takeovers: Counter,
    tallies: Mutex<std::collections::HashMap<String, AgentTally>>,
    alerts_processed: Family<DispositionLabels, Counter>,
    alerts_failed: Family<ReasonLabels, Counter>,
    step_duration: Family<AgentLabels, Histogram>,
    step_errors: Family<ErrorLabels, Counter>,
    degraded_steps: Family<AgentLabels, Counter>,
    confidence: Histogram,
    risk_score: Histogram,
    in_flight: Gauge,
    admission_rejections: Family<ReasonLabels, Counter>,
    agent_restarts: Family<AgentLabels, Counter>,
    agent_status: Family<AgentLabels, Gauge>,
    llm_calls: Family<LlmLabels, Counter>,
    llm_tokens: Family<TokenLabels, Counter>,
    llm_cost: Family<LlmLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    llm_budget_exhausted: Family<ProviderLabels, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram>,
    mq_messages: Family<MqLabels, Counter>,
    list_age: Family<ListLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    list_reloads: Family<OutcomeLabels, Counter>,
    review: review::ReviewMetrics,
    /// Serialises sampling + encoding so two scrapes cannot double-count restarts.
    encode_lock: Mutex<()>,
}

/// The metrics handle. Clones share one registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Metrics {
    /// Exported metric names as they appear in the exposition (counters with `_total`,
    /// histograms as their base name: `_bucket`, `_sum` and `_count` follow from it).
    pub const NAMES: &'static [&'static str] = &[
        "aml_triage_alerts_processed_total",
        "aml_triage_alerts_failed_total",
        "aml_triage_agent_step_duration_seconds",
        "aml_triage_agent_step_errors_total",
        "aml_triage_agent_degraded_steps_total",
        "aml_triage_decision_confidence",
        "aml_triage_risk_score",
        "aml_triage_alerts_in_flight",
        "aml_triage_admission_rejections_total",
        "aml_triage_agent_restarts_total",
        "aml_triage_agent_status",
        "aml_triage_llm_calls_total",
        "aml_triage_llm_tokens_total",
        "aml_triage_llm_cost_usd_total",
        "aml_triage_llm_budget_exhausted_total",
        "aml_triage_http_requests_total",
        "aml_triage_http_request_duration_seconds",
        "aml_triage_cache_requests_total",
        "aml_triage_lease_takeovers_total",
        "aml_triage_mq_messages_total",
        "aml_triage_list_age_seconds",
        "aml_triage_list_reloads_total",
        // Analyst review: review::ReviewMetrics::NAMES.
        "aml_triage_review_cases_open",
        "aml_triage_review_sar_overdue",
        "aml_triage_review_actions_total",
        "aml_triage_qa_misses_total",
        "aml_triage_qa_periods_failed",
        "aml_triage_canary_failures",
    ];

    /// A fresh registry with every family registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let review = review::ReviewMetrics::register(&mut registry);
        let alerts_processed = Family::<DispositionLabels, Counter>::default();
        registry.register(
            "alerts_processed",
            "Alerts decided, by disposition",
            alerts_processed.clone(),
        );
        let alerts_failed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "alerts_failed",
            "Admitted alerts that ended without a decision (store failure, conflict, ...)",
            alerts_failed.clone(),
        );
        let step_duration =
            Family::<AgentLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "agent_step_duration_seconds",
            "Wall-clock time of one pipeline step including retries, by agent",
            step_duration.clone(),
        );
        let step_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "agent_step_errors",
            "Failed step attempts, by agent and error kind",
            step_errors.clone(),
        );
        let degraded_steps = Family::<AgentLabels, Counter>::default();
        registry.register(
            "agent_degraded_steps",
            "Steps that fell back to the deterministic path after their retries, by agent",
            degraded_steps.clone(),
        );
        let confidence =
            Histogram::new([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0]);
        registry.register(
            "decision_confidence",
            "Confidence of decisions",
            confidence.clone(),
        );
        let risk_score = Histogram::new([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 85.0, 100.0]);
        registry.register("risk_score", "Risk score of decisions", risk_score.clone());
        let in_flight = Gauge::default();
        registry.register(
            "alerts_in_flight",
            "Alerts admitted and not yet decided",
            in_flight.clone(),
        );
        let admission_rejections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "admission_rejections",
            "Alerts refused at admission (busy, shutting_down)",
            admission_rejections.clone(),
        );
        let agent_restarts = Family::<AgentLabels, Counter>::default();
        registry.register(
            "agent_restarts",
            "Agent restarts by the supervisor",
            agent_restarts.clone(),
        );
        let agent_status = Family::<AgentLabels, Gauge>::default();
        registry.register(
            "agent_status",
            "Agent status: 0 running, 1 restarting, 2 failed",
            agent_status.clone(),
        );
        let llm_calls = Family::<LlmLabels, Counter>::default();
        registry.register(
            "llm_calls",
            "Completed model calls, by agent, provider and model",
            llm_calls.clone(),
        );
        let llm_tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "llm_tokens",
            "Model tokens, by agent, provider and direction",
            llm_tokens.clone(),
        );
        let llm_cost = Family::<LlmLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "llm_cost_usd",
            "Model cost in US dollars, by agent, provider and model",
            llm_cost.clone(),
        );
        let llm_budget_exhausted = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "llm_budget_exhausted",
            "Step attempts refused because the provider's daily token or cost budget is spent",
            llm_budget_exhausted.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests, by route pattern, method and status",
            http_requests.clone(),
        );
        let http_duration =
            Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by route pattern",
            http_duration.clone(),
        );
        let cache_requests = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_requests",
            "Cache lookups, by cache (historical, screening) and result (hit, miss)",
            cache_requests.clone(),
        );
        let lease_takeovers = Counter::default();
        registry.register(
            "lease_takeovers",
            "Alerts this node took over after another node's lease expired",
            lease_takeovers.clone(),
        );
        let mq_messages = Family::<MqLabels, Counter>::default();
        registry.register(
            "mq_messages",
            "RabbitMQ messages handled, by outcome (published, dead_lettered, requeued, reply) and reason",
            mq_messages.clone(),
        );
        let list_age = Family::<ListLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "list_age_seconds",
            "Seconds since each loaded screening list's file was fetched (written)",
            list_age.clone(),
        );
        let list_reloads = Family::<OutcomeLabels, Counter>::default();
        // Both outcomes exist from the start, so `increase()` sees the first refusal.
        for outcome in ["swapped", "refused"] {
            list_reloads
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.to_string(),
                })
                .inc_by(0);
        }
        registry.register(
            "list_reloads",
            "Screening list reloads, by outcome (swapped, refused)",
            list_reloads.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                list_age,
                list_reloads,
                cache_requests,
                lease_takeovers,
                tallies: Mutex::new(std::collections::HashMap::new()),
                alerts_processed,
                alerts_failed,
                step_duration,
                step_errors,
                degraded_steps,
                confidence,
                risk_score,
                in_flight,
                admission_rejections,
                agent_restarts,
                agent_status,
                llm_calls,
                llm_tokens,
                llm_cost,
                llm_budget_exhausted,
                http_requests,
                http_duration,
                mq_messages,
                review,
                encode_lock: Mutex::new(()),
            }),
        }
    }

    /// The analyst-review metrics.
    pub fn review(&self) -> &review::ReviewMetrics {
        &self.inner.review
    }

    /// A decision was made.
    pub fn decided(&self, disposition: &str, confidence: f64, risk_score: f64) {
        let i = &self.inner;
        i.alerts_processed
            .get_or_create(&DispositionLabels {
                disposition: disposition.to_string(),
            })
            .inc();
        i.confidence.observe(confidence);
        i.risk_score.observe(risk_score);
    }

    /// A submitted alert ended without a decision.
    pub fn alert_failed(&self, e: &TriageError) {
        let reason = match e {
            TriageError::Invalid(_) => "invalid",
            TriageError::Conflict { .. } => "conflict",
            TriageError::InProgress { .. } => "in_progress",
            TriageError::Busy { .. } => "busy",
            TriageError::NotFound { .. } => "not_found",
            TriageError::ShuttingDown => "shutting_down",
            TriageError::Store(_) => "store",
            TriageError::Unavailable(_) => "unavailable",
        };
        self.inner
            .alerts_failed
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// A cache lookup: `cache` is `historical` or `screening`.
    pub fn cache_lookup(&self, cache: &str, hit: bool) {
        self.inner
            .cache_requests
            .get_or_create(&CacheLabels {
                cache: cache.to_string(),
                result: if hit { "hit" } else { "miss" }.to_string(),
            })
            .inc();
    }

    /// Cache lookups so far: `(hits, misses)` of `cache`.
    pub fn cache_counts(&self, cache: &str) -> (u64, u64) {
        let get = |result: &str| {
            self.inner
                .cache_requests
                .get_or_create(&CacheLabels {
                    cache: cache.to_string(),
                    result: result.to_string(),
                })
                .get()
        };
        (get("hit"), get("miss"))
    }

    /// This node took over an alert whose lease had expired.
    pub fn lease_takeover(&self) {
        self.inner.lease_takeovers.inc();
    }

    fn tally(&self, agent: &str, f: impl FnOnce(&mut AgentTally)) {
        let mut t = self.inner.tallies.lock().unwrap_or_else(|p| p.into_inner());
        f(t.entry(agent.to_string()).or_default());
    }

    /// A step of `agent` is about to call the agent (not taken from the journal).
    pub fn step_started(&self, agent: &str) {
        self.tally(agent, |t| t.started += 1);
    }

    /// Per-agent step counts since start.
    pub fn agent_tallies(&self) -> std::collections::HashMap<String, AgentTally> {
        self.inner
            .tallies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A step ended (after its retries); `degraded` when it took the fallback.
    pub fn step(&self, agent: &str, seconds: f64, degraded: bool) {
        self.tally(agent, |t| t.processed += 1);
        let labels = AgentLabels {
            agent: agent.to_string(),
        };
        self.inner
            .step_duration
            .get_or_create(&labels)
            .observe(seconds);
        if degraded {
            self.inner.degraded_steps.get_or_create(&labels).inc();
        }
    }

    /// One step attempt failed with an error of `kind`.
    pub fn step_error(&self, agent: &str, kind: &str) {
        self.tally(agent, |t| {
            t.failed += 1;
            t.last_error = Some(kind.to_string());
        });
        self.inner
            .step_errors
            .get_or_create(&ErrorLabels {
                agent: agent.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }

    /// A step used a model (from its journalled provenance).
    pub fn llm_call(
        &self,
        agent: &str,
        provider: &str,
        model: &str,
        tokens_in: u64,
        tokens_out: u64,
        cost_usd: f64,
    ) {
        let i = &self.inner;
        let labels = LlmLabels {
            agent: agent.to_string(),
            provider: provider.to_string(),
            model: model.to_string(),
        };
        i.llm_calls.get_or_create(&labels).inc();
        if cost_usd.is_finite() && cost_usd > 0.0 {
            i.llm_cost.get_or_create(&labels).inc_by(cost_usd);
        }
        for (direction, n) in [("in", tokens_in), ("out", tokens_out)] {
            i.llm_tokens
                .get_or_create(&TokenLabels {
                    agent: agent.to_string(),
                    provider: provider.to_string(),
                    direction: direction.to_string(),
                })
                .inc_by(n);
        }
    }

    /// A step attempt was refused because `provider`'s daily budget is spent.
    pub fn llm_budget_exhausted(&self, provider: &str) {
        self.inner
            .llm_budget_exhausted
            .get_or_create(&ProviderLabels {
                provider: provider.to_string(),
            })
            .inc();
    }

    /// An alert was refused at admission.
    pub fn admission_rejected(&self, reason: &str) {
        self.inner
            .admission_rejections
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// An HTTP request was answered.
    pub fn http_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let i = &self.inner;
        i.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_string(),
                method: method.to_string(),
                status: status.to_string(),
            })
            .inc();
        i.http_duration
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(seconds);
    }

    /// Records how old a loaded list is.
    pub fn list_age(&self, list: &str, seconds: f64) {
        self.inner
            .list_age
            .get_or_create(&ListLabels {
                list: list.to_string(),
            })
            .set(seconds);
    }

    /// A list reload swapped in a new set, or refused one.
    pub fn list_reload(&self, outcome: &str) {
        self.inner
            .list_reloads
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// The RabbitMQ bridge or worker handled a message (see [`MqLabels`]).
    pub fn mq_message(&self, outcome: &str, reason: &str) {
        self.inner
            .mq_messages
            .get_or_create(&MqLabels {
                outcome: outcome.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Samples the figures kept elsewhere (`in_flight`, agent health), then encodes the
    /// registry in the Prometheus text format (OpenMetrics flavour, `# EOF` terminated).
    pub fn encode(&self, in_flight: usize, agents: &[AgentHealth]) -> String {
        let i = &self.inner;
        let _guard = i.encode_lock.lock().unwrap_or_else(|p| p.into_inner());
        i.in_flight.set(in_flight as i64);
        for h in agents {
            let labels = AgentLabels {
                agent: h.agent.as_str().to_string(),
            };
            let restarts = i.agent_restarts.get_or_create(&labels);
            let seen = restarts.get();
            if h.restarts_total > seen {
                restarts.inc_by(h.restarts_total - seen);
            }
            let status = match h.status {
                AgentStatus::Running => 0,
                AgentStatus::Restarting => 1,
                AgentStatus::Failed => 2,
            };
            i.agent_status.get_or_create(&labels).set(status);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &i.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_is_exported() {
        let m = Metrics::new();
        m.decided("AUTO_CLEAR", 0.9, 10.0);
        m.alert_failed(&TriageError::Store("x".into()));
        m.step("risk_scoring", 0.01, true);
        m.step_error("risk_scoring", "timeout");
        m.llm_call("context_builder", "offline", "m", 1, 2, 0.5);
        m.admission_rejected("busy");
        m.http_request("/health", "GET", 200, 0.001);
        m.cache_lookup("historical", true);
        m.lease_takeover();
        m.llm_budget_exhausted("openai");
        m.mq_message("dead_lettered", "conflict");
        m.list_age("OFAC_SDN", 12.5);
        m.list_reload("swapped");
        m.review().action("approve");
        m.review()
            .cases_open
            .get_or_create(&QueueLabels {
                alert_type: "SANCTIONS".into(),
                priority: "HIGH".into(),
                sla: "ok".into(),
            })
            .inc();
        let text = m.encode(
            0,
            &[AgentHealth {
                agent: crate::domain::AgentKind::RiskScoring,
                status: AgentStatus::Running,
                restarts_total: 2,
                generation: 2,
            }],
        );
        assert!(text.contains("aml_triage_agent_restarts_total{agent=\"risk_scoring\"} 2"));
        for name in Metrics::NAMES {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("# TYPE {name}"))
                        || l.starts_with(&format!("# TYPE {}", name.trim_end_matches("_total")))),
                "{name} missing from\n{text}"
            );
        }
    }
}

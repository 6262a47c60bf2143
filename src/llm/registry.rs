//! Builds each model-backed agent's provider from the configuration, and keeps the circuit
//! breakers so readiness checks can read them.
//!
//! A remote provider is layered as: PII pseudonymisation (when `LLM_PII_MINIMISATION`) ->
//! the shared gate, when one is given ([`crate::limits::ProviderGate`]: circuit breaker, 429
//! pause and rate limit kept in the agent state store, so every node sees them) -> circuit
//! breaker, per-attempt timeout and pricing -> the HTTP client. One client and one breaker per
//! provider kind, shared by the agents that use it: the breaker describes the provider's
//! health, not an agent's. With a shared gate the gate is the breaker: the per-process one is
//! built never to open, so a provider's circuit has one state in the whole cluster.

use std::sync::Arc;
use std::time::Duration;

use super::anthropic::{ANTHROPIC_PROVIDER, AnthropicProvider};
use super::gate::Gated;
use super::http::{Budget, CircuitBreaker, Resilient};
use super::offline::OfflineProvider;
use super::openai::{JsonMode, OPENAI_PROVIDER, OpenAiProvider};
use super::pii::Pseudonymising;
use super::pricing::PriceTable;
use super::secret::ApiKey;
use super::{LlmError, LlmProvider};
use crate::config::{ConfigError, Settings};
use crate::limits::ProviderGate;

/// The providers of the ContextBuilder, the DecisionMaker and the supervisor check.
#[derive(Clone)]
pub struct ProviderRegistry {
    /// ContextBuilder's provider.
    pub context: Arc<dyn LlmProvider>,
    /// DecisionMaker's provider.
    pub decision: Arc<dyn LlmProvider>,
    /// The supervisor check's provider.
    pub supervisor: Arc<dyn LlmProvider>,
    circuits: Vec<Arc<CircuitBreaker>>,
    gate: Option<Arc<dyn ProviderGate>>,
}

impl std::fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRegistry")
            .field("context", &self.context.name())
            .field("decision", &self.decision.name())
            .field("supervisor", &self.supervisor.name())
            .field("circuits", &self.circuits())
            .finish()
    }
}

impl ProviderRegistry {
    /// One provider for every agent (embedding and tests); no breaker is tracked.
    pub fn uniform(provider: Arc<dyn LlmProvider>) -> Self {
        Self {
            context: provider.clone(),
            decision: provider.clone(),
            supervisor: provider,
            circuits: Vec::new(),
            gate: None,
        }
    }

    /// The providers `settings` ask for, each remote one with a circuit breaker of its own
    /// process. Fails naming the key when one cannot be built.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        Self::from_settings_gated(settings, None)
    }

    /// The providers `settings` ask for; remote ones ask `gate` before each call (the
    /// cluster-wide circuit and limits) when it is given.
    pub fn from_settings_gated(
        settings: &Settings,
        gate: Option<Arc<dyn ProviderGate>>,
    ) -> Result<Self, ConfigError> {
        let prices = Arc::new(PriceTable::parse(&settings.llm_prices).map_err(|m| {
            ConfigError::Invalid {
                key: "LLM_PRICES".into(),
                message: m,
            }
        })?);
        let timeout = Duration::from_secs_f64(settings.llm_request_timeout_seconds);
        let cooldown = Duration::from_secs_f64(settings.llm_circuit_cooldown_seconds);
        let mut built: Vec<(&str, Arc<dyn LlmProvider>)> = Vec::new();
        let mut circuits = Vec::new();
        let mut pick = |key: &str, name: &str| -> Result<Arc<dyn LlmProvider>, ConfigError> {
            if let Some((_, p)) = built.iter().find(|(n, _)| *n == name) {
                return Ok(p.clone());
            }
            let invalid = |key: &str, e: LlmError| ConfigError::Invalid {
                key: key.into(),
                message: e.to_string(),
            };
            let raw: Arc<dyn LlmProvider> = match name {
                "offline" => {
                    return Ok(Arc::new(OfflineProvider::with_latency(
                        Duration::from_millis(settings.offline_latency_ms),
                    )));
                }
                ANTHROPIC_PROVIDER => Arc::new(
                    AnthropicProvider::new(
                        &settings.anthropic_base_url,
                        settings
                            .anthropic_api_key
                            .clone()
                            .unwrap_or(ApiKey::new("")),
                        timeout,
                    )
                    .map_err(|e| invalid("ANTHROPIC_BASE_URL", e))?,
                ),
                OPENAI_PROVIDER => Arc::new(
                    OpenAiProvider::new(
                        &settings.openai_base_url,
                        &settings.openai_api_key.clone().unwrap_or(ApiKey::new("")),
                        timeout,
                        JsonMode::parse(&settings.openai_response_format)
                            .unwrap_or(JsonMode::JsonObject),
                    )
                    .map_err(|e| invalid("OPENAI_BASE_URL", e))?
                    .with_first_token_timeout(Some(Duration::from_secs_f64(
                        settings.llm_first_token_timeout_seconds,
                    ))),
                ),
                other => {
                    return Err(ConfigError::Invalid {
                        key: key.into(),
                        message: format!("unknown provider {other:?}"),
                    });
                }
            };
            // With a shared gate, the gate opens the circuit; this breaker never does.
            let threshold = if gate.is_some() {
                u32::MAX
            } else {
                settings.llm_circuit_failures
            };
            let breaker = Arc::new(CircuitBreaker::new(name, threshold, cooldown));
            circuits.push(breaker.clone());
            let (max_concurrency, budget) = if name == ANTHROPIC_PROVIDER {
                (
                    settings.anthropic_max_concurrency,
                    Budget::new(
                        name,
                        settings.anthropic_daily_token_budget,
                        settings.anthropic_daily_cost_budget_usd,
                    ),
                )
            } else {
                (
                    settings.openai_max_concurrency,
                    Budget::new(
                        name,
                        settings.openai_daily_token_budget,
                        settings.openai_daily_cost_budget_usd,
                    ),
                )
            };
            let mut guarded: Arc<dyn LlmProvider> = Arc::new(
                Resilient::new(raw, breaker, timeout, prices.clone())
                    .with_max_concurrency(max_concurrency)
                    .with_budget(Arc::new(budget)),
            );
            if let Some(g) = &gate {
                guarded = Arc::new(Gated::new(guarded, name, g.clone()));
            }
            let provider: Arc<dyn LlmProvider> = if settings.llm_pii_minimisation {
                Arc::new(Pseudonymising::new(guarded))
            } else {
                guarded
            };
            built.push((
                if name == ANTHROPIC_PROVIDER {
                    ANTHROPIC_PROVIDER
                } else {
                    OPENAI_PROVIDER
                },
                provider.clone(),
            ));
            Ok(provider)
        };
        let [(ck, cp), (dk, dp), (sk, sp)] = settings.llm_providers();
        let context = pick(ck, cp)?;
        let decision = pick(dk, dp)?;
        let supervisor = pick(sk, sp)?;
        Ok(Self {
            context,
            decision,
            supervisor,
            circuits,
            gate,
        })
    }

    /// Each remote provider's circuit: (`anthropic` | `openai`, `closed` | `open` | `half_open`).
    pub fn circuits(&self) -> Vec<(String, &'static str)> {
        self.circuits
            .iter()
            .map(|c| {
                let state = match &self.gate {
                    Some(g) => g.circuit(c.name()).as_str(),
                    None => c.state(),
                };
                (c.name().to_string(), state)
            })
            .collect()
    }

    /// The worst circuit state (`closed` when there is no remote provider), for `/ready`.
    pub fn circuit_state(&self) -> &'static str {
        let states: Vec<&'static str> = self.circuits().into_iter().map(|(_, s)| s).collect();
        if states.contains(&"open") {
            "open"
        } else if states.contains(&"half_open") {
            "half_open"
        } else {
            "closed"
        }
    }
}

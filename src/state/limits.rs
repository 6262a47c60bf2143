//! The model providers' circuit breakers and rate limits, kept in the agent state store: in
//! Redis every node asks the same record (a circuit opened on one node is open on all, a 429
//! seen by one node pauses all, the request rate is counted cluster-wide, and a restarted node
//! starts from the record); in process when `REDIS_URL` is unset.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};

use super::{StateStore, now_ms};
use crate::limits::{Admission, CallOutcome, CircuitState, ProviderGate, ProviderRules};

/// A [`ProviderGate`] over the agent state store.
pub struct SharedProviderGate {
    state: Arc<dyn StateStore>,
    rules: HashMap<String, ProviderRules>,
    default_rules: ProviderRules,
    /// Last known circuit state per provider, for synchronous readers.
    known: Mutex<HashMap<String, CircuitState>>,
}

impl std::fmt::Debug for SharedProviderGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedProviderGate")
            .field("state", &self.state.describe())
            .field("rules", &self.rules)
            .finish()
    }
}

impl SharedProviderGate {
    /// A gate on `state`; `default_rules` apply to providers without their own.
    pub fn new(state: Arc<dyn StateStore>, default_rules: ProviderRules) -> Self {
        Self {
            state,
            rules: HashMap::new(),
            default_rules,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The rules `settings` give each remote provider (`LLM_CIRCUIT_*`,
    /// `{PROVIDER}_RATE_LIMIT_RPM`).
    pub fn from_settings(state: Arc<dyn StateStore>, settings: &crate::config::Settings) -> Self {
        let base = ProviderRules {
            threshold: settings.llm_circuit_failures,
            cooldown: Duration::from_secs_f64(settings.llm_circuit_cooldown_seconds),
            rpm: 0,
            // A probe that never reports back frees its slot after one request timeout.
            probe_ttl: Duration::from_secs_f64(settings.llm_request_timeout_seconds)
                + Duration::from_secs(1),
        };
        Self::new(state, base)
            .with_rules(
                "anthropic",
                ProviderRules {
                    rpm: settings.anthropic_rate_limit_rpm,
                    ..base
                },
            )
            .with_rules(
                "openai",
                ProviderRules {
                    rpm: settings.openai_rate_limit_rpm,
                    ..base
                },
            )
    }

    /// Sets `provider`'s own rules.
    pub fn with_rules(mut self, provider: &str, rules: ProviderRules) -> Self {
        self.rules.insert(provider.to_string(), rules);
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(provider.to_string(), CircuitState::Closed);
        self
    }

    fn rules(&self, provider: &str) -> &ProviderRules {
        self.rules.get(provider).unwrap_or(&self.default_rules)
    }

    fn remember(&self, provider: &str, c: CircuitState) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(provider.to_string(), c);
    }

    async fn read(&self, provider: &str) {
        if let Ok(r) = self.state.provider_state(provider).await {
            self.remember(provider, r.circuit(now_ms()));
        }
    }

    /// Refreshes the known circuit states every `period` on `rt`, until the gate is dropped.
    pub fn spawn_refresh(self: &Arc<Self>, rt: &tokio::runtime::Handle, period: Duration) {
        let weak = Arc::downgrade(self);
        rt.spawn(async move {
            loop {
                let Some(me) = weak.upgrade() else { return };
                me.refresh().await;
                drop(me);
                tokio::time::sleep(period).await;
            }
        });
    }
}

impl ProviderGate for SharedProviderGate {
    fn admit<'a>(&'a self, provider: &'a str) -> BoxFuture<'a, Admission> {
        async move {
            let a = match self
                .state
                .provider_admit(provider, now_ms(), self.rules(provider))
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    // The resilient store already falls back; a plain store that fails
                    // lets the call through rather than stopping every model call.
                    tracing::debug!(error = %e, provider, "provider limits unavailable");
                    Admission::Go
                }
            };
            match a {
                Admission::Open { .. } => self.remember(provider, CircuitState::Open),
                Admission::Probe => self.remember(provider, CircuitState::HalfOpen),
                Admission::Go | Admission::Wait { .. } => {}
            }
            a
        }
        .boxed()
    }

    fn record<'a>(
        &'a self,
        provider: &'a str,
        probe: bool,
        outcome: CallOutcome,
    ) -> BoxFuture<'a, ()> {
        async move {
            let rules = self.rules(provider);
            if let Err(e) = self
                .state
                .provider_record(provider, now_ms(), probe, outcome, rules)
                .await
            {
                tracing::debug!(error = %e, provider, "provider outcome not recorded");
            }
            match outcome {
                // A success closes the circuit (another node opening it meanwhile shows at the
                // next refresh): no round trip to learn it.
                CallOutcome::Success => self.remember(provider, CircuitState::Closed),
                CallOutcome::Unhealthy => self.read(provider).await,
                CallOutcome::RateLimited { .. } | CallOutcome::Neutral => {}
            }
        }
        .boxed()
    }

    fn circuit(&self, provider: &str) -> CircuitState {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(provider)
            .copied()
            .unwrap_or(CircuitState::Closed)
    }

    fn refresh(&self) -> BoxFuture<'_, ()> {
        async move {
            let names: Vec<String> = self
                .known
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned()
                .collect();
            for n in names {
                self.read(&n).await;
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::InProcessState;

    #[tokio::test]
    async fn in_process_gate_opens_pauses_and_limits() {
        let rules = ProviderRules {
            threshold: 2,
            cooldown: Duration::from_secs(600),
            rpm: 0,
            probe_ttl: Duration::from_secs(5),
        };
        let gate = SharedProviderGate::new(Arc::new(InProcessState::default()), rules)
            .with_rules("anthropic", rules)
            .with_rules("openai", ProviderRules { rpm: 1, ..rules });
        // Two unhealthy calls open the circuit; then calls are refused.
        for _ in 0..2 {
            assert_eq!(gate.admit("anthropic").await, Admission::Go);
            gate.record("anthropic", false, CallOutcome::Unhealthy)
                .await;
        }
        assert_eq!(gate.circuit("anthropic"), CircuitState::Open);
        assert!(matches!(
            gate.admit("anthropic").await,
            Admission::Open { .. }
        ));
        // A 429 pauses the provider.
        assert_eq!(gate.admit("openai").await, Admission::Go);
        gate.record(
            "openai",
            false,
            CallOutcome::RateLimited {
                retry_after: Some(Duration::from_secs(9)),
            },
        )
        .await;
        match gate.admit("openai").await {
            Admission::Wait { retry_in } => assert!(retry_in > Duration::from_secs(8)),
            other => panic!("{other:?}"),
        }
        assert_eq!(gate.circuit("openai"), CircuitState::Closed);
    }
}

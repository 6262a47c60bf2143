//! Asks the provider's shared gate (circuit breaker, 429 pause, cluster-wide rate limit; see
//! [`crate::limits`]) before each call to a remote provider, and tells it how the call went.
//!
//! A refused call fails at once without reaching the provider: an open circuit as a
//! `Transport`-class error (as the per-process breaker did), a pause or an exhausted rate as
//! `RateLimited` with the wait as its `retry-after`, which the step's retry policy honours.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{LlmError, LlmProvider, LlmRequest, LlmResponse};
use crate::limits::{Admission, CallOutcome, ProviderGate};

/// How a call's result counts for the provider's limits.
pub fn outcome_of(result: &Result<LlmResponse, LlmError>) -> CallOutcome {
    match result {
        Ok(_) => CallOutcome::Success,
        Err(LlmError::Timeout | LlmError::Server { .. } | LlmError::Transport(_)) => {
            CallOutcome::Unhealthy
        }
        Err(LlmError::RateLimited { retry_after }) => CallOutcome::RateLimited {
            retry_after: *retry_after,
        },
        Err(_) => CallOutcome::Neutral,
    }
}

/// A remote provider behind its gate.
pub struct Gated {
    inner: Arc<dyn LlmProvider>,
    provider: String,
    gate: Arc<dyn ProviderGate>,
}

impl Gated {
    /// Guards `inner`, known to the gate as `provider` (`anthropic`, `openai`).
    pub fn new(inner: Arc<dyn LlmProvider>, provider: &str, gate: Arc<dyn ProviderGate>) -> Self {
        Self {
            inner,
            provider: provider.to_string(),
            gate,
        }
    }
}

/// Frees the half-open probe slot when a probing call is cancelled before it reports.
struct ProbeGuard {
    armed: Option<(Arc<dyn ProviderGate>, String)>,
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if let Some((gate, provider)) = self.armed.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                gate.record(&provider, true, CallOutcome::Neutral).await;
            });
        }
    }
}

impl LlmProvider for Gated {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn needs_prompt(&self) -> bool {
        self.inner.needs_prompt()
    }

    fn complete(&self, request: LlmRequest) -> BoxFuture<'static, Result<LlmResponse, LlmError>> {
        let (inner, provider, gate) =
            (self.inner.clone(), self.provider.clone(), self.gate.clone());
        Box::pin(async move {
            let probe = match gate.admit(&provider).await {
                Admission::Go => false,
                Admission::Probe => true,
                Admission::Open { .. } => {
                    return Err(LlmError::Transport(format!(
                        "circuit open for provider {provider}"
                    )));
                }
                Admission::Wait { retry_in } => {
                    return Err(LlmError::RateLimited {
                        retry_after: Some(retry_in),
                    });
                }
            };
            let mut guard = ProbeGuard {
                armed: probe.then(|| (gate.clone(), provider.clone())),
            };
            let result = inner.complete(request).await;
            guard.armed = None;
            gate.record(&provider, probe, outcome_of(&result)).await;
            result
        })
    }
}

//! What the remote providers share: classifying HTTP statuses, the per-attempt timeout, the
//! per-provider circuit breaker and cost accounting, as one wrapper around a provider.
//!
//! Retries with backoff are not done here: the supervisor retries each step (honouring
//! `retry-after`), so a retry loop here would multiply attempts and hide them from the journal.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::pricing::PriceTable;
use super::{LlmError, LlmProvider, LlmRequest, LlmResponse};

/// Longest provider error text kept in an error message.
const MAX_ERROR_TEXT: usize = 300;

/// Maps a non-success HTTP status to the error class the retry policy understands.
pub fn classify_status(status: u16, retry_after: Option<Duration>, body: &str) -> LlmError {
    match status {
        401 | 403 => LlmError::Unauthorized,
        408 => LlmError::Timeout,
        429 => LlmError::RateLimited { retry_after },
        500..=599 => LlmError::Server { status },
        _ => LlmError::BadRequest(format!("status {status}: {}", short(body))),
    }
}

/// `retry-after` in seconds (the HTTP-date form is rare for APIs and is ignored).
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    let secs: f64 = value?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// A provider's text cut to a loggable length, on a character boundary.
pub fn short(text: &str) -> String {
    let mut s: String = text.chars().take(MAX_ERROR_TEXT).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

/// Whether a failure says the provider is unhealthy (as opposed to rejecting this request).
fn counts_against_circuit(e: &LlmError) -> bool {
    matches!(
        e,
        LlmError::Timeout | LlmError::Server { .. } | LlmError::Transport(_)
    )
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// A circuit breaker: opens after `threshold` consecutive failures, answers at once while open,
/// lets one probe through after `cooldown` (half-open), closes again when the probe succeeds.
#[derive(Debug)]
pub struct CircuitBreaker {
    name: String,
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

/// Permission to make one call; a dropped permit (cancelled call) frees the half-open probe.
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    done: bool,
}

impl Permit<'_> {
    /// Records how the call went.
    pub fn record(mut self, result: &Result<LlmResponse, LlmError>) {
        self.done = true;
        let failed = matches!(result, Err(e) if counts_against_circuit(e));
        let mut s = self.breaker.lock();
        *s = match (*s, failed) {
            (_, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) if failures + 1 < self.breaker.threshold => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (_, true) => {
                tracing::warn!(provider = %self.breaker.name, "circuit opened");
                State::Open {
                    until: Instant::now() + self.breaker.cooldown,
                }
            }
        };
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.done {
            let mut s = self.breaker.lock();
            if *s == (State::HalfOpen { probing: true }) {
                *s = State::HalfOpen { probing: false };
            }
        }
    }
}

impl CircuitBreaker {
    /// A closed breaker named after its provider.
    pub fn new(name: impl Into<String>, threshold: u32, cooldown: Duration) -> Self {
        Self {
            name: name.into(),
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks to make a call: refused with a `Transport`-class error while open or while the
    /// half-open probe is out.
    pub fn acquire(&self) -> Result<Permit<'_>, LlmError> {
        let mut s = self.lock();
        let probe = match *s {
            State::Closed { .. } => false,
            State::Open { until } if Instant::now() >= until => {
                *s = State::HalfOpen { probing: true };
                true
            }
            State::HalfOpen { probing: false } => {
                *s = State::HalfOpen { probing: true };
                true
            }
            State::Open { .. } | State::HalfOpen { probing: true } => {
                return Err(LlmError::Transport(format!(
                    "circuit open for provider {}",
                    self.name
                )));
            }
        };
        Ok(Permit {
            breaker: self,
            probe,
            done: false,
        })
    }

    /// `closed`, `open` or `half_open` (an open breaker past its cool-down reads `half_open`).
    pub fn state(&self) -> &'static str {
        match *self.lock() {
            State::Closed { .. } => "closed",
            State::Open { until } if Instant::now() < until => "open",
            State::Open { .. } | State::HalfOpen { .. } => "half_open",
        }
    }

    /// The provider this breaker guards.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Wraps a remote provider with the per-attempt timeout, its circuit breaker and pricing.
pub struct Resilient {
    inner: Arc<dyn LlmProvider>,
    breaker: Arc<CircuitBreaker>,
    timeout: Duration,
    prices: Arc<PriceTable>,
}

impl Resilient {
    /// Guards `inner`.
    pub fn new(
        inner: Arc<dyn LlmProvider>,
        breaker: Arc<CircuitBreaker>,
        timeout: Duration,
        prices: Arc<PriceTable>,
    ) -> Self {
        Self {
            inner,
            breaker,
            timeout,
            prices,
        }
    }
}

impl LlmProvider for Resilient {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn needs_prompt(&self) -> bool {
        self.inner.needs_prompt()
    }

    fn complete(&self, request: LlmRequest) -> BoxFuture<'static, Result<LlmResponse, LlmError>> {
        let (inner, breaker, timeout, prices) = (
            self.inner.clone(),
            self.breaker.clone(),
            self.timeout,
            self.prices.clone(),
        );
        Box::pin(async move {
            let permit = breaker.acquire()?;
            let priced_model = request.model.clone();
            let result = match tokio::time::timeout(timeout, inner.complete(request)).await {
                Ok(r) => r,
                // Dropping the inner future here cancels the HTTP request.
                Err(_) => Err(LlmError::Timeout),
            };
            permit.record(&result);
            result.map(|mut r| {
                // Price by the model we asked for: providers may answer with a dated alias.
                let model = if prices.knows(&r.model) {
                    r.model.clone()
                } else {
                    priced_model
                };
                r.cost_usd = prices.cost(&model, r.tokens_in, r.tokens_out);
                r
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Result<LlmResponse, LlmError> {
        Ok(LlmResponse {
            text: String::new(),
            provider: "t".into(),
            model: "m".into(),
            tokens_in: 0,
            tokens_out: 0,
            cost_usd: 0.0,
        })
    }

    #[test]
    fn circuit_opens_probes_and_closes() {
        let b = CircuitBreaker::new("t", 2, Duration::from_millis(30));
        let fail = Err(LlmError::Server { status: 500 });
        b.acquire().unwrap().record(&fail);
        assert_eq!(b.state(), "closed");
        b.acquire().unwrap().record(&fail);
        assert_eq!(b.state(), "open");
        assert!(matches!(b.acquire(), Err(LlmError::Transport(_))));
        std::thread::sleep(Duration::from_millis(40));
        let probe = b.acquire().unwrap();
        // Only one probe at a time.
        assert!(b.acquire().is_err());
        drop(probe);
        // A cancelled probe frees the slot for the next one.
        let probe = b.acquire().unwrap();
        probe.record(&ok());
        assert_eq!(b.state(), "closed");
    }

    #[test]
    fn rejections_do_not_open_the_circuit() {
        let b = CircuitBreaker::new("t", 1, Duration::from_secs(60));
        b.acquire()
            .unwrap()
            .record(&Err(LlmError::BadRequest("x".into())));
        b.acquire().unwrap().record(&Err(LlmError::Unauthorized));
        assert_eq!(b.state(), "closed");
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify_status(401, None, ""), LlmError::Unauthorized);
        assert_eq!(
            classify_status(529, None, ""),
            LlmError::Server { status: 529 }
        );
        assert!(matches!(
            classify_status(400, None, "bad"),
            LlmError::BadRequest(_)
        ));
        assert_eq!(parse_retry_after(Some("7")), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
    }
}

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

/// A provider's per-day budget (UTC days, this process): tokens (in + out) and US dollars;
/// 0 means no limit. Once spent, calls are refused with [`LlmError::BudgetExhausted`] until the
/// day ends, so model steps degrade (and a degraded step never auto-clears).
#[derive(Debug)]
pub struct Budget {
    name: String,
    tokens: u64,
    cost_usd: f64,
    spent: Mutex<(chrono::NaiveDate, u64, f64)>,
}

impl Budget {
    /// A budget of `tokens` and `cost_usd` per day for provider `name` (0: unlimited).
    pub fn new(name: impl Into<String>, tokens: u64, cost_usd: f64) -> Self {
        Self {
            name: name.into(),
            tokens,
            cost_usd: if cost_usd.is_finite() { cost_usd } else { 0.0 },
            spent: Mutex::new((chrono::Utc::now().date_naive(), 0, 0.0)),
        }
    }

    /// No limit.
    pub fn unlimited(name: impl Into<String>) -> Self {
        Self::new(name, 0, 0.0)
    }

    fn today(&self) -> std::sync::MutexGuard<'_, (chrono::NaiveDate, u64, f64)> {
        let mut s = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        let day = chrono::Utc::now().date_naive();
        if s.0 != day {
            *s = (day, 0, 0.0);
        }
        s
    }

    /// Records a call's usage.
    pub fn add(&self, tokens: u64, cost_usd: f64) {
        let mut s = self.today();
        s.1 = s.1.saturating_add(tokens);
        if cost_usd.is_finite() && cost_usd > 0.0 {
            s.2 += cost_usd;
        }
    }

    /// Whether today's budget is spent.
    pub fn exhausted(&self) -> bool {
        let s = self.today();
        (self.tokens > 0 && s.1 >= self.tokens) || (self.cost_usd > 0.0 && s.2 >= self.cost_usd)
    }

    /// (tokens, US dollars) spent today.
    pub fn spent_today(&self) -> (u64, f64) {
        let s = self.today();
        (s.1, s.2)
    }

    /// The provider this budget belongs to.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Wraps a remote provider with its concurrency limit, daily budget, circuit breaker,
/// per-attempt timeout and pricing.
pub struct Resilient {
    inner: Arc<dyn LlmProvider>,
    breaker: Arc<CircuitBreaker>,
    timeout: Duration,
    prices: Arc<PriceTable>,
    slots: Option<Arc<tokio::sync::Semaphore>>,
    budget: Arc<Budget>,
}

impl Resilient {
    /// Guards `inner` (no concurrency limit, no budget).
    pub fn new(
        inner: Arc<dyn LlmProvider>,
        breaker: Arc<CircuitBreaker>,
        timeout: Duration,
        prices: Arc<PriceTable>,
    ) -> Self {
        let budget = Arc::new(Budget::unlimited(inner.name()));
        Self {
            inner,
            breaker,
            timeout,
            prices,
            slots: None,
            budget,
        }
    }

    /// At most `max` calls in flight (0: no limit). Calls beyond it wait for a slot, for as
    /// long as their caller waits (the step's deadline); the per-attempt timeout starts once
    /// a slot is taken, so a queued call does not time out on the server.
    pub fn with_max_concurrency(mut self, max: usize) -> Self {
        self.slots = (max > 0).then(|| Arc::new(tokio::sync::Semaphore::new(max)));
        self
    }

    /// Refuses calls once `budget` is spent for the day.
    pub fn with_budget(mut self, budget: Arc<Budget>) -> Self {
        self.budget = budget;
        self
    }
}

impl LlmProvider for Resilient {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn needs_prompt(&self) -> bool {
        self.inner.needs_prompt()
    }

    fn complete(
        &self,
        mut request: LlmRequest,
    ) -> BoxFuture<'static, Result<LlmResponse, LlmError>> {
        let (inner, breaker, timeout, prices, slots, budget) = (
            self.inner.clone(),
            self.breaker.clone(),
            self.timeout,
            self.prices.clone(),
            self.slots.clone(),
            self.budget.clone(),
        );
        Box::pin(async move {
            if budget.exhausted() {
                return Err(LlmError::BudgetExhausted(budget.name().to_string()));
            }
            // Queued here, not on the server; dropping this future leaves the queue.
            let _slot = match &slots {
                Some(s) => Some(
                    s.clone()
                        .acquire_owned()
                        .await
                        .map_err(|_| LlmError::Transport("provider queue closed".into()))?,
                ),
                None => None,
            };
            let permit = breaker.acquire()?;
            let priced_model = request.model.clone();
            // The inner provider reports raw usage here; it is priced and passed on below.
            let step_spend = std::mem::take(&mut request.spend);
            let call_spend = request.spend.clone();
            let result = match tokio::time::timeout(timeout, inner.complete(request)).await {
                Ok(r) => r,
                // Dropping the inner future here cancels the HTTP request.
                Err(_) => Err(LlmError::Timeout),
            };
            permit.record(&result);
            let model = match &result {
                Ok(r) if prices.knows(&r.model) => r.model.clone(),
                // Price by the model we asked for: providers may answer with a dated alias.
                _ => priced_model,
            };
            let mut used = call_spend.totals();
            if let (0, Ok(r)) = (used.calls, &result) {
                // A provider that does not report into the ledger: its answer's usage.
                used.calls = 1;
                used.tokens_in = r.tokens_in;
                used.tokens_out = r.tokens_out;
            }
            let cost = prices.cost(&model, used.tokens_in, used.tokens_out);
            if used.calls > 0 {
                step_spend.bill_to(inner.name(), &model);
                step_spend.add(used.tokens_in, used.tokens_out, cost);
                budget.add(used.tokens_in + used.tokens_out, cost);
            }
            result.map(|mut r| {
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

//! Per-provider call limits shared by every node: the circuit breaker, the "not before" a
//! provider's 429 asked for, and a cluster-wide request rate.
//!
//! A leaf module (std and futures only): the model layer (`crate::llm`) asks a
//! [`ProviderGate`] before each call and reports how it went; the state layer
//! (`crate::state::limits`) implements the gate over the agent state store, in Redis when
//! `REDIS_URL` is set (so every node sees the same circuit and limits, and a restarted node
//! starts from them), in process otherwise.
//!
//! [`ProviderRecord`] is the rule set itself, as a pure function of the record and the time;
//! the Redis store runs the same rules in one Lua script per call so that nodes never race.

use std::time::Duration;

use futures_util::future::BoxFuture;

/// Pause after a 429 that named no `retry-after`.
pub const DEFAULT_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(1);

/// Longest pause a `retry-after` may impose (a provider asking for more is capped).
pub const MAX_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(3600);

/// How one provider is limited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProviderRules {
    /// Consecutive unhealthy calls (timeouts, 5xx, transport) that open the circuit.
    pub threshold: u32,
    /// How long an open circuit refuses calls before one probe is let through.
    pub cooldown: Duration,
    /// Requests per minute across every node (0: no limit). Bursts of up to this many are
    /// allowed, then one request per `60 s / rpm`.
    pub rpm: u32,
    /// How long a half-open probe holds the probe slot if its node never reports back.
    pub probe_ttl: Duration,
}

impl ProviderRules {
    /// Spacing between requests under the rate limit, in ms (0: no limit).
    pub fn interval_ms(&self) -> i64 {
        if self.rpm == 0 {
            0
        } else {
            (60_000 + i64::from(self.rpm) - 1) / i64::from(self.rpm)
        }
    }

    /// How far ahead of the spacing requests may run (the burst), in ms.
    pub fn tolerance_ms(&self) -> i64 {
        (60_000 - self.interval_ms()).max(0)
    }

    /// How long a provider's record lives after its last update.
    pub fn record_ttl(&self) -> Duration {
        (self.cooldown * 2)
            .max(MAX_RATE_LIMIT_PAUSE)
            .max(self.probe_ttl)
    }
}

/// Whether a call may be made now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    /// Go ahead.
    Go,
    /// Go ahead as the one half-open probe: its outcome closes or re-opens the circuit.
    Probe,
    /// The circuit is open (or its probe is out): no call for `retry_in`.
    Open {
        /// Until the cooldown ends or the probe slot frees.
        retry_in: Duration,
    },
    /// A 429 or the rate limit says to wait `retry_in` before calling.
    Wait {
        /// Until the provider's "not before" or the next rate-limit slot.
        retry_in: Duration,
    },
}

/// How a call went, as far as the limits care.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CallOutcome {
    /// Answered.
    Success,
    /// Timeout, 5xx or transport failure: counts against the circuit.
    Unhealthy,
    /// 429, with the provider's `retry-after` if it gave one.
    RateLimited {
        /// The pause asked for.
        retry_after: Option<Duration>,
    },
    /// Anything else (rejected request, cancelled call): changes nothing but frees a probe.
    Neutral,
}

/// Circuit state of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the cooldown ends.
    Open,
    /// The cooldown is over: one probe decides.
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// One provider's limit record; times are milliseconds since the Unix epoch, 0 for unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderRecord {
    /// Consecutive unhealthy calls while closed.
    pub failures: u32,
    /// The circuit is open until then (0: closed).
    pub open_until: i64,
    /// The half-open probe slot is taken until then.
    pub probe_until: i64,
    /// No call before then (from a 429).
    pub not_before: i64,
    /// Theoretical arrival time of the rate limiter (GCRA).
    pub tat: i64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn dur(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

impl ProviderRecord {
    /// Circuit state at `now`.
    pub fn circuit(&self, now: i64) -> CircuitState {
        if self.open_until == 0 {
            CircuitState::Closed
        } else if now < self.open_until {
            CircuitState::Open
        } else {
            CircuitState::HalfOpen
        }
    }

    /// Asks for one call at `now`; takes a rate-limit slot (and the probe slot) when it
    /// answers go.
    pub fn admit(&mut self, now: i64, rules: &ProviderRules) -> Admission {
        if self.not_before > now {
            return Admission::Wait {
                retry_in: dur(self.not_before - now),
            };
        }
        let probe = self.open_until != 0;
        if probe {
            if now < self.open_until {
                return Admission::Open {
                    retry_in: dur(self.open_until - now),
                };
            }
            if self.probe_until > now {
                return Admission::Open {
                    retry_in: dur(self.probe_until - now),
                };
            }
        }
        let interval = rules.interval_ms();
        if interval > 0 {
            let tat = self.tat.max(now);
            if tat - now > rules.tolerance_ms() {
                return Admission::Wait {
                    retry_in: dur(tat - now - rules.tolerance_ms()),
                };
            }
            self.tat = tat + interval;
        }
        if probe {
            self.probe_until = now + ms(rules.probe_ttl);
            Admission::Probe
        } else {
            Admission::Go
        }
    }

    /// Records how a call admitted at some earlier time went, at `now`.
    pub fn record(&mut self, now: i64, probe: bool, outcome: CallOutcome, rules: &ProviderRules) {
        match outcome {
            CallOutcome::Success => {
                self.failures = 0;
                self.open_until = 0;
                self.probe_until = 0;
            }
            CallOutcome::Unhealthy => {
                self.failures = self.failures.saturating_add(1);
                if probe || self.failures >= rules.threshold.max(1) {
                    self.open_until = now + ms(rules.cooldown).max(1);
                    self.failures = 0;
                    self.probe_until = 0;
                }
            }
            CallOutcome::RateLimited { retry_after } => {
                let pause = retry_after
                    .unwrap_or(DEFAULT_RATE_LIMIT_PAUSE)
                    .min(MAX_RATE_LIMIT_PAUSE);
                self.not_before = self.not_before.max(now + ms(pause));
                if probe {
                    self.probe_until = 0;
                }
            }
            CallOutcome::Neutral => {
                if probe {
                    self.probe_until = 0;
                }
            }
        }
    }
}

/// Asked before each model call, told after it. Implementations never fail a call because
/// they cannot reach their store: they then fall back to what this node knows.
pub trait ProviderGate: Send + Sync + 'static {
    /// Whether a call to `provider` may be made now.
    fn admit<'a>(&'a self, provider: &'a str) -> BoxFuture<'a, Admission>;

    /// How a call admitted by [`ProviderGate::admit`] went (`probe`: it was admitted as the
    /// half-open probe).
    fn record<'a>(
        &'a self,
        provider: &'a str,
        probe: bool,
        outcome: CallOutcome,
    ) -> BoxFuture<'a, ()>;

    /// The last known circuit state of `provider` (no round trip: for readiness and status).
    fn circuit(&self, provider: &str) -> CircuitState;

    /// Reads every provider's state again, so a circuit opened by another node shows here
    /// even while this node makes no calls.
    fn refresh(&self) -> BoxFuture<'_, ()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(rpm: u32) -> ProviderRules {
        ProviderRules {
            threshold: 2,
            cooldown: Duration::from_millis(1000),
            rpm,
            probe_ttl: Duration::from_millis(500),
        }
    }

    #[test]
    fn circuit_opens_probes_once_and_closes() {
        let r = rules(0);
        let mut p = ProviderRecord::default();
        assert_eq!(p.admit(0, &r), Admission::Go);
        p.record(0, false, CallOutcome::Unhealthy, &r);
        assert_eq!(p.circuit(0), CircuitState::Closed);
        p.record(1, false, CallOutcome::Unhealthy, &r);
        assert_eq!(p.circuit(1), CircuitState::Open);
        assert!(matches!(p.admit(2, &r), Admission::Open { .. }));
        assert_eq!(p.admit(1001, &r), Admission::Probe);
        assert!(matches!(p.admit(1002, &r), Admission::Open { .. }));
        // A failed probe opens the circuit again at once.
        p.record(1003, true, CallOutcome::Unhealthy, &r);
        assert_eq!(p.circuit(1004), CircuitState::Open);
        assert_eq!(p.admit(2003, &r), Admission::Probe);
        p.record(2004, true, CallOutcome::Success, &r);
        assert_eq!(p.circuit(2005), CircuitState::Closed);
        assert_eq!(p.admit(2005, &r), Admission::Go);
    }

    #[test]
    fn a_429_pauses_and_the_rate_limit_spaces_calls() {
        let r = rules(2);
        let mut p = ProviderRecord::default();
        assert_eq!(p.admit(0, &r), Admission::Go);
        assert_eq!(p.admit(0, &r), Admission::Go);
        assert_eq!(
            p.admit(0, &r),
            Admission::Wait {
                retry_in: Duration::from_secs(30)
            }
        );
        assert_eq!(p.admit(30_000, &r), Admission::Go);
        p.record(
            30_000,
            false,
            CallOutcome::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
            },
            &r,
        );
        assert_eq!(
            p.admit(31_000, &r),
            Admission::Wait {
                retry_in: Duration::from_secs(6)
            }
        );
    }
}

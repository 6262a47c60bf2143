//! The one exponential backoff of the crate: step retries (`RetryPolicy`), agent and bridge
//! restarts (`RestartPolicy`), broker reconnection (`mq::Backoff`) and customer-data retries
//! all draw their delays here. A leaf module (std and `fastrand` only).
//!
//! Delay `n` (1-based) lies in a window of `base * 2^(n-1)`, capped at `max`, jittered so that
//! parties failing together do not retry in lockstep.

use std::time::Duration;

/// How a delay is drawn from its window `w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in `[0, w]` ("full jitter": retries spread the most).
    Full,
    /// Uniform in `[w/2, w]`: never much shorter than the window (restarts, reconnection).
    Half,
    /// Uniform in `[w, 1.5 w]`, then capped at `max` again.
    Over,
}

/// An exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Window of the first delay.
    pub base: Duration,
    /// Cap on a window (and on an `Over` delay).
    pub max: Duration,
    /// How a delay is drawn from its window.
    pub jitter: Jitter,
}

impl Backoff {
    /// A backoff from `base` doubling to `max`.
    pub const fn new(base: Duration, max: Duration, jitter: Jitter) -> Self {
        Self { base, max, jitter }
    }

    /// The window of delay `n` (1-based): `base * 2^(n-1)`, capped at `max`.
    pub fn window(&self, n: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << n.saturating_sub(1).min(16))
            .min(self.max)
    }

    /// Delay `n` (1-based), jittered.
    pub fn delay(&self, n: u32) -> Duration {
        let w = self.window(n);
        match self.jitter {
            Jitter::Full => w.mul_f64(fastrand::f64()),
            Jitter::Half => w.mul_f64(0.5 + fastrand::f64() * 0.5),
            Jitter::Over => w.mul_f64(1.0 + fastrand::f64() * 0.5).min(self.max),
        }
    }

    /// Delay `n`, but never shorter than what the other side asked for (`retry-after`).
    pub fn delay_honouring(&self, n: u32, asked: Option<Duration>) -> Duration {
        let d = self.delay(n);
        asked.map_or(d, |a| a.max(d))
    }
}

/// A backoff with its attempt count, for reconnection loops: [`Attempts::next_delay`] after
/// each failure, [`Attempts::reset`] once connected.
#[derive(Debug, Clone)]
pub struct Attempts {
    backoff: Backoff,
    attempt: u32,
}

impl Attempts {
    /// Counting from zero.
    pub const fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            attempt: 0,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        self.backoff.delay(self.attempt)
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_double_up_to_the_cap_and_jitter_stays_inside() {
        let ms = Duration::from_millis;
        for jitter in [Jitter::Full, Jitter::Half, Jitter::Over] {
            let b = Backoff::new(ms(100), ms(1000), jitter);
            assert_eq!(
                (1..=6).map(|n| b.window(n)).collect::<Vec<_>>(),
                [100, 200, 400, 800, 1000, 1000].map(ms)
            );
            for n in 1..8 {
                for _ in 0..50 {
                    let (d, w) = (b.delay(n), b.window(n));
                    let (lo, hi) = match jitter {
                        Jitter::Full => (Duration::ZERO, w),
                        Jitter::Half => (w / 2, w),
                        Jitter::Over => (w, w.mul_f64(1.5).min(b.max)),
                    };
                    assert!(d >= lo && d <= hi, "{jitter:?} {n}: {d:?}");
                }
            }
        }
        let b = Backoff::new(ms(100), ms(1000), Jitter::Full);
        assert!(b.delay_honouring(1, Some(ms(3000))) >= ms(3000));
        let mut a = Attempts::new(Backoff::new(ms(10), ms(40), Jitter::Half));
        let d: Vec<Duration> = (0..4).map(|_| a.next_delay()).collect();
        assert!(d[0] <= ms(10) && d[3] >= ms(20), "{d:?}");
        a.reset();
        assert!(a.next_delay() <= ms(10));
    }
}

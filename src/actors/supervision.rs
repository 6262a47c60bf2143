//! Supervision built on top of actix: restart with a restart-intensity limit and jittered
//! exponential backoff, and the per-step retry policy.
//!
//! actix's own `Supervised` restarts an actor only when it stops, catches no panic and has no
//! restart limit. Here each agent lives in a [`Slot`] that knows how to start a fresh instance
//! on the agent's arbiter. An instance restarts only when its own state is suspect: its mailbox
//! closed, or it was found stopped (by a caller or the watchdog). A panic inside one request is
//! that request's failure (see [`crate::actors::agent::guarded`]) and restarts nothing. A stop
//! is reported to the slot, which restarts the agent after a backoff, unless the agent stopped
//! more than `restart_max` times within `restart_window`: then the slot is marked failed,
//! alerts take the degraded path (never AUTO_CLEAR) without calling it, and one more restart is
//! tried after `cooldown`. Restarts are scheduled on the tokio runtime the slot was created on,
//! so a report works from any thread or runtime (a plain tokio task, a worker's consumer).
//!
//! A slot given the agent state store ([`Slot::keep_record_in`]) keeps its restart record
//! there (restart count, recent restarts, failed mark and cooldown: [`AgentRecord`]), and a
//! node starting again under the same `NODE_ID` starts from it: an agent marked failed stays
//! failed until its cooldown ends, and restarts before the node stopped still count against
//! the restart-intensity limit.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::{Actor, Addr};
use tokio::time::Instant;

use crate::backoff::{Backoff, Jitter};
use crate::domain::AgentKind;
use crate::messages::AgentError;
use crate::state::{AgentRecord, StateStore, now_ms};

/// How long an agent's restart record is kept after its last change.
const RECORD_TTL: Duration = Duration::from_secs(24 * 3600);

/// Restart-intensity limit and backoff.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestartPolicy {
    /// Restarts allowed within `window`.
    pub max_restarts: u32,
    /// The window.
    pub window: Duration,
    /// First restart delay; doubles with each recent restart.
    pub backoff: Duration,
    /// How long a failed agent stays failed before one more restart is tried.
    pub cooldown: Duration,
}

impl RestartPolicy {
    /// Delay before the `n`th restart within the window (1-based): exponential with jitter in
    /// [50%, 100%] so that agents crashing together do not restart in lockstep.
    pub fn delay(&self, n: u32) -> Duration {
        Backoff::new(self.backoff, Duration::from_secs(30), Jitter::Half).delay(n)
    }
}

/// Per-step retry policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First delay.
    pub base: Duration,
    /// Cap on one computed delay.
    pub max: Duration,
}

impl RetryPolicy {
    /// Delay after failed attempt `attempt` (1-based): full jitter over an exponentially
    /// growing window, but never less than what the dependency asked for (`retry-after`).
    pub fn delay(&self, attempt: u32, asked: Option<Duration>) -> Duration {
        Backoff::new(self.base, self.max, Jitter::Full).delay_honouring(attempt, asked)
    }
}

// Health types live in the step protocol; re-exported here.
pub use crate::protocol::{AgentHealth, AgentStatus};

struct SlotState<A: Actor> {
    addr: Addr<A>,
    generation: u64,
    status: AgentStatus,
    recent: VecDeque<Instant>,
    failed_until: Option<Instant>,
}

/// The supervised home of one agent.
pub struct Slot<A: Actor> {
    kind: AgentKind,
    policy: RestartPolicy,
    spawn: Box<dyn Fn() -> Addr<A> + Send + Sync>,
    state: Mutex<SlotState<A>>,
    restarts_total: AtomicU64,
    /// Where restarts are scheduled: valid from any thread, unlike `actix_rt::spawn`.
    runtime: tokio::runtime::Handle,
    /// Where the restart record is kept (the agent state store and this node's id).
    record: std::sync::OnceLock<(std::sync::Arc<dyn StateStore>, String)>,
}

/// `at` as milliseconds since the epoch.
fn epoch_of(at: Instant) -> i64 {
    let now = Instant::now();
    if at <= now {
        now_ms() - now.duration_since(at).as_millis() as i64
    } else {
        now_ms() + at.duration_since(now).as_millis() as i64
    }
}

/// Milliseconds since the epoch as an `Instant` (clamped to what `Instant` can hold).
fn instant_of(ms: i64) -> Instant {
    let (now, now_ms) = (Instant::now(), now_ms());
    if ms >= now_ms {
        now + Duration::from_millis((ms - now_ms) as u64)
    } else {
        let ago = Duration::from_millis((now_ms - ms) as u64);
        now.checked_sub(ago).unwrap_or(now)
    }
}

impl<A: Actor> Slot<A> {
    /// Starts the first instance with `spawn`, which must start a fresh agent each call (and
    /// may be called from any thread). Must be called inside a tokio runtime, which then runs
    /// the restart timers.
    pub fn new(
        kind: AgentKind,
        policy: RestartPolicy,
        spawn: Box<dyn Fn() -> Addr<A> + Send + Sync>,
    ) -> Self {
        let addr = spawn();
        Self {
            kind,
            policy,
            spawn,
            state: Mutex::new(SlotState {
                addr,
                generation: 0,
                status: AgentStatus::Running,
                recent: VecDeque::new(),
                failed_until: None,
            }),
            restarts_total: AtomicU64::new(0),
            runtime: tokio::runtime::Handle::current(),
            record: std::sync::OnceLock::new(),
        }
    }

    /// Keeps this agent's restart record in `store` under `node`, starting from the record
    /// kept there before (by this node's previous run), if any.
    pub async fn keep_record_in(&self, store: std::sync::Arc<dyn StateStore>, node: &str) {
        let name = self.kind.to_string();
        match store.agent_record(node, &name).await {
            Ok(Some(r)) => {
                let mut s = self.lock();
                let now = Instant::now();
                s.recent = r
                    .recent_restarts
                    .iter()
                    .map(|t| instant_of(*t))
                    .filter(|t| now.duration_since(*t) <= self.policy.window)
                    .collect();
                self.restarts_total
                    .store(r.restarts_total, Ordering::Relaxed);
                if let Some(until) = r.failed_until.map(instant_of).filter(|t| *t > now) {
                    s.status = AgentStatus::Failed;
                    s.failed_until = Some(until);
                    tracing::warn!(agent = %self.kind, "agent marked failed before this start: failed until its cooldown ends");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(agent = %self.kind, error = %e, "agent restart record not read")
            }
        }
        let _ = self.record.set((store, node.to_string()));
    }

    /// Writes the restart record (in the background), if the slot keeps one.
    fn persist(&self, s: &SlotState<A>) {
        let Some((store, node)) = self.record.get() else {
            return;
        };
        let record = AgentRecord {
            restarts_total: self.restarts_total.load(Ordering::Relaxed),
            recent_restarts: s.recent.iter().map(|t| epoch_of(*t)).collect(),
            failed_until: s.failed_until.map(epoch_of),
        };
        let (store, node, name) = (store.clone(), node.clone(), self.kind.to_string());
        self.runtime.spawn(async move {
            if let Err(e) = store
                .put_agent_record(&node, &name, &record, RECORD_TTL)
                .await
            {
                tracing::debug!(agent = %name, error = %e, "agent restart record not kept");
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState<A>> {
        // A poisoned lock only means a panic elsewhere while holding it; the state is still
        // consistent (every update is a single assignment), so keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current instance and its generation, or why there is none.
    pub fn current(self: &std::sync::Arc<Self>) -> Result<(Addr<A>, u64), AgentError> {
        let mut s = self.lock();
        match s.status {
            AgentStatus::Running if s.addr.connected() => Ok((s.addr.clone(), s.generation)),
            AgentStatus::Running => {
                let generation = s.generation;
                drop(s);
                self.report_crash(generation, "found stopped");
                Err(AgentError::Stopped)
            }
            AgentStatus::Restarting => Err(AgentError::Restarting),
            AgentStatus::Failed => {
                if s.failed_until.is_some_and(|t| Instant::now() >= t) {
                    // Cooldown over: try once more with a clean restart record.
                    s.recent.clear();
                    s.failed_until = None;
                    s.status = AgentStatus::Restarting;
                    let generation = s.generation;
                    self.persist(&s);
                    drop(s);
                    tracing::warn!(agent = %self.kind, "cooldown over: restarting failed agent");
                    self.schedule_restart(generation, Duration::ZERO);
                    Err(AgentError::Restarting)
                } else {
                    Err(AgentError::Failed)
                }
            }
        }
    }

    /// Reports that instance `generation` crashed or stopped. Reports about an instance that
    /// has already been replaced are ignored, so a crash seen by many callers restarts once.
    pub fn report_crash(self: &std::sync::Arc<Self>, generation: u64, why: &str) {
        let mut s = self.lock();
        if s.generation != generation || s.status != AgentStatus::Running {
            return;
        }
        let now = Instant::now();
        while s
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.policy.window)
        {
            s.recent.pop_front();
        }
        if s.recent.len() as u32 >= self.policy.max_restarts {
            s.status = AgentStatus::Failed;
            s.failed_until = Some(now + self.policy.cooldown);
            self.persist(&s);
            tracing::error!(
                agent = %self.kind, reason = why, restarts = s.recent.len(),
                window_s = self.policy.window.as_secs_f64(),
                "restart limit reached: agent marked failed, alerts take the degraded path"
            );
            return;
        }
        s.recent.push_back(now);
        s.status = AgentStatus::Restarting;
        let delay = self.policy.delay(s.recent.len() as u32);
        drop(s);
        tracing::warn!(agent = %self.kind, reason = why, delay_ms = delay.as_millis() as u64, "agent crashed: restarting");
        self.schedule_restart(generation, delay);
    }

    fn schedule_restart(self: &std::sync::Arc<Self>, generation: u64, delay: Duration) {
        let slot = self.clone();
        self.runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            let addr = (slot.spawn)();
            let mut s = slot.lock();
            if s.generation == generation {
                s.addr = addr;
                s.generation += 1;
                s.status = AgentStatus::Running;
                slot.restarts_total.fetch_add(1, Ordering::Relaxed);
                slot.persist(&s);
                tracing::info!(agent = %slot.kind, generation = s.generation, "agent restarted");
            }
        });
    }

    /// Watchdog check: restarts an instance found stopped between calls.
    pub fn check(self: &std::sync::Arc<Self>) {
        let s = self.lock();
        if s.status == AgentStatus::Running && !s.addr.connected() {
            let generation = s.generation;
            drop(s);
            self.report_crash(generation, "found stopped by watchdog");
        }
    }

    /// A health snapshot.
    pub fn health(&self) -> AgentHealth {
        let s = self.lock();
        AgentHealth {
            agent: self.kind,
            status: s.status,
            restarts_total: self.restarts_total.load(Ordering::Relaxed),
            generation: s.generation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_grows_and_honours_retry_after() {
        let p = RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for attempt in 1..6 {
            let d = p.delay(attempt, None);
            let window = Duration::from_millis(100 * (1 << (attempt - 1))).min(p.max);
            assert!(d <= window, "attempt {attempt}: {d:?} > {window:?}");
        }
        assert!(p.delay(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        // Growth: the jitter window doubles per attempt, so the largest of many draws does.
        let largest = |attempt| (0..400).map(|_| p.delay(attempt, None)).max().unwrap();
        assert!(largest(1) <= Duration::from_millis(100));
        assert!(largest(2) > Duration::from_millis(150), "{:?}", largest(2));
        assert!(largest(4) > Duration::from_millis(600), "{:?}", largest(4));
        // ...up to the cap.
        assert!(largest(10) <= p.max && largest(10) > Duration::from_millis(900));
    }

    struct Idle;
    impl Actor for Idle {
        type Context = actix::Context<Self>;
    }

    /// `Slot::report_crash` from a plain tokio task (no actix `LocalSet`, as in a worker's
    /// consumer) must still restart the instance.
    #[test]
    fn report_crash_restarts_from_a_plain_tokio_task() {
        actix_rt::System::new().block_on(async {
            let policy = RestartPolicy {
                max_restarts: 3,
                window: Duration::from_secs(10),
                backoff: Duration::from_millis(1),
                cooldown: Duration::from_secs(10),
            };
            let arbiter = actix::Arbiter::current();
            let slot = std::sync::Arc::new(Slot::new(
                AgentKind::RiskScoring,
                policy,
                Box::new(move || Idle::start_in_arbiter(&arbiter, |_| Idle)),
            ));
            let s = slot.clone();
            tokio::spawn(async move { s.report_crash(0, "test") })
                .await
                .expect("reporting a crash from a plain tokio task does not panic");
            let start = std::time::Instant::now();
            while slot.health().generation == 0 && start.elapsed() < Duration::from_secs(5) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let h = slot.health();
            assert_eq!((h.generation, h.status), (1, AgentStatus::Running), "{h:?}");
            assert_eq!(h.restarts_total, 1);
        });
    }

    #[test]
    fn restart_delay_is_jittered_exponential() {
        let p = RestartPolicy {
            max_restarts: 3,
            window: Duration::from_secs(10),
            backoff: Duration::from_millis(100),
            cooldown: Duration::from_secs(10),
        };
        let d3 = p.delay(3);
        assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
    }
}

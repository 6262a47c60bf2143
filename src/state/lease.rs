//! Leases on in-flight alerts, so that several nodes on one database never lose an alert and
//! rarely work on the same one.
//!
//! * A node takes the lease (`SET NX PX`, holder = its node id) before it admits or resumes
//!   an alert, and releases it (compare-and-delete) once the alert is decided or has failed.
//! * A heartbeat renews every lease the node holds (compare-and-renew) every
//!   `LEASE_HEARTBEAT_SECONDS`; a lease lapses `LEASE_TTL_SECONDS` after the node stops
//!   renewing it (it died, or lost Redis).
//! * A sweeper on every node with shared state lists the store's unfinished alerts; one
//!   without a lease on two sweeps in a row (so a lease being re-established after a Redis
//!   restart is not mistaken for a dead node) is taken over: lease taken, then finished from
//!   its journal by [`crate::Engine::resume_alert`]'s path.
//!
//! Leases make duplicate work rare, not impossible (a paused node can lose its lease and carry
//! on): exactly one decision per alert is the store's guarantee, not this module's.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::StateStore;
use crate::metrics::Metrics;
use crate::store::Store;

/// Finishes one stored alert from its journal (the engine's resume path).
pub type ResumeFn =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static>;

/// The leases this node holds, and the heartbeat and sweeper that look after them.
pub struct Leases {
    state: Arc<dyn StateStore>,
    node_id: String,
    ttl: Duration,
    heartbeat: Duration,
    /// Alert id -> local holders (twin submissions of one alert share the lease).
    held: Mutex<HashMap<String, usize>>,
    takeovers: AtomicU64,
    sweeping: AtomicBool,
    metrics: Metrics,
    /// Alerts whose takeover failed: how often, and not to be tried again before when. An
    /// alert that cannot be finished (unreadable, store failing) must not be retried by every
    /// node at every heartbeat.
    failed_takeovers: Mutex<HashMap<String, (u32, std::time::Instant)>>,
}

/// Longest wait before a failed takeover is tried again.
const MAX_TAKEOVER_BACKOFF: Duration = Duration::from_secs(600);

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("node_id", &self.node_id)
            .field("held", &self.held_count())
            .finish()
    }
}

impl Leases {
    /// Leases of `node_id` in `state`.
    pub fn new(
        state: Arc<dyn StateStore>,
        node_id: &str,
        ttl: Duration,
        heartbeat: Duration,
        metrics: Metrics,
    ) -> Self {
        Self {
            state,
            node_id: node_id.to_string(),
            ttl,
            heartbeat,
            held: Mutex::new(HashMap::new()),
            takeovers: AtomicU64::new(0),
            sweeping: AtomicBool::new(true),
            metrics,
            failed_takeovers: Mutex::new(HashMap::new()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the lease on `alert_id` unless another node holds it. A lease this node already
    /// holds is shared (the supervisor joins twin submissions). True when held now.
    pub async fn try_acquire(&self, alert_id: &str) -> bool {
        if let Some(n) = self.held().get_mut(alert_id) {
            *n += 1;
            return true;
        }
        let attempt = async {
            if self
                .state
                .acquire_lease(alert_id, &self.node_id, self.ttl)
                .await?
            {
                return Ok(true);
            }
            // Held under this node's id but not by this process: left by an earlier run of
            // this node (killed before releasing it). Node ids are unique among live
            // processes (the store's chain lock enforces it on PostgreSQL), so it is ours to
            // take back; the compare-and-renew does that atomically.
            self.state
                .renew_lease(alert_id, &self.node_id, self.ttl)
                .await
        };
        let taken = match attempt.await {
            Ok(t) => t,
            Err(e) => {
                // Nobody can be asked: go ahead (the store keeps one decision regardless).
                tracing::warn!(error = %e, alert_id, "lease store unavailable: proceeding without a lease");
                true
            }
        };
        if taken {
            *self.held().entry(alert_id.to_string()).or_insert(0) += 1;
        }
        taken
    }

    /// Gives up one local hold; the lease is released when the last one goes.
    pub async fn release(&self, alert_id: &str) {
        let last = {
            let mut held = self.held();
            match held.get_mut(alert_id) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    held.remove(alert_id);
                    true
                }
                None => false,
            }
        };
        if last && let Err(e) = self.state.release_lease(alert_id, &self.node_id).await {
            tracing::warn!(error = %e, alert_id, "lease not released: it will expire");
        }
    }

    /// Whether this node holds the lease on `alert_id`.
    pub fn holds(&self, alert_id: &str) -> bool {
        self.held().contains_key(alert_id)
    }

    /// Leases held now.
    pub fn held_count(&self) -> usize {
        self.held().len()
    }

    /// Alerts taken over from other nodes since start.
    pub fn takeovers(&self) -> u64 {
        self.takeovers.load(Ordering::Relaxed)
    }

    /// Stops taking alerts over (at shutdown); held leases are still renewed until released.
    pub fn stop_sweeping(&self) {
        self.sweeping.store(false, Ordering::Release);
    }

    /// Renews every held lease once.
    pub async fn renew_all(&self) {
        let ids: Vec<String> = self.held().keys().cloned().collect();
        for id in ids {
            match self.state.renew_lease(&id, &self.node_id, self.ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(alert_id = %id, "lease taken by another node: it may finish this alert too (one decision is kept)");
                }
                Err(e) => tracing::warn!(error = %e, alert_id = %id, "lease not renewed"),
            }
        }
    }

    /// Renews held leases every heartbeat until the leases are dropped.
    pub fn spawn_heartbeat(self: &Arc<Self>, rt: &tokio::runtime::Handle) {
        let weak = Arc::downgrade(self);
        let period = self.heartbeat;
        rt.spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(me) = weak.upgrade() else { return };
                me.renew_all().await;
            }
        });
    }

    /// Looks for unfinished alerts nobody holds, every heartbeat, and finishes them with
    /// `resume` under a lease of this node's. Stops when the leases are dropped.
    pub fn spawn_sweeper(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        store: Weak<Store>,
        resume: ResumeFn,
    ) {
        let weak = Arc::downgrade(self);
        let period = self.heartbeat;
        let rt2 = rt.clone();
        rt.spawn(async move {
            let mut unleased_before: HashSet<String> = HashSet::new();
            loop {
                tokio::time::sleep(period).await;
                let (Some(me), Some(store)) = (weak.upgrade(), store.upgrade()) else {
                    return;
                };
                if !me.sweeping.load(Ordering::Acquire) {
                    return;
                }
                unleased_before = me.sweep(&store, &unleased_before, &resume, &rt2).await;
            }
        });
    }

    /// Records a failed takeover of `alert_id`; returns how long it is left alone (doubling
    /// from one heartbeat, at most [`MAX_TAKEOVER_BACKOFF`]).
    fn note_failed_takeover(&self, alert_id: &str) -> Duration {
        let mut failed = self
            .failed_takeovers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let attempts = failed.get(alert_id).map_or(0, |(n, _)| *n) + 1;
        let wait = self
            .heartbeat
            .saturating_mul(2u32.saturating_pow(attempts.min(16)))
            .min(MAX_TAKEOVER_BACKOFF);
        failed.insert(
            alert_id.to_string(),
            (attempts, std::time::Instant::now() + wait),
        );
        wait
    }

    /// One sweep; returns the alerts found without a lease (candidates for the next sweep).
    async fn sweep(
        self: &Arc<Self>,
        store: &Store,
        unleased_before: &HashSet<String>,
        resume: &ResumeFn,
        rt: &tokio::runtime::Handle,
    ) -> HashSet<String> {
        let unfinished = match store.unfinished_ids().await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "lease sweep: cannot list unfinished alerts");
                return HashSet::new();
            }
        };
        let mut unleased = HashSet::new();
        let now = std::time::Instant::now();
        let backing_off: HashSet<String> = {
            let mut failed = self
                .failed_takeovers
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // Forget alerts that got decided meanwhile (by anyone).
            let unfinished_set: HashSet<&String> = unfinished.iter().collect();
            failed.retain(|id, _| unfinished_set.contains(id));
            failed
                .iter()
                .filter(|(_, (_, not_before))| *not_before > now)
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in unfinished {
            if self.holds(&id) || backing_off.contains(&id) {
                continue;
            }
            match self.state.lease_holder(&id).await {
                Ok(Some(_)) => {}
                Ok(None) if unleased_before.contains(&id) => {
                    if !self.try_acquire(&id).await {
                        continue;
                    }
                    self.takeovers.fetch_add(1, Ordering::Relaxed);
                    self.metrics.lease_takeover();
                    tracing::info!(alert_id = %id, "lease expired: taking the alert over from its journal");
                    let me = self.clone();
                    let resume = resume.clone();
                    rt.spawn(async move {
                        if let Err(e) = resume(id.clone()).await {
                            let wait = me.note_failed_takeover(&id);
                            tracing::warn!(alert_id = %id, error = %e, retry_in_s = wait.as_secs(), "takeover did not finish the alert: it stays unfinished");
                        }
                        me.release(&id).await;
                    });
                }
                Ok(None) => {
                    unleased.insert(id);
                }
                // Shared state unreachable: holders cannot be known, so take nothing over.
                Err(_) => return HashSet::new(),
            }
        }
        unleased
    }
}

//! Redis with an in-process fallback: while Redis does not answer, the node keeps working on
//! local state (no cache, leases and agent state visible to this node only), and a probe
//! brings Redis back into use as soon as it answers again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};

use super::{AgentRecord, InProcessState, NodeState, RedisState, StateError, StateStore};
use crate::limits::{Admission, CallOutcome, ProviderRecord, ProviderRules};

/// How often Redis is probed while it is down.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Redis, falling back to in-process state while Redis is unreachable.
pub struct ResilientState {
    redis: RedisState,
    local: InProcessState,
    up: Arc<AtomicBool>,
    outages: AtomicU64,
}

impl ResilientState {
    /// Wraps `redis`; it counts as up until a command fails.
    pub fn new(redis: RedisState) -> Self {
        Self {
            redis,
            local: InProcessState::default(),
            up: Arc::new(AtomicBool::new(true)),
            outages: AtomicU64::new(0),
        }
    }

    /// Whether Redis is in use now (false while falling back).
    pub fn redis_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Times Redis was found down since start.
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }

    fn mark_down(&self, e: &StateError) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.outages.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "Redis unreachable: continuing on in-process state without cache");
        }
    }

    /// Tries Redis once; on success marks it up again. Called by the probe task.
    pub async fn probe(&self) -> bool {
        match self.redis.ping().await {
            Ok(()) => {
                if !self.up.swap(true, Ordering::AcqRel) {
                    tracing::info!("Redis reachable again: shared state and caches back in use");
                }
                true
            }
            Err(e) => {
                self.mark_down(&e);
                false
            }
        }
    }

    /// Probes Redis every [`PROBE_INTERVAL`] while it is down, until `self` is dropped.
    pub fn spawn_probe(self: &Arc<Self>, rt: &tokio::runtime::Handle) {
        let weak = Arc::downgrade(self);
        rt.spawn(async move {
            loop {
                tokio::time::sleep(PROBE_INTERVAL).await;
                let Some(me) = weak.upgrade() else { return };
                if !me.redis_up() {
                    me.probe().await;
                }
            }
        });
    }

    /// Runs `op` on Redis when it is up; on failure marks it down and returns `None` so the
    /// caller takes the fallback.
    async fn try_redis<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, StateError>>,
    ) -> Option<T> {
        if !self.redis_up() {
            return None;
        }
        match op.await {
            Ok(v) => Some(v),
            Err(StateError::Corrupt(m)) => {
                tracing::warn!(error = %m, "unreadable value in Redis: ignored");
                None
            }
            Err(e) => {
                self.mark_down(&e);
                None
            }
        }
    }
}

impl StateStore for ResilientState {
    fn describe(&self) -> String {
        if self.redis_up() {
            "redis".into()
        } else {
            "in_process (redis down)".into()
        }
    }

    fn outages_so_far(&self) -> Option<u64> {
        Some(self.outages())
    }

    fn unreachable(&self) -> bool {
        !self.redis_up()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StateError>> {
        async move {
            if self.probe().await {
                Ok(())
            } else {
                Err(StateError::Unavailable("Redis does not answer".into()))
            }
        }
        .boxed()
    }

    fn publish_node<'a>(
        &'a self,
        state: &'a NodeState,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        async move {
            // Always kept locally too, so this node's own view survives an outage.
            self.local.put_node(state, ttl);
            self.try_redis(self.redis.publish_node(state, ttl)).await;
            Ok(())
        }
        .boxed()
    }

    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeState>, StateError>> {
        async move {
            match self.try_redis(self.redis.nodes()).await {
                Some(v) => Ok(v),
                None => Ok(self.local.live_nodes()),
            }
        }
        .boxed()
    }

    fn acquire_lease<'a>(
        &'a self,
        alert_id: &'a str,
        node: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        async move {
            match self
                .try_redis(self.redis.acquire_lease(alert_id, node, ttl))
                .await
            {
                Some(taken) => Ok(taken),
                // Redis down: other nodes cannot be asked. Taking the lease locally keeps the
                // alert moving; if another node also works on it, the store still keeps one
                // decision.
                None => Ok(self.local.take_lease(alert_id, node, ttl, false)),
            }
        }
        .boxed()
    }

    fn renew_lease<'a>(
        &'a self,
        alert_id: &'a str,
        node: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        async move {
            match self
                .try_redis(self.redis.renew_lease(alert_id, node, ttl))
                .await
            {
                Some(ok) => Ok(ok),
                None => Ok(self.local.take_lease(alert_id, node, ttl, true)),
            }
        }
        .boxed()
    }

    fn release_lease<'a>(
        &'a self,
        alert_id: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        async move {
            self.local.drop_lease(alert_id, node);
            self.try_redis(self.redis.release_lease(alert_id, node))
                .await;
            Ok(())
        }
        .boxed()
    }

    fn lease_holder<'a>(
        &'a self,
        alert_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StateError>> {
        async move {
            match self.try_redis(self.redis.lease_holder(alert_id)).await {
                Some(h) => Ok(h),
                // Unknown while Redis is down: say so rather than "nobody", so no node takes
                // over alerts on a guess.
                None => Err(StateError::Unavailable("Redis down: lease unknown".into())),
            }
        }
        .boxed()
    }

    fn cache_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, StateError>> {
        async move { Ok(self.try_redis(self.redis.cache_get(key)).await.flatten()) }.boxed()
    }

    fn cache_put<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        async move {
            self.try_redis(self.redis.cache_put(key, value, ttl)).await;
            Ok(())
        }
        .boxed()
    }

    fn provider_admit<'a>(
        &'a self,
        provider: &'a str,
        now: i64,
        rules: &'a ProviderRules,
    ) -> BoxFuture<'a, Result<Admission, StateError>> {
        async move {
            match self
                .try_redis(self.redis.provider_admit(provider, now, rules))
                .await
            {
                Some(a) => Ok(a),
                // Redis down: this node limits itself on what it saw.
                None => Ok(self.local.admit(provider, now, rules)),
            }
        }
        .boxed()
    }

    fn provider_record<'a>(
        &'a self,
        provider: &'a str,
        now: i64,
        probe: bool,
        outcome: CallOutcome,
        rules: &'a ProviderRules,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        async move {
            // Kept locally too, so an outage starts from what this node last knew.
            self.local.record(provider, now, probe, outcome, rules);
            self.try_redis(
                self.redis
                    .provider_record(provider, now, probe, outcome, rules),
            )
            .await;
            Ok(())
        }
        .boxed()
    }

    fn provider_state<'a>(
        &'a self,
        provider: &'a str,
    ) -> BoxFuture<'a, Result<ProviderRecord, StateError>> {
        async move {
            match self.try_redis(self.redis.provider_state(provider)).await {
                Some(r) => {
                    self.local.set_provider(provider, r);
                    Ok(r)
                }
                None => Ok(self.local.provider(provider)),
            }
        }
        .boxed()
    }

    fn agent_record<'a>(
        &'a self,
        node: &'a str,
        agent: &'a str,
    ) -> BoxFuture<'a, Result<Option<AgentRecord>, StateError>> {
        async move {
            match self.try_redis(self.redis.agent_record(node, agent)).await {
                Some(r) => Ok(r),
                None => Ok(self.local.get_agent(node, agent)),
            }
        }
        .boxed()
    }

    fn put_agent_record<'a>(
        &'a self,
        node: &'a str,
        agent: &'a str,
        record: &'a AgentRecord,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        async move {
            self.local.put_agent(node, agent, record, ttl);
            self.try_redis(self.redis.put_agent_record(node, agent, record, ttl))
                .await;
            Ok(())
        }
        .boxed()
    }
}

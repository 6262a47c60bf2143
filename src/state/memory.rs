//! The embedded default: state, leases and caches in this process only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};

use super::{AgentRecord, NodeState, StateError, StateStore};
use crate::limits::{Admission, CallOutcome, ProviderRecord, ProviderRules};

/// Most cache entries kept; past it expired entries are dropped, then new entries are not
/// cached (the cache must not grow without bound in a long-running process).
const MAX_CACHE_ENTRIES: usize = 100_000;

#[derive(Default)]
struct Maps {
    nodes: HashMap<String, (NodeState, Instant)>,
    leases: HashMap<String, (String, Instant)>,
    cache: HashMap<String, (String, Instant)>,
    providers: HashMap<String, ProviderRecord>,
    agents: HashMap<(String, String), (AgentRecord, Instant)>,
}

/// State kept in this process: what a single node needs, shared with nobody.
#[derive(Default)]
pub struct InProcessState {
    maps: Mutex<Maps>,
}

impl InProcessState {
    fn with<T>(&self, f: impl FnOnce(&mut Maps, Instant) -> T) -> T {
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut maps, Instant::now())
    }

    /// Synchronous lease take, used by the resilient wrapper's fallback too.
    pub(crate) fn take_lease(
        &self,
        alert_id: &str,
        node: &str,
        ttl: Duration,
        renew: bool,
    ) -> bool {
        self.with(|m, now| match m.leases.get(alert_id) {
            Some((holder, until)) if *until > now && (holder != node || !renew) => false,
            _ => {
                m.leases
                    .insert(alert_id.to_string(), (node.to_string(), now + ttl));
                true
            }
        })
    }

    pub(crate) fn drop_lease(&self, alert_id: &str, node: &str) {
        self.with(|m, _| {
            if m.leases.get(alert_id).is_some_and(|(h, _)| h == node) {
                m.leases.remove(alert_id);
            }
        })
    }

    pub(crate) fn holder(&self, alert_id: &str) -> Option<String> {
        self.with(|m, now| {
            m.leases
                .get(alert_id)
                .filter(|(_, until)| *until > now)
                .map(|(h, _)| h.clone())
        })
    }

    pub(crate) fn put_node(&self, state: &NodeState, ttl: Duration) {
        self.with(|m, now| {
            m.nodes
                .insert(state.node_id.clone(), (state.clone(), now + ttl));
        })
    }

    pub(crate) fn admit(&self, provider: &str, now: i64, rules: &ProviderRules) -> Admission {
        self.with(|m, _| {
            m.providers
                .entry(provider.to_string())
                .or_default()
                .admit(now, rules)
        })
    }

    pub(crate) fn record(
        &self,
        provider: &str,
        now: i64,
        probe: bool,
        outcome: CallOutcome,
        rules: &ProviderRules,
    ) {
        self.with(|m, _| {
            m.providers
                .entry(provider.to_string())
                .or_default()
                .record(now, probe, outcome, rules)
        })
    }

    pub(crate) fn provider(&self, provider: &str) -> ProviderRecord {
        self.with(|m, _| m.providers.get(provider).copied().unwrap_or_default())
    }

    /// Replaces a provider record (the resilient wrapper keeps a local copy of Redis's).
    pub(crate) fn set_provider(&self, provider: &str, record: ProviderRecord) {
        self.with(|m, _| {
            m.providers.insert(provider.to_string(), record);
        })
    }

    pub(crate) fn get_agent(&self, node: &str, agent: &str) -> Option<AgentRecord> {
        self.with(|m, now| {
            m.agents
                .get(&(node.to_string(), agent.to_string()))
                .filter(|(_, until)| *until > now)
                .map(|(r, _)| r.clone())
        })
    }

    pub(crate) fn put_agent(&self, node: &str, agent: &str, record: &AgentRecord, ttl: Duration) {
        self.with(|m, now| {
            m.agents.insert(
                (node.to_string(), agent.to_string()),
                (record.clone(), now + ttl),
            );
        })
    }

    pub(crate) fn live_nodes(&self) -> Vec<NodeState> {
        self.with(|m, now| {
            m.nodes.retain(|_, (_, until)| *until > now);
            let mut v: Vec<NodeState> = m.nodes.values().map(|(s, _)| s.clone()).collect();
            v.sort_by(|a, b| a.node_id.cmp(&b.node_id));
            v
        })
    }
}

impl StateStore for InProcessState {
    fn describe(&self) -> String {
        "in_process".into()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StateError>> {
        async { Ok(()) }.boxed()
    }

    fn publish_node<'a>(
        &'a self,
        state: &'a NodeState,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.put_node(state, ttl);
        async { Ok(()) }.boxed()
    }

    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeState>, StateError>> {
        let v = self.live_nodes();
        async move { Ok(v) }.boxed()
    }

    fn acquire_lease<'a>(
        &'a self,
        alert_id: &'a str,
        node: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let ok = self.take_lease(alert_id, node, ttl, false);
        async move { Ok(ok) }.boxed()
    }

    fn renew_lease<'a>(
        &'a self,
        alert_id: &'a str,
        node: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let ok = self.take_lease(alert_id, node, ttl, true);
        async move { Ok(ok) }.boxed()
    }

    fn release_lease<'a>(
        &'a self,
        alert_id: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.drop_lease(alert_id, node);
        async { Ok(()) }.boxed()
    }

    fn lease_holder<'a>(
        &'a self,
        alert_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StateError>> {
        let h = self.holder(alert_id);
        async move { Ok(h) }.boxed()
    }

    fn cache_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, StateError>> {
        let v = self.with(|m, now| {
            m.cache
                .get(key)
                .filter(|(_, until)| *until > now)
                .map(|(v, _)| v.clone())
        });
        async move { Ok(v) }.boxed()
    }

    fn cache_put<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.with(|m, now| {
            if m.cache.len() >= MAX_CACHE_ENTRIES {
                m.cache.retain(|_, (_, until)| *until > now);
            }
            if m.cache.len() < MAX_CACHE_ENTRIES || m.cache.contains_key(key) {
                m.cache
                    .insert(key.to_string(), (value.to_string(), now + ttl));
            }
        });
        async { Ok(()) }.boxed()
    }

    fn provider_admit<'a>(
        &'a self,
        provider: &'a str,
        now: i64,
        rules: &'a ProviderRules,
    ) -> BoxFuture<'a, Result<Admission, StateError>> {
        let a = self.admit(provider, now, rules);
        async move { Ok(a) }.boxed()
    }

    fn provider_record<'a>(
        &'a self,
        provider: &'a str,
        now: i64,
        probe: bool,
        outcome: CallOutcome,
        rules: &'a ProviderRules,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.record(provider, now, probe, outcome, rules);
        async { Ok(()) }.boxed()
    }

    fn provider_state<'a>(
        &'a self,
        provider: &'a str,
    ) -> BoxFuture<'a, Result<ProviderRecord, StateError>> {
        let r = self.provider(provider);
        async move { Ok(r) }.boxed()
    }

    fn agent_record<'a>(
        &'a self,
        node: &'a str,
        agent: &'a str,
    ) -> BoxFuture<'a, Result<Option<AgentRecord>, StateError>> {
        let r = self.get_agent(node, agent);
        async move { Ok(r) }.boxed()
    }

    fn put_agent_record<'a>(
        &'a self,
        node: &'a str,
        agent: &'a str,
        record: &'a AgentRecord,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.put_agent(node, agent, record, ttl);
        async { Ok(()) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lease_is_held_by_one_node_until_released_or_expired() {
        let s = InProcessState::default();
        let ttl = Duration::from_secs(60);
        assert!(s.acquire_lease("A1", "n1", ttl).await.unwrap());
        assert!(!s.acquire_lease("A1", "n2", ttl).await.unwrap());
        assert!(!s.renew_lease("A1", "n2", ttl).await.unwrap());
        assert!(s.renew_lease("A1", "n1", ttl).await.unwrap());
        s.release_lease("A1", "n2").await.unwrap();
        assert_eq!(s.lease_holder("A1").await.unwrap().as_deref(), Some("n1"));
        s.release_lease("A1", "n1").await.unwrap();
        assert!(s.acquire_lease("A1", "n2", Duration::ZERO).await.unwrap());
        // Expired at once: anyone may take it.
        assert!(s.acquire_lease("A1", "n3", ttl).await.unwrap());
    }
}

//! Shared agent state, leases and caches: in Redis when `REDIS_URL` is set, in process
//! otherwise (one node).
//!
//! ```text
//! Engine ──> SharedState (Arc<dyn StateStore>)
//!              ├── InProcessState   embedded default: one node, nothing shared
//!              └── ResilientState   Redis through a connection manager; while Redis is
//!                                   unreachable it falls back to an InProcessState (no cache,
//!                                   leases and state local) and reconnects by itself
//! ```
//!
//! What lives here, and the Redis key layout, is described in `docs/redis.md`:
//! * agent state per node and agent ([`NodeState`]), published every `STATE_PUBLISH_SECONDS`
//!   by [`publisher`] and read by `aml-triage status`;
//! * leases on in-flight alerts ([`lease`]): a node holds one per alert it works on, renews it
//!   on a heartbeat, and takes over alerts whose lease has expired;
//! * caches ([`cache`]): customer history from the external API and screening outcomes.
//!
//! Nothing here is a source of truth: the store (alerts, journal, decisions) is. Losing every
//! key costs cache misses and, at worst, a second node finishing an alert the store then
//! answers with its one decision.

pub mod cache;
pub mod lease;
pub mod limits;
mod memory;
pub mod publisher;
mod redis_store;
mod resilient;

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::limits::{Admission, CallOutcome, ProviderRecord, ProviderRules};

pub use memory::InProcessState;
pub use redis_store::RedisState;
pub use resilient::ResilientState;

/// A state-store failure. Messages never carry the Redis URL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    /// The backing service did not answer (refused, timed out, connection lost).
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be read.
    #[error("state store value unreadable: {0}")]
    Corrupt(String),
}

/// State of one agent on one node, as published for `aml-triage status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// Agent name (`data_enrichment`, ..., `supervisor_check`).
    pub agent: String,
    /// `running`, `restarting` or `failed` (`running` for the supervisor check, which is not
    /// an actor).
    pub health: String,
    /// Steps of this agent running now.
    pub in_flight: u64,
    /// Steps completed (including degraded ones) since the node started.
    pub processed: u64,
    /// Failed step attempts since the node started.
    pub failed: u64,
    /// Restarts by the supervisor since the node started.
    pub restarts: u64,
    /// Kind of the last failed attempt (`timeout`, `panic`, ...), if any.
    pub last_error: Option<String>,
    /// Circuit-breaker state of the agent's model provider (`closed`, `open`, `half_open`),
    /// or `none` when it uses no remote model.
    pub circuit: String,
}

/// State of one node: its agents plus node-wide figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// The node id (`NODE_ID`).
    pub node_id: String,
    /// When this was published.
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Alerts in flight on the node.
    pub in_flight: u64,
    /// Leases the node holds now.
    pub leases: u64,
    /// Alerts the node took over from other nodes since it started.
    pub takeovers: u64,
    /// Whether the node is taking alerts (false once shutdown has begun).
    pub accepting: bool,
    /// Where the node keeps shared state: `redis`, `in_process`, or `in_process (redis down)`.
    pub state_backend: String,
    /// One entry per agent.
    pub agents: Vec<AgentState>,
    /// The RabbitMQ bridge, when this node runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<BridgeState>,
}

/// State of a node's RabbitMQ bridge actor, as published with the node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeState {
    /// Connected to the broker now.
    pub connected: bool,
    /// Consuming the input queue now.
    pub consuming: bool,
    /// Alerts taken from the queue and not yet acknowledged.
    pub in_flight: u64,
    /// Restarts of the bridge actor since the node started.
    pub restarts: u64,
}

/// The bridge actor's live state, shared between its instances (it survives restarts) and
/// the node's state publisher.
#[derive(Debug, Clone, Default)]
pub struct BridgeStatus(std::sync::Arc<BridgeCounters>);

#[derive(Debug, Default)]
struct BridgeCounters {
    connected: std::sync::atomic::AtomicBool,
    consuming: std::sync::atomic::AtomicBool,
    in_flight: std::sync::atomic::AtomicU64,
    restarts: std::sync::atomic::AtomicU64,
}

impl BridgeStatus {
    /// Sets the connection and consumption flags.
    pub fn set_link(&self, connected: bool, consuming: bool) {
        use std::sync::atomic::Ordering::Release;
        self.0.connected.store(connected, Release);
        self.0.consuming.store(consuming, Release);
    }

    /// One more delivery taken (`+1`) or finished (`-1`).
    pub fn add_in_flight(&self, delta: i64) {
        use std::sync::atomic::Ordering::AcqRel;
        if delta >= 0 {
            self.0.in_flight.fetch_add(delta as u64, AcqRel);
        } else {
            let _ =
                self.0
                    .in_flight
                    .fetch_update(AcqRel, std::sync::atomic::Ordering::Acquire, |n| {
                        Some(n.saturating_sub(delta.unsigned_abs()))
                    });
        }
    }

    /// Counts one restart of the bridge actor.
    pub fn restarted(&self) {
        self.0
            .restarts
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The current values.
    pub fn snapshot(&self) -> BridgeState {
        use std::sync::atomic::Ordering::Acquire;
        BridgeState {
            connected: self.0.connected.load(Acquire),
            consuming: self.0.consuming.load(Acquire),
            in_flight: self.0.in_flight.load(Acquire),
            restarts: self.0.restarts.load(Acquire),
        }
    }
}

/// What an agent's supervisor keeps across node restarts: restart counts and the failed mark.
/// Times are milliseconds since the Unix epoch, so another process can read them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Restarts since the record began.
    pub restarts_total: u64,
    /// Restarts within the restart-intensity window, oldest first.
    pub recent_restarts: Vec<i64>,
    /// Marked failed until then (`None`: not failed).
    pub failed_until: Option<i64>,
}

/// Milliseconds since the Unix epoch now (the time base of records shared between nodes).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Where agent state, leases and caches are kept. Every method is one short round trip;
/// callers treat errors as "not available" and carry on.
pub trait StateStore: Send + Sync + 'static {
    /// `redis` or `in_process`, and whether it is currently degraded.
    fn describe(&self) -> String;

    /// A cheap round trip, for readiness checks.
    fn ping(&self) -> BoxFuture<'_, Result<(), StateError>>;

    /// For a shared store that can become unreachable: how many outages began since start
    /// (the current one included). `None` for in-process state, which cannot be unreachable.
    fn outages_so_far(&self) -> Option<u64> {
        None
    }

    /// Whether the shared store is unreachable now (never for in-process state).
    fn unreachable(&self) -> bool {
        false
    }

    /// Publishes one node's state, expiring after `ttl` unless published again.
    fn publish_node<'a>(
        &'a self,
        state: &'a NodeState,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StateError>>;

    /// Every node whose state has not expired, by node id.
    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeState>, StateError>>;

    /// Takes the lease on `alert_id` for `node` if nobody holds it. True when taken.
    fn acquire_lease<'a>(
        &'a self,
        alert_id: &'a str,
        node: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StateError>>;

    /// Extends `node`'s lease on `alert_id`, or takes it again if it has lapsed and nobody
    /// else took it. False when another node holds it.
    fn renew_lease<'a>(
        &'a self,
        alert_id: &'a str,
        node: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StateError>>;

    /// Releases the lease if `node` holds it.
    fn release_lease<'a>(
        &'a self,
        alert_id: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), StateError>>;

    /// The node holding the lease on `alert_id`, if any.
    fn lease_holder<'a>(
        &'a self,
        alert_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StateError>>;

    /// A cached value (`key` without the prefix, e.g. `historical:C1`).
    fn cache_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, StateError>>;

    /// Caches `value` under `key` for `ttl`.
    fn cache_put<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StateError>>;

    /// Asks for one call to `provider` at `now` (ms since the epoch) under `rules`, atomically
    /// for every node sharing the store (see [`ProviderRecord::admit`]).
    fn provider_admit<'a>(
        &'a self,
        provider: &'a str,
        now: i64,
        rules: &'a ProviderRules,
    ) -> BoxFuture<'a, Result<Admission, StateError>>;

    /// Records how a call to `provider` went (see [`ProviderRecord::record`]).
    fn provider_record<'a>(
        &'a self,
        provider: &'a str,
        now: i64,
        probe: bool,
        outcome: CallOutcome,
        rules: &'a ProviderRules,
    ) -> BoxFuture<'a, Result<(), StateError>>;

    /// The current limit record of `provider` (default when none).
    fn provider_state<'a>(
        &'a self,
        provider: &'a str,
    ) -> BoxFuture<'a, Result<ProviderRecord, StateError>>;

    /// The supervision record of `agent` on `node`, if one was kept.
    fn agent_record<'a>(
        &'a self,
        node: &'a str,
        agent: &'a str,
    ) -> BoxFuture<'a, Result<Option<AgentRecord>, StateError>>;

    /// Keeps the supervision record of `agent` on `node` for `ttl`.
    fn put_agent_record<'a>(
        &'a self,
        node: &'a str,
        agent: &'a str,
        record: &'a AgentRecord,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StateError>>;
}

/// Opens the state store the settings ask for: [`ResilientState`] over Redis when `REDIS_URL`
/// is set, else [`InProcessState`]. Never fails on an unreachable Redis: the node starts on
/// the in-process fallback and connects when Redis answers. The Redis connection and its
/// probe run on `rt`.
pub fn open(
    settings: &crate::config::Settings,
    rt: &tokio::runtime::Handle,
) -> Result<std::sync::Arc<dyn StateStore>, crate::config::ConfigError> {
    match settings.redis_url() {
        None => Ok(std::sync::Arc::new(InProcessState::default())),
        Some(url) => {
            let redis = open_redis(settings, url, rt)?;
            let resilient = std::sync::Arc::new(ResilientState::new(redis));
            resilient.spawn_probe(rt);
            Ok(resilient)
        }
    }
}

/// A plain Redis client for `url` (no fallback), e.g. for `aml-triage status`.
pub fn open_redis(
    settings: &crate::config::Settings,
    url: &str,
    rt: &tokio::runtime::Handle,
) -> Result<RedisState, crate::config::ConfigError> {
    let _inside = rt.enter();
    RedisState::new(
        url,
        &settings.redis_key_prefix,
        Duration::from_millis(settings.redis_timeout_ms),
    )
    .map_err(|m| crate::config::ConfigError::Invalid {
        key: "REDIS_URL".into(),
        message: m,
    })
}

/// Lets the pipeline tell whether shared state was unreachable at any time while one alert
/// was processed: the design counts "Redis down" among the failure paths that must never
/// yield `AUTO_CLEAR`, so such an alert is decided as degraded.
#[derive(Clone)]
pub struct OutageWatch(std::sync::Arc<dyn StateStore>);

impl OutageWatch {
    /// Watches `state`.
    pub fn new(state: std::sync::Arc<dyn StateStore>) -> Self {
        Self(state)
    }

    /// A mark to compare against later ([`OutageWatch::since`]).
    pub fn mark(&self) -> u64 {
        self.0.outages_so_far().unwrap_or(0)
    }

    /// A fresh round trip to the shared store, for a decision that must rest on state known
    /// good after the last step read it (an `AUTO_CLEAR`): if the store no longer answers, the
    /// failure is recorded as an outage, which [`OutageWatch::since`] then reports. Without
    /// it, an alert whose last Redis call succeeded just before Redis went away would be
    /// cleared before any other call noticed. Nothing to do for in-process state.
    pub async fn confirm(&self) {
        if self.0.outages_so_far().is_some() {
            let _ = self.0.ping().await;
        }
    }

    /// Whether the store is unreachable now or an outage began after `mark` was taken.
    pub fn since(&self, mark: u64) -> bool {
        match self.0.outages_so_far() {
            None => false,
            Some(now) => now != mark || self.0.unreachable(),
        }
    }
}

impl std::fmt::Debug for OutageWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OutageWatch")
            .field(&self.0.describe())
            .finish()
    }
}

//! State in Redis, through one multiplexed connection manager (it reconnects by itself).
//!
//! Key layout (all under the prefix, `aml_triage:` by default; see `docs/redis.md`):
//! * `node:{node_id}`: hash, field `node` (node summary JSON) and one field per agent (its
//!   [`super::AgentState`] JSON); expires unless republished;
//! * `nodes`: set of node ids that have published (pruned as their hashes expire);
//! * `lease:{alert_id}`: string, the holding node id, with a millisecond expiry;
//! * `historical:{customer_id}`, `screening:{name}:{lists}:{inputs}`: cache strings with
//!   `CACHE_TTL`.

use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{AgentState, NodeState, StateError, StateStore};

/// Extends the lease if the caller holds it, or takes it if nobody does.
const RENEW: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0";

/// Deletes the lease only if the caller holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Field of a node hash holding the node summary (agents have their own fields).
const NODE_FIELD: &str = "node";

/// Redis-backed state.
#[derive(Clone)]
pub struct RedisState {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    renew: redis::Script,
    release: redis::Script,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// The node summary stored in the `node` field: a [`NodeState`] without its agents.
#[derive(serde::Serialize, serde::Deserialize)]
struct NodeSummary {
    #[serde(flatten)]
    state: NodeState,
}

fn unavailable(e: redis::RedisError) -> StateError {
    // Redis errors name the command and the server's reply, never the URL.
    StateError::Unavailable(e.to_string())
}

impl RedisState {
    /// A lazily connecting client for `url` (nothing is sent until the first command). Must
    /// be called inside a tokio runtime, which then drives the connection. Every command
    /// gives up after `timeout`.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("not a usable Redis URL ({:?})", e.kind()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Reconnection is retried by the next command (see ResilientState's probe), so
            // one attempt at a time keeps a dead server from queueing backoffs.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("cannot set up the Redis client ({:?})", e.kind()))?;
        Ok(Self {
            conn,
            prefix: prefix.to_string(),
            timeout,
            renew: redis::Script::new(RENEW),
            release: redis::Script::new(RELEASE),
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// Runs one command under the timeout.
    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StateError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async(&mut conn)).await {
            Ok(r) => r.map_err(unavailable),
            Err(_) => Err(StateError::Unavailable("Redis command timed out".into())),
        }
    }

    async fn script(
        &self,
        script: &redis::Script,
        key: String,
        args: &[String],
    ) -> Result<i64, StateError> {
        let mut conn = self.conn.clone();
        let mut inv = script.key(key);
        for a in args {
            inv.arg(a);
        }
        match tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn)).await {
            Ok(r) => r.map_err(unavailable),
            Err(_) => Err(StateError::Unavailable("Redis script timed out".into())),
        }
    }

    fn ms(d: Duration) -> u64 {
        (d.as_millis() as u64).max(1)
    }
}

impl StateStore for RedisState {
    fn describe(&self) -> String {
        "redis".into()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StateError>> {
        async move {
            let pong: String = self.run(redis::cmd("PING")).await?;
            if pong == "PONG" {
                Ok(())
            } else {
                Err(StateError::Unavailable(format!("PING answered {pong:?}")))
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
            let key = self.key(&format!("node:{}", state.node_id));
            let summary = NodeSummary {
                state: NodeState {
                    agents: Vec::new(),
                    ..state.clone()
                },
            };
            let mut pipe = redis::pipe();
            pipe.atomic();
            pipe.cmd("DEL").arg(&key).ignore();
            pipe.cmd("HSET")
                .arg(&key)
                .arg(NODE_FIELD)
                .arg(to_json(&summary));
            for a in &state.agents {
                pipe.arg(&a.agent).arg(to_json(a));
            }
            pipe.ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(Self::ms(ttl)).ignore();
            pipe.cmd("SADD")
                .arg(self.key("nodes"))
                .arg(&state.node_id)
                .ignore();
            let mut conn = self.conn.clone();
            match tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut conn)).await {
                Ok(r) => r.map_err(unavailable),
                Err(_) => Err(StateError::Unavailable("Redis publish timed out".into())),
            }
        }
        .boxed()
    }

    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeState>, StateError>> {
        async move {
            let mut ids: Vec<String> = self
                .run(redis::cmd("SMEMBERS").arg(self.key("nodes")).clone())
                .await?;
            ids.sort();
            let mut out = Vec::new();
            for id in ids {
                let fields: std::collections::HashMap<String, String> = self
                    .run(
                        redis::cmd("HGETALL")
                            .arg(self.key(&format!("node:{id}")))
                            .clone(),
                    )
                    .await?;
                let Some(summary) = fields.get(NODE_FIELD) else {
                    // Expired: the node stopped publishing.
                    let _: i64 = self
                        .run(redis::cmd("SREM").arg(self.key("nodes")).arg(&id).clone())
                        .await?;
                    continue;
                };
                let mut node: NodeState = serde_json::from_str::<NodeSummary>(summary)
                    .map_err(|e| StateError::Corrupt(format!("node {id}: {e}")))?
                    .state;
                let mut agents: Vec<AgentState> = fields
                    .iter()
                    .filter(|(k, _)| k.as_str() != NODE_FIELD)
                    .map(|(k, v)| {
                        serde_json::from_str(v)
                            .map_err(|e| StateError::Corrupt(format!("node {id} agent {k}: {e}")))
                    })
                    .collect::<Result<_, _>>()?;
                agents.sort_by_key(|a| agent_order(&a.agent));
                node.agents = agents;
                out.push(node);
            }
            Ok(out)
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
            let set: Option<String> = self
                .run(
                    redis::cmd("SET")
                        .arg(self.key(&format!("lease:{alert_id}")))
                        .arg(node)
                        .arg("NX")
                        .arg("PX")
                        .arg(Self::ms(ttl))
                        .clone(),
                )
                .await?;
            Ok(set.is_some())
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
            let n = self
                .script(
                    &self.renew,
                    self.key(&format!("lease:{alert_id}")),
                    &[node.to_string(), Self::ms(ttl).to_string()],
                )
                .await?;
            Ok(n == 1)
        }
        .boxed()
    }

    fn release_lease<'a>(
        &'a self,
        alert_id: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        async move {
            self.script(
                &self.release,
                self.key(&format!("lease:{alert_id}")),
                &[node.to_string()],
            )
            .await
            .map(|_| ())
        }
        .boxed()
    }

    fn lease_holder<'a>(
        &'a self,
        alert_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StateError>> {
        async move {
            self.run(
                redis::cmd("GET")
                    .arg(self.key(&format!("lease:{alert_id}")))
                    .clone(),
            )
            .await
        }
        .boxed()
    }

    fn cache_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, StateError>> {
        async move { self.run(redis::cmd("GET").arg(self.key(key)).clone()).await }.boxed()
    }

    fn cache_put<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        async move {
            self.run(
                redis::cmd("SET")
                    .arg(self.key(key))
                    .arg(value)
                    .arg("PX")
                    .arg(Self::ms(ttl))
                    .clone(),
            )
            .await
        }
        .boxed()
    }
}

/// Agents in pipeline order for display.
fn agent_order(name: &str) -> usize {
    [
        "data_enrichment",
        "risk_scoring",
        "context_builder",
        "decision_maker",
        "supervisor_check",
    ]
    .iter()
    .position(|a| *a == name)
    .unwrap_or(usize::MAX)
}

/// JSON text of a plain struct (serialising these cannot fail).
fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

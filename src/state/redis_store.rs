//! State in Redis, through one multiplexed connection manager (it reconnects by itself).
//!
//! Key layout (all under the prefix, `aml_triage:` by default; see `docs/redis.md`):
//! * `node:{node_id}`: hash, field `node` (node summary JSON) and one field per agent (its
//!   [`super::AgentState`] JSON); expires unless republished;
//! * `nodes`: set of node ids that have published (pruned as their hashes expire);
//! * `lease:{alert_id}`: string, the holding node id, with a millisecond expiry;
//! * `provider:{name}`: hash, a model provider's limit record (`failures`, `open_until`,
//!   `probe_until`, `not_before`, `tat`; ms since the epoch), changed only by the two Lua
//!   scripts below so that nodes never race;
//! * `agent:{node_id}:{agent}`: string, an agent's supervision record JSON (restarts, failed
//!   mark), read back when the node starts again;
//! * `historical:{customer_id}`, `screening:{name}:{lists}:{inputs}`: cache strings with
//!   `CACHE_TTL`.

use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{AgentRecord, AgentState, NodeState, StateError, StateStore};
use crate::limits::{Admission, CallOutcome, ProviderRecord, ProviderRules};

/// `ProviderRecord::admit` on the provider hash. ARGV: now, interval, tolerance, probe ttl,
/// record ttl (ms). Returns {verdict, wait_ms}: 0 open, 1 go, 2 probe, 3 wait.
const ADMIT: &str = r"
local f = redis.call('HMGET', KEYS[1], 'open_until', 'probe_until', 'not_before', 'tat')
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local open_until = tonumber(f[1]) or 0
local probe_until = tonumber(f[2]) or 0
local not_before = tonumber(f[3]) or 0
local tat = tonumber(f[4]) or 0
if not_before > now then return {3, not_before - now} end
local probe = open_until ~= 0
if probe then
  if now < open_until then return {0, open_until - now} end
  if probe_until > now then return {0, probe_until - now} end
end
if interval > 0 then
  if tat < now then tat = now end
  if tat - now > tolerance then return {3, tat - now - tolerance} end
  redis.call('HSET', KEYS[1], 'tat', tat + interval)
end
if probe then
  redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[4]))
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if probe then return {2, 0} end
return {1, 0}";

/// `ProviderRecord::record` on the provider hash. ARGV: now, probe (0/1), outcome (0 success,
/// 1 unhealthy, 2 rate limited, 3 neutral), threshold, cooldown, pause, record ttl (ms).
const RECORD: &str = r"
local now = tonumber(ARGV[1])
local probe = ARGV[2] == '1'
local o = ARGV[3]
if o == '0' then
  redis.call('HSET', KEYS[1], 'failures', 0, 'open_until', 0, 'probe_until', 0)
elseif o == '1' then
  local n = redis.call('HINCRBY', KEYS[1], 'failures', 1)
  if probe or n >= tonumber(ARGV[4]) then
    redis.call('HSET', KEYS[1], 'open_until', now + tonumber(ARGV[5]), 'failures', 0, 'probe_until', 0)
  end
else
  if o == '2' then
    local nb = tonumber(redis.call('HGET', KEYS[1], 'not_before')) or 0
    local want = now + tonumber(ARGV[6])
    if want > nb then redis.call('HSET', KEYS[1], 'not_before', want) end
  end
  if probe then redis.call('HSET', KEYS[1], 'probe_until', 0) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return 1";

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
    admit: redis::Script,
    record: redis::Script,
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
            admit: redis::Script::new(ADMIT),
            record: redis::Script::new(RECORD),
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

    async fn script<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        key: String,
        args: &[String],
    ) -> Result<T, StateError> {
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
            let n: i64 = self
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
            self.script::<i64>(
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

    fn provider_admit<'a>(
        &'a self,
        provider: &'a str,
        now: i64,
        rules: &'a ProviderRules,
    ) -> BoxFuture<'a, Result<Admission, StateError>> {
        async move {
            let (verdict, wait): (i64, i64) = self
                .script(
                    &self.admit,
                    self.key(&format!("provider:{provider}")),
                    &[
                        now.to_string(),
                        rules.interval_ms().to_string(),
                        rules.tolerance_ms().to_string(),
                        Self::ms(rules.probe_ttl).to_string(),
                        Self::ms(rules.record_ttl()).to_string(),
                    ],
                )
                .await?;
            let retry_in = Duration::from_millis(wait.max(0) as u64);
            Ok(match verdict {
                0 => Admission::Open { retry_in },
                2 => Admission::Probe,
                3 => Admission::Wait { retry_in },
                _ => Admission::Go,
            })
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
            let (code, pause) = match outcome {
                CallOutcome::Success => (0, Duration::ZERO),
                CallOutcome::Unhealthy => (1, Duration::ZERO),
                CallOutcome::RateLimited { retry_after } => (
                    2,
                    retry_after
                        .unwrap_or(crate::limits::DEFAULT_RATE_LIMIT_PAUSE)
                        .min(crate::limits::MAX_RATE_LIMIT_PAUSE),
                ),
                CallOutcome::Neutral => (3, Duration::ZERO),
            };
            self.script::<i64>(
                &self.record,
                self.key(&format!("provider:{provider}")),
                &[
                    now.to_string(),
                    u8::from(probe).to_string(),
                    code.to_string(),
                    rules.threshold.max(1).to_string(),
                    Self::ms(rules.cooldown).to_string(),
                    (pause.as_millis() as u64).to_string(),
                    Self::ms(rules.record_ttl()).to_string(),
                ],
            )
            .await
            .map(|_| ())
        }
        .boxed()
    }

    fn provider_state<'a>(
        &'a self,
        provider: &'a str,
    ) -> BoxFuture<'a, Result<ProviderRecord, StateError>> {
        async move {
            let f: Vec<Option<i64>> = self
                .run(
                    redis::cmd("HMGET")
                        .arg(self.key(&format!("provider:{provider}")))
                        .arg(&["failures", "open_until", "probe_until", "not_before", "tat"])
                        .clone(),
                )
                .await?;
            let at = |i: usize| f.get(i).copied().flatten().unwrap_or(0);
            Ok(ProviderRecord {
                failures: u32::try_from(at(0)).unwrap_or(0),
                open_until: at(1),
                probe_until: at(2),
                not_before: at(3),
                tat: at(4),
            })
        }
        .boxed()
    }

    fn agent_record<'a>(
        &'a self,
        node: &'a str,
        agent: &'a str,
    ) -> BoxFuture<'a, Result<Option<AgentRecord>, StateError>> {
        async move {
            let raw: Option<String> = self
                .run(
                    redis::cmd("GET")
                        .arg(self.key(&format!("agent:{node}:{agent}")))
                        .clone(),
                )
                .await?;
            raw.map(|r| {
                serde_json::from_str(&r)
                    .map_err(|e| StateError::Corrupt(format!("agent record {agent}: {e}")))
            })
            .transpose()
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
            self.run(
                redis::cmd("SET")
                    .arg(self.key(&format!("agent:{node}:{agent}")))
                    .arg(to_json(record))
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

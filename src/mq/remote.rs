//! Agents on other nodes, reached over RabbitMQ.
//!
//! An agent listed in `REMOTE_AGENTS` keeps its place in the supervisor's [`Slot`]: the actor
//! is the same, but its step handler hands the work to a [`RemoteAgent`], which publishes the
//! step (a [`StepRequest`]: the alert and the earlier steps' outputs) to the agent's request
//! queue (`aml.agent.<name>`) with a correlation id and this node's exclusive reply queue, and
//! waits for the [`StepResponse`]. The wait runs under the agent's own deadline and
//! cancellation (see [`crate::actors::agent::guarded`]), so a slow or lost worker is an
//! ordinary [`AgentError::Timeout`]: the supervisor's retry policy, restart policy and
//! deterministic fail-safe apply unchanged. Requests carry an expiration equal to the
//! remaining deadline, so the broker drops those nobody will wait for; a worker that dies
//! mid-call leaves its request unacknowledged and RabbitMQ hands it to another worker.
//!
//! The serving side is `crate::actors::serve::serve_step`, run by [`crate::worker`]; this
//! module imports nothing of the actors.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{AmqpUrl, Backoff, LinkStatus, MqError, agent_queue, agent_short_name};
use crate::domain::AgentKind;
use crate::protocol::{AgentError, StepEnvelope, StepResult};

/// How long a call waits for the broker link (at start, or while it reconnects) before
/// failing as unreachable; the step's own deadline bounds it too.
const LINK_WAIT: Duration = Duration::from_secs(2);

/// How often the client counts the workers consuming each agent queue.
const CONSUMER_POLL: Duration = Duration::from_secs(1);

pub use crate::protocol::{StepInputs, StepRequest, StepResponse};

#[derive(Clone)]
struct Link {
    channel: Channel,
    reply_queue: String,
}

type Pending = HashMap<String, oneshot::Sender<StepResponse>>;

/// This node's side of remote agents: one connection, one exclusive reply queue, the calls
/// waiting for replies. Reconnects with backoff; calls made while the broker is unreachable
/// fail at once with a retryable error (the retry policy, then the fail-safe, take over).
pub struct RemoteClient {
    url: AmqpUrl,
    name: String,
    agent_queues: Vec<String>,
    link: Mutex<Option<Link>>,
    /// Workers consuming each agent queue at the last count (absent: not counted yet).
    consumers: Mutex<HashMap<String, u32>>,
    pending: Mutex<Pending>,
    status: LinkStatus,
    stop: CancellationToken,
    id_prefix: String,
    next_id: AtomicU64,
}

impl RemoteClient {
    /// Starts the client for `kinds` on `runtime` (its connection lives there).
    pub fn start(
        settings: &crate::Settings,
        kinds: &[AgentKind],
        runtime: &tokio::runtime::Handle,
    ) -> Result<Arc<Self>, MqError> {
        let url = settings.amqp_url.clone().ok_or(MqError::NotConfigured)?;
        let client = Arc::new(Self {
            url,
            name: format!("aml-triage remote agents {}", settings.node_id),
            agent_queues: kinds
                .iter()
                .map(|k| agent_queue(&settings.amqp_agent_queue_prefix, *k))
                .collect(),
            link: Mutex::new(None),
            consumers: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            status: LinkStatus::default(),
            stop: CancellationToken::new(),
            id_prefix: format!("{}-{:08x}", settings.node_id, fastrand::u32(..)),
            next_id: AtomicU64::new(0),
        });
        runtime.spawn(client.clone().maintain());
        Ok(client)
    }

    /// Whether the reply queue is up.
    pub fn status(&self) -> LinkStatus {
        self.status.clone()
    }

    /// Stops the connection; waiting calls fail (retryable).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_link(&self, link: Option<Link>) {
        *self.link.lock().unwrap_or_else(|p| p.into_inner()) = link;
    }

    async fn maintain(self: Arc<Self>) {
        let mut backoff = Backoff::new();
        while !self.stop.is_cancelled() {
            let result = self.session(&mut backoff).await;
            self.set_link(None);
            self.status.set(false);
            self.consumers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            // Dropping the senders fails the waiting calls now rather than at their deadline.
            self.lock_pending().clear();
            match result {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "remote agents: broker link lost, reconnecting")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = self.stop.cancelled() => break,
            }
        }
    }

    async fn session(&self, backoff: &mut Backoff) -> Result<(), MqError> {
        let url = &self.url;
        let conn = super::connect(url, &self.name).await?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| MqError::broker(url, e))?;
        // Requests wait in durable queues for a worker (until they expire).
        for q in &self.agent_queues {
            super::declare_durable_queue(url, &channel, q).await?;
        }
        let reply = channel
            .queue_declare(
                ShortString::from(""),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| MqError::broker(url, e))?;
        let reply_queue = reply.name().as_str().to_string();
        let mut replies = channel
            .basic_consume(
                ShortString::from(reply_queue.as_str()),
                ShortString::from(format!("{}-replies", self.id_prefix)),
                BasicConsumeOptions {
                    no_ack: true,
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| MqError::broker(url, e))?;
        let link_channel = channel.clone();
        self.set_link(Some(Link {
            channel,
            reply_queue,
        }));
        self.status.set(true);
        backoff.reset();
        tracing::info!(queues = ?self.agent_queues, "remote agents: broker link up");
        let mut poll = tokio::time::interval(CONSUMER_POLL);
        loop {
            tokio::select! {
                _ = poll.tick() => self.count_consumers(&link_channel).await?,
                _ = self.stop.cancelled() => {
                    let _ = conn.close(200, ShortString::from("shutdown")).await;
                    return Ok(());
                }
                next = replies.next() => match next {
                    Some(Ok(delivery)) => self.dispatch(&delivery.properties, &delivery.data),
                    Some(Err(e)) => return Err(MqError::broker(url, e)),
                    None => return Err(MqError::Broker("reply consumer ended".into())),
                },
            }
        }
    }

    /// Counts the workers on each agent queue (a passive declare), so that a call to an
    /// agent nobody serves fails at once, like a call to a crashed local agent, instead of
    /// waiting out its timeout.
    async fn count_consumers(&self, channel: &Channel) -> Result<(), MqError> {
        for q in &self.agent_queues {
            let previous = self
                .consumers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(q)
                .copied();
            let now = self
                .count_queue(channel, q)
                .await
                .map_err(|e| MqError::Broker(e.to_string()))?;
            if now == 0 && previous != Some(0) {
                tracing::warn!(queue = %q, "remote agents: no worker consumes this queue; its steps take the fail-safe");
            }
        }
        Ok(())
    }

    /// Counts `queue`'s consumers now (a passive declare) and remembers the count.
    async fn count_queue(&self, channel: &Channel, queue: &str) -> Result<u32, AgentError> {
        let declared = channel
            .queue_declare(
                ShortString::from(queue),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| AgentError::Remote {
                message: self.url.scrub(&e.to_string()),
                retryable: true,
            })?;
        let count = declared.consumer_count();
        self.consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(queue.to_string(), count);
        Ok(count)
    }

    fn dispatch(&self, properties: &BasicProperties, body: &[u8]) {
        let Some(id) = properties.correlation_id().as_ref() else {
            tracing::warn!("remote agents: reply without correlation id dropped");
            return;
        };
        // A reply nobody waits for is a late answer to an attempt already timed out (or
        // retried elsewhere): dropping it is correct.
        let Some(tx) = self.lock_pending().remove(id.as_str()) else {
            tracing::debug!(correlation_id = %id, "remote agents: late reply dropped");
            return;
        };
        let response = serde_json::from_slice::<StepResponse>(body)
            .unwrap_or_else(|e| StepResponse::failed("decode", e, true));
        let _ = tx.send(response);
    }

    /// The broker link, waiting up to [`LINK_WAIT`] for it: a call made while the node is
    /// still connecting, or during a short reconnection, goes through rather than failing.
    async fn wait_for_link(&self) -> Option<Link> {
        let start = Instant::now();
        loop {
            let link = self.link.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if link.is_some() || start.elapsed() >= LINK_WAIT || self.stop.is_cancelled() {
                return link;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends one step to `queue` and waits for its response (the caller bounds the wait).
    pub async fn call(
        &self,
        queue: &str,
        request: &StepRequest,
        timeout: Duration,
    ) -> Result<StepResponse, AgentError> {
        let unavailable = |why: String| AgentError::Remote {
            message: why,
            retryable: true,
        };
        let link = self
            .wait_for_link()
            .await
            .ok_or_else(|| unavailable("broker unreachable".into()))?;
        let workers = self
            .consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(queue)
            .copied();
        // The count is up to a second old: before failing, count again, so a worker that
        // has just come up is used.
        if workers == Some(0) && self.count_queue(&link.channel, queue).await? == 0 {
            return Err(unavailable(format!("no worker consumes {queue}")));
        }
        let id = format!(
            "{}-{}",
            self.id_prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(id.clone(), tx);
        let _forget = ForgetOnDrop {
            client: self,
            id: id.clone(),
        };
        let body = serde_json::to_vec(request).map_err(|e| AgentError::Remote {
            message: format!("cannot encode the step: {e}"),
            retryable: false,
        })?;
        let properties = BasicProperties::default()
            .with_correlation_id(ShortString::from(id))
            .with_reply_to(ShortString::from(link.reply_queue.as_str()))
            // The broker drops the request once nobody waits for it any more.
            .with_expiration(ShortString::from(timeout.as_millis().max(1).to_string()))
            .with_content_type(ShortString::from("application/json"))
            .with_type(ShortString::from(agent_short_name(request.agent)));
        link.channel
            .basic_publish(
                ShortString::from(""),
                ShortString::from(queue),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .map_err(|e| unavailable(self.url.scrub(&e.to_string())))?
            .await
            .map_err(|e| unavailable(self.url.scrub(&e.to_string())))?;
        rx.await
            .map_err(|_| unavailable("broker link lost while waiting for the reply".into()))
    }
}

impl crate::protocol::RemoteSteps for RemoteAgent {
    fn call_json(
        &self,
        env: &StepEnvelope,
        inputs: StepInputs,
    ) -> futures_util::future::LocalBoxFuture<'static, StepResult<serde_json::Value>> {
        Box::pin(self.call::<serde_json::Value>(env, inputs))
    }
}

/// Removes a call's entry however the call ends (reply, timeout, cancellation).
struct ForgetOnDrop<'a> {
    client: &'a RemoteClient,
    id: String,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.client.lock_pending().remove(&self.id);
    }
}

/// The remote backend of one agent actor.
#[derive(Clone)]
pub struct RemoteAgent {
    client: Arc<RemoteClient>,
    kind: AgentKind,
    queue: String,
}

impl RemoteAgent {
    /// `kind`'s backend over `client`, publishing to the queue named by `prefix`.
    pub fn new(client: Arc<RemoteClient>, kind: AgentKind, prefix: &str) -> Self {
        Self {
            client,
            kind,
            queue: agent_queue(prefix, kind),
        }
    }

    /// Runs the step remotely. The returned future is what the agent's guard bounds by the
    /// deadline and cancels: dropping it forgets the call.
    pub fn call<O: DeserializeOwned + 'static>(
        &self,
        env: &StepEnvelope,
        inputs: StepInputs,
    ) -> impl Future<Output = StepResult<O>> + 'static {
        let timeout = env.deadline.saturating_duration_since(Instant::now());
        let request = StepRequest {
            agent: self.kind,
            alert: (*env.alert).clone(),
            attempt: env.attempt,
            timeout_ms: timeout.as_millis() as u64,
            facts: inputs.facts,
            risk: inputs.risk,
            context: inputs.context,
            degraded_steps: inputs.degraded_steps,
        };
        let this = self.clone();
        async move {
            this.client
                .call(&this.queue, &request, timeout)
                .await?
                .into_result()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_keep_their_retry_class_across_the_wire() {
        let wire =
            serde_json::to_string(&StepResponse::from_result::<u32>(Err(AgentError::Timeout)))
                .unwrap();
        let back: StepResponse = serde_json::from_str(&wire).unwrap();
        let err = back.into_result::<u32>().unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        let cancelled = StepResponse::from_result::<u32>(Err(AgentError::Cancelled));
        assert!(!cancelled.into_result::<u32>().unwrap_err().is_retryable());
    }
}

//! Worker mode: `aml-triage worker --agents enrichment,risk` serves agent steps to the nodes
//! that list those agents in `REMOTE_AGENTS`.
//!
//! The worker runs the same agent actors as a node (same provider registry, reference data
//! and store for customer history), supervised the same way, inside an [`Engine`] that takes
//! no alerts of its own. For each agent it consumes the request queue
//! (`AMQP_AGENT_QUEUE_PREFIX` + name, e.g. `aml.agent.risk`) with prefetch bounded by
//! `MAX_CONCURRENT_ALERTS`, runs each [`StepRequest`] under the deadline it carries, replies
//! to the request's `reply_to` queue with its `correlation_id`, and acknowledges the request
//! only after replying: a worker killed mid-step leaves the request to another worker. Each
//! agent type scales by running more workers for it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Engine;
use crate::domain::AgentKind;
use crate::mq::remote::{StepRequest, StepResponse};
use crate::mq::{AmqpUrl, Backoff, LinkStatus, MqError, agent_queue};

/// A running worker.
pub struct Worker {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    status: LinkStatus,
}

impl Worker {
    /// Starts serving `agents` from `engine`'s local agents (on the current tokio runtime).
    /// The engine must run those agents locally (its `REMOTE_AGENTS` must not list them).
    pub fn start(engine: Arc<Engine>, agents: Vec<AgentKind>) -> Result<Worker, MqError> {
        let url = engine
            .settings()
            .amqp_url
            .clone()
            .ok_or(MqError::NotConfigured)?;
        if agents.is_empty() {
            return Err(MqError::Broker("a worker needs at least one agent".into()));
        }
        let status = LinkStatus::default();
        engine.register_broker_link("worker", status.clone());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(engine, url, agents, status.clone(), stop.clone()));
        Ok(Worker { stop, task, status })
    }

    /// Whether the worker is connected and consuming.
    pub fn is_connected(&self) -> bool {
        self.status.is_up()
    }

    /// Stops taking requests and waits (up to `SHUTDOWN_GRACE_SECONDS`) for the steps being
    /// run to be answered; the rest are redelivered to other workers.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn run(
    engine: Arc<Engine>,
    url: AmqpUrl,
    agents: Vec<AgentKind>,
    status: LinkStatus,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new();
    let mut in_flight = JoinSet::new();
    loop {
        let result = session(
            &engine,
            &url,
            &agents,
            &status,
            &stop,
            &mut backoff,
            &mut in_flight,
        )
        .await;
        status.set(false);
        match result {
            Ok(()) => break,
            Err(e) => tracing::warn!(error = %e, "worker: broker connection lost, reconnecting"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.cancelled() => break,
        }
        while in_flight.try_join_next().is_some() {}
    }
    let grace = Duration::from_secs_f64(engine.settings().shutdown_grace_seconds);
    let _ = tokio::time::timeout(grace, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
}

async fn session(
    engine: &Arc<Engine>,
    url: &AmqpUrl,
    agents: &[AgentKind],
    status: &LinkStatus,
    stop: &CancellationToken,
    backoff: &mut Backoff,
    in_flight: &mut JoinSet<()>,
) -> Result<(), MqError> {
    let settings = engine.settings();
    let broker = |e: lapin::Error| MqError::broker(url, e);
    let conn = crate::mq::connect(url, &format!("aml-triage worker {}", settings.node_id)).await?;
    let replies = conn.create_channel().await.map_err(broker)?;
    let mut streams = Vec::new();
    let mut channels = Vec::new();
    for kind in agents {
        let channel = conn.create_channel().await.map_err(broker)?;
        let queue = agent_queue(&settings.amqp_agent_queue_prefix, *kind);
        crate::mq::declare_durable_queue(url, &channel, &queue).await?;
        channel
            .basic_qos(settings.effective_prefetch(), BasicQosOptions::default())
            .await
            .map_err(broker)?;
        let tag = format!(
            "{}-worker-{queue}-{:08x}",
            settings.node_id,
            fastrand::u32(..)
        );
        let consumer = channel
            .basic_consume(
                ShortString::from(queue.as_str()),
                ShortString::from(tag.as_str()),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        streams.push(consumer.map(move |d| (*kind, d)));
        channels.push((channel, tag));
    }
    let mut requests = futures_util::stream::select_all(streams);
    status.set(true);
    backoff.reset();
    tracing::info!(agents = ?agents, "worker: serving agent requests");
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => None,
            next = requests.next() => Some(next),
        };
        match next {
            None => {
                for (channel, tag) in &channels {
                    let _ = channel
                        .basic_cancel(
                            ShortString::from(tag.as_str()),
                            BasicCancelOptions::default(),
                        )
                        .await;
                }
                let grace = Duration::from_secs_f64(settings.shutdown_grace_seconds);
                let _ = tokio::time::timeout(grace, async {
                    while in_flight.join_next().await.is_some() {}
                })
                .await;
                let _ = conn.close(200, ShortString::from("shutdown")).await;
                return Ok(());
            }
            Some(Some((kind, Ok(delivery)))) => {
                let (engine, replies) = (engine.clone(), replies.clone());
                in_flight.spawn(async move { serve(&engine, &replies, kind, delivery).await });
                while in_flight.try_join_next().is_some() {}
            }
            Some(Some((_, Err(e)))) => return Err(broker(e)),
            Some(None) => return Err(MqError::Broker("request consumers ended".into())),
        }
    }
}

async fn serve(engine: &Engine, replies: &Channel, kind: AgentKind, delivery: Delivery) {
    let reply_to = delivery.properties.reply_to().clone();
    let correlation_id = delivery.properties.correlation_id().clone();
    let response = match serde_json::from_slice::<StepRequest>(&delivery.data) {
        Err(e) => StepResponse::failed(
            "invalid_request",
            format!("unreadable step request: {e}"),
            false,
        ),
        Ok(req) if req.agent != kind => StepResponse::failed(
            "invalid_request",
            format!("a {} step sent to the {} queue", req.agent, kind),
            false,
        ),
        Ok(req) => {
            let span = tracing::info_span!("remote_step", agent = %kind, alert_id = %req.alert.alert_id, attempt = req.attempt);
            tracing::Instrument::instrument(engine.run_remote_step(req), span).await
        }
    };
    if let (Some(reply_to), Some(correlation_id)) = (reply_to, correlation_id) {
        let body = serde_json::to_vec(&response).unwrap_or_default();
        let properties = BasicProperties::default()
            .with_correlation_id(correlation_id)
            .with_content_type(ShortString::from("application/json"));
        let sent = replies
            .basic_publish(
                ShortString::from(""),
                reply_to,
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await;
        if let Err(e) = sent {
            // Not acknowledged either: the request goes to another worker if still wanted.
            tracing::warn!(error = %e, "worker: reply not sent");
            return;
        }
    } else {
        tracing::warn!(agent = %kind, "worker: request without reply_to or correlation_id dropped");
    }
    engine.metrics().mq_message("reply", kind.as_str());
    if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
        tracing::debug!(error = %e, "worker: ack not delivered (channel closed)");
    }
}

//! The bridge: alerts in from a durable RabbitMQ queue, decisions out to an exchange.
//!
//! Per message: parse and validate, submit to the engine (which persists the alert before any
//! agent runs), publish the decision to `AMQP_DECISION_EXCHANGE` (routing key = disposition)
//! with a publisher confirm, and only then acknowledge the alert. A crash anywhere before the
//! acknowledgement leaves the message unacknowledged, so RabbitMQ redelivers it; idempotency
//! turns the redelivery into the same single decision:
//!
//! - decided already: the stored decision is published again (consumers dedupe by
//!   `alert_id`, the message id) and the alert acknowledged;
//! - stored but undecided ([`TriageError::InProgress`], e.g. the node that took it died):
//!   [`Engine::resume_alert`] finishes it from its journal; the store keeps one decision even
//!   if two nodes finish it;
//! - invalid, or the same `alert_id` with different content: moved to the dead-letter queue
//!   with the reason (naming the field) in the `x-aml-reason` header, recorded as an audit
//!   event and counted; never requeued, so it cannot block the queue;
//! - the node is busy, shutting down or its store is failing: negatively acknowledged with
//!   requeue after a short delay, never dropped.
//!
//! Prefetch is bounded by admission (`AMQP_PREFETCH` <= `MAX_CONCURRENT_ALERTS`), so the
//! broker holds the backlog and each node takes what it can work on. The connection is
//! re-established with jittered exponential backoff when it drops; deliveries being worked on
//! keep going (their decision is persisted), and their redelivery is answered from the store.
//!
//! It runs as a tokio task beside the engine (not an actix actor: it only awaits the engine
//! and the broker, and owns no state an actor would protect).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::options::{BasicCancelOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::error::TriageError;
use crate::mq::{
    AmqpUrl, Backoff, LinkStatus, MqError, PERSISTENT, publish_confirmed, text_header,
};
use crate::{Alert, Decision};

/// Delay before a message the node cannot take now is handed back to the broker.
const REQUEUE_DELAY: Duration = Duration::from_secs(1);

/// Audit actor name of the bridge's own entries.
const AUDIT_ACTOR: &str = "mq_bridge";

/// A running bridge.
pub struct Bridge {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    status: LinkStatus,
}

impl Bridge {
    /// Starts consuming `AMQP_ALERT_QUEUE` for `engine` (on the current tokio runtime), and
    /// registers the link with the engine's readiness checks.
    pub fn start(engine: Arc<Engine>) -> Result<Bridge, MqError> {
        let url = engine
            .settings()
            .amqp_url
            .clone()
            .ok_or(MqError::NotConfigured)?;
        let status = LinkStatus::default();
        engine.register_broker_link("bridge", status.clone());
        let stop = CancellationToken::new();
        let ctx = Arc::new(Ctx {
            engine,
            url,
            status: status.clone(),
        });
        let task = tokio::spawn(run(ctx, stop.clone()));
        Ok(Bridge { stop, task, status })
    }

    /// Whether the bridge is connected and consuming.
    pub fn is_connected(&self) -> bool {
        self.status.is_up()
    }

    /// Stops taking messages and waits (up to `SHUTDOWN_GRACE_SECONDS`) for those being worked
    /// on to be decided, published and acknowledged. Messages not acknowledged by then are
    /// redelivered by the broker.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

struct Ctx {
    engine: Arc<Engine>,
    url: AmqpUrl,
    status: LinkStatus,
}

async fn run(ctx: Arc<Ctx>, stop: CancellationToken) {
    let mut backoff = Backoff::new();
    // Owned across reconnections: work on a delivery outlives the connection it came on.
    let mut in_flight = JoinSet::new();
    loop {
        let result = session(&ctx, &stop, &mut backoff, &mut in_flight).await;
        ctx.status.set(false);
        match result {
            Ok(()) => break,
            Err(e) => tracing::warn!(error = %e, "bridge: broker connection lost, reconnecting"),
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => break,
            // Reap finished work while waiting.
            _ = reap(&mut in_flight) => {}
        }
        if stop.is_cancelled() {
            break;
        }
    }
    let grace = Duration::from_secs_f64(ctx.engine.settings().shutdown_grace_seconds);
    let drained = tokio::time::timeout(grace, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = in_flight.len(),
            "bridge: shutdown grace over; unacknowledged alerts will be redelivered"
        );
    }
}

/// Waits forever, collecting finished delivery tasks (never completes while any remain).
async fn reap(set: &mut JoinSet<()>) {
    loop {
        if set.join_next().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}

async fn session(
    ctx: &Arc<Ctx>,
    stop: &CancellationToken,
    backoff: &mut Backoff,
    in_flight: &mut JoinSet<()>,
) -> Result<(), MqError> {
    let settings = ctx.engine.settings();
    let url = &ctx.url;
    let conn = crate::mq::connect(url, &format!("aml-triage bridge {}", settings.node_id)).await?;
    let broker = |e: lapin::Error| MqError::broker(url, e);
    let consume = conn.create_channel().await.map_err(broker)?;
    crate::mq::declare_bridge_topology(url, &consume, settings).await?;
    let publish = conn.create_channel().await.map_err(broker)?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(broker)?;
    consume
        .basic_qos(settings.effective_prefetch(), BasicQosOptions::default())
        .await
        .map_err(broker)?;
    let tag = format!("{}-bridge-{:08x}", settings.node_id, fastrand::u32(..));
    let mut consumer = consume
        .basic_consume(
            ShortString::from(settings.amqp_alert_queue.as_str()),
            ShortString::from(tag.as_str()),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(broker)?;
    ctx.status.set(true);
    backoff.reset();
    tracing::info!(
        queue = %settings.amqp_alert_queue,
        prefetch = settings.effective_prefetch(),
        "bridge: consuming alerts"
    );
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => None,
            next = consumer.next() => Some(next),
        };
        match next {
            None => {
                // No new deliveries; those taken are finished (and acked on this channel)
                // before the connection closes.
                let _ = consume
                    .basic_cancel(
                        ShortString::from(tag.as_str()),
                        BasicCancelOptions::default(),
                    )
                    .await;
                let grace = Duration::from_secs_f64(settings.shutdown_grace_seconds);
                let _ = tokio::time::timeout(grace, async {
                    while in_flight.join_next().await.is_some() {}
                })
                .await;
                let _ = conn.close(200, ShortString::from("shutdown")).await;
                return Ok(());
            }
            Some(Some(Ok(delivery))) => {
                let (ctx, publish) = (ctx.clone(), publish.clone());
                in_flight.spawn(async move { handle(&ctx, &publish, delivery).await });
                while in_flight.try_join_next().is_some() {}
            }
            Some(Some(Err(e))) => return Err(broker(e)),
            Some(None) => return Err(MqError::Broker("alert consumer ended".into())),
        }
    }
}

/// Why a message goes to the dead-letter queue.
struct Poison {
    kind: &'static str,
    reason: String,
    alert_id: Option<String>,
}

async fn handle(ctx: &Ctx, publish: &Channel, delivery: Delivery) {
    let engine = &ctx.engine;
    let settings = engine.settings();
    let raw = match std::str::from_utf8(&delivery.data) {
        Ok(raw) => raw,
        Err(e) => {
            let poison = Poison {
                kind: "not_utf8",
                reason: format!("$: message body is not UTF-8 text: {e}"),
                alert_id: None,
            };
            return dead_letter(ctx, publish, &delivery, poison).await;
        }
    };
    if let Err(e) = Alert::from_json_limited(raw, settings.max_alert_bytes) {
        let poison = Poison {
            kind: "invalid_alert",
            reason: e.to_string(),
            alert_id: alert_id_hint(raw),
        };
        return dead_letter(ctx, publish, &delivery, poison).await;
    }
    let result = match engine.submit_json(raw).await {
        // Stored without a decision and not in flight here: its node died (this is the
        // redelivery) or is still at it. Finish it from the journal; one decision either way.
        Err(TriageError::InProgress { alert_id }) => engine.resume_alert(&alert_id).await,
        other => other,
    };
    match result {
        Ok(decision) => publish_and_ack(ctx, publish, &delivery, &decision).await,
        Err(TriageError::Conflict { alert_id }) => {
            let poison = Poison {
                kind: "conflict",
                reason: format!(
                    "alert_id: {alert_id:?} was already received with different content; the first version is kept"
                ),
                alert_id: Some(alert_id),
            };
            dead_letter(ctx, publish, &delivery, poison).await
        }
        Err(TriageError::Invalid(e)) => {
            let poison = Poison {
                kind: "invalid_alert",
                reason: e.to_string(),
                alert_id: alert_id_hint(raw),
            };
            dead_letter(ctx, publish, &delivery, poison).await
        }
        Err(e) => {
            let reason = match &e {
                TriageError::Busy { .. } => "busy",
                TriageError::ShuttingDown => "shutting_down",
                TriageError::Store(_) => "store",
                // Another live node holds the alert's lease: it will decide it.
                TriageError::InProgress { .. } => "in_progress",
                _ => "unavailable",
            };
            tracing::warn!(error = %e, reason, "bridge: alert not decided now: requeueing");
            requeue(ctx, &delivery, reason).await;
        }
    }
}

async fn publish_and_ack(ctx: &Ctx, publish: &Channel, delivery: &Delivery, decision: &Decision) {
    let settings = ctx.engine.settings();
    let body = match serde_json::to_vec(decision) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, alert_id = %decision.alert_id, "bridge: cannot encode decision");
            return requeue(ctx, delivery, "encode").await;
        }
    };
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from(crate::mq::ALERT_ID_HEADER),
        text_header(&decision.alert_id),
    );
    headers.insert(
        ShortString::from(crate::mq::NODE_HEADER),
        text_header(&settings.node_id),
    );
    let properties = BasicProperties::default()
        .with_message_id(ShortString::from(decision.alert_id.as_str()))
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(PERSISTENT)
        .with_type(ShortString::from("aml.decision"))
        .with_headers(headers);
    let published = publish_confirmed(
        &ctx.url,
        publish,
        &settings.amqp_decision_exchange,
        decision.disposition.as_str(),
        &body,
        properties,
    )
    .await;
    match published {
        Ok(()) => {
            ctx.engine.metrics().mq_message("published", "");
            ack(delivery).await;
        }
        Err(e) => {
            // The decision is persisted; the redelivered alert publishes it again.
            tracing::warn!(error = %e, alert_id = %decision.alert_id, "bridge: decision not published: requeueing the alert");
            requeue(ctx, delivery, "publish").await;
        }
    }
}

async fn dead_letter(ctx: &Ctx, publish: &Channel, delivery: &Delivery, poison: Poison) {
    let settings = ctx.engine.settings();
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from(crate::mq::REASON_HEADER),
        text_header(&poison.reason),
    );
    headers.insert(
        ShortString::from(crate::mq::REASON_KIND_HEADER),
        text_header(poison.kind),
    );
    headers.insert(
        ShortString::from(crate::mq::SOURCE_QUEUE_HEADER),
        text_header(&settings.amqp_alert_queue),
    );
    headers.insert(
        ShortString::from(crate::mq::NODE_HEADER),
        text_header(&settings.node_id),
    );
    if let Some(id) = &poison.alert_id {
        headers.insert(
            ShortString::from(crate::mq::ALERT_ID_HEADER),
            text_header(id),
        );
    }
    let mut properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_headers(headers);
    if let Some(ct) = delivery.properties.content_type() {
        properties = properties.with_content_type(ct.clone());
    }
    // The body goes over unchanged, so an operator can fix and republish it.
    let moved = publish_confirmed(
        &ctx.url,
        publish,
        "",
        &settings.amqp_dead_letter_queue,
        &delivery.data,
        properties,
    )
    .await;
    if let Err(e) = moved {
        tracing::error!(error = %e, "bridge: cannot move a poison message to the dead-letter queue: requeueing");
        return requeue(ctx, delivery, "dead_letter_failed").await;
    }
    tracing::warn!(
        kind = poison.kind,
        reason = %poison.reason,
        alert_id = poison.alert_id.as_deref().unwrap_or("-"),
        dead_letter_queue = %settings.amqp_dead_letter_queue,
        "bridge: message dead-lettered"
    );
    let payload = json!({
        "kind": poison.kind,
        "reason": poison.reason,
        "queue": settings.amqp_alert_queue,
        "dead_letter_queue": settings.amqp_dead_letter_queue,
        "body_sha256": hex::encode(Sha256::digest(&delivery.data)),
        "body_bytes": delivery.data.len(),
        "redelivered": delivery.redelivered,
    });
    // Recorded in the audit chain; a store failure here is logged, not a reason to keep
    // the poison message in the queue (the dead-letter queue holds it).
    if let Err(e) = ctx
        .engine
        .store()
        .record_audit_event(
            AUDIT_ACTOR,
            "message_dead_lettered",
            poison.alert_id.as_deref(),
            payload,
        )
        .await
    {
        tracing::error!(error = %e, "bridge: dead-lettered message not recorded in the audit trail");
    }
    ctx.engine
        .metrics()
        .mq_message("dead_lettered", poison.kind);
    ack(delivery).await;
}

async fn requeue(ctx: &Ctx, delivery: &Delivery, reason: &str) {
    ctx.engine.metrics().mq_message("requeued", reason);
    tokio::time::sleep(REQUEUE_DELAY).await;
    let nacked = delivery
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await;
    if let Err(e) = nacked {
        // The channel is gone: the broker requeues the message itself.
        tracing::debug!(error = %e, "bridge: nack not delivered (channel closed)");
    }
}

async fn ack(delivery: &Delivery) {
    if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
        // The channel is gone: the message is redelivered and answered from the store.
        tracing::debug!(error = %e, "bridge: ack not delivered (channel closed)");
    }
}

/// The `alert_id` of a message that failed validation, if it is readable, for the
/// dead-letter header and the audit entry.
fn alert_id_hint(raw: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(raw).ok()?;
    let id = v.get("alert_id")?.as_str()?;
    (!id.is_empty() && id.len() <= 200).then(|| id.to_string())
}

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
//! broker holds the backlog and each node takes what it can work on.
//!
//! ## The bridge actor and its supervisor
//!
//! The consumer is an actix actor ([`BridgeActor`]) on an actor system of its own (thread
//! `aml-triage-bridge`): it connects (retrying with jittered exponential backoff while the
//! broker does not answer), declares the topology, and adds the lapin consumer stream to its
//! context; each delivery is then worked on as a task on the caller's tokio runtime, so work
//! in flight outlives the instance that took it. The actor stops itself when its consumer
//! ends or errors (channel or connection lost), and a panic stops it too. Its supervisor
//! (the bridge's own loop, linked to the instance by a drop signal: a stop is an event, not
//! found by polling) then closes the old connection (the broker requeues what that instance
//! had not acknowledged; redeliveries are answered from the store) and starts a fresh
//! instance after the agents' restart backoff ([`RestartPolicy`]), under the same
//! restart-intensity limit (`RESTART_MAX` within `RESTART_WINDOW_SECONDS`; past it the bridge
//! waits `FAILED_AGENT_COOLDOWN_SECONDS` before one more start). Its state (connected,
//! consuming, in flight, restarts) is published with the node's agent state
//! ([`crate::state::BridgeState`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext, Handler, Message, StreamHandler, WrapFuture};
use actix::{ActorFutureExt, Addr};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::options::{BasicCancelOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::actors::supervision::RestartPolicy;
use crate::engine::Engine;
use crate::error::TriageError;
use crate::mq::{
    AmqpUrl, Backoff, LinkStatus, MqError, PERSISTENT, publish_confirmed, text_header,
};
use crate::state::BridgeStatus;
use crate::{Alert, Decision};

/// Delay before a message the node cannot take now is handed back to the broker.
const REQUEUE_DELAY: Duration = Duration::from_secs(1);

/// Audit actor name of the bridge's own entries.
const AUDIT_ACTOR: &str = "mq_bridge";

/// A fault injected into the running bridge actor (tests and drills).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeFault {
    /// The actor panics in a handler.
    Panic,
    /// The actor's consuming channel is closed under it.
    CloseChannel,
}

/// A running bridge: its supervisor and the current actor instance.
pub struct Bridge {
    stop: CancellationToken,
    done: tokio::sync::oneshot::Receiver<()>,
    ctx: Arc<Ctx>,
}

impl Bridge {
    /// Starts consuming `AMQP_ALERT_QUEUE` for `engine` (deliveries are worked on the current
    /// tokio runtime), and registers the link with the engine's readiness checks and its
    /// state with the node's published agent state.
    pub fn start(engine: Arc<Engine>) -> Result<Bridge, MqError> {
        let url = engine
            .settings()
            .amqp_url
            .clone()
            .ok_or(MqError::NotConfigured)?;
        let status = LinkStatus::default();
        engine.register_broker_link("bridge", status.clone());
        let state = BridgeStatus::default();
        engine.register_bridge(state.clone());
        let settings = engine.settings();
        let policy = RestartPolicy {
            max_restarts: settings.restart_max,
            window: Duration::from_secs_f64(settings.restart_window_seconds),
            backoff: Duration::from_millis(settings.restart_backoff_ms),
            cooldown: Duration::from_secs_f64(settings.failed_agent_cooldown_seconds),
        };
        let stop = CancellationToken::new();
        let ctx = Arc::new(Ctx {
            engine,
            url,
            status,
            state,
            work: tokio::runtime::Handle::current(),
            session: Mutex::new(None),
            current: Mutex::new(None),
        });
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let (c, st) = (ctx.clone(), stop.clone());
        std::thread::Builder::new()
            .name("aml-triage-bridge".into())
            .spawn(move || {
                actix_rt::System::new().block_on(supervise(c, st, policy));
                let _ = done_tx.send(());
            })
            .map_err(|e| MqError::Broker(format!("cannot start the bridge thread: {e}")))?;
        Ok(Bridge { stop, done, ctx })
    }

    /// Whether the bridge is connected and consuming.
    pub fn is_connected(&self) -> bool {
        self.ctx.status.is_up()
    }

    /// The bridge's state (connected, consuming, in flight, restarts).
    pub fn state(&self) -> crate::state::BridgeState {
        self.ctx.state.snapshot()
    }

    /// Injects `fault` into the current actor instance (false when none is running).
    pub fn inject(&self, fault: BridgeFault) -> bool {
        match self.ctx.lock_current().as_ref() {
            Some(addr) if addr.connected() => {
                addr.do_send(Inject(fault));
                true
            }
            _ => false,
        }
    }

    /// Stops taking messages and waits (up to `SHUTDOWN_GRACE_SECONDS`) for those being worked
    /// on to be decided, published and acknowledged. Messages not acknowledged by then are
    /// redelivered by the broker.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let _ = (&mut self.done).await;
    }
}

impl Drop for Bridge {
    /// A bridge dropped without [`Bridge::stop`] stops too (without waiting).
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the bridge's instances share (and what outlives each of them).
struct Ctx {
    engine: Arc<Engine>,
    url: AmqpUrl,
    status: LinkStatus,
    state: BridgeStatus,
    /// Where deliveries are worked on and the connection is driven.
    work: tokio::runtime::Handle,
    /// The current instance's connection and consumer (closed by the supervisor).
    session: Mutex<Option<Session>>,
    /// The current instance.
    current: Mutex<Option<Addr<BridgeActor>>>,
}

impl Ctx {
    fn lock_session(&self) -> std::sync::MutexGuard<'_, Option<Session>> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Option<Addr<BridgeActor>>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_link(&self, connected: bool, consuming: bool) {
        self.status.set(connected && consuming);
        self.state.set_link(connected, consuming);
    }

    /// Closes the current session, if any: the broker requeues its unacknowledged messages.
    async fn close_session(&self, why: &str) {
        let session = self.lock_session().take();
        self.set_link(false, false);
        if let Some(s) = session {
            let why = ShortString::from(why);
            let _ = s.conn.close(200, why).await;
        }
    }

    /// Waits (up to `SHUTDOWN_GRACE_SECONDS`) for deliveries in flight to finish.
    async fn drain(&self) {
        let grace = Duration::from_secs_f64(self.engine.settings().shutdown_grace_seconds);
        let drained = tokio::time::timeout(grace, async {
            while self.state.snapshot().in_flight > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = self.state.snapshot().in_flight,
                "bridge: shutdown grace over; unacknowledged alerts will be redelivered"
            );
        }
    }
}

/// An open connection with its consuming channel.
struct Session {
    conn: Connection,
    consume: Channel,
    tag: String,
    publish: Channel,
}

impl Session {
    fn publish_of(&self) -> Channel {
        self.publish.clone()
    }
}

/// Runs bridge instances until `stop`: restarts a stopped or crashed instance after the
/// restart backoff, within the restart-intensity limit.
async fn supervise(ctx: Arc<Ctx>, stop: CancellationToken, policy: RestartPolicy) {
    let mut recent: VecDeque<std::time::Instant> = VecDeque::new();
    loop {
        let (gone_tx, gone) = tokio::sync::oneshot::channel::<()>();
        let addr = BridgeActor {
            ctx: ctx.clone(),
            _gone: gone_tx,
        }
        .start();
        *ctx.lock_current() = Some(addr.clone());
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = gone => {}
        }
        if stop.is_cancelled() {
            // No new deliveries; those taken are finished (and acknowledged on their
            // channel) before the connection closes.
            let consuming = ctx
                .lock_session()
                .as_ref()
                .map(|s| (s.consume.clone(), s.tag.clone()));
            if let Some((consume, tag)) = consuming {
                let cancel = ctx.work.spawn(async move {
                    consume
                        .basic_cancel(
                            ShortString::from(tag.as_str()),
                            BasicCancelOptions::default(),
                        )
                        .await
                });
                let _ = cancel.await;
            }
            ctx.drain().await;
            addr.do_send(Shutdown);
            let c = ctx.clone();
            let _ = ctx
                .work
                .spawn(async move { c.close_session("shutdown").await })
                .await;
            break;
        }
        // The instance stopped or crashed: close what it left open, then restart.
        let c = ctx.clone();
        let _ = ctx
            .work
            .spawn(async move { c.close_session("bridge restarting").await })
            .await;
        let now = std::time::Instant::now();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > policy.window)
        {
            recent.pop_front();
        }
        let delay = if recent.len() as u32 >= policy.max_restarts {
            tracing::error!(
                restarts = recent.len(),
                cooldown_s = policy.cooldown.as_secs_f64(),
                "bridge: restart limit reached: not consuming until the cooldown ends"
            );
            recent.clear();
            policy.cooldown
        } else {
            recent.push_back(now);
            policy.delay(recent.len() as u32)
        };
        tracing::warn!(
            delay_ms = delay.as_millis() as u64,
            "bridge: instance stopped: restarting"
        );
        tokio::select! {
            _ = stop.cancelled() => {
                ctx.drain().await;
                break;
            }
            _ = tokio::time::sleep(delay) => {}
        }
        ctx.state.restarted();
    }
    *ctx.lock_current() = None;
}

/// The consumer of one bridge instance.
pub struct BridgeActor {
    ctx: Arc<Ctx>,
    /// Dropped with the instance (stopped or unwound by a panic): tells the supervisor.
    _gone: tokio::sync::oneshot::Sender<()>,
}

impl Actor for BridgeActor {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let shared = self.ctx.clone();
        let connect = async move {
            let mut backoff = Backoff::new();
            loop {
                let s = shared.clone();
                match shared
                    .work
                    .spawn(async move { open_session(&s).await })
                    .await
                {
                    Ok(Ok(opened)) => return Some(opened),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "bridge: cannot connect to the broker, retrying")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "bridge: connection task failed");
                        return None;
                    }
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        };
        ctx.spawn(connect.into_actor(self).map(|opened, act, ctx| {
            let Some((session, consumer)) = opened else {
                ctx.stop();
                return;
            };
            *act.ctx.lock_session() = Some(session);
            act.ctx.set_link(true, true);
            let settings = act.ctx.engine.settings();
            tracing::info!(
                queue = %settings.amqp_alert_queue,
                prefetch = settings.effective_prefetch(),
                "bridge: consuming alerts"
            );
            ctx.add_stream(consumer);
        }));
    }
}

impl StreamHandler<Result<Delivery, lapin::Error>> for BridgeActor {
    fn handle(&mut self, item: Result<Delivery, lapin::Error>, ctx: &mut Self::Context) {
        match item {
            Ok(delivery) => {
                let Some(publish) = self.publish_channel() else {
                    // Not consuming any more: the broker redelivers it.
                    return;
                };
                let c = self.ctx.clone();
                c.state.add_in_flight(1);
                self.ctx.work.spawn(async move {
                    handle(&c, &publish, delivery).await;
                    c.state.add_in_flight(-1);
                });
            }
            Err(e) => {
                tracing::warn!(error = %MqError::broker(&self.ctx.url, e), "bridge: consumer failed: restarting");
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        tracing::warn!("bridge: alert consumer ended: restarting");
        ctx.stop();
    }
}

impl BridgeActor {
    fn publish_channel(&self) -> Option<Channel> {
        self.ctx.lock_session().as_ref().map(|s| s.publish_of())
    }
}

/// Stops the instance (the bridge is shutting down).
#[derive(Message)]
#[rtype(result = "()")]
struct Shutdown;

impl Handler<Shutdown> for BridgeActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Injects a fault.
#[derive(Message)]
#[rtype(result = "()")]
struct Inject(BridgeFault);

impl Handler<Inject> for BridgeActor {
    type Result = ();

    fn handle(&mut self, fault: Inject, _: &mut Self::Context) {
        match fault.0 {
            BridgeFault::Panic => panic!("injected bridge fault"),
            BridgeFault::CloseChannel => {
                let consume = self.ctx.lock_session().as_ref().map(|s| s.consume.clone());
                if let Some(consume) = consume {
                    self.ctx.work.spawn(async move {
                        let _ = consume
                            .close(200, ShortString::from("injected fault"))
                            .await;
                    });
                }
            }
        }
    }
}

/// Connects, declares the topology and starts consuming.
async fn open_session(ctx: &Ctx) -> Result<(Session, Consumer), MqError> {
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
    let consumer = consume
        .basic_consume(
            ShortString::from(settings.amqp_alert_queue.as_str()),
            ShortString::from(tag.as_str()),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(broker)?;
    Ok((
        Session {
            conn,
            consume,
            tag,
            publish,
        },
        consumer,
    ))
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

//! RabbitMQ: how the engine grows past one machine. RabbitMQ does the distribution (competing
//! consumers, redelivery of unacknowledged messages, per-queue scaling); the engine only
//! speaks to it.
//!
//! - [`bridge`]: consumes alerts from a durable queue with prefetch bounded by admission,
//!   decides each through the engine, publishes the decision with publisher confirms, and only
//!   then acknowledges the alert. Poison messages go to a dead-letter queue with the reason.
//! - [`remote`]: agents reached over per-agent request queues (correlation ids, one exclusive
//!   reply queue per node, per-call timeouts), and the wire format of a step.
//! - [`crate::worker`]: the other side of [`remote`], `aml-triage worker --agents ...`.
//!
//! Queue names and settings per topology are in `docs/deployment.md`.

pub mod remote;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::AgentKind;

/// Header carrying why a message was dead-lettered (names the offending field).
pub const REASON_HEADER: &str = "x-aml-reason";
/// Header carrying the reason's kind (`invalid_alert`, `conflict`, `not_utf8`).
pub const REASON_KIND_HEADER: &str = "x-aml-reason-kind";
/// Header carrying the alert id, when one could be read.
pub const ALERT_ID_HEADER: &str = "x-aml-alert-id";
/// Header carrying the queue a dead-lettered message came from.
pub const SOURCE_QUEUE_HEADER: &str = "x-aml-source-queue";
/// Header carrying the node that handled a message.
pub const NODE_HEADER: &str = "x-aml-node";

/// Persistent delivery mode (survives a broker restart on a durable queue).
pub const PERSISTENT: u8 = 2;

/// A RabbitMQ URL. It may hold a password, so `Debug`, `Display` and `Serialize` show it
/// with the password replaced by `***`; read it with [`AmqpUrl::expose`] only to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpUrl(String);

impl AmqpUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL itself, for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        crate::store::redact_url(&self.0)
    }

    /// `text` with the URL's password (raw and percent-decoded) replaced by `***`, for
    /// client errors that might echo it.
    pub fn scrub(&self, text: &str) -> String {
        crate::store::scrub_url_secret(text, &self.0)
    }
}

impl std::fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AmqpUrl({})", self.redacted())
    }
}

impl std::fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for AmqpUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for AmqpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(AmqpUrl)
    }
}

/// What talking to RabbitMQ failed with. Messages never hold the URL's password.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MqError {
    /// `AMQP_URL` is not set.
    #[error("AMQP_URL is not set")]
    NotConfigured,
    /// Could not connect.
    #[error("cannot connect to {url}: {message}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// What went wrong, password scrubbed.
        message: String,
    },
    /// A broker operation failed (connection or channel closed, declaration refused...).
    #[error("broker: {0}")]
    Broker(String),
    /// The broker refused (nacked) a confirmed publish.
    #[error("broker refused the message published to {0}")]
    Nacked(String),
}

impl MqError {
    /// A broker error, scrubbed of `url`'s password.
    pub fn broker(url: &AmqpUrl, e: impl std::fmt::Display) -> Self {
        MqError::Broker(url.scrub(&e.to_string()))
    }
}

/// Checks a queue or exchange name: 1 to 255 bytes of printable ASCII (AMQP short string),
/// not starting with `amq.` (reserved by the broker).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 200 {
        return Err(format!("must be 1 to 200 characters, got {}", name.len()));
    }
    if !name.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "must be printable ASCII without spaces, got {name:?}"
        ));
    }
    if name.starts_with("amq.") {
        return Err("names starting with `amq.` are reserved by RabbitMQ".into());
    }
    Ok(())
}

/// Short name of an agent in `REMOTE_AGENTS`, `worker --agents` and queue names.
pub fn agent_short_name(kind: AgentKind) -> &'static str {
    match kind {
        AgentKind::DataEnrichment => "enrichment",
        AgentKind::RiskScoring => "risk",
        AgentKind::ContextBuilder => "context",
        AgentKind::DecisionMaker => "decision",
        AgentKind::SupervisorCheck => "supervisor_check",
    }
}

/// Parses a comma list of agent short names (`enrichment,risk,context,decision`; the
/// journal's step names are accepted too). Returns them in pipeline order, without repeats.
pub fn parse_agent_list(text: &str) -> Result<Vec<AgentKind>, String> {
    let mut kinds = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let kind = AgentKind::ALL
            .into_iter()
            .find(|k| agent_short_name(*k) == name || k.as_str() == name)
            .ok_or_else(|| {
                format!("unknown agent {name:?} (expected enrichment, risk, context or decision)")
            })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    kinds.sort();
    Ok(kinds)
}

/// Request queue of `kind`: the prefix and the agent's short name (`aml.agent.risk`).
pub fn agent_queue(prefix: &str, kind: AgentKind) -> String {
    format!("{prefix}{}", agent_short_name(kind))
}

/// Opens a connection named `name` (shown in the management UI).
pub async fn connect(url: &AmqpUrl, name: &str) -> Result<Connection, MqError> {
    let props = ConnectionProperties::default().with_connection_name(LongString::from(name));
    // Connecting to an unreachable host can hang on the TCP handshake: bound it.
    match tokio::time::timeout(
        Duration::from_secs(15),
        Connection::connect(url.expose(), props),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(MqError::Connect {
            url: url.redacted(),
            message: url.scrub(&e.to_string()),
        }),
        Err(_) => Err(MqError::Connect {
            url: url.redacted(),
            message: "timed out after 15 s".into(),
        }),
    }
}

/// Declares a durable queue (idempotent; every party declares the same arguments).
pub async fn declare_durable_queue(
    url: &AmqpUrl,
    channel: &Channel,
    name: &str,
) -> Result<(), MqError> {
    channel
        .queue_declare(
            ShortString::from(name),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .map(|_| ())
        .map_err(|e| MqError::broker(url, e))
}

/// Declares the bridge's topology: the alert queue and the dead-letter queue (durable), and
/// the decision exchange (durable topic; routing key = disposition).
pub async fn declare_bridge_topology(
    url: &AmqpUrl,
    channel: &Channel,
    settings: &crate::Settings,
) -> Result<(), MqError> {
    declare_durable_queue(url, channel, &settings.amqp_alert_queue).await?;
    declare_durable_queue(url, channel, &settings.amqp_dead_letter_queue).await?;
    channel
        .exchange_declare(
            ShortString::from(settings.amqp_decision_exchange.as_str()),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| MqError::broker(url, e))
}

/// Publishes on a channel in confirm mode and waits for the broker's confirm.
pub async fn publish_confirmed(
    url: &AmqpUrl,
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), MqError> {
    let confirm = channel
        .basic_publish(
            ShortString::from(exchange),
            ShortString::from(routing_key),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .map_err(|e| MqError::broker(url, e))?
        .await
        .map_err(|e| MqError::broker(url, e))?;
    if confirm.is_nack() {
        let target = if exchange.is_empty() {
            routing_key
        } else {
            exchange
        };
        return Err(MqError::Nacked(target.to_string()));
    }
    Ok(())
}

/// A string header value.
pub fn text_header(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Exponential reconnection backoff with jitter: 0.5 s doubling to 30 s, reset once a
/// connection is up (the crate's one backoff, [`crate::backoff`]).
#[derive(Debug, Clone)]
pub struct Backoff(crate::backoff::Attempts);

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    const BASE: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(30);

    /// A fresh backoff.
    pub fn new() -> Self {
        Self(crate::backoff::Attempts::new(crate::backoff::Backoff::new(
            Self::BASE,
            Self::MAX,
            crate::backoff::Jitter::Half,
        )))
    }

    /// The next delay: jittered in [50%, 100%] of the exponential step so that nodes do not
    /// reconnect in lockstep after a broker restart.
    pub fn next_delay(&mut self) -> Duration {
        self.0.next_delay()
    }

    /// After a successful connection.
    pub fn reset(&mut self) {
        self.0.reset();
    }
}

/// Whether a broker link is up, shared with `/ready`.
#[derive(Debug, Clone, Default)]
pub struct LinkStatus(Arc<AtomicBool>);

impl LinkStatus {
    /// Marks the link up or down.
    pub fn set(&self, up: bool) {
        self.0.store(up, Ordering::Release);
    }

    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_password_is_never_shown() {
        let u = AmqpUrl::new("amqp://bridge:s3cret-pw@rabbit:5672/%2f");
        for shown in [
            format!("{u}"),
            format!("{u:?}"),
            serde_json::to_string(&u).unwrap(),
            u.scrub("connection to amqp://bridge:s3cret-pw@rabbit failed (s3cret-pw)"),
        ] {
            assert!(!shown.contains("s3cret-pw"), "{shown}");
        }
    }

    #[test]
    fn agent_lists_parse_in_pipeline_order() {
        assert_eq!(
            parse_agent_list(" risk, enrichment ,risk").unwrap(),
            vec![AgentKind::DataEnrichment, AgentKind::RiskScoring]
        );
        assert!(parse_agent_list("").unwrap().is_empty());
        assert!(
            parse_agent_list("enrichment,scoring")
                .unwrap_err()
                .contains("scoring")
        );
        assert_eq!(
            agent_queue("aml.agent.", AgentKind::ContextBuilder),
            "aml.agent.context"
        );
    }

    #[test]
    fn backoff_grows_and_resets() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        for _ in 0..20 {
            assert!(b.next_delay() <= Backoff::MAX);
        }
        assert!(first <= Backoff::BASE);
        b.reset();
        assert!(b.next_delay() <= Backoff::BASE);
    }
}

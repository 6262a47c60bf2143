//! RabbitMQ helpers: a fresh vhost per test (created with `rabbitmqctl`, deleted on drop),
//! publishing alerts, collecting published decisions and dead letters, queue counts.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

/// A vhost of its own on the shared broker at 127.0.0.1:5672.
pub struct TestVhost {
    pub name: String,
    pub url: String,
}

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl must be installed (RabbitMQ on 127.0.0.1:5672)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestVhost {
    pub fn new() -> TestVhost {
        Self::adopt(&format!("aml_test_{:016x}", fastrand::u64(..)))
    }

    /// Creates the vhost `name` (deleted on drop).
    pub fn adopt(name: &str) -> TestVhost {
        let name = name.to_string();
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        TestVhost {
            url: format!("amqp://guest:guest@127.0.0.1:5672/{name}"),
            name,
        }
    }

    /// Closes every client connection of this vhost (what a broker restart does to them),
    /// leaving the other tests' vhosts alone.
    pub fn close_all_connections(&self) {
        rabbitmqctl(&[
            "close_all_connections",
            "--vhost",
            &self.name,
            "test: simulated broker restart",
        ]);
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

pub async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("RabbitMQ must run on 127.0.0.1:5672")
}

/// A channel in confirm mode.
pub async fn confirmed_channel(conn: &Connection) -> Channel {
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch
}

pub async fn declare_queue(ch: &Channel, name: &str) -> lapin::Queue {
    ch.queue_declare(
        ShortString::from(name),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .unwrap()
}

/// A durable queue bound to every decision on `exchange` (declared as the bridge does).
pub async fn decision_sink(ch: &Channel, exchange: &str, queue: &str) {
    ch.exchange_declare(
        ShortString::from(exchange),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare_queue(ch, queue).await;
    ch.queue_bind(
        ShortString::from(queue),
        ShortString::from(exchange),
        ShortString::from("#"),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
}

/// Publishes `bodies` to `queue` (persistent, confirmed).
pub async fn publish_all(ch: &Channel, queue: &str, bodies: &[String]) {
    for body in bodies {
        let confirm = ch
            .basic_publish(
                ShortString::from(""),
                ShortString::from(queue),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        drop(confirm);
    }
    let returned = ch.wait_for_confirms().await.unwrap();
    assert!(returned.is_empty());
}

/// Messages ready and consumers of `queue` now.
pub async fn queue_counts(ch: &Channel, queue: &str) -> (u32, u32) {
    let q = ch
        .queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    (q.message_count(), q.consumer_count())
}

/// Waits until `queue` has `n` consumers.
pub async fn wait_for_consumers(ch: &Channel, queue: &str, n: u32, limit: Duration) {
    let start = Instant::now();
    loop {
        let (_, consumers) = queue_counts(ch, queue).await;
        if consumers >= n {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{queue}: {consumers} consumer(s), expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A received message: body and string headers.
pub struct Received {
    pub body: Vec<u8>,
    pub headers: HashMap<String, String>,
    pub message_id: Option<String>,
}

/// Consumes `queue` until `done` says so or `limit` passes; acks everything it takes.
pub async fn collect(
    ch: &Channel,
    queue: &str,
    limit: Duration,
    mut done: impl FnMut(&[Received]) -> bool,
) -> Vec<Received> {
    let mut consumer = ch
        .basic_consume(
            ShortString::from(queue),
            ShortString::from(format!("test-{:08x}", fastrand::u32(..))),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while !done(&got) {
        let next = tokio::time::timeout_at(deadline, consumer.next()).await;
        let Ok(Some(Ok(d))) = next else { break };
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
        let headers = d
            .properties
            .headers()
            .as_ref()
            .map(|h| {
                h.inner()
                    .iter()
                    .filter_map(|(k, v)| {
                        let text = match v {
                            lapin::types::AMQPValue::LongString(s) => {
                                String::from_utf8_lossy(s.as_bytes()).into_owned()
                            }
                            lapin::types::AMQPValue::ShortString(s) => s.as_str().to_string(),
                            _ => return None,
                        };
                        Some((k.as_str().to_string(), text))
                    })
                    .collect()
            })
            .unwrap_or_default();
        got.push(Received {
            message_id: d
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.as_str().to_string()),
            body: d.data,
            headers,
        });
    }
    got
}

/// Decisions collected until every one of `ids` has been seen at least once.
pub async fn collect_decisions(
    ch: &Channel,
    queue: &str,
    ids: &[String],
    limit: Duration,
) -> HashMap<String, usize> {
    let wanted: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    let got = collect(ch, queue, limit, |got| {
        let seen: std::collections::HashSet<&str> =
            got.iter().filter_map(|r| r.message_id.as_deref()).collect();
        wanted.iter().all(|id| seen.contains(id))
    })
    .await;
    let mut counts = HashMap::new();
    for r in got {
        let d: serde_json::Value = serde_json::from_slice(&r.body).expect("decision is JSON");
        let id = d["alert_id"].as_str().unwrap().to_string();
        assert_eq!(r.message_id.as_deref(), Some(id.as_str()));
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// `n` alerts with ids `{prefix}-0000`..., cycling through the sample file (clean and
/// escalating ones, so every step runs).
pub fn alerts(prefix: &str, n: usize) -> Vec<String> {
    let sample = include_str!("../../examples/alerts.sample.jsonl");
    let lines: Vec<&str> = sample.lines().filter(|l| !l.trim().is_empty()).collect();
    (0..n)
        .map(|i| {
            let mut v: serde_json::Value = serde_json::from_str(lines[i % lines.len()]).unwrap();
            v["alert_id"] = format!("{prefix}-{i:04}").into();
            v.to_string()
        })
        .collect()
}

pub fn ids(bodies: &[String]) -> Vec<String> {
    bodies
        .iter()
        .map(|b| {
            let v: serde_json::Value = serde_json::from_str(b).unwrap();
            v["alert_id"].as_str().unwrap().to_string()
        })
        .collect()
}

/// A RabbitMQ node of the test's own on a random port (same installation, its own data and
/// log folders), so that the test can restart the broker without touching the shared one on
/// 5672. Halted on drop.
pub struct PrivateBroker {
    pub node: String,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl PrivateBroker {
    pub async fn start() -> PrivateBroker {
        let dir = tempfile::tempdir().unwrap();
        let id = fastrand::u32(..);
        let port = 30_000 + (id % 10_000) as u16;
        let dist_port = 40_000 + (id % 10_000) as u16;
        let node = format!("aml_test_{id:08x}@localhost");
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(
            dir.path().join("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{port}\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        // The server drops to the `rabbitmq` user: it must own its folders.
        let _ = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq", &dir.path().display().to_string()])
            .status();
        let started = Command::new("rabbitmq-server")
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", path("pid"))
            .status()
            .expect("rabbitmq-server must be installed");
        assert!(started.success());
        let broker = PrivateBroker {
            node,
            port,
            _dir: dir,
        };
        broker.wait_listening(Duration::from_secs(120)).await;
        broker
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    async fn wait_listening(&self, limit: Duration) {
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                start.elapsed() < limit,
                "private broker {} did not listen on {}",
                self.node,
                self.port
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Restarts the broker application: every connection drops, the listener closes, the
    /// queues are recovered from disk, then it listens again.
    pub async fn restart(&self, down_for: Duration) {
        rabbitmqctl(&["-n", &self.node, "stop_app"]);
        tokio::time::sleep(down_for).await;
        rabbitmqctl(&["-n", &self.node, "start_app"]);
        self.wait_listening(Duration::from_secs(60)).await;
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .output();
    }
}

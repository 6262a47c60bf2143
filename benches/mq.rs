//! Throughput over RabbitMQ: one node, then two competing nodes on the same queue.
//!
//! ```sh
//! createdb -h 127.0.0.1 -U postgres aml_bench_mq
//! cargo bench --bench mq -- --database-url postgres://postgres@127.0.0.1:5432/aml_bench_mq \
//!     [--alerts 2000] [--latency-ms 100] [--concurrency 20] [--nodes 1,2] [--file FILE] \
//!     [--amqp-url amqp://guest:guest@127.0.0.1:5672/%2f]
//! ```
//!
//! Each run starts `--nodes` `aml-triage serve --no-resume` processes (the release binary)
//! on fresh queue names, waits until they all consume, publishes `--alerts` alerts (fresh ids,
//! cycled from `--file`, the sample file by default), and measures from the first publish to
//! the last decision read back from the decision exchange. The offline provider waits
//! `--latency-ms` per model call (`OFFLINE_LATENCY_MS`): a stand-in for a remote model of fixed
//! latency, three calls per alert, so one node's bound is concurrency / (3 x latency).

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn consumers(ch: &Channel, queue: &str) -> u32 {
    ch.queue_declare(
        ShortString::from(queue),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .map(|q| q.consumer_count())
    .unwrap_or(0)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    ch: &Channel,
    amqp_url: &str,
    database_url: &str,
    alerts: &[serde_json::Value],
    n: usize,
    nodes: usize,
    latency_ms: u64,
    concurrency: usize,
) -> f64 {
    let tag = format!("{:08x}", fastrand::u32(..));
    let queue = format!("bench.{tag}.alerts");
    let exchange = format!("bench.{tag}.decisions");
    let sink = format!("bench.{tag}.sink");
    ch.exchange_declare(
        ShortString::from(exchange.as_str()),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        ShortString::from(sink.as_str()),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        ShortString::from(sink.as_str()),
        ShortString::from(exchange.as_str()),
        ShortString::from("#"),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        ShortString::from(queue.as_str()),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let children = (0..nodes)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_aml-triage"))
                .env("DATABASE_URL", database_url)
                .env("NODE_ID", format!("bench-{tag}-{i}"))
                .env("AMQP_URL", amqp_url)
                .env("AMQP_ALERT_QUEUE", &queue)
                .env("AMQP_DECISION_EXCHANGE", &exchange)
                .env("AMQP_DEAD_LETTER_QUEUE", format!("bench.{tag}.dead"))
                .env("OFFLINE_LATENCY_MS", latency_ms.to_string())
                .env("MAX_CONCURRENT_ALERTS", concurrency.to_string())
                .env("LOG_LEVEL", "error")
                .env("HTTP_BIND", "127.0.0.1:0")
                .env("PROMETHEUS_PORT", "0")
                .args(["serve", "--no-resume"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("aml-triage binary")
        })
        .collect();
    let _nodes = Nodes(children);
    let start = Instant::now();
    while consumers(ch, &queue).await < nodes as u32 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "nodes did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut decisions = ch
        .basic_consume(
            ShortString::from(sink.as_str()),
            ShortString::from(format!("bench-{tag}")),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    for i in 0..n {
        let mut a = alerts[i % alerts.len()].clone();
        a["alert_id"] = format!("bench-{tag}-{i:06}").into();
        drop(
            ch.basic_publish(
                ShortString::from(""),
                ShortString::from(queue.as_str()),
                BasicPublishOptions::default(),
                a.to_string().as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap(),
        );
    }
    ch.wait_for_confirms().await.unwrap();
    let mut seen = HashSet::new();
    while seen.len() < n {
        let d = tokio::time::timeout(Duration::from_secs(300), decisions.next())
            .await
            .expect("decisions stopped arriving")
            .unwrap()
            .unwrap();
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
        if let Some(id) = d.properties.message_id() {
            seen.insert(id.as_str().to_string());
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    for q in [&queue, &sink, &format!("bench.{tag}.dead")] {
        let _ = ch
            .queue_delete(ShortString::from(q.as_str()), QueueDeleteOptions::default())
            .await;
    }
    let _ = ch
        .exchange_delete(
            ShortString::from(exchange.as_str()),
            ExchangeDeleteOptions::default(),
        )
        .await;
    n as f64 / elapsed
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(database_url) = arg(&args, "--database-url") else {
        eprintln!(
            "usage: cargo bench --bench mq -- --database-url postgres://... [--alerts N] [--latency-ms MS] [--concurrency N] [--nodes 1,2] [--file FILE] [--amqp-url URL]"
        );
        return;
    };
    let amqp_url =
        arg(&args, "--amqp-url").unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let n: usize = arg(&args, "--alerts").map_or(2000, |v| v.parse().expect("--alerts N"));
    let latency_ms: u64 = arg(&args, "--latency-ms").map_or(100, |v| v.parse().expect("ms"));
    let concurrency: usize =
        arg(&args, "--concurrency").map_or(20, |v| v.parse().expect("--concurrency N"));
    let node_counts: Vec<usize> = arg(&args, "--nodes")
        .unwrap_or_else(|| "1,2".into())
        .split(',')
        .map(|v| v.trim().parse().expect("--nodes 1,2"))
        .collect();
    let file = arg(&args, "--file").unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/alerts.sample.jsonl").into()
    });
    let alerts: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .expect("--file")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            // Labelled evaluation lines wrap the alert.
            v.get("alert").cloned().unwrap_or(v)
        })
        .collect();
    let conn = Connection::connect(&amqp_url, ConnectionProperties::default())
        .await
        .expect("RabbitMQ");
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let bound = if latency_ms == 0 {
        "CPU-bound".to_string()
    } else {
        let b = concurrency as f64 / (3.0 * latency_ms as f64 / 1000.0);
        format!("bound {b:.0} alerts/s per node")
    };
    println!(
        "{n} alerts, model latency {latency_ms} ms x 3 calls, MAX_CONCURRENT_ALERTS {concurrency} per node ({bound})"
    );
    let mut first = None;
    for nodes in node_counts {
        let rate = run(
            &ch,
            &amqp_url,
            &database_url,
            &alerts,
            n,
            nodes,
            latency_ms,
            concurrency,
        )
        .await;
        let base = *first.get_or_insert(rate);
        println!(
            "nodes {nodes}: {rate:.0} alerts/s ({:.2}x the first run)",
            rate / base
        );
    }
}

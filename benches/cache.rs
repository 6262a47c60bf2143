//! The caches' effect on a batch where customers repeat: the same alerts decided with
//! `CACHE_TTL=0` (caches off) and `CACHE_TTL=900` (on), against Redis and a customer-data API
//! stub that answers after a fixed delay (a stand-in for a remote service).
//!
//! ```sh
//! cargo bench --bench cache -- --file ../shared/data/amlsim-dev.eval.jsonl --lists ../shared/data \
//!     [--alerts 2000] [--customers 100] [--api-latency-ms 20] [--redis redis://127.0.0.1:6379]
//! ```
//!
//! Alert `i` gets the customer record of alert `i % customers` (same id, name, date of birth,
//! ...), so each customer comes back `alerts / customers` times. Each run uses fresh alert ids
//! and its own Redis key prefix, so nothing is shared between runs. The offline provider
//! answers the model steps; the in-memory store keeps the database out of the figures.

use std::time::{Duration, Instant};

use aml_triage::{Engine, Settings};
use futures_util::StreamExt;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

struct RunReport {
    alerts_per_s: f64,
    api_calls: usize,
    history: (u64, u64),
    screening: (u64, u64),
    enrichment_ms_mean: f64,
    enrichment_ms_p50: u64,
}

async fn run(
    settings: Settings,
    alerts: &[serde_json::Value],
    api: &MockServer,
    api_latency: Duration,
    tag: &str,
) -> RunReport {
    api.reset().await;
    mount(api, api_latency).await;
    let width = settings.max_concurrent_alerts;
    let engine = Engine::builder(settings)
        .resume_unfinished(false)
        .start()
        .await
        .expect("engine starts");
    let started = Instant::now();
    let engine_ref = &engine;
    let decisions: Vec<_> = futures_util::stream::iter(alerts.iter().enumerate())
        .map(|(i, a)| {
            let mut a = a.clone();
            a["alert_id"] = format!("{tag}-{i}").into();
            async move { engine_ref.submit_json(&a.to_string()).await }
        })
        .buffered(width)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut enrichment: Vec<u64> = decisions
        .iter()
        .map(|d| {
            let d = d.as_ref().expect("decided");
            d.agents
                .iter()
                .find(|c| c.agent == aml_triage::domain::AgentKind::DataEnrichment)
                .map_or(0, |c| c.latency_ms)
        })
        .collect();
    enrichment.sort_unstable();
    let report = RunReport {
        alerts_per_s: alerts.len() as f64 / elapsed.as_secs_f64(),
        api_calls: api.received_requests().await.map_or(0, |r| r.len()),
        history: engine.metrics().cache_counts("historical"),
        screening: engine.metrics().cache_counts("screening"),
        enrichment_ms_mean: enrichment.iter().sum::<u64>() as f64 / enrichment.len() as f64,
        enrichment_ms_p50: enrichment[enrichment.len() / 2],
    };
    engine.shutdown().await;
    report
}

/// The customer-data stub: every customer has two past alerts; answers after the delay.
async fn mount(api: &MockServer, delay: Duration) {
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(delay).set_body_json(
            serde_json::json!({
                "past_alerts": [
                    {"alert_id": "P1", "disposition": "AUTO_CLEAR"},
                    {"alert_id": "P2", "disposition": "ESCALATE_L2"}
                ],
                "account_profile": {"segment": "retail"}
            }),
        ))
        .mount(api)
        .await;
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && arg(&args, "--file").is_none() {
        eprintln!(
            "usage: cargo bench --bench cache -- --file FILE [--lists PATH] [--alerts N] [--customers K] [--api-latency-ms MS] [--redis URL]"
        );
        return;
    }
    let file = arg(&args, "--file").expect("--file FILE");
    let n: usize = arg(&args, "--alerts").map_or(2000, |v| v.parse().expect("--alerts N"));
    let k: usize = arg(&args, "--customers").map_or(100, |v| v.parse().expect("--customers K"));
    let api_latency_ms: u64 =
        arg(&args, "--api-latency-ms").map_or(20, |v| v.parse().expect("--api-latency-ms MS"));
    let api_latency = Duration::from_millis(api_latency_ms);
    let redis = arg(&args, "--redis").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let text = std::fs::read_to_string(&file).expect("readable file");
    let source: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v.get("alert").cloned().unwrap_or(v)
        })
        .collect();
    assert!(source.len() >= k, "fewer alerts than customers");
    let alerts: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let mut a = source[i % source.len()].clone();
            a["customer"] = source[i % k]["customer"].clone();
            a
        })
        .collect();

    let api = MockServer::start().await;
    let mut settings = Settings::load(None).expect("configuration");
    settings.log_level = "error".into();
    settings.database_url = "memory".into();
    settings.redis_url = Some(redis);
    settings.external_data_api_url = Some(api.uri());
    if let Some(l) = arg(&args, "--lists") {
        settings.list_paths = vec![l.into()];
    }
    let tag = format!("{:08x}", fastrand::u32(..));
    println!(
        "{n} alerts, {k} customers ({} alerts each), customer-data API latency {api_latency_ms} ms",
        n / k
    );
    println!(
        "| caches | alerts/s | API calls | history hit/miss | screening hit/miss | enrichment mean | enrichment p50 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (label, ttl) in [("off (CACHE_TTL=0)", 0u64), ("on (CACHE_TTL=900)", 900)] {
        let s = Settings {
            cache_ttl: ttl,
            redis_key_prefix: format!("aml_triage_bench:{tag}:{ttl}:"),
            ..settings.clone()
        };
        let r = run(s, &alerts, &api, api_latency, &format!("bench-{tag}-{ttl}")).await;
        println!(
            "| {label} | {:.0} | {} | {}/{} | {}/{} | {:.1} ms | {} ms |",
            r.alerts_per_s,
            r.api_calls,
            r.history.0,
            r.history.1,
            r.screening.0,
            r.screening.1,
            r.enrichment_ms_mean,
            r.enrichment_ms_p50
        );
    }
}

//! End-to-end throughput benchmark: decides the alerts of a file through the full engine and
//! reports alerts/s, latency percentiles and peak resident memory.
//!
//! ```sh
//! cargo bench --bench triage -- --file ../shared/data/amlsim-dev.eval.jsonl --repeat 3 \
//!     --database-url memory [--llm-latency-ms 200] [--concurrency 1000]
//! ```
//!
//! Each repetition gives the alerts fresh ids, so idempotency never short-cuts the work.
//! With `--llm-latency-ms`, the three model calls (context builder, decision maker, supervisor
//! check) wait that long per call (a stand-in
//! for a remote model), which shows how close the engine gets to the bound the admission
//! limit sets: concurrency / (3 x latency), three model calls per alert.

use std::time::{Duration, Instant};

use aml_triage::{Engine, Settings};
use futures_util::StreamExt;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// CPU time (user + system) of this process so far, in seconds: `/proc/self/stat` counts all
/// threads, in clock ticks of 1/100 s (Linux's `USER_HZ`).
fn process_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) start at its closing ')'.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && arg(&args, "--file").is_none() {
        // `cargo bench` with no arguments: nothing to measure without an input file.
        eprintln!(
            "usage: cargo bench --bench triage -- --file FILE [--repeat N] [--database-url URL] [--llm-latency-ms MS] [--concurrency N] [--lists PATH] [--jurisdictions FILE]"
        );
        return;
    }
    let file = arg(&args, "--file").expect("--file FILE");
    let repeat: usize = arg(&args, "--repeat").map_or(1, |v| v.parse().expect("--repeat N"));
    let mut settings = Settings::load(None).expect("configuration");
    settings.log_level = "error".into();
    settings.database_url = arg(&args, "--database-url").unwrap_or_else(|| "memory".into());
    if let Some(c) = arg(&args, "--concurrency") {
        settings.max_concurrent_alerts = c.parse().expect("--concurrency N");
    }
    if let Some(l) = arg(&args, "--lists") {
        settings.list_paths = vec![l.into()];
    }
    if let Some(j) = arg(&args, "--jurisdictions") {
        settings.jurisdiction_path = Some(j.into());
    }
    // The offline provider waits this long per call: a stand-in for a remote model.
    let latency =
        arg(&args, "--llm-latency-ms").map(|v| Duration::from_millis(v.parse().expect("ms")));
    if let Some(l) = latency {
        settings.offline_latency_ms = l.as_millis() as u64;
    }
    let width = settings.max_concurrent_alerts;
    let engine = Engine::builder(settings.clone())
        .resume_unfinished(false)
        .start()
        .await
        .expect("engine starts");

    let text = std::fs::read_to_string(&file).expect("readable file");
    let run_tag = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let n = lines.len() * repeat;
    let rss_before = peak_rss_mib();
    // Alerts are built as they are submitted and only latencies are kept, so the process's
    // memory is the engine's, not the benchmark's.
    let inputs = (0..repeat).flat_map(|r| lines.iter().map(move |line| (r, *line)));
    let run_tag = &run_tag;
    let engine = &engine;
    let cpu_before = process_cpu_s();
    let started = Instant::now();
    let mut latencies: Vec<u64> = futures_util::stream::iter(inputs)
        .map(|(r, line)| async move {
            // Only the request body lives across the await: the parsed tree is the
            // benchmark's, and would count against the engine's memory while in flight.
            let body = {
                let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
                let mut a = v.get("alert").cloned().unwrap_or(v);
                let id = a["alert_id"].as_str().unwrap_or_default().to_string();
                a["alert_id"] = format!("{id}:{run_tag}-{r}").into();
                a.to_string()
            };
            engine
                .submit_json(&body)
                .await
                .ok()
                .map(|d| d.processing_time_ms)
        })
        .buffer_unordered(width)
        .filter_map(futures_util::future::ready)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let cpu = process_cpu_s() - cpu_before;
    let failed = n - latencies.len();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "alerts {n} failed {failed} elapsed {:.2}s throughput {:.0} alerts/s p50 {} ms p99 {} ms peak_rss {:.1} MiB (before submitting: {rss_before:.1} MiB) store {} concurrency {width} llm_latency_ms {}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        peak_rss_mib(),
        settings
            .database_url
            .split('@')
            .next_back()
            .unwrap_or_default(),
        latency.map_or(0, |l| l.as_millis()),
    );
    // Model calls, tokens and cost per decided alert, from the engine's own counters.
    let metrics = engine.metrics_text();
    let total = |family: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let decided = latencies.len().max(1) as f64;
    println!(
        "engine cpu {:.3} ms/alert (user + system of the benchmark process during the run)",
        1000.0 * cpu / n.max(1) as f64
    );
    println!(
        "model calls {:.2}/alert tokens {:.0}/alert cost ${:.6}/alert",
        total("aml_triage_llm_calls_total") / decided,
        total("aml_triage_llm_tokens_total") / decided,
        total("aml_triage_llm_cost_usd_total") / decided + 0.0, // no "-0"
    );
    if let Some(l) = latency {
        // Three model calls per alert: context builder, decision maker, supervisor check.
        let bound = width as f64 / (3.0 * l.as_secs_f64());
        println!(
            "admission bound {:.0} alerts/s: achieved {:.1}%",
            bound,
            100.0 * (n as f64 / elapsed.as_secs_f64()) / bound
        );
    }
    engine.shutdown().await;
}

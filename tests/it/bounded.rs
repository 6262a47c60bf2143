//! Bounded input cost: the largest accepted alert is decided within the step timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aml_triage::domain::AgentKind;
use aml_triage::llm::offline::OfflineProvider;

use crate::support::*;

/// An alert at the transaction limit shaped for the worst case of the pairwise detectors:
/// 5,000 credits and 5,000 debits within three hours, 5,000 counterparties each paid and then
/// paying back, no debit matching any credit (so every window is searched to its end).
fn pathological_alert(id: &str) -> String {
    let n = aml_triage::domain::alert::MAX_TRANSACTIONS;
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-03T00:00:00Z").unwrap();
    let txs: Vec<String> = (0..n)
        .map(|i| {
            let (direction, amount) = if i % 2 == 0 { ("OUT", 10.0) } else { ("IN", 1000.0) };
            let ts = (base + chrono::TimeDelta::seconds(i as i64)).to_rfc3339();
            format!(
                r#"{{"transaction_id":"T{i}","timestamp":"{ts}","amount":{amount},"currency":"USD","direction":"{direction}","type":"WIRE","counterparty":{{"name":"Party {p}","account_id":"A-{p}","country":"US","bank":"B"}}}}"#,
                p = i / 2
            )
        })
        .collect();
    let alert = clean_alert(id);
    let alert = alert.trim_end().strip_suffix('}').unwrap();
    format!(r#"{alert},"transactions":[{}]}}"#, txs.join(","))
}

/// Issue 16: an alert with 10,000 transactions is enriched (typologies included) within the
/// enrichment step's timeout, not timed out into the fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pathological_alert_is_bounded() {
    // The quadratic detectors took ~25 s on this alert (debug build); the bounded ones take
    // 2-5 s depending on machine load, all of enrichment included.
    let timeout = 15.0;
    let s = aml_triage::Settings {
        data_enrichment_timeout_seconds: Some(timeout),
        max_retries: 0,
        // 10,000 transactions do not fit the default 1 MiB alert limit.
        max_alert_bytes: 4 * 1024 * 1024,
        ..settings()
    };
    let engine = engine_with(s, Arc::new(OfflineProvider::default())).await;
    let raw = pathological_alert("patho-1");
    let started = Instant::now();
    let d = engine.submit_json(&raw).await.unwrap();
    let elapsed = started.elapsed();
    let enrichment = &d.agents[0];
    assert_eq!(enrichment.agent, AgentKind::DataEnrichment);
    assert!(!enrichment.degraded, "enrichment: {enrichment:?}");
    assert!(
        Duration::from_millis(enrichment.latency_ms) < Duration::from_secs_f64(timeout),
        "{enrichment:?}"
    );
    assert!(
        d.factors.iter().any(|f| f.name.contains("cycle")),
        "the round trips are found: {:?}",
        d.factors.iter().map(|f| &f.name).collect::<Vec<_>>()
    );
    eprintln!(
        "10,000 transactions decided in {elapsed:?} (enrichment {} ms)",
        enrichment.latency_ms
    );
    engine.shutdown().await;
}

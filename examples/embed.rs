//! Embedding the engine in a service: start it from a configuration, submit alerts, await
//! their decisions, shut down with a drain.
//!
//! `cargo run --example embed` (uses an in-memory store so it leaves nothing behind).

use aml_triage::{Alert, Engine, Settings};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Defaults < $AML_TRIAGE_CONFIG (TOML) < environment; then override what this service
    // wants regardless.
    let mut settings = Settings::load(None)?;
    settings.database_url = "memory".into();
    let engine = Engine::builder(settings).start().await?;

    // One alert, given as JSON text (stored verbatim for the audit record).
    let text = include_str!("alerts.sample.jsonl")
        .lines()
        .next()
        .unwrap_or_default();
    let decision = engine.submit_json(text).await?;
    println!(
        "{}: {} (risk {:.0}, confidence {:.2})",
        decision.alert_id, decision.disposition, decision.risk_score, decision.confidence
    );

    // Many alerts: at most MAX_CONCURRENT_ALERTS run at once; results come back in order.
    let alerts: Vec<Alert> = include_str!("alerts.sample.jsonl")
        .lines()
        .map(Alert::from_json)
        .collect::<Result<_, _>>()?;
    for result in engine.submit_many(alerts).await {
        match result {
            Ok(d) => println!("{}: {} - {}", d.alert_id, d.disposition, d.rationale),
            Err(e) => eprintln!("not decided: {e}"),
        }
    }

    engine.shutdown().await;
    Ok(())
}

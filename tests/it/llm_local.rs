//! A real language model end to end (issue 18): the 7 sample alerts through all three
//! model-backed steps on a local OpenAI-compatible server (llama-cpp-python with Gemma 3 270M,
//! see `scripts/local-llm.sh`). Ignored by default and not in `.ci/run` (the server takes
//! ~9 minutes to compile); run it on purpose:
//!
//! ```sh
//! KEEP_SERVER=1 scripts/local-llm.sh --serve-only      # prints LOCAL_LLM_BASE_URL
//! LOCAL_LLM_BASE_URL=http://127.0.0.1:8089/v1 cargo test --test it real_local_model -- --ignored
//! ```

use aml_triage::{Disposition, Engine};

use crate::support::*;

#[tokio::test]
#[ignore = "needs a local model server: scripts/local-llm.sh"]
async fn real_local_model_decides_safely() {
    let base = std::env::var("LOCAL_LLM_BASE_URL")
        .expect("LOCAL_LLM_BASE_URL must name the local server (scripts/local-llm.sh)");
    let model = std::env::var("LOCAL_LLM_MODEL").unwrap_or_else(|_| "gemma3-270m".into());
    let s = aml_triage::Settings {
        context_builder_provider: "openai".into(),
        decision_maker_provider: "openai".into(),
        supervisor_provider: "openai".into(),
        context_builder_model: model.clone(),
        decision_maker_model: model.clone(),
        supervisor_model: model.clone(),
        openai_base_url: base,
        openai_response_format: "json_object_schema".into(),
        openai_max_concurrency: 1,
        // A made-up price, so that cost accounting shows.
        llm_prices: format!("{model}:0.1:0.4"),
        llm_request_timeout_seconds: 120.0,
        agent_timeout_seconds: 900.0,
        max_concurrent_alerts: 2,
        jurisdiction_path: Some("tests/fixtures/fatf_mini.csv".into()),
        ..settings()
    };
    let engine = Engine::builder(s).start().await.unwrap();
    let sample = include_str!("../../examples/alerts.sample.jsonl");
    let mut accepted = std::collections::BTreeMap::<String, usize>::new();
    let mut decided = 0;
    for line in sample.lines().filter(|l| !l.trim().is_empty()) {
        let d = engine.submit_json(line).await.unwrap();
        decided += 1;
        // Valid and safe: never AUTO_CLEAR on a degraded step or above the policy floor's leave.
        assert!((0.0..=1.0).contains(&d.confidence), "{d:?}");
        if d.disposition == Disposition::AutoClear {
            assert!(!d.degraded, "{}: auto-cleared degraded", d.alert_id);
            assert!(d.agents.iter().all(|a| !a.degraded), "{}", d.alert_id);
        }
        assert!(
            d.agents
                .iter()
                .any(|a| a.agent.as_str() == "supervisor_check"),
            "{}: the check did not run",
            d.alert_id
        );
        for a in &d.agents {
            let model_step = matches!(
                a.agent.as_str(),
                "context_builder" | "decision_maker" | "supervisor_check"
            );
            if model_step && !a.degraded {
                assert!(
                    a.tokens_in > 0,
                    "{}: {} used no tokens",
                    d.alert_id,
                    a.agent
                );
                *accepted.entry(a.agent.as_str().to_string()).or_default() += 1;
            }
        }
        assert!(d.total_tokens > 0 && d.total_cost_usd > 0.0, "{d:?}");
        println!(
            "{} {} degraded={} tokens={} steps={:?}",
            d.alert_id,
            d.disposition,
            d.degraded,
            d.total_tokens,
            d.agents
                .iter()
                .map(|a| (
                    a.agent.as_str(),
                    a.degraded,
                    a.note.clone().unwrap_or_default()
                ))
                .collect::<Vec<_>>()
        );
    }
    engine.shutdown().await;
    assert!(decided >= 5);
    for step in ["context_builder", "decision_maker", "supervisor_check"] {
        assert!(
            accepted.get(step).copied().unwrap_or(0) >= 1,
            "no {step} answer accepted: {accepted:?}"
        );
    }
}

//! Fail-safe behaviour.

use std::sync::Arc;
use std::time::Duration;

use aml_triage::Disposition;
use aml_triage::domain::AgentKind;
use aml_triage::llm::LlmError;
use aml_triage::llm::offline::OfflineProvider;

use crate::support::*;

#[tokio::test]
async fn no_failure_path_auto_clears() {
    // The probe alert auto-clears when nothing fails...
    let engine = engine_with(settings(), Arc::new(OfflineProvider::default())).await;
    let d = engine.submit_json(&clean_alert("probe")).await.unwrap();
    assert_eq!(d.disposition, Disposition::AutoClear, "{d:?}");
    engine.shutdown().await;

    // ...and never when any step fails in any way.
    let failures: Vec<(&str, Behaviour)> = vec![
        ("panic", Behaviour::Panic),
        ("timeout", Behaviour::Sleep(Duration::from_secs(30))),
        ("rate limited", Behaviour::Fail(LlmError::RateLimited { retry_after: None })),
        ("server error", Behaviour::Fail(LlmError::Server { status: 500 })),
        ("unauthorized", Behaviour::Fail(LlmError::Unauthorized)),
        ("bad request", Behaviour::Fail(LlmError::BadRequest("x".into()))),
        ("unreachable", Behaviour::Fail(LlmError::Transport("connection refused".into()))),
        ("malformed", Behaviour::Text("not json".into())),
        ("truncated", Behaviour::Text(r#"{"disposition":"AUTO_CLEAR","confid"#.into())),
        ("invented evidence", Behaviour::Text(r#"{"disposition":"AUTO_CLEAR","confidence":0.99,"rationale":"fine [tx:nope]","cited_evidence":["tx:nope"]}"#.into())),
        ("out of range", Behaviour::Text(r#"{"disposition":"AUTO_CLEAR","confidence":7,"rationale":"x","cited_evidence":[]}"#.into())),
    ];
    for agent in [AgentKind::ContextBuilder, AgentKind::DecisionMaker] {
        for (name, behaviour) in &failures {
            let s = aml_triage::Settings {
                agent_timeout_seconds: 0.3,
                max_retries: 1,
                ..settings()
            };
            let script = Scripted::new(agent, vec![behaviour.clone()]);
            let engine = engine_with(s, Arc::new(ScriptedProvider(script))).await;
            let id = format!("fail-{agent}-{}", name.replace(' ', "-"));
            let d = engine.submit_json(&clean_alert(&id)).await.unwrap();
            // No exemption: the context builder validates its model output like the decision
            // step, so every case degrades the failing step itself, and the alert escalates.
            let step = if agent == AgentKind::ContextBuilder {
                2
            } else {
                3
            };
            assert!(
                d.agents[step].degraded,
                "{agent} {name}: {:?}",
                d.agents[step]
            );
            assert!(d.degraded, "{agent} {name}: not marked degraded");
            assert_ne!(
                d.disposition,
                Disposition::AutoClear,
                "{agent} {name} auto-cleared"
            );
            assert!(d.requires_human_review, "{agent} {name}");
            engine.shutdown().await;
        }
    }
}

/// Jurisdiction evidence ids hold brackets (`juris:IR:customer.addresses[0].country`). A model
/// answer citing one must be read whole: a parser stopping at the first `]` rejected every such
/// answer as citing unknown evidence, so each alert with a jurisdiction flag was degraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citations_of_jurisdiction_evidence_are_accepted() {
    let table = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/jurisdiction/fatf_lists.csv");
    assert!(
        table.exists(),
        "shared data missing: {} (tests read ../shared/data)",
        table.display()
    );
    let settings = aml_triage::Settings {
        jurisdiction_path: Some(table),
        ..settings()
    };
    let engine = aml_triage::Engine::builder(settings).start().await.unwrap();
    let alert = clean_alert("juris-cite-1").replace("\"country\":\"US\"", "\"country\":\"IR\"");
    let d = engine.submit_json(&alert).await.unwrap();
    assert!(
        d.evidence_ids.iter().any(|id| id.starts_with("juris:IR:")),
        "the flag must be cited whole: {:?}",
        d.evidence_ids
    );
    assert!(!d.degraded, "{:?}", d.degradation_reasons);
    engine.shutdown().await;
}

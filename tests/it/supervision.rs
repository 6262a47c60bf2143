//! Supervision, timeouts and retries.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aml_triage::Disposition;
use aml_triage::actors::supervision::AgentStatus;
use aml_triage::domain::AgentKind;
use aml_triage::llm::LlmError;
use aml_triage::llm::offline::OfflineProvider;
use aml_triage::mq::remote::{StepRequest, StepResponse};

use crate::support::*;

#[tokio::test]
async fn crashed_agent_is_restarted() {
    // The context builder panics on its first call only: that request fails, the retry
    // succeeds, and the instance is not restarted (a panic in one request leaves nothing
    // suspect in the agent).
    let script = Scripted::new(
        AgentKind::ContextBuilder,
        vec![Behaviour::Panic, Behaviour::Answer],
    );
    let engine = engine_with(settings(), Arc::new(ScriptedProvider(script.clone()))).await;
    let d = engine.submit_json(&clean_alert("crash-1")).await.unwrap();
    let ctx = engine.health()[2].clone();
    assert_eq!(ctx.agent, AgentKind::ContextBuilder);
    assert_eq!(ctx.restarts_total, 0, "{ctx:?}");
    assert_eq!(ctx.status, AgentStatus::Running);
    assert!(
        !d.degraded,
        "the retry succeeded: {:?}",
        d.degradation_reasons
    );
    assert_eq!(d.agents[2].attempts, 2, "{:?}", d.agents[2]);

    // An agent that stops is restarted, by the watchdog.
    engine.stop_agent(AgentKind::RiskScoring).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || engine.health()[1].restarts_total
            == 1)
        .await,
        "{:?}",
        engine.health()
    );
    let d = engine.submit_json(&clean_alert("crash-2")).await.unwrap();
    assert!(!d.degraded);
    engine.shutdown().await;
}

#[tokio::test]
async fn restart_intensity_limit_degrades_safely() {
    let s = aml_triage::Settings {
        restart_max: 2,
        restart_window_seconds: 60.0,
        failed_agent_cooldown_seconds: 600.0,
        max_retries: 1,
        ..settings()
    };
    let engine = engine_with(s, Arc::new(OfflineProvider::default())).await;
    // Stop the instance until the limit is reached, waiting for each restart.
    for i in 0..3 {
        engine.stop_agent(AgentKind::ContextBuilder).await.unwrap();
        let settled = eventually(Duration::from_secs(10), || {
            let h = &engine.health()[2];
            h.status == AgentStatus::Failed
                || (h.status == AgentStatus::Running && h.restarts_total == i + 1)
        })
        .await;
        assert!(settled, "stop {i}: {:?}", engine.health()[2]);
    }
    let ctx = engine.health()[2].clone();
    assert_eq!(ctx.status, AgentStatus::Failed, "{ctx:?}");
    assert_eq!(ctx.restarts_total, 2, "restarts stop at the limit: {ctx:?}");
    // Once failed, alerts take the degraded path without calling the agent at all.
    let d = engine
        .submit_json(&clean_alert("limit-after"))
        .await
        .unwrap();
    assert!(d.degraded);
    assert_eq!(d.agents[2].attempts, 1, "{:?}", d.agents[2]);
    assert!(
        d.degradation_reasons
            .iter()
            .any(|r| r.starts_with("context_builder") && r.contains("restart limit")),
        "{:?}",
        d.degradation_reasons
    );
    assert_eq!(d.disposition, Disposition::EscalateL2);
    engine.shutdown().await;
}

/// Issue 16: a panic in one request on a worker is answered (not left hanging), and a worker's
/// stopped agent is restarted from the worker's plain tokio tasks (no actix `LocalSet`).
#[tokio::test]
async fn panic_on_worker_is_restarted() {
    let script = Scripted::new(
        AgentKind::ContextBuilder,
        vec![Behaviour::Panic, Behaviour::Answer],
    );
    let engine =
        Arc::new(engine_with(settings(), Arc::new(ScriptedProvider(script.clone()))).await);
    let request = |id: &str| {
        let alert: aml_triage::domain::alert::Alert =
            serde_json::from_str(&clean_alert(id)).unwrap();
        StepRequest {
            agent: AgentKind::ContextBuilder,
            alert,
            attempt: 1,
            timeout_ms: 5_000,
            facts: Some(Default::default()),
            risk: Some(aml_triage::assessment::scoring::RiskAssessment {
                score: 0.0,
                level: aml_triage::domain::decision::RiskLevel::Low,
                factors: vec![],
                clearance_blockers: vec![],
                scorecard_version: None,
                shadow: None,
            }),
            context: None,
            degraded_steps: vec![],
        }
    };
    // As a worker's consumer runs it: on a plain tokio task.
    let serve = |id: &'static str| {
        let (e, r) = (engine.clone(), request(id));
        tokio::spawn(async move { e.run_remote_step(r).await })
    };
    match serve("w-1").await.expect("answered, not panicked") {
        StepResponse::Failed { kind, .. } => assert_eq!(kind, "panic"),
        other => panic!("expected the panic as this request's failure, got {other:?}"),
    }
    assert!(matches!(
        serve("w-2").await.unwrap(),
        StepResponse::Ok { .. }
    ));
    // The worker's agent stops: the next request (on a plain tokio task) restarts it.
    engine.stop_agent(AgentKind::ContextBuilder).await.unwrap();
    let _ = serve("w-3").await.expect("answered, not panicked");
    assert!(
        eventually(Duration::from_secs(5), || {
            let h = &engine.health()[2];
            h.status == AgentStatus::Running && h.restarts_total == 1
        })
        .await,
        "{:?}",
        engine.health()[2]
    );
    assert!(matches!(
        serve("w-4").await.unwrap(),
        StepResponse::Ok { .. }
    ));
    engine.shutdown().await;
}

/// Issue 16: a panic in one alert's request fails that request only: another alert in flight
/// on the same agent finishes undegraded, on its first attempt.
#[tokio::test]
async fn panic_fails_only_its_own_request() {
    let script = Scripted::new(
        AgentKind::DecisionMaker,
        vec![
            Behaviour::Sleep(Duration::from_millis(1500)),
            Behaviour::Panic,
            Behaviour::Panic,
            Behaviour::Answer,
        ],
    );
    let engine =
        Arc::new(engine_with(settings(), Arc::new(ScriptedProvider(script.clone()))).await);
    let e = engine.clone();
    let slow = tokio::spawn(async move { e.submit_json(&clean_alert("iso-slow")).await });
    assert!(eventually(Duration::from_secs(5), || script.calls() == 1).await);
    let bad = engine.submit_json(&clean_alert("iso-bad")).await.unwrap();
    assert!(bad.degraded, "{bad:?}");
    assert_ne!(bad.disposition, Disposition::AutoClear);
    let slow = slow.await.unwrap().unwrap();
    assert!(!slow.degraded, "{:?}", slow.degradation_reasons);
    assert_eq!(slow.agents[3].attempts, 1, "{:?}", slow.agents[3]);
    assert_eq!(slow.disposition, Disposition::AutoClear);
    assert_eq!(script.completed.load(Ordering::SeqCst), 1);
    let h = engine.health()[3].clone();
    assert_eq!(
        (h.status, h.restarts_total),
        (AgentStatus::Running, 0),
        "{h:?}"
    );
    engine.shutdown().await;
}

/// Issue 16: a panic on the same input twice is deterministic: not retried further, the agent
/// not restarted nor marked failed, and later alerts are served normally.
#[tokio::test]
async fn deterministic_panic_is_not_retried() {
    let script = Scripted::new(
        AgentKind::DecisionMaker,
        vec![Behaviour::Panic, Behaviour::Panic, Behaviour::Answer],
    );
    let s = aml_triage::Settings {
        max_retries: 5,
        restart_max: 1,
        ..settings()
    };
    let engine = engine_with(s, Arc::new(ScriptedProvider(script.clone()))).await;
    let d = engine.submit_json(&clean_alert("det-1")).await.unwrap();
    assert_eq!(script.calls(), 2, "retried once, then given up");
    assert_eq!(d.agents[3].attempts, 2);
    assert!(d.degraded);
    assert_ne!(d.disposition, Disposition::AutoClear);
    assert!(
        d.degradation_reasons[0].contains("panicked"),
        "{:?}",
        d.degradation_reasons
    );
    let h = engine.health()[3].clone();
    assert_eq!(
        (h.status, h.restarts_total),
        (AgentStatus::Running, 0),
        "{h:?}"
    );
    let d = engine.submit_json(&clean_alert("det-2")).await.unwrap();
    assert!(!d.degraded, "{:?}", d.degradation_reasons);
    assert_eq!(d.disposition, Disposition::AutoClear);
    engine.shutdown().await;
}

/// Issue 16: a panic in the supervisor's own check step ends in a degraded, escalated decision
/// (stored), never an alert left `received`.
#[tokio::test]
async fn panic_in_check_step_is_contained() {
    let script = Scripted::new(AgentKind::SupervisorCheck, vec![Behaviour::Panic]);
    let engine = engine_with(settings(), Arc::new(ScriptedProvider(script.clone()))).await;
    let d = engine.submit_json(&clean_alert("chk-1")).await.unwrap();
    assert!(script.calls() >= 1);
    assert!(d.degraded, "{d:?}");
    assert!(d.requires_human_review);
    assert_ne!(d.disposition, Disposition::AutoClear);
    assert!(
        d.degradation_reasons
            .iter()
            .any(|r| r.starts_with("supervisor_check") && r.contains("panicked")),
        "{:?}",
        d.degradation_reasons
    );
    assert!(engine.store().decision("chk-1").await.unwrap().is_some());
    engine.shutdown().await;
}

#[tokio::test]
async fn timeout_cancels_in_flight_work() {
    let script = Scripted::new(
        AgentKind::ContextBuilder,
        vec![Behaviour::Sleep(Duration::from_secs(30))],
    );
    let s = aml_triage::Settings {
        context_builder_timeout_seconds: Some(0.3),
        max_retries: 1,
        ..settings()
    };
    let engine = engine_with(s, Arc::new(ScriptedProvider(script.clone()))).await;
    let started = Instant::now();
    let d = engine.submit_json(&clean_alert("slow-1")).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(d.degraded);
    assert_ne!(d.disposition, Disposition::AutoClear);
    assert!(
        d.degradation_reasons[0].contains("timed out"),
        "{:?}",
        d.degradation_reasons
    );
    // Both attempts were dropped, not left running in the background.
    assert_eq!(script.calls(), 2);
    assert!(
        eventually(Duration::from_secs(2), || script
            .dropped
            .load(Ordering::SeqCst)
            == 2)
        .await,
        "dropped {}",
        script.dropped.load(Ordering::SeqCst)
    );
    assert_eq!(script.in_progress.load(Ordering::SeqCst), 0);
    assert_eq!(script.completed.load(Ordering::SeqCst), 0);
    engine.shutdown().await;
}

#[tokio::test]
async fn retryable_errors_are_retried_with_backoff() {
    let wait = Duration::from_millis(150);
    let script = Scripted::new(
        AgentKind::DecisionMaker,
        vec![
            Behaviour::Fail(LlmError::RateLimited {
                retry_after: Some(wait),
            }),
            Behaviour::Fail(LlmError::Server { status: 503 }),
            Behaviour::Answer,
        ],
    );
    let engine = engine_with(settings(), Arc::new(ScriptedProvider(script.clone()))).await;
    let started = Instant::now();
    let d = engine.submit_json(&clean_alert("retry-1")).await.unwrap();
    assert_eq!(script.calls(), 3);
    assert!(!d.degraded, "{:?}", d.degradation_reasons);
    assert_eq!(d.agents[3].attempts, 3);
    // The provider's retry-after was honoured.
    assert!(started.elapsed() >= wait, "{:?}", started.elapsed());
    assert_eq!(d.disposition, Disposition::AutoClear);
    engine.shutdown().await;
}

#[tokio::test]
async fn non_retryable_errors_are_not_retried() {
    let script = Scripted::new(
        AgentKind::DecisionMaker,
        vec![Behaviour::Fail(LlmError::Unauthorized)],
    );
    let engine = engine_with(settings(), Arc::new(ScriptedProvider(script.clone()))).await;
    let d = engine.submit_json(&clean_alert("noretry-1")).await.unwrap();
    assert_eq!(script.calls(), 1);
    assert!(d.degraded);
    assert_eq!(d.agents[3].attempts, 1);
    assert_ne!(d.disposition, Disposition::AutoClear);
    engine.shutdown().await;
}

/// Issue 16: each agent has its own retry policy (`{AGENT}_MAX_RETRIES`, ...), the global keys
/// being the defaults.
#[tokio::test]
async fn retry_policy_is_per_agent() {
    let env: std::collections::HashMap<String, String> = [
        ("MAX_RETRIES", "3"),
        ("DECISION_MAKER_MAX_RETRIES", "0"),
        ("CONTEXT_BUILDER_RETRY_BASE_DELAY_MS", "5"),
        ("CONTEXT_BUILDER_RETRY_MAX_DELAY_MS", "20"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let loaded = aml_triage::Settings::load_from(None, &env).unwrap();
    assert_eq!(loaded.agent_retry(AgentKind::DecisionMaker).0, 0);
    assert_eq!(loaded.agent_retry(AgentKind::SupervisorCheck).0, 0);
    assert_eq!(loaded.agent_retry(AgentKind::ContextBuilder), (3, 5, 20));
    assert_eq!(
        loaded.agent_retry(AgentKind::RiskScoring),
        (3, loaded.retry_base_delay_ms, loaded.retry_max_delay_ms)
    );
    let mut bad = env.clone();
    bad.insert("RISK_SCORING_RETRY_BASE_DELAY_MS".into(), "999999".into());
    let e = aml_triage::Settings::load_from(None, &bad).unwrap_err();
    assert!(
        e.to_string().contains("RISK_SCORING_RETRY_BASE_DELAY_MS"),
        "{e}"
    );

    let s = aml_triage::Settings {
        max_retries: 3,
        decision_maker_max_retries: Some(0),
        ..settings()
    };
    let fail = || Behaviour::Fail(LlmError::Server { status: 503 });
    let script = Scripted::new(AgentKind::DecisionMaker, vec![fail()]);
    let engine = engine_with(s.clone(), Arc::new(ScriptedProvider(script.clone()))).await;
    let d = engine
        .submit_json(&clean_alert("per-agent-1"))
        .await
        .unwrap();
    assert_eq!(script.calls(), 1, "DECISION_MAKER_MAX_RETRIES=0: no retry");
    assert_eq!(d.agents[3].attempts, 1);
    engine.shutdown().await;

    let script = Scripted::new(AgentKind::ContextBuilder, vec![fail()]);
    let engine = engine_with(s, Arc::new(ScriptedProvider(script.clone()))).await;
    let d = engine
        .submit_json(&clean_alert("per-agent-2"))
        .await
        .unwrap();
    assert_eq!(script.calls(), 4, "the context builder keeps MAX_RETRIES=3");
    assert_eq!(d.agents[2].attempts, 4);
    engine.shutdown().await;
}

/// A step that succeeded after repairing its model output keeps the repair in its
/// contribution (`StepMeta.notes` is recorded, not dropped).
#[tokio::test]
async fn repaired_step_keeps_its_notes() {
    let script = Scripted::new(
        AgentKind::DecisionMaker,
        vec![Behaviour::Text("not json".into()), Behaviour::Answer],
    );
    let engine = engine_with(settings(), Arc::new(ScriptedProvider(script.clone()))).await;
    let d = engine.submit_json(&clean_alert("notes-1")).await.unwrap();
    let step = &d.agents[3];
    assert!(!step.degraded, "{step:?}");
    assert!(
        step.note
            .as_deref()
            .is_some_and(|n| n.starts_with("repaired: ")),
        "{step:?}"
    );
    engine.shutdown().await;
}

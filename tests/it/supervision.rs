//! Supervision, timeouts and retries.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aml_triage::Disposition;
use aml_triage::actors::supervision::AgentStatus;
use aml_triage::domain::AgentKind;
use aml_triage::llm::LlmError;

use crate::support::*;

#[tokio::test]
async fn crashed_agent_is_restarted() {
    // The context builder panics on its first call only.
    let script = Scripted::new(
        AgentKind::ContextBuilder,
        vec![Behaviour::Panic, Behaviour::Answer],
    );
    let engine = engine_with(settings(), Arc::new(ScriptedProvider(script.clone()))).await;
    let d = engine.submit_json(&clean_alert("crash-1")).await.unwrap();
    let ctx = engine.health()[2].clone();
    assert_eq!(ctx.agent, AgentKind::ContextBuilder);
    assert_eq!(ctx.restarts_total, 1, "{ctx:?}");
    assert_eq!(ctx.status, AgentStatus::Running);
    assert!(
        !d.degraded,
        "the retry on the restarted agent succeeded: {:?}",
        d.degradation_reasons
    );
    assert!(d.agents[2].attempts >= 2, "{:?}", d.agents[2]);

    // An agent that stops (rather than panics) is restarted too, by the watchdog.
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
    let script = Scripted::new(AgentKind::ContextBuilder, vec![Behaviour::Panic]);
    let s = aml_triage::Settings {
        restart_max: 2,
        restart_window_seconds: 60.0,
        failed_agent_cooldown_seconds: 600.0,
        max_retries: 1,
        ..settings()
    };
    let engine = engine_with(s, Arc::new(ScriptedProvider(script.clone()))).await;
    // Alerts until the limit is reached: every one of them degraded, none cleared. Each waits
    // for the previous crash's restart (an alert meeting the agent mid-restart fails without
    // crashing it, so a loaded machine would otherwise need more alerts than a fixed count).
    for i in 0..20 {
        let d = engine
            .submit_json(&clean_alert(&format!("limit-{i}")))
            .await
            .unwrap();
        assert_ne!(d.disposition, Disposition::AutoClear, "alert {i}");
        assert!(d.degraded, "alert {i}");
        assert!(
            d.degradation_reasons
                .iter()
                .any(|r| r.starts_with("context_builder")),
            "{:?}",
            d.degradation_reasons
        );
        if engine.health()[2].status == AgentStatus::Failed {
            break;
        }
        eventually(Duration::from_secs(10), || {
            engine.health()[2].status != AgentStatus::Restarting
        })
        .await;
    }
    let ctx = engine.health()[2].clone();
    assert_eq!(ctx.status, AgentStatus::Failed, "{ctx:?}");
    assert_eq!(ctx.restarts_total, 2, "restarts stop at the limit: {ctx:?}");
    // Once failed, alerts take the degraded path without calling the agent at all.
    let calls = script.calls();
    let d = engine
        .submit_json(&clean_alert("limit-after"))
        .await
        .unwrap();
    assert_eq!(script.calls(), calls);
    assert!(
        d.degradation_reasons
            .iter()
            .any(|r| r.contains("restart limit")),
        "{:?}",
        d.degradation_reasons
    );
    assert_eq!(d.disposition, Disposition::EscalateL2);
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

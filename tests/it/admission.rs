//! Admission and drain.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aml_triage::domain::AgentKind;
use aml_triage::{Alert, TriageError};

use crate::support::*;

#[tokio::test]
async fn admission_bounds_in_flight_alerts() {
    let script = Scripted::new(
        AgentKind::ContextBuilder,
        vec![Behaviour::Sleep(Duration::from_millis(400))],
    );
    let s = aml_triage::Settings {
        max_concurrent_alerts: 3,
        admission_wait_seconds: 0.1,
        ..settings()
    };
    let engine = Arc::new(engine_with(s, Arc::new(ScriptedProvider(script.clone()))).await);
    let mut tasks = Vec::new();
    for i in 0..3 {
        let e = engine.clone();
        tasks.push(tokio::spawn(async move {
            e.submit_json(&clean_alert(&format!("adm-{i}"))).await
        }));
    }
    assert!(eventually(Duration::from_secs(5), || engine.in_flight() == 3).await);
    // A fourth is refused at once by try_submit, and after the admission wait by submit.
    let extra = Alert::from_json(&clean_alert("adm-x")).unwrap();
    assert!(matches!(
        engine.try_submit(extra, None),
        Err(TriageError::Busy { .. })
    ));
    let waited = engine.submit_json(&clean_alert("adm-y")).await;
    assert!(
        matches!(waited, Err(TriageError::Busy { .. })),
        "{waited:?}"
    );
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(script.max_in_progress.load(Ordering::SeqCst), 3);
    // Refused alerts were told, not dropped: they can be submitted again now.
    engine.submit_json(&clean_alert("adm-y")).await.unwrap();
    engine.shutdown().await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_alerts() {
    let script = Scripted::new(
        AgentKind::ContextBuilder,
        vec![Behaviour::Sleep(Duration::from_millis(300))],
    );
    let engine =
        Arc::new(engine_with(settings(), Arc::new(ScriptedProvider(script.clone()))).await);
    let mut tasks = Vec::new();
    for i in 0..5 {
        let e = engine.clone();
        tasks.push(tokio::spawn(async move {
            e.submit_json(&clean_alert(&format!("drain-{i}"))).await
        }));
    }
    assert!(eventually(Duration::from_secs(5), || engine.in_flight() == 5).await);
    let left = engine.shutdown().await;
    assert_eq!(left, 0);
    for t in tasks {
        let d = t
            .await
            .unwrap()
            .expect("in-flight alert decided during the drain");
        assert!(!d.degraded, "{:?}", d.degradation_reasons);
    }
    assert_eq!(script.completed.load(Ordering::SeqCst), 5);
    let late = engine.submit_json(&clean_alert("drain-late")).await;
    assert!(matches!(late, Err(TriageError::ShuttingDown)), "{late:?}");
}

//! Durability at the engine level, on PostgreSQL and SQLite: persistence before work, exactly
//! one decision per alert, and crash resume of a real process killed with SIGKILL.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aml_triage::domain::AgentKind;
use aml_triage::{Engine, TriageError};

use crate::store_support::{Kind, TestDb, on_both_backends};
use crate::support::*;

on_both_backends!(
    alert_is_persisted_before_work_starts,
    resubmission_returns_same_decision,
    conflicting_resubmission_is_rejected,
    crash_mid_alert_resumes_without_repeating_steps,
    stored_alert_is_finished_by_another_node,
);

fn db_settings(db: &TestDb, node: &str) -> aml_triage::Settings {
    aml_triage::Settings {
        database_url: db.url.clone(),
        node_id: node.into(),
        ..settings()
    }
}

async fn alert_is_persisted_before_work_starts(kind: Kind) {
    let db = TestDb::new(kind).await;
    // The context builder holds the alert mid-pipeline long enough to look at the database.
    let script = Scripted::new(
        AgentKind::ContextBuilder,
        vec![Behaviour::Sleep(Duration::from_millis(1500))],
    );
    let engine = Arc::new(
        Engine::builder(db_settings(&db, "persist-node"))
            .provider(Arc::new(ScriptedProvider(script.clone())))
            .start()
            .await
            .unwrap(),
    );
    let e = engine.clone();
    let task = tokio::spawn(async move { e.submit_json(&clean_alert("persist-1")).await });
    assert!(
        eventually(Duration::from_secs(10), || script
            .in_progress
            .load(Ordering::SeqCst)
            == 1)
        .await
    );
    // Seen from another connection while the agents are still working on it.
    let rows = db
        .scalar("SELECT COUNT(*) FROM alerts WHERE alert_id = 'persist-1'")
        .await;
    assert_eq!(rows, 1, "alert not persisted before work");
    let raw = db
        .text("SELECT raw_json FROM alerts WHERE alert_id = 'persist-1'")
        .await
        .unwrap();
    assert_eq!(raw, clean_alert("persist-1"), "stored exactly as received");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM decisions").await, 0);
    task.await.unwrap().unwrap();
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM decisions WHERE alert_id = 'persist-1'")
            .await,
        1
    );
    engine.shutdown().await;
}

async fn resubmission_returns_same_decision(kind: Kind) {
    let db = TestDb::new(kind).await;
    let engine = Engine::builder(db_settings(&db, "resubmit-node"))
        .start()
        .await
        .unwrap();
    let first = engine.submit_json(&clean_alert("same-1")).await.unwrap();
    // The same content with other whitespace and key order is the same alert.
    let v: serde_json::Value = serde_json::from_str(&clean_alert("same-1")).unwrap();
    let again = engine
        .submit_json(&serde_json::to_string_pretty(&v).unwrap())
        .await
        .unwrap();
    assert_eq!(first, again);
    engine.shutdown().await;
    // A restarted engine returns the stored decision too, and still only one exists.
    let engine = Engine::builder(db_settings(&db, "resubmit-node"))
        .start()
        .await
        .unwrap();
    let later = engine.submit_json(&clean_alert("same-1")).await.unwrap();
    assert_eq!(first, later);
    engine.shutdown().await;
    assert_eq!(db.scalar("SELECT COUNT(*) FROM decisions").await, 1);
}

async fn conflicting_resubmission_is_rejected(kind: Kind) {
    let db = TestDb::new(kind).await;
    let engine = Engine::builder(db_settings(&db, "conflict-node"))
        .start()
        .await
        .unwrap();
    let first = engine.submit_json(&clean_alert("conf-1")).await.unwrap();
    let changed = clean_alert("conf-1").replace("Jane Roe", "John Roe");
    match engine.submit_json(&changed).await {
        Err(TriageError::Conflict { alert_id }) => assert_eq!(alert_id, "conf-1"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    engine.shutdown().await;
    let raw = db
        .text("SELECT raw_json FROM alerts WHERE alert_id = 'conf-1'")
        .await
        .unwrap();
    assert!(raw.contains("Jane Roe"), "the stored alert was overwritten");
    let stored = db
        .text("SELECT decision FROM decisions WHERE alert_id = 'conf-1'")
        .await;
    let stored: aml_triage::Decision = serde_json::from_str(&stored.unwrap()).unwrap();
    assert_eq!(stored, first);
}

async fn stored_alert_is_finished_by_another_node(kind: Kind) {
    let db = TestDb::new(kind).await;
    let engine = Engine::builder(db_settings(&db, "takeover-node"))
        .resume_unfinished(false)
        .start()
        .await
        .unwrap();
    // What a node leaves behind when it dies right after persisting an alert.
    let raw = clean_alert("orphan-1");
    let alert: aml_triage::Alert = serde_json::from_str(&raw).unwrap();
    let admitted = engine
        .store()
        .admit(aml_triage::store::AlertRecord {
            alert_id: "orphan-1".into(),
            raw_json: raw.clone(),
            content_hash: aml_triage::engine::content_hash(&alert),
            customer_id: alert.customer.customer_id.clone(),
            alert_type: "sanctions_screening".into(),
            priority: "medium".into(),
            created_at: alert.created_at,
            received_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    assert_eq!(admitted, aml_triage::store::AdmitOutcome::Inserted);
    let decided = engine.resume_alert("orphan-1").await.unwrap();
    assert_eq!(decided.alert_id, "orphan-1");
    // Asking again answers the stored decision; there is still exactly one.
    assert_eq!(engine.resume_alert("orphan-1").await.unwrap(), decided);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM decisions WHERE alert_id = 'orphan-1'")
            .await,
        1
    );
    match engine.resume_alert("never-stored").await {
        Err(TriageError::NotFound { alert_id }) => assert_eq!(alert_id, "never-stored"),
        other => panic!("expected not found, got {other:?}"),
    }
    engine.shutdown().await;
}

/// A batch of alerts that exercise every step: clean ones and escalating ones.
fn batch(n: usize) -> String {
    let mut out = String::new();
    let sample = include_str!("../../examples/alerts.sample.jsonl");
    let lines: Vec<&str> = sample.lines().collect();
    for i in 0..n {
        let mut v: serde_json::Value = serde_json::from_str(lines[i % lines.len()]).unwrap();
        v["alert_id"] = format!("crash-{i:04}").into();
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

async fn crash_mid_alert_resumes_without_repeating_steps(kind: Kind) {
    const N: usize = 300;
    let db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("batch.jsonl");
    std::fs::File::create(&input)
        .unwrap()
        .write_all(batch(N).as_bytes())
        .unwrap();
    let run = |out: &str| {
        Command::new(env!("CARGO_BIN_EXE_aml-triage"))
            .current_dir(dir.path())
            .env("DATABASE_URL", &db.url)
            .env("NODE_ID", "crash-node")
            .env("LOG_LEVEL", "error")
            // Each model call takes a while, so the kill lands with alerts mid-pipeline.
            .env("OFFLINE_LATENCY_MS", "40")
            .env("MAX_CONCURRENT_ALERTS", "16")
            .args(["triage", input.to_str().unwrap(), "--out", out])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // Both runs write to one --out file: the first keeps what it decided before the kill,
    // the second appends only what is missing.
    let mut child = run("out.jsonl");
    let start = Instant::now();
    // Kill once enough is decided *and* some alert has journalled steps but no decision yet,
    // so the kill always lands mid-pipeline, however loaded the machine is.
    loop {
        let decided = db
            .try_scalar("SELECT COUNT(*) FROM decisions")
            .await
            .unwrap_or(0);
        let mid = db
            .try_scalar(
                "SELECT COUNT(DISTINCT s.alert_id) FROM step_journal s \
                 LEFT JOIN decisions d ON d.alert_id = s.alert_id WHERE d.alert_id IS NULL",
            )
            .await
            .unwrap_or(0);
        if decided >= 40 && mid > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "first run made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL: no drain, no flush.
    child.wait().unwrap();

    let decided_before = db.scalar("SELECT COUNT(*) FROM decisions").await;
    assert!(
        decided_before < N as i64,
        "the kill came too late to test anything"
    );
    // Alerts cut off between steps: persisted, some steps journalled, no decision.
    let mid_alert = db
        .scalar(
            "SELECT COUNT(DISTINCT s.alert_id) FROM step_journal s \
             LEFT JOIN decisions d ON d.alert_id = s.alert_id WHERE d.alert_id IS NULL",
        )
        .await;
    assert!(mid_alert > 0, "no alert was caught mid-pipeline");
    let journal_before = journal(&db).await;
    let kept = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap_or_default();
    let kept_lines = kept.lines().filter(|l| l.ends_with('}')).count();
    assert!(kept_lines > 0, "the killed run kept no decision in --out");

    let mut child = run("out.jsonl");
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "second run failed: {stderr}");
    assert!(stderr.contains("resumed"), "{stderr}");

    // --out holds every alert once: the first run's lines, then the rest.
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let ids: Vec<String> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("complete decision lines");
            v["alert_id"].as_str().unwrap().to_string()
        })
        .collect();
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (N, N), "{stderr}");
    // Exactly one decision per alert.
    assert_eq!(db.scalar("SELECT COUNT(*) FROM decisions").await, N as i64);
    assert_eq!(
        db.scalar("SELECT COUNT(DISTINCT alert_id) FROM decisions")
            .await,
        N as i64
    );
    // No completed step ran twice: one journal row per (alert, step), and every row
    // journalled before the crash is still there unchanged.
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM (SELECT alert_id, step FROM step_journal GROUP BY alert_id, step HAVING COUNT(*) > 1) t").await,
        0
    );
    let journal_after = journal(&db).await;
    for row in &journal_before {
        assert!(
            journal_after.contains(row),
            "journal row changed or lost: {row:?}"
        );
    }
    // Four agent steps and the supervisor's check per alert.
    assert_eq!(journal_after.len(), N * 5);
    // The resumed alerts say which steps came from the journal.
    let second = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let resumed_steps = second.matches("\"resumed\":true").count();
    assert!(resumed_steps > 0, "no step was taken from the journal");
    // And the audit chain is intact after the crash.
    let verify = Command::new(env!("CARGO_BIN_EXE_aml-triage"))
        .env("DATABASE_URL", &db.url)
        .env("NODE_ID", "crash-node")
        .env("LOG_LEVEL", "error")
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// Every journal row as (alert, step, attempt, status, output).
async fn journal(db: &TestDb) -> Vec<String> {
    let sql = "SELECT alert_id || '|' || step || '|' || attempt || '|' || status || '|' || output \
               FROM step_journal ORDER BY alert_id, step";
    db.texts(sql).await
}

//! Store behaviour, each test run against PostgreSQL and SQLite.

use std::collections::HashSet;

use crate::store_support::{
    Kind, TestDb, alert, completed, decision, full_write_set, on_both_backends, step,
};
use aml_triage::store::audit::sha256_hex;
use aml_triage::store::{
    AdmitOutcome, DecisionOutcome, STEP_COMPLETED, STEP_DEGRADED, Store, StoreError, StoreOptions,
};
use chrono::{Duration, Utc};
use serde_json::json;

on_both_backends!(
    alert_is_persisted_before_work_starts,
    resubmission_returns_same_decision,
    conflicting_resubmission_is_rejected,
    audit_tampering_is_detected,
    purge_respects_retention,
    completed_step_is_journalled_once,
    batched_writes_are_all_committed,
    unfinished_alerts_come_with_their_completed_steps,
    database_url_password_is_never_in_errors,
    export_contains_the_chain_proof,
);

async fn alert_is_persisted_before_work_starts(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.store("node-a").await;
    let a = alert("A-1", "C-1", Utc::now());
    assert_eq!(
        store.admit(a.clone()).await.unwrap(),
        AdmitOutcome::Inserted
    );
    // A connection of its own, opened after admit returned, sees the body byte for byte.
    let stored = db
        .text("SELECT raw_json FROM alerts WHERE alert_id = 'A-1'")
        .await;
    assert_eq!(stored.as_deref(), Some(a.raw_json.as_str()));
    let row = store.alert("A-1").await.unwrap().unwrap();
    assert_eq!(row.status, "received");
    assert_eq!(
        row.received_at,
        aml_triage::store::audit::truncate_micros(a.received_at)
    );
    store.close().await;
}

async fn resubmission_returns_same_decision(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.store("node-a").await;
    let a = alert("A-1", "C-1", Utc::now());
    assert_eq!(
        store.admit(a.clone()).await.unwrap(),
        AdmitOutcome::Inserted
    );
    assert_eq!(
        store.admit(a.clone()).await.unwrap(),
        AdmitOutcome::Duplicate { decision: None }
    );
    let d = decision("A-1", "ESCALATE");
    assert_eq!(
        store.record_decision(d.clone()).await.unwrap(),
        DecisionOutcome::Inserted
    );
    // A second decision overwrites nothing and returns the first.
    assert_eq!(
        store
            .record_decision(decision("A-1", "AUTO_CLEAR"))
            .await
            .unwrap(),
        DecisionOutcome::AlreadyDecided(d.decision.clone())
    );
    store.close().await;

    // After a restart, a resubmission gets the stored decision.
    let store = db.store("node-a").await;
    assert_eq!(
        store.admit(a).await.unwrap(),
        AdmitOutcome::Duplicate {
            decision: Some(d.decision.clone())
        }
    );
    assert_eq!(store.decision("A-1").await.unwrap(), Some(d.decision));
    assert_eq!(store.alert("A-1").await.unwrap().unwrap().status, "decided");
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM decisions").await,
        1,
        "one decision per alert"
    );
    let report = store.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
    store.close().await;
}

async fn conflicting_resubmission_is_rejected(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.store("node-a").await;
    let a = alert("A-1", "C-1", Utc::now());
    store.admit(a.clone()).await.unwrap();
    let mut other = alert("A-1", "C-2", Utc::now());
    other.raw_json = other.raw_json.replace("C-2", "C-2 ");
    other.content_hash = sha256_hex("different");
    assert_eq!(
        store.admit(other).await.unwrap(),
        AdmitOutcome::Conflict {
            existing_content_hash: a.content_hash.clone()
        }
    );
    let stored = store.alert("A-1").await.unwrap().unwrap();
    assert_eq!(stored.raw_json, a.raw_json);
    assert_eq!(stored.customer_id, "C-1");
    // The rejected attempt is itself on the record.
    let trail = store.audit_trail("A-1").await.unwrap();
    assert_eq!(
        trail.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["alert_received", "alert_conflict_rejected"]
    );

    // Concurrent admits of one new id, from this store and from a second node on the same
    // database: exactly one inserts.
    let second = db.store("node-b").await;
    let b = alert("B-1", "C-9", Utc::now());
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            second.clone()
        };
        let b = b.clone();
        tasks.push(tokio::spawn(async move { s.admit(b).await.unwrap() }));
    }
    let mut inserted = 0;
    for t in tasks {
        match t.await.unwrap() {
            AdmitOutcome::Inserted => inserted += 1,
            AdmitOutcome::Duplicate { decision: None } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(inserted, 1);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM alerts WHERE alert_id = 'B-1'")
            .await,
        1
    );
    second.close().await;
    store.close().await;
}

/// Three alerts with their full write sets: 3 x 6 = 18 entries on chain `node-a`.
async fn populated(kind: Kind) -> (TestDb, Store) {
    let db = TestDb::new(kind).await;
    let store = db.store("node-a").await;
    for i in 0..3 {
        full_write_set(
            &store,
            alert(&format!("A-{i}"), "C-1", Utc::now()),
            "ESCALATE",
        )
        .await;
    }
    let report = store.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries_checked, 18);
    (db, store)
}

async fn audit_tampering_is_detected(kind: Kind) {
    // UPDATE of one entry's payload.
    let (db, store) = populated(kind).await;
    let tamper = "UPDATE audit_entries SET payload = REPLACE(payload, '\"risk_scoring\"', \
                  '\"risk_scoring_x\"') WHERE chain_id = 'node-a' AND seq = 9";
    assert!(
        db.exec(tamper).await.is_err(),
        "audit entries are append-only"
    );
    db.allow_audit_updates().await;
    assert_eq!(db.exec(tamper).await.unwrap(), 1);
    let report = store.verify(None).await.unwrap();
    assert!(!report.ok);
    let f = report.failure.unwrap();
    assert_eq!(
        (f.chain_id.as_deref(), f.seq, f.alert_id.as_deref()),
        (Some("node-a"), Some(9), Some("A-1"))
    );
    assert!(f.reason.contains("hash mismatch"), "{}", f.reason);
    let report = store.verify(Some("A-1")).await.unwrap();
    assert_eq!(report.failure.unwrap().seq, Some(9));
    assert!(store.verify(Some("A-0")).await.unwrap().ok);
    store.close().await;
    drop(db);

    // DELETE of one entry.
    let (db, store) = populated(kind).await;
    assert_eq!(
        db.exec("DELETE FROM audit_entries WHERE chain_id = 'node-a' AND seq = 4")
            .await
            .unwrap(),
        1
    );
    let report = store.verify(None).await.unwrap();
    let f = report.failure.unwrap();
    assert_eq!((f.chain_id.as_deref(), f.seq), (Some("node-a"), Some(4)));
    assert!(f.reason.contains("missing"), "{}", f.reason);
    let f = store.verify(Some("A-0")).await.unwrap().failure.unwrap();
    assert!(f.reason.contains("missing"), "{}", f.reason);
    store.close().await;
    drop(db);

    // DELETE of the last entry: no gap, but the writer knows its head.
    let (db, store) = populated(kind).await;
    db.exec("DELETE FROM audit_entries WHERE chain_id = 'node-a' AND seq = 18")
        .await
        .unwrap();
    let f = store.verify(None).await.unwrap().failure.unwrap();
    assert_eq!(f.seq, Some(18), "{f:?}");
    store.close().await;
    drop(db);

    // UPDATE of a decision row (not of the chain): caught by the decision's audit entry.
    let (db, store) = populated(kind).await;
    db.exec(
        "UPDATE decisions SET decision = REPLACE(decision, 'ESCALATE', 'AUTO_CLEAR') \
         WHERE alert_id = 'A-2'",
    )
    .await
    .unwrap();
    let f = store.verify(None).await.unwrap().failure.unwrap();
    assert_eq!(f.alert_id.as_deref(), Some("A-2"));
    assert!(f.reason.contains("decision"), "{}", f.reason);
    store.close().await;
}

async fn purge_respects_retention(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.store("node-a").await;
    let now = Utc::now();
    let old = now - Duration::days(40);
    full_write_set(&store, alert("OLD-1", "C-1", old), "AUTO_CLEAR").await;
    full_write_set(&store, alert("OLD-2", "C-1", old), "ESCALATE").await;
    store
        .record_audit_event("admin", "config_loaded", None, json!({"config": "cfg-abc"}))
        .await
        .unwrap();
    // Old but undecided: must survive.
    store.admit(alert("OLD-OPEN", "C-2", old)).await.unwrap();
    full_write_set(
        &store,
        alert("NEW-1", "C-1", now - Duration::days(10)),
        "ESCALATE",
    )
    .await;
    // Received a second after the cutoff: must survive.
    full_write_set(
        &store,
        alert(
            "EDGE",
            "C-3",
            now - Duration::days(30) + Duration::seconds(1),
        ),
        "ESCALATE",
    )
    .await;

    let report = store.purge(30, now).await.unwrap();
    assert_eq!(report.alerts, 2, "{report:?}");
    assert_eq!(report.decisions, 2);
    assert_eq!(report.steps, 8);
    // The 12 entries of OLD-1 and OLD-2. The config event was written now (after the cutoff),
    // so the removable prefix of the chain ends before it.
    assert_eq!(report.audit_entries, 12);
    assert_eq!(report.kept_undecided, 1);
    assert_eq!(report.anchors.len(), 1);
    assert_eq!(report.anchors[0].seq, 12);

    for gone in ["OLD-1", "OLD-2"] {
        assert!(store.alert(gone).await.unwrap().is_none());
        assert!(store.decision(gone).await.unwrap().is_none());
        assert!(store.steps(gone).await.unwrap().is_empty());
        assert!(store.audit_trail(gone).await.unwrap().is_empty());
    }
    for kept in ["OLD-OPEN", "NEW-1", "EDGE"] {
        assert!(store.alert(kept).await.unwrap().is_some(), "{kept}");
        assert!(!store.audit_trail(kept).await.unwrap().is_empty(), "{kept}");
    }
    assert_eq!(store.steps("NEW-1").await.unwrap().len(), 4);
    // The chain still verifies from its anchor, keeps growing, and the purge is on record.
    let v = store.verify(None).await.unwrap();
    assert!(v.ok, "{v:?}");
    store
        .record_audit_event("admin", "after_purge", None, json!({}))
        .await
        .unwrap();
    assert!(store.verify(None).await.unwrap().ok);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_entries WHERE action = 'purge'")
            .await,
        1
    );
    // A restarted writer continues the chain after the purge.
    store.close().await;
    let store = db.store("node-a").await;
    let again = store.purge(30, now).await.unwrap();
    assert_eq!((again.alerts, again.audit_entries), (0, 0), "{again:?}");
    let v = store.verify(None).await.unwrap();
    assert!(v.ok, "{v:?}");
    store.close().await;
}

async fn completed_step_is_journalled_once(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.store("node-a").await;
    store.admit(alert("A-1", "C-1", Utc::now())).await.unwrap();
    store
        .append_step(completed("A-1", "risk_scoring"))
        .await
        .unwrap();
    let again = store.append_step(completed("A-1", "risk_scoring")).await;
    assert!(
        matches!(again, Err(StoreError::StepAlreadyCompleted { .. })),
        "{again:?}"
    );
    // Degraded attempts may repeat.
    for attempt in 1..=2 {
        let mut s = step("A-1", "decision_maker", STEP_DEGRADED);
        s.attempt = attempt;
        store.append_step(s).await.unwrap();
    }
    // Concurrent completions of one step: exactly one is journalled.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.append_step(completed("A-1", "context_builder")).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::StepAlreadyCompleted { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 1);
    // The property, checkable in SQL.
    assert_eq!(
        db.scalar(
            "SELECT COUNT(*) FROM (SELECT alert_id, step FROM step_journal \
             WHERE status = 'completed' GROUP BY alert_id, step HAVING COUNT(*) > 1) t"
        )
        .await,
        0
    );
    assert_eq!(store.steps("A-1").await.unwrap().len(), 4);
    // Refused writes left no audit entries: 1 admit + 4 steps.
    assert_eq!(store.audit_trail("A-1").await.unwrap().len(), 5);
    assert!(store.verify(None).await.unwrap().ok);
    store.close().await;
}

async fn batched_writes_are_all_committed(kind: Kind) {
    const CALLERS: usize = 300;
    let db = TestDb::new(kind).await;
    let store = db.store("node-a").await;
    let mut tasks = Vec::new();
    for i in 0..CALLERS {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            full_write_set(
                &s,
                alert(&format!("A-{i:04}"), &format!("C-{}", i % 17), Utc::now()),
                if i.is_multiple_of(3) {
                    "AUTO_CLEAR"
                } else {
                    "ESCALATE"
                },
            )
            .await;
        }));
    }
    // Bad commands among them fail alone (the batch falls back to one-by-one writes).
    let mut bad = Vec::new();
    for i in 0..5 {
        let s = store.clone();
        bad.push(tokio::spawn(async move {
            s.append_step(completed(&format!("NOPE-{i}"), "risk_scoring"))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for t in bad {
        let r = t.await.unwrap();
        assert!(matches!(r, Err(StoreError::UnknownAlert(_))), "{r:?}");
    }
    let n = CALLERS as i64;
    assert_eq!(db.scalar("SELECT COUNT(*) FROM alerts").await, n);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM step_journal").await, 4 * n);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM decisions").await, n);
    assert_eq!(
        db.scalar(
            "SELECT COUNT(*) FROM alerts a WHERE EXISTS \
             (SELECT 1 FROM decisions d WHERE d.alert_id = a.alert_id)"
        )
        .await,
        n
    );
    assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_entries").await, 6 * n);
    assert_eq!(
        db.scalar("SELECT MAX(seq) FROM audit_entries WHERE chain_id = 'node-a'")
            .await,
        6 * n
    );
    let report = store.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.records_checked, CALLERS as u64);
    // With an unknown reference alert, history counts all of the customer's alerts.
    let c1: Vec<usize> = (0..CALLERS).filter(|i| i % 17 == 1).collect();
    let escalated = c1.iter().filter(|i| *i % 3 != 0).count();
    assert_eq!(
        store.customer_history("C-1", "none").await.unwrap(),
        (c1.len() as u32, escalated as u32)
    );
    let (alerts, _) = store.customer_history("C-1", "A-0001").await.unwrap();
    assert!(
        alerts < c1.len() as u32,
        "the reference alert itself is excluded"
    );
    store.close().await;
}

async fn unfinished_alerts_come_with_their_completed_steps(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.store("node-a").await;
    let t0 = Utc::now() - Duration::minutes(5);
    store.admit(alert("A-1", "C-1", t0)).await.unwrap();
    store
        .admit(alert("A-2", "C-1", t0 + Duration::seconds(1)))
        .await
        .unwrap();
    full_write_set(
        &store,
        alert("A-3", "C-1", t0 + Duration::seconds(2)),
        "ESCALATE",
    )
    .await;
    store
        .append_step(completed("A-1", "data_enrichment"))
        .await
        .unwrap();
    store
        .append_step(step("A-1", "risk_scoring", STEP_DEGRADED))
        .await
        .unwrap();
    store
        .append_step(completed("A-1", "risk_scoring"))
        .await
        .unwrap();
    store.close().await;

    // As after a crash: a new process on the same database.
    let store = db.store("node-a").await;
    let unfinished = store.unfinished().await.unwrap();
    let ids: Vec<&str> = unfinished
        .iter()
        .map(|u| u.alert.alert_id.as_str())
        .collect();
    assert_eq!(ids, ["A-1", "A-2"]);
    let a1 = &unfinished[0];
    assert_eq!(a1.alert.raw_json, alert("A-1", "C-1", t0).raw_json);
    let steps: Vec<(&str, &str)> = a1
        .completed_steps
        .iter()
        .map(|s| (s.step.as_str(), s.status.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("data_enrichment", STEP_COMPLETED),
            ("risk_scoring", STEP_COMPLETED)
        ]
    );
    assert_eq!(a1.completed_steps[0], completed("A-1", "data_enrichment"));
    assert!(unfinished[1].completed_steps.is_empty());
    store.close().await;
}

async fn database_url_password_is_never_in_errors(kind: Kind) {
    // Nothing listens on port 1.
    let urls = [
        "postgres://user:secret@127.0.0.1:1/x",
        "postgres://user:secret@127.0.0.1:notaport/x",
    ];
    for url in urls {
        let err = Store::connect(Some(url), "node-a", StoreOptions::default())
            .await
            .unwrap_err();
        let shown = format!("{err} / {err:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }
    if kind == Kind::Sqlite {
        let err = Store::connect(
            Some("sqlite:/nonexistent-dir/sub/x.db"),
            "node-a",
            StoreOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    }
}

async fn export_contains_the_chain_proof(kind: Kind) {
    let (db, store) = populated(kind).await;
    let pack = store.export("A-1").await.unwrap();
    assert_eq!(pack["format"], "aml-triage.regulator-pack.v1");
    let stored = store.alert("A-1").await.unwrap().unwrap();
    assert_eq!(
        pack["alert"]["raw_json"].as_str(),
        Some(stored.raw_json.as_str())
    );
    assert_eq!(pack["steps"].as_array().unwrap().len(), 4);
    assert_eq!(pack["decision"]["disposition"], "ESCALATE");
    assert_eq!(pack["versions"][0]["policy_version"], "policy-7");
    assert_eq!(pack["verification"]["ok"], true);
    let entries = pack["audit"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 6);
    // Every hash can be recomputed from the pack alone.
    for e in entries {
        let text = format!(
            "{}\n{}",
            e["prev_hash"].as_str().unwrap(),
            e["hashed_json"].as_str().unwrap()
        );
        assert_eq!(sha256_hex(text), e["hash"].as_str().unwrap());
    }
    let proof = pack["audit"]["chain_proof"].as_array().unwrap();
    assert_eq!(proof[0]["predecessor"]["hash"], entries[0]["prev_hash"]);
    assert_eq!(proof[5]["successor"]["prev_hash"], entries[5]["hash"]);
    let ids: HashSet<&str> = entries
        .iter()
        .map(|e| e["alert_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, HashSet::from(["A-1"]));
    store.close().await;
    drop(db);
}

#[tokio::test]
async fn same_node_id_is_locked_on_postgres() {
    let db = TestDb::new(Kind::Postgres).await;
    let first = db.store("node-a").await;
    let second = Store::connect(Some(&db.url), "node-a", StoreOptions::default()).await;
    assert!(
        matches!(second, Err(StoreError::ChainLocked(_))),
        "{second:?}"
    );
    first.close().await;
    // Released on close.
    let again = db.store("node-a").await;
    again.close().await;
}

#[tokio::test]
async fn memory_backend_runs_the_same_pipeline() {
    let store = Store::connect(Some("memory"), "node-m", StoreOptions::default())
        .await
        .unwrap();
    full_write_set(&store, alert("A-1", "C-1", Utc::now()), "ESCALATE").await;
    assert!(matches!(
        store.append_step(completed("A-1", STEP_NAMES_0)).await,
        Err(StoreError::StepAlreadyCompleted { .. })
    ));
    assert!(matches!(
        store.append_step(completed("NOPE", "x")).await,
        Err(StoreError::UnknownAlert(_))
    ));
    assert!(store.verify(None).await.unwrap().ok);
    assert_eq!(
        store.export("A-1").await.unwrap()["verification"]["ok"],
        true
    );
    store.close().await;
}

const STEP_NAMES_0: &str = crate::store_support::STEPS[0];

//! Storage format v2 (issue 17): the upgrade from a v1 database, and the write path's commits.

use aml_triage::store::{Store, StoreOptions};
use chrono::Utc;
use sqlx::Connection;

use crate::store_support::{
    Kind, TestDb, alert, completed, decision, full_write_set, on_both_backends,
};
use crate::support::{clean_alert, settings};

on_both_backends!(
    upgrade_from_v1_keeps_the_audit_chain_valid,
    decision_waits_for_two_commits_at_most,
    decision_is_refused_after_a_failed_journal_write,
);

/// A database written by the v1 store (schema migrations 1 and 3, four decided sample alerts
/// from `examples/alerts.sample.jsonl`, chain `v1-node`), as dumped by `sqlite3 .dump` and
/// `pg_dump --inserts`.
const V1_SQLITE: &str = include_str!("fixtures/v1_sqlite.sql");
const V1_POSTGRES: &str = include_str!("fixtures/v1_postgres.sql");

async fn load_v1(db: &TestDb) {
    match db.kind {
        Kind::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(V1_POSTGRES))
                .execute(&mut c)
                .await
                .unwrap();
            let _ = c.close().await;
        }
        Kind::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&format!("{}?mode=rwc", db.url))
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(V1_SQLITE))
                .execute(&mut c)
                .await
                .unwrap();
            let _ = c.close().await;
        }
    }
}

/// The guarantee: `migrate` upgrades a v1 database to v2 without touching the audit chain:
/// `verify` passes on the upgraded data, reads are unchanged (status, versions, decisions),
/// new writes land in the v2 shape, and a forged column of an upgraded alert is still caught.
async fn upgrade_from_v1_keeps_the_audit_chain_valid(kind: Kind) {
    let db = TestDb::new(kind).await;
    load_v1(&db).await;
    let before = db.scalar("SELECT COUNT(*) FROM audit_entries").await;
    assert!(before > 0, "{kind:?}: fixture has no audit entries");
    let v1_versions = db
        .text("SELECT list_versions FROM decisions WHERE alert_id = 'SAMPLE-0003'")
        .await
        .expect("v1 decision");

    let store = Store::connect(Some(&db.url), "upgrader", StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_entries").await,
        before,
        "{kind:?}: the upgrade changed the chain"
    );
    assert!(db.scalar("SELECT COUNT(*) FROM version_sets").await >= 1);

    let report = store.verify(None).await.unwrap();
    assert!(
        report.ok,
        "{kind:?}: upgraded store fails verify: {report:?}"
    );
    assert_eq!(report.records_checked, 4, "{kind:?}: {report:?}");
    for id in ["SAMPLE-0001", "SAMPLE-0002", "SAMPLE-0003", "SAMPLE-0004"] {
        let r = store.verify(Some(id)).await.unwrap();
        assert!(r.ok, "{kind:?}: {id}: {r:?}");
    }
    // Reads are what v1 returned.
    let a = store.alert("SAMPLE-0003").await.unwrap().unwrap();
    assert_eq!(a.status, "decided");
    let steps = store.steps("SAMPLE-0003").await.unwrap();
    assert_eq!(steps.len(), 5, "{kind:?}: {steps:?}");
    let lists: Vec<String> = serde_json::from_str(&v1_versions).unwrap();
    assert_eq!(steps[0].versions.list_versions, lists);
    assert!(store.decision("SAMPLE-0003").await.unwrap().is_some());
    assert!(store.unfinished_ids().await.unwrap().is_empty());

    // New writes after the upgrade, in the v2 shape, verify too.
    full_write_set(&store, alert("NEW-1", "C-new", Utc::now()), "ESCALATE_L2").await;
    let report = store.verify(None).await.unwrap();
    assert!(report.ok, "{kind:?}: {report:?}");

    // A forged column of an upgraded alert is still detected, with its table and column.
    db.exec("UPDATE decisions SET disposition = 'AUTO_CLEAR' WHERE alert_id = 'SAMPLE-0003'")
        .await
        .unwrap();
    let f = store
        .verify(Some("SAMPLE-0003"))
        .await
        .unwrap()
        .failure
        .unwrap_or_else(|| panic!("{kind:?}: forged disposition not detected"));
    assert_eq!(f.table, Some("decisions"), "{kind:?}: {f:?}");
    assert_eq!(f.column, Some("disposition"), "{kind:?}: {f:?}");
    // And a journal row of an upgraded alert pointed at another version set.
    db.exec(
        "INSERT INTO version_sets (versions) VALUES \
         ('{\"config_version\":\"x\",\"list_versions\":[],\"policy_version\":\"forged\"}')",
    )
    .await
    .unwrap();
    db.exec(
        "UPDATE step_journal SET versions_id = \
         (SELECT id FROM version_sets WHERE versions LIKE '%forged%') \
         WHERE alert_id = 'SAMPLE-0004' AND step = 'risk_scoring'",
    )
    .await
    .unwrap();
    let f = store
        .verify(Some("SAMPLE-0004"))
        .await
        .unwrap()
        .failure
        .unwrap_or_else(|| panic!("{kind:?}: forged versions not detected"));
    assert_eq!(f.table, Some("step_journal"), "{kind:?}: {f:?}");
    assert_eq!(f.column, Some("policy_version"), "{kind:?}: {f:?}");
    store.close().await;
}

/// The guarantee: an alert waits for at most two commits (its admission, then its decision);
/// its five journal writes are queued behind the admission and ahead of the decision without
/// being waited for. Every wait for a commit is counted by the store (`Store::commit_waits`);
/// each alert needs at least two, so a total of two per alert means exactly two each. The
/// journal is still complete and the chain verifies.
async fn decision_waits_for_two_commits_at_most(kind: Kind) {
    const N: usize = 40;
    let db = TestDb::new(kind).await;
    let mut s = settings();
    s.database_url = db.url.clone();
    s.node_id = "commits-a".into();
    let engine = aml_triage::Engine::builder(s)
        .start()
        .await
        .expect("engine starts");
    let before = engine.store().commit_waits();
    let alerts: Vec<_> = (0..N)
        .map(|i| {
            aml_triage::domain::alert::Alert::from_json(&clean_alert(&format!("W-{i}")))
                .expect("valid alert")
        })
        .collect();
    let decided = engine.submit_many(alerts).await;
    for d in &decided {
        let d = d.as_ref().expect("decided");
        // No review case (whose opening writes too): the count is the pipeline's alone.
        assert!(!d.requires_human_review, "{kind:?}: {d:?}");
    }
    let waits = engine.store().commit_waits() - before;
    assert!(
        waits <= 2 * N as u64,
        "{kind:?}: {N} alerts waited for {waits} commits (more than two each)"
    );
    assert!(
        waits >= 2 * N as u64,
        "{kind:?}: the counter missed waits: {waits}"
    );
    engine.shutdown().await;
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM step_journal").await,
        5 * N as i64,
        "{kind:?}: journal incomplete"
    );
    let store = Store::connect(Some(&db.url), "commits-reader", StoreOptions::default())
        .await
        .unwrap();
    let report = store.verify(None).await.unwrap();
    assert!(report.ok, "{kind:?}: {report:?}");
    store.close().await;
}

/// The guarantee behind not waiting for journal writes: a decision queued after a journal
/// write of its alert that failed (here a second `completed` record of a step) is refused, in
/// the same batch or a later one, so a decision is never durable without its steps.
async fn decision_is_refused_after_a_failed_journal_write(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.store("refuse-a").await;
    for id in ["R-1", "R-2"] {
        store.admit(alert(id, "C-r", Utc::now())).await.unwrap();
        store
            .append_step(completed(id, "risk_scoring"))
            .await
            .unwrap();
    }
    // Same batch: the failing step and the decision queued back to back.
    let failing = store
        .enqueue_step(completed("R-1", "risk_scoring"))
        .await
        .unwrap();
    let refused = store.record_decision(decision("R-1", "ESCALATE_L2")).await;
    assert!(refused.is_err(), "{kind:?}: {refused:?}");
    assert!(failing.committed().await.is_err());
    // Later batch: the step fails first, the decision comes after.
    let failing = store
        .enqueue_step(completed("R-2", "risk_scoring"))
        .await
        .unwrap();
    assert!(failing.committed().await.is_err());
    let refused = store.record_decision(decision("R-2", "ESCALATE_L2")).await;
    assert!(refused.is_err(), "{kind:?}: {refused:?}");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM decisions").await, 0);
    // The refusal is one-off: the retried decision is recorded.
    store
        .record_decision(decision("R-2", "ESCALATE_L2"))
        .await
        .unwrap();
    assert!(store.verify(None).await.unwrap().ok);
    store.close().await;
}

//! `aml-triage model fit --from-store` (issue 20): a scorecard fitted on the analyst outcomes
//! the review workflow recorded, on a real SQLite and PostgreSQL store populated through the
//! engine (decisions, cases) and the review service (start, close request, four-eyes approval).
//!
//! Needs `../shared/data/amlsim-dev.eval.jsonl` (fails when missing).

use std::collections::BTreeSet;
use std::sync::Arc;

use aml_triage::domain::alert::Alert;
use aml_triage::domain::review::UserRole;
use aml_triage::domain::scorecard::Scorecard;
use aml_triage::llm::offline::OfflineProvider;
use aml_triage::review::{Review, ReviewConfig};

use crate::store_support::{Kind, TestDb};
use crate::support::{engine_with, eventually_async, settings, shared_data};

const PASSWORD: &str = "a long enough password";

/// Dev-set transaction alerts with their labels, spread over the file.
fn dev_alerts() -> Vec<(Alert, bool)> {
    let text = std::fs::read_to_string(shared_data().join("amlsim-dev.eval.jsonl"))
        .expect("amlsim-dev.eval.jsonl readable");
    text.lines()
        .step_by(7)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                Alert::from_value(v["alert"].clone()).unwrap(),
                v["expected"]["suspicious"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Runs `aml-triage model fit --from-store` on `url`; (success, stdout, stderr).
fn fit_cli(url: &str, out: &std::path::Path) -> (bool, String, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_aml-triage"))
        .args(["model", "fit", "--from-store", "--database-url", url])
        .args(["--folds", "3", "--min-bin", "5", "--out"])
        .arg(out)
        .env_remove("DATABASE_URL")
        .env_remove("SCORECARD_PATH")
        .env_remove("EXTERNAL_DATA_API_URL")
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

async fn fit_from_store_uses_closed_case_outcomes(kind: Kind) {
    let db = TestDb::new(kind).await;
    let s = aml_triage::Settings {
        database_url: db.url.clone(),
        node_id: format!("fit-{:08x}", fastrand::u32(..)),
        ..settings()
    };
    let engine = engine_with(s, Arc::new(OfflineProvider::default())).await;
    // Escalated dev alerts (only those get a case): 22 suspicious, 22 not.
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for (alert, suspicious) in dev_alerts() {
        if pos.len() >= 22 && neg.len() >= 22 {
            break;
        }
        let want = if suspicious { &pos } else { &neg };
        if want.len() >= 22 {
            continue;
        }
        let d = engine.submit(alert).await.expect("decided");
        if d.disposition != aml_triage::domain::decision::Disposition::AutoClear {
            if suspicious {
                pos.push(d.alert_id);
            } else {
                neg.push(d.alert_id);
            }
        }
    }
    assert_eq!((pos.len(), neg.len()), (22, 22), "dev set too small");
    let store = engine.store().clone();
    let review = Review::new(
        store.clone(),
        engine.metrics().clone(),
        ReviewConfig::default(),
    );
    for (id, roles) in [
        ("alice", vec![UserRole::Analyst]),
        ("bob", vec![UserRole::Reviewer]),
    ] {
        let roles: BTreeSet<UserRole> = roles.into_iter().collect();
        review
            .add_user("test", id, id, roles, Some(PASSWORD))
            .await
            .unwrap();
    }
    let alice = review.user("alice").await.unwrap();
    let bob = review.user("bob").await.unwrap();
    let all: Vec<String> = pos.iter().chain(&neg).cloned().collect();
    let opened = eventually_async(std::time::Duration::from_secs(20), || {
        let (store, all) = (store.clone(), all.clone());
        async move {
            for id in &all {
                if store.case_for_alert(id).await.unwrap().is_none() {
                    return false;
                }
            }
            true
        }
    })
    .await;
    assert!(opened, "every escalated alert has a case");
    // `how`: a close outcome, or `sar` (a filed SAR, approved).
    let close = |id: String, how: &'static str| {
        let (review, store, alice, bob) = (&review, &store, &alice, &bob);
        async move {
            let case = store.case_for_alert(&id).await.unwrap().unwrap();
            let cid = case.case_id.clone();
            review
                .transition(alice, &cid, "start_review", None)
                .await
                .unwrap();
            if how == "sar" {
                review
                    .request_sar(alice, &cid, "structuring confirmed", true, None)
                    .await
                    .unwrap();
            } else {
                review
                    .request_close(alice, &cid, how, "reviewed", Some("analyst judgement"))
                    .await
                    .unwrap();
            }
            review.approve(bob, &cid, None).await.unwrap();
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("store-scorecard.json");

    // Too few: 6 suspicious and 4 not, plus two inconclusive (no label) and an open case.
    for id in &pos[..5] {
        close(id.clone(), "true_positive_no_sar").await;
    }
    close(pos[5].clone(), "sar").await;
    for id in &neg[..4] {
        close(id.clone(), "false_positive").await;
    }
    for id in &neg[4..6] {
        close(id.clone(), "inconclusive").await;
    }
    let (ok, stdout, stderr) = fit_cli(&db.url, &out);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("too few labelled outcomes to fit: 10 (6 positive, 4 negative)"),
        "{stderr}"
    );
    assert!(stderr.contains("need at least 30"), "{stderr}");
    assert!(stdout.contains("2 inconclusive"), "{stdout}");
    assert!(!out.exists());

    // Enough: every other case closed.
    for id in &pos[6..] {
        close(id.clone(), "true_positive_no_sar").await;
    }
    for id in &neg[6..] {
        close(id.clone(), "false_positive").await;
    }
    engine.shutdown().await;
    let (ok, stdout, stderr) = fit_cli(&db.url, &out);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("analyst outcomes: 42 labelled (22 positive"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let sc = Scorecard::from_json(&text).expect("a valid scorecard file");
    // Inconclusive cases are not training data; every other outcome is, with its label.
    assert_eq!((sc.training.alerts, sc.training.positives), (42, 22));
    assert_eq!(sc.training.source, "store");
    assert_eq!(sc.training.sha256.len(), 64);
    assert!(sc.version.starts_with("scorecard-store-"), "{}", sc.version);
    assert!(!sc.features.is_empty());
    // The same file shape as `--from FILE` (the shipped scorecard).
    let keys = |t: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(t).unwrap();
        v.as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(keys(&text), keys(aml_triage::model::BUILTIN_SCORECARD));
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(m["metrics"]["out_of_fold"]["pr_auc"].is_number(), "{m}");
    // Activated only by configuration, like any scorecard file.
    let loaded = aml_triage::model::load_scorecard(Some(&out.to_string_lossy()))
        .unwrap()
        .unwrap();
    assert_eq!(loaded.version, sc.version);
    // The same outcomes give the same data digest and version.
    let again = dir.path().join("again.json");
    assert!(fit_cli(&db.url, &again).0);
    let sc2 = Scorecard::from_json(&std::fs::read_to_string(&again).unwrap()).unwrap();
    assert_eq!(sc2.training.sha256, sc.training.sha256);
    assert_eq!(sc2.version, sc.version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_fit_from_store_uses_closed_case_outcomes_sqlite() {
    fit_from_store_uses_closed_case_outcomes(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_fit_from_store_uses_closed_case_outcomes_postgres() {
    fit_from_store_uses_closed_case_outcomes(Kind::Postgres).await;
}

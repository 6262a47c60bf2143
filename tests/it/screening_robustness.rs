//! Screening safety on inputs the matcher's authors did not write: the robustness set built
//! from the shared lists (entries the development set does not claim), each name perturbed
//! by a named class of typo or respelling, decided end to end by the engine. Also the
//! engine-level rules: blocking needs a confirmed hit.
//!
//! The shared data folder (`../shared/data`, or `AML_SHARED_DATA`) is required: these tests
//! fail, not skip, without it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use aml_triage::assessment::enrichment::ReferenceData;
use aml_triage::domain::AgentKind;
use aml_triage::domain::alert::Alert;
use aml_triage::domain::decision::Disposition;
use aml_triage::domain::facts::MatchClass;
use aml_triage::jurisdiction::JurisdictionTable;
use aml_triage::screening::ScreeningLists;
use aml_triage::screening::robustness::{SetOptions, build, claimed_entries};
use aml_triage::{Decision, Engine};
use futures_util::StreamExt;

use crate::support::{Behaviour, Scripted, ScriptedProvider, settings};

fn load_lists(dir: &std::path::Path) -> ScreeningLists {
    let paths: Vec<PathBuf> = ["ofac_sdn", "ofac_consolidated", "un", "pep"]
        .iter()
        .map(|d| dir.join(d))
        .collect();
    ScreeningLists::load_paths(&paths).expect("lists load")
}

async fn decide_all(engine: &Engine, alerts: Vec<Alert>) -> Vec<Decision> {
    futures_util::stream::iter(alerts)
        .map(|a| async move { engine.submit(a).await.expect("decided") })
        .buffer_unordered(32)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perturbed_true_hits_are_never_cleared() {
    let dir = crate::support::shared_data();
    let lists = Arc::new(load_lists(&dir));
    let dev = std::fs::read_to_string(dir.join("screening-dev.eval.jsonl")).expect("dev set");
    // Two seeds: the default one of `aml-triage lists robustness` and another, so the rules are
    // not fitted to one draw.
    for seed in [SetOptions::default().seed, 7] {
        let opts = SetOptions {
            per_class: 150,
            negatives_per_class: 40,
            seed,
            exclude: claimed_entries(&dev),
            ..SetOptions::default()
        };
        check_robustness_set(lists.clone(), &opts).await;
    }
}

async fn check_robustness_set(lists: Arc<ScreeningLists>, opts: &SetOptions) {
    let (lines, summary) = build(&lists, opts);
    let classes_with_hits = summary.true_hits.iter().filter(|(_, n)| *n > 0).count();
    let true_hits: usize = summary.true_hits.iter().map(|(_, n)| n).sum();
    assert!(classes_with_hits >= 10, "{summary:?}");
    assert!(true_hits >= 2_000, "{summary:?}");

    let mut alerts = Vec::new();
    let mut label: BTreeMap<String, (bool, String)> = BTreeMap::new();
    for l in &lines {
        let alert = Alert::from_value(l["alert"].clone()).expect("generated alert is valid");
        label.insert(
            alert.alert_id.clone(),
            (
                l["expected"]["suspicious"].as_bool().expect("label"),
                l["expected"]["typology"]
                    .as_str()
                    .expect("typology")
                    .to_string(),
            ),
        );
        alerts.push(alert);
    }
    // The matcher alone first: no claimed true hit may be discounted, whatever the policy.
    let mut discounted_true = Vec::new();
    for a in &alerts {
        let (suspicious, class) = &label[&a.alert_id];
        if !suspicious {
            continue;
        }
        let out = lists.screen(a);
        let claim = &a.screening_matches()[0];
        let hit = out
            .hits
            .iter()
            .find(|h| h.list == claim.list && h.entry_id == claim.entry_id)
            .expect("a claimed entry is always reported");
        if hit.class == MatchClass::Discounted {
            discounted_true.push(format!(
                "{class}: {:?} vs {:?}: {:?}",
                a.customer.name, hit.matched_name, hit.discount_reason
            ));
        }
    }

    // Then the engine end to end, with no jurisdiction table so nothing but screening can
    // escalate these alerts.
    let refs = ReferenceData {
        lists,
        jurisdictions: Arc::new(JurisdictionTable::empty()),
    };
    let engine = Engine::builder(settings())
        .reference_data(refs)
        .start()
        .await
        .expect("engine starts");
    let decisions = decide_all(&engine, alerts).await;
    engine.shutdown().await;

    // class -> (true hits, cleared true hits, negatives, cleared negatives)
    let mut table: BTreeMap<String, (usize, usize, usize, usize)> = BTreeMap::new();
    let mut cleared_true = Vec::new();
    for d in &decisions {
        let (suspicious, class) = &label[&d.alert_id];
        let row = table.entry(class.clone()).or_default();
        let cleared = d.disposition == Disposition::AutoClear;
        if *suspicious {
            row.0 += 1;
            if cleared {
                row.1 += 1;
                cleared_true.push(format!("{} ({class})", d.alert_id));
            }
        } else {
            row.2 += 1;
            if cleared {
                row.3 += 1;
            }
        }
    }
    eprintln!("seed {}", opts.seed);
    eprintln!("class                  true  cleared  recall   namesakes  cleared");
    for (class, (t, ct, n, cn)) in &table {
        let recall = if *t > 0 {
            format!("{:.3}", (*t - *ct) as f64 / *t as f64)
        } else {
            "-".into()
        };
        eprintln!("{class:<22} {t:>5} {ct:>8}  {recall:>6}   {n:>9} {cn:>8}");
    }
    assert!(
        discounted_true.is_empty(),
        "{} true hits discounted by the matcher: {:#?}",
        discounted_true.len(),
        &discounted_true[..discounted_true.len().min(20)]
    );
    assert!(
        cleared_true.is_empty(),
        "{} true hits auto-cleared: {:?}",
        cleared_true.len(),
        &cleared_true[..cleared_true.len().min(20)]
    );
    // The namesakes carry a real disqualifier: most of them must still be cleared, or the
    // matcher has become safe only by clearing nothing.
    let (negs, cleared): (usize, usize) = table
        .values()
        .fold((0, 0), |acc, r| (acc.0 + r.2, acc.1 + r.3));
    assert!(negs > 0);
    assert!(
        cleared as f64 / negs as f64 >= 0.8,
        "only {cleared} of {negs} namesakes with a disqualifier were cleared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screening_dev_set_has_no_misses_and_clears_most_negatives() {
    let dir = crate::support::shared_data();
    let mut settings = settings();
    settings.list_paths = vec![dir.clone()];
    let refs = ReferenceData::load(&settings).expect("reference data loads");
    let text = std::fs::read_to_string(dir.join("screening-dev.eval.jsonl")).expect("dev set");
    let mut alerts = Vec::new();
    let mut suspicious: BTreeMap<String, bool> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        let alert = Alert::from_value(v["alert"].clone()).expect("valid alert");
        suspicious.insert(
            alert.alert_id.clone(),
            v["expected"]["suspicious"].as_bool().expect("label"),
        );
        alerts.push(alert);
    }
    let engine = Engine::builder(settings)
        .reference_data(refs)
        .start()
        .await
        .expect("engine starts");
    let decisions = decide_all(&engine, alerts).await;
    engine.shutdown().await;
    let missed: Vec<&str> = decisions
        .iter()
        .filter(|d| suspicious[&d.alert_id] && d.disposition == Disposition::AutoClear)
        .map(|d| d.alert_id.as_str())
        .collect();
    let negatives = decisions
        .iter()
        .filter(|d| !suspicious[&d.alert_id])
        .count();
    let cleared = decisions
        .iter()
        .filter(|d| !suspicious[&d.alert_id] && d.disposition == Disposition::AutoClear)
        .count();
    let rate = cleared as f64 / negatives as f64;
    eprintln!(
        "screening-dev: missed {}, negatives cleared {cleared}/{negatives} = {rate:.3}",
        missed.len()
    );
    assert!(missed.is_empty(), "true matches auto-cleared: {missed:?}");
    assert!(
        rate >= 0.95,
        "auto-clear rate among negatives {rate:.3} < 0.95"
    );
}

/// A clean individual whose screening claim the model cannot turn into a block.
fn potential_hit_alert(id: &str) -> String {
    format!(
        r#"{{"alert_id":"{id}","alert_type":"SANCTIONS","priority":"MEDIUM",
        "created_at":"2026-01-05T10:00:00Z",
        "customer":{{"customer_id":"C-{id}","name":"Jane Roe","entity_type":"INDIVIDUAL",
          "date_of_birth":"1980-02-03","nationality":"US","kyc_risk_rating":"LOW",
          "account_opened":"2015-01-01"}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_needs_a_confirmed_hit() {
    // A decision model that asks for a block on an alert without any confirmed hit.
    let block = r#"{"disposition":"BLOCK_TRANSACTION","confidence":0.95,
        "rationale":"block it [alert]","cited_evidence":["alert"]}"#;
    let scripted = Scripted::new(
        AgentKind::DecisionMaker,
        vec![Behaviour::Text(block.to_string())],
    );
    let engine = Engine::builder(settings())
        .provider(Arc::new(ScriptedProvider(scripted.clone())))
        .start()
        .await
        .expect("engine starts");
    let d = engine
        .submit_json(&potential_hit_alert("BLOCK-1"))
        .await
        .expect("decided");
    engine.shutdown().await;
    assert!(scripted.calls() > 0, "the scripted model was asked");
    assert_ne!(d.disposition, Disposition::BlockTransaction, "{d:?}");
    assert_ne!(d.disposition, Disposition::AutoClear, "{d:?}");
}

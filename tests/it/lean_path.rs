//! The lean hot path (issue 17): model calls only where they can change the decision.

use std::sync::Arc;

use aml_triage::assessment::enrichment::ReferenceData;
use aml_triage::domain::AgentKind;
use aml_triage::domain::decision::Disposition;
use aml_triage::jurisdiction::JurisdictionTable;
use aml_triage::screening::lists::LoadedList;
use aml_triage::screening::{BirthDate, EntityKind, ListEntry, ListKind, ScreeningLists};
use aml_triage::store::Store;
use chrono::NaiveDate;
use serde_json::json;

use crate::store_support::{Kind, TestDb};
use crate::support::{Behaviour, Scripted, ScriptedProvider, clean_alert, settings};

/// One OFAC entry with a date of birth and a nationality, so a customer with the same name,
/// date of birth and nationality is a confirmed sanctions hit (floor BLOCK_TRANSACTION).
fn sanctions_refs() -> ReferenceData {
    let entry = ListEntry {
        list_id: "OFAC_SDN".into(),
        list_kind: ListKind::Sanctions,
        list_version: "2019-01".into(),
        entry_id: "100".into(),
        alt_ids: vec![],
        kind: EntityKind::Person,
        name: "AL-QUBAYSI, Munir".into(),
        aliases: vec![],
        birth_dates: vec![BirthDate::Exact(
            NaiveDate::from_ymd_opt(1966, 1, 12).unwrap(),
        )],
        nationalities: vec!["IQ".into()],
        birth_countries: vec![],
        countries: vec![],
        identifiers: vec![],
        programs: vec![],
        remarks: String::new(),
    };
    let list = LoadedList {
        list_id: "OFAC_SDN".into(),
        kind: ListKind::Sanctions,
        version: "2019-01".into(),
        source: "test".into(),
        entries: 1,
        skipped: 0,
        ignored: 0,
    };
    ReferenceData {
        lists: Arc::new(ScreeningLists::from_parts(vec![list], vec![entry], vec![])),
        jurisdictions: Arc::new(JurisdictionTable::empty()),
    }
}

fn sanctioned_alert(id: &str) -> String {
    json!({
        "alert_id": id, "alert_type": "SANCTIONS", "priority": "HIGH",
        "created_at": "2026-01-05T10:00:00Z",
        "customer": {"customer_id": format!("C-{id}"), "name": "Munir AL-QUBAYSI",
                     "entity_type": "INDIVIDUAL", "date_of_birth": "1966-01-12",
                     "nationality": "IQ"},
        "screening": {"matches": [{"list": "OFAC_SDN", "entry_id": "100",
            "matched_name": "AL-QUBAYSI, Munir", "score": 0.99, "match_type": "NAME"}]}
    })
    .to_string()
}

/// A confirmed sanctions hit sets the policy floor to BLOCK_TRANSACTION, the most severe
/// disposition: the decision model is not called, the step is journalled as skipped with the
/// reason, and the decision is the block. An ordinary alert still calls the model once
/// (the counter counts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_floor_skips_the_decision_model() {
    let db = TestDb::new(Kind::Sqlite).await;
    let counter = Scripted::new(AgentKind::DecisionMaker, vec![Behaviour::Answer]);
    let mut s = settings();
    s.database_url = db.url.clone();
    s.node_id = "lean-a".into();
    let engine = aml_triage::Engine::builder(s)
        .provider(Arc::new(ScriptedProvider(counter.clone())))
        .reference_data(sanctions_refs())
        .start()
        .await
        .expect("engine starts");

    let d = engine
        .submit_json(&sanctioned_alert("BLK-1"))
        .await
        .unwrap();
    assert_eq!(d.disposition, Disposition::BlockTransaction, "{d:?}");
    assert_eq!(counter.calls(), 0, "the decision model was called");
    let contribution = d
        .agents
        .iter()
        .find(|c| c.agent == AgentKind::DecisionMaker)
        .expect("decision maker contribution");
    let note = contribution.note.as_deref().unwrap_or_default();
    assert!(
        note.starts_with("skipped: policy floor BLOCK_TRANSACTION"),
        "{note}"
    );
    assert!(!contribution.degraded);
    assert_eq!(contribution.tokens_in + contribution.tokens_out, 0);

    // Control: the same engine asks the model for an alert whose floor is not terminal.
    let clean = engine.submit_json(&clean_alert("CLEAN-1")).await.unwrap();
    assert_ne!(clean.disposition, Disposition::BlockTransaction);
    assert_eq!(
        counter.calls(),
        1,
        "the decision model was not called for a clean alert"
    );
    engine.shutdown().await;

    // The journal says the step was skipped and why.
    let store = Store::connect(Some(&db.url), "lean-reader", Default::default())
        .await
        .unwrap();
    let steps = store.steps("BLK-1").await.unwrap();
    let step = steps
        .iter()
        .find(|r| r.step == "decision_maker")
        .expect("decision step journalled");
    assert_eq!(step.model, "skipped");
    assert_eq!(step.provider, "deterministic");
    let rationale = step.output["rationale"].as_str().unwrap_or_default();
    assert!(
        rationale.contains("decision model skipped")
            && rationale.contains("most severe disposition"),
        "{rationale}"
    );
    assert!(store.verify(None).await.unwrap().ok);
    store.close().await;
}

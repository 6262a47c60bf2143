//! History when present (issue 20): the local customer-data API serving AMLSim's raw CSVs
//! (`aml_triage::history_server`), enrichment fetching the customer's recent transactions from
//! it (`EXTERNAL_DATA_API_URL`), and the scorecard's `hist_*` features changing with them.
//!
//! Needs `../shared/data/amlsim-extdata3k/` and `amlsim-dev.eval.jsonl` (fails when missing).

use std::sync::Arc;

use aml_triage::domain::alert::Alert;
use aml_triage::history_server::{AmlsimHistory, start};
use aml_triage::llm::offline::OfflineProvider;

use crate::support::{engine_with, settings, shared_data};

fn history_scorecard() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/scorecard-amlsim-dev-history.json")
        .to_string_lossy()
        .into_owned()
}

/// Dev-set alerts, every 45th line.
fn dev_alerts() -> Vec<Alert> {
    std::fs::read_to_string(shared_data().join("amlsim-dev.eval.jsonl"))
        .expect("amlsim-dev.eval.jsonl readable")
        .lines()
        .step_by(45)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Alert::from_value(v["alert"].clone()).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_server_feeds_enrichment_and_the_features_change() {
    let data = AmlsimHistory::load(&shared_data().join("amlsim-extdata3k"), "extdata3k")
        .expect("AMLSim CSVs load");
    assert!(data.customers() > 1000, "{}", data.customers());
    let (addr, task) = start(Arc::new(data), "127.0.0.1:0").await.unwrap();
    let url = format!("http://{addr}");

    // The server answers in the contract's shape, with no label column.
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{url}/customers/extdata3k%3AC_2997/history"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("is_sar") && !body.contains("alert_id"),
        "labels leak"
    );
    let h: aml_triage::customer_data::ExternalHistory = serde_json::from_str(&body).unwrap();
    assert_eq!(h.customer_id, "extdata3k:C_2997");
    assert!(h.recent_transactions.len() > 5);
    let first = &h.recent_transactions[0];
    assert_eq!(first["transaction_id"], "extdata3k:T11");
    assert_eq!(first["direction"], "IN");
    assert_eq!(first["counterparty"]["account_id"], "extdata3k:946");
    let r = http
        .get(format!("{url}/customers/nobody/history"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The engine with and without the API, scoring with the history-fitted scorecard.
    let alerts = dev_alerts();
    let run = |api: Option<String>| {
        let alerts = alerts.clone();
        async move {
            let s = aml_triage::Settings {
                external_data_api_url: api,
                scorecard_path: Some(history_scorecard()),
                ..settings()
            };
            let engine = engine_with(s, Arc::new(OfflineProvider::default())).await;
            let mut out = Vec::new();
            for a in alerts {
                let d = engine.submit(a.clone()).await.expect("decided");
                let steps = engine.store().steps(&d.alert_id).await.unwrap();
                let enrichment = steps
                    .into_iter()
                    .rfind(|s| s.step == "data_enrichment" && s.status == "completed")
                    .expect("enrichment journalled")
                    .output;
                out.push((a, d, enrichment));
            }
            engine.shutdown().await;
            out
        }
    };
    let with = run(Some(url.clone())).await;
    let without = run(None).await;
    let (mut seen, mut moved) = (0, 0);
    for ((a, d, facts), (_, d0, facts0)) in with.iter().zip(&without) {
        let h = &facts["history"];
        assert_eq!(h["source"], "external", "{}", a.alert_id);
        assert_eq!(facts0["history"]["source"], "store");
        assert!(facts0["history"].get("features").is_none());
        // Enrichment counted only what came before the alert's last transaction (within 90
        // days), none of its own: recomputed here from the server's answer.
        let last = a.transactions.iter().map(|t| t.timestamp).max().unwrap();
        let own: Vec<&str> = a
            .transactions
            .iter()
            .map(|t| t.transaction_id.as_str())
            .collect();
        let api: aml_triage::customer_data::ExternalHistory = http
            .get(format!(
                "{url}/customers/{}/history",
                a.customer.customer_id.replace(':', "%3A")
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let before = api
            .transactions()
            .into_iter()
            .filter(|t| t.timestamp <= last && t.timestamp >= last - chrono::Duration::days(90))
            .filter(|t| !own.contains(&t.transaction_id.as_str()))
            .count();
        assert!(
            api.transactions().len() > before,
            "the server sends more than that"
        );
        assert_eq!(
            h["recent_transactions"].as_u64().unwrap_or(0),
            before as u64
        );
        // The facts carry the feature values, not the transactions (no names from the API).
        assert!(h["features"]["hist_parties"].is_number(), "{h}");
        let cp = api.transactions()[0].counterparty.clone().unwrap().name;
        assert!(
            !facts.to_string().contains(&cp)
                || a.transactions
                    .iter()
                    .any(|t| { t.counterparty.as_ref().is_some_and(|c| c.name == cp) })
        );
        seen += usize::from(before > 0);
        // With history the scorecard's hist_* factors take part; without, they cannot.
        let hist = |d: &aml_triage::Decision| {
            d.factors
                .iter()
                .filter(|f| f.name.starts_with("scorecard:hist_"))
                .count()
        };
        assert_eq!(hist(d0), 0, "{}", a.alert_id);
        if hist(d) > 0 && d.risk_score != d0.risk_score {
            moved += 1;
        }
    }
    // The alerts carry up to 50 earlier transactions themselves: the API adds to some only.
    println!(
        "{seen} of {} alerts got history transactions; {moved} scores moved",
        with.len()
    );
    assert!(seen >= 3, "{seen} of {} saw history", with.len());
    assert!(
        moved >= with.len() / 2,
        "{moved} of {} scores moved",
        with.len()
    );
    task.abort();
}

/// Kills the child process on drop (even when the test panics).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_server_command_serves_the_amlsim_folder() {
    use std::io::BufRead;
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_aml-triage"))
            .args(["history-server", "--bind", "127.0.0.1:0", "--amlsim"])
            .arg(shared_data().join("amlsim-extdata3k"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "serving the history of N customers (extdata3k) on http://ADDR"
    assert!(line.contains("(extdata3k)"), "{line}");
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    let r = reqwest::get(format!("{url}/customers/extdata3k:C_2997/history"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h: aml_triage::customer_data::ExternalHistory = r.json().await.unwrap();
    assert!(!h.transactions().is_empty());
}

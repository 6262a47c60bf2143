//! Input validation at the library API and the CLI.

use std::io::Write;
use std::sync::Arc;

use aml_triage::TriageError;
use aml_triage::llm::offline::OfflineProvider;

use crate::support::*;

fn patched(id: &str, f: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&clean_alert(id)).unwrap();
    f(&mut v);
    v.to_string()
}

#[tokio::test]
async fn bad_input_names_the_field() {
    let engine = engine_with(settings(), Arc::new(OfflineProvider::default())).await;
    let cases: Vec<(String, &str)> = vec![
        (
            patched("b1", |v| {
                v.as_object_mut().unwrap().remove("alert_id");
            }),
            "$",
        ),
        (
            patched("b2", |v| v["priority"] = "URGENT".into()),
            "priority",
        ),
        (
            patched("b3", |v| v["created_at"] = "yesterday".into()),
            "created_at",
        ),
        (
            patched("b4", |v| {
                v["customer"]["date_of_birth"] = "1980-02-30".into()
            }),
            "customer.date_of_birth",
        ),
        (patched("b5", |v| v["alert_id"] = "".into()), "alert_id"),
        (
            patched("b6", |v| {
                v["transactions"] = serde_json::json!([
            {"transaction_id":"T1","timestamp":"2026-01-01T00:00:00Z","amount":5,"currency":"USD","direction":"IN","type":"CASH"},
            {"transaction_id":"T2","timestamp":"2026-01-01T00:00:00Z","amount":-5,"currency":"USD","direction":"IN","type":"CASH"}])
            }),
            "transactions[1].amount",
        ),
        (
            patched("b7", |v| v["customer"]["nationality"] = "USA".into()),
            "customer.nationality",
        ),
        (
            patched(
                "b8",
                |v| v["screening"] = serde_json::json!({"matches":[{"list":"OFAC_SDN","entry_id":"1","matched_name":"X","score":1.5,"match_type":"NAME"}]}),
            ),
            "screening.matches[0].score",
        ),
        ("{not json".to_string(), "$"),
        (
            patched("b9", |v| {
                v["customer"]["name"] = "x".repeat(2_000_000).into()
            }),
            "$",
        ),
    ];
    for (text, field) in cases {
        match engine.submit_json(&text).await {
            Err(TriageError::Invalid(e)) => assert_eq!(e.field, field, "{e}"),
            other => panic!("expected an error naming {field}, got {other:?}"),
        }
    }
    // Nothing of the rejected alerts was stored: the valid one with a rejected twin's id
    // goes through.
    engine.submit_json(&clean_alert("b5-valid")).await.unwrap();
    engine.shutdown().await;
}

#[test]
fn cli_rejects_malformed_lines_and_keeps_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("alerts.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    writeln!(f, "{}", clean_alert("cli-1").replace('\n', " ")).unwrap();
    writeln!(
        f,
        "{}",
        patched("cli-2", |v| v["priority"] = "URGENT".into())
    )
    .unwrap();
    writeln!(
        f,
        "{{\"alert\":{},\"expected\":{{\"suspicious\":false}}}}",
        clean_alert("cli-3").replace('\n', " ")
    )
    .unwrap();
    drop(f);
    let out = dir.path().join("decisions.jsonl");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_aml-triage"))
        .current_dir(dir.path())
        .env("DATABASE_URL", "memory")
        .env("LOG_LEVEL", "warn")
        .args([
            "triage",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 2: priority:"), "{stderr}");
    let written = std::fs::read_to_string(&out).unwrap();
    let ids: Vec<String> = written
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["alert_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, vec!["cli-1", "cli-3"]);
}

//! The transaction scorecard (issue 20) end to end: activation by `SCORECARD_PATH`, its version
//! in every decision and audit entry, and the `eval --shadow` challenger.
//!
//! These tests read `../shared/data/amlsim-dev.eval.jsonl` (or `AML_SHARED_DATA`) and fail when
//! it is missing.

use std::path::PathBuf;
use std::sync::Arc;

use aml_triage::domain::alert::Alert;
use aml_triage::llm::offline::OfflineProvider;
use aml_triage::model::{BUILTIN_SCORECARD, load_scorecard};

use super::support::{clean_alert, engine_with, settings};

fn dev_file() -> PathBuf {
    let dir = std::env::var_os("AML_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let f = dir.join("amlsim-dev.eval.jsonl");
    assert!(f.is_file(), "{} is required", f.display());
    f
}

/// The first `n` lines of the dev set, spread over the file (every k-th line).
fn dev_lines(n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(dev_file()).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let step = (lines.len() / n).max(1);
    lines.into_iter().step_by(step).take(n).collect()
}

#[tokio::test]
async fn scorecard_version_is_in_every_decision() {
    let version = load_scorecard(Some("builtin")).unwrap().unwrap().version;
    let s = aml_triage::Settings {
        scorecard_path: Some("builtin".into()),
        ..settings()
    };
    let engine = engine_with(s, Arc::new(OfflineProvider::default())).await;
    let mut ids = Vec::new();
    let mut decisions = Vec::new();
    for line in dev_lines(25) {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let alert = Alert::from_value(v["alert"].clone()).unwrap();
        ids.push(alert.alert_id.clone());
        let d = engine.submit(alert).await.expect("decided");
        // The transaction score is the scorecard's: its base factor cites the version.
        assert!(
            d.factors.iter().any(|f| f.name == "scorecard_base"
                && f.evidence.contains(&format!("scorecard:{version}"))),
            "{}: {:?}",
            d.alert_id,
            d.factors
        );
        decisions.push(d);
    }
    // A non-transaction alert is not scored by the scorecard, but its decision still names
    // the scorecard in force.
    let kyc = engine.submit_json(&clean_alert("SC-KYC")).await.unwrap();
    assert!(!kyc.factors.iter().any(|f| f.name.starts_with("scorecard")));
    ids.push(kyc.alert_id.clone());
    decisions.push(kyc);
    for d in &decisions {
        assert!(
            d.config_version.ends_with(&format!("+{version}")),
            "{}: {}",
            d.alert_id,
            d.config_version
        );
    }
    for id in &ids {
        let trail = engine.store().audit_trail(id).await.unwrap();
        assert!(
            trail.iter().any(|e| e.action == "decision"),
            "{id}: {trail:?}"
        );
        for e in trail {
            if let Some(v) = &e.versions {
                assert!(
                    v.config_version.ends_with(&format!("+{version}")),
                    "{id} {}: {}",
                    e.action,
                    v.config_version
                );
            }
            if e.action == "decision" {
                assert!(
                    e.versions.is_some(),
                    "{id}: decision entry without versions"
                );
            }
        }
    }
    engine.shutdown().await;

    // Without SCORECARD_PATH nothing changes: rule points, plain config version.
    let engine = engine_with(settings(), Arc::new(OfflineProvider::default())).await;
    let v: serde_json::Value = serde_json::from_str(&dev_lines(1)[0]).unwrap();
    let d = engine
        .submit(Alert::from_value(v["alert"].clone()).unwrap())
        .await
        .unwrap();
    assert!(!d.config_version.contains('+'));
    assert!(!d.factors.iter().any(|f| f.name.starts_with("scorecard")));
    engine.shutdown().await;
}

#[tokio::test]
async fn a_bad_scorecard_path_stops_the_engine_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        BUILTIN_SCORECARD.replace("aml-triage-scorecard/1", "v0"),
    )
    .unwrap();
    for path in [
        bad.to_string_lossy().into_owned(),
        "/nonexistent/sc.json".into(),
    ] {
        let s = aml_triage::Settings {
            scorecard_path: Some(path),
            ..settings()
        };
        let e = aml_triage::Engine::builder(s)
            .provider(Arc::new(OfflineProvider::default()))
            .start()
            .await
            .err()
            .expect("start refused");
        assert!(e.to_string().contains("SCORECARD_PATH"), "{e}");
    }
}

fn eval_json(file: &std::path::Path, extra: &[&str], scorecard: Option<&str>) -> (String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_aml-triage"));
    cmd.arg("eval").arg(file).arg("--json").args(extra);
    cmd.env_remove("SCORECARD_PATH")
        .env_remove("EXTERNAL_DATA_API_URL");
    if let Some(s) = scorecard {
        cmd.env("SCORECARD_PATH", s);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout.lines().last().unwrap().to_string();
    (report, stdout)
}

#[test]
fn shadow_challenger_never_changes_a_disposition() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sample.eval.jsonl");
    std::fs::write(&file, dev_lines(150).join("\n") + "\n").unwrap();
    // A challenger that would clear everything without a blocker: maximally different.
    let mut challenger: serde_json::Value = serde_json::from_str(BUILTIN_SCORECARD).unwrap();
    challenger["intercept"] = serde_json::json!(-100.0);
    challenger["version"] = serde_json::json!("challenger-clears-all");
    let ch = dir.path().join("challenger.json");
    std::fs::write(&ch, challenger.to_string()).unwrap();
    let ch = ch.to_string_lossy().into_owned();

    for champion in [None, Some("builtin")] {
        let (plain, _) = eval_json(&file, &[], champion);
        let (shadowed, stdout) = eval_json(&file, &["--shadow", &ch], champion);
        // Same dispositions, same scores: the report is identical.
        assert_eq!(plain, shadowed, "champion {champion:?}");
        assert!(stdout.contains("shadow comparison"), "{stdout}");
        assert!(stdout.contains("challenger-clears-all"), "{stdout}");
        // The challenger did score differently: it would have changed outcomes.
        let differing: usize = stdout
            .lines()
            .find_map(|l| l.strip_prefix("alerts whose clear/escalate outcome would differ: "))
            .expect("comparison line")
            .trim()
            .parse()
            .unwrap();
        assert!(differing > 0, "{stdout}");
    }
}

#[tokio::test]
async fn shadow_challenger_never_changes_a_disposition_in_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let mut challenger: serde_json::Value = serde_json::from_str(BUILTIN_SCORECARD).unwrap();
    challenger["intercept"] = serde_json::json!(-100.0);
    challenger["version"] = serde_json::json!("challenger-clears-all");
    let ch = dir.path().join("challenger.json");
    std::fs::write(&ch, challenger.to_string()).unwrap();
    let alerts: Vec<Alert> = dev_lines(40)
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Alert::from_value(v["alert"].clone()).unwrap()
        })
        .collect();
    let run = |shadow: Option<String>| {
        let alerts = alerts.clone();
        async move {
            let s = aml_triage::Settings {
                scorecard_path: Some("builtin".into()),
                scorecard_shadow_path: shadow,
                ..settings()
            };
            let engine = engine_with(s, Arc::new(OfflineProvider::default())).await;
            let mut out = Vec::new();
            for a in alerts {
                let d = engine.submit(a).await.expect("decided");
                let steps = engine.store().steps(&d.alert_id).await.unwrap();
                let risk = steps
                    .into_iter()
                    .rfind(|s| s.step == "risk_scoring" && s.status == "completed")
                    .map(|s| s.output);
                out.push((d, risk));
            }
            engine.shutdown().await;
            out
        }
    };
    let plain = run(None).await;
    let shadowed = run(Some(ch.to_string_lossy().into_owned())).await;
    let mut lower = 0;
    for ((a, ra), (b, rb)) in plain.iter().zip(&shadowed) {
        assert_eq!(a.alert_id, b.alert_id);
        assert_eq!(a.disposition, b.disposition, "{}", a.alert_id);
        assert_eq!(a.risk_score, b.risk_score, "{}", a.alert_id);
        assert_eq!(a.confidence, b.confidence, "{}", a.alert_id);
        assert_eq!(a.factors, b.factors, "{}", a.alert_id);
        let ra = ra.as_ref().expect("risk step journalled");
        let rb = rb.as_ref().expect("risk step journalled");
        assert!(ra.get("shadow").is_none());
        let sh = rb.get("shadow").expect("challenger score journalled");
        assert_eq!(sh["version"], "challenger-clears-all");
        lower += usize::from(sh["score"].as_f64().unwrap() < b.risk_score);
    }
    // The challenger scored differently (lower) on the alerts, and still decided nothing.
    assert!(lower > 0);
}

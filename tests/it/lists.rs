//! List freshness: `lists update` against a local HTTP server, swapping lists into a running
//! engine, and `/ready` failing on a stale list. The lists are made here, in the OFAC legacy
//! CSV format, so the tests need no shared data.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aml_triage::Engine;
use aml_triage::domain::decision::Disposition;
use aml_triage::reference::update::{
    CURRENT, UpdateError, UpdatePolicy, installed_version, parse_sources, update,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::http_support::TestServer;
use crate::support::settings;

/// An OFAC `sdn.csv` with `n` synthetic people, plus `extra` rows appended as given.
fn sdn_csv(n: usize, extra: &[&str]) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "{},\"LISTED{i:04}, Person\",\"individual\",\"SDGT\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,\"DOB 01 Jan 1960; nationality Iran.\"\r\n",
            1000 + i
        ));
    }
    for r in extra {
        s.push_str(r);
        s.push_str("\r\n");
    }
    s
}

fn policy() -> UpdatePolicy {
    UpdatePolicy {
        min_entries: 100,
        max_removed_percent: 10.0,
        timeout: Duration::from_secs(10),
    }
}

async fn serve(server: &MockServer, body: String) {
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/sdn.csv"))
        .respond_with(ResponseTemplate::new(200).set_body_string(body))
        .mount(server)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_update_rejects_a_truncated_file() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sources = parse_sources(&format!("sdn.csv={}/sdn.csv", server.uri())).unwrap();

    // A full list installs.
    serve(&server, sdn_csv(300, &[])).await;
    let first = update(dir.path(), &sources, &policy())
        .await
        .expect("installs");
    assert_eq!(first.lists["OFAC_SDN"].entries, 300);
    let installed = installed_version(dir.path()).expect("current link");
    assert_eq!(installed, first.installed.canonicalize().unwrap());

    // The same list cut short (a download that stopped half-way) is refused; the installed
    // version stays in force and no staging folder is left behind.
    let full = sdn_csv(300, &[]);
    let truncated = full[..full.len() / 2].to_string();
    serve(&server, truncated).await;
    let err = update(dir.path(), &sources, &policy())
        .await
        .expect_err("a truncated list is refused");
    assert!(
        matches!(err, UpdateError::TooManyRemoved { ref list, .. } if list == "OFAC_SDN"),
        "{err}"
    );
    assert_eq!(installed_version(dir.path()).unwrap(), installed);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("versions"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".staging"))
        .collect();
    assert!(leftovers.is_empty());

    // Too few entries, an error status and an unparsable file are refused too.
    let fresh = tempfile::tempdir().unwrap();
    serve(&server, sdn_csv(20, &[])).await;
    let err = update(fresh.path(), &sources, &policy()).await.unwrap_err();
    assert!(
        matches!(err, UpdateError::TooFew { entries: 20, .. }),
        "{err}"
    );
    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let err = update(fresh.path(), &sources, &policy()).await.unwrap_err();
    assert!(matches!(err, UpdateError::Fetch { .. }), "{err}");
    assert!(!fresh.path().join(CURRENT).exists());

    // A small, legitimate change installs: 5 delisted, 2 added.
    let mut rows: Vec<String> = sdn_csv(300, &[]).lines().map(str::to_string).collect();
    rows.drain(0..5);
    let mut next = rows.join("\r\n");
    next.push_str("\r\n");
    next.push_str(&sdn_csv(0, &[
        "9001,\"NEWLY, Listed\",\"individual\",\"SDGT\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ",
        "9002,\"ALSO NEW, Person\",\"individual\",\"SDGT\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ",
    ]));
    serve(&server, next).await;
    let second = update(dir.path(), &sources, &policy())
        .await
        .expect("installs");
    let c = &second.lists["OFAC_SDN"];
    assert_eq!((c.entries, c.added, c.removed), (297, 2, 5));
    assert_ne!(installed_version(dir.path()).unwrap(), installed);
}

fn alert_claiming(id: &str, name: &str, entry: &str) -> String {
    format!(
        r#"{{"alert_id":"{id}","alert_type":"SANCTIONS","priority":"MEDIUM",
        "created_at":"2026-01-05T10:00:00Z",
        "customer":{{"customer_id":"C-{id}","name":"{name}","entity_type":"INDIVIDUAL"}},
        "screening":{{"matches":[{{"list":"OFAC_SDN","entry_id":"{entry}","matched_name":"{name}","score":0.9,"match_type":"NAME"}}]}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_update_is_picked_up_without_a_restart() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sources = parse_sources(&format!("sdn.csv={}/sdn.csv", server.uri())).unwrap();
    serve(&server, sdn_csv(150, &[])).await;
    update(dir.path(), &sources, &policy())
        .await
        .expect("installs");

    let mut s = settings();
    s.list_paths = vec![dir.path().join(CURRENT)];
    s.list_reload_seconds = 1;
    let engine = Engine::builder(s).start().await.expect("engine starts");
    let before = engine.reference().current().versions();

    // Entry 9001 is not on the installed list: the claim cannot be verified.
    let d = engine
        .submit_json(&alert_claiming("NEW-1", "Listed Newly", "9001"))
        .await
        .unwrap();
    assert_ne!(d.disposition, Disposition::AutoClear);
    assert!(
        d.screening_hits.iter().any(|h| h.entry_id == "9001"
            && h.class == aml_triage::domain::facts::MatchClass::Unverifiable)
    );

    // A new version with entry 9001 is installed; the node's reloader swaps it in.
    serve(
        &server,
        sdn_csv(150, &[
            "9001,\"NEWLY, Listed\",\"individual\",\"SDGT\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,\"DOB 02 Feb 1970; nationality Syria.\"",
        ]),
    )
    .await;
    update(dir.path(), &sources, &policy())
        .await
        .expect("installs");
    let swapped = crate::support::eventually(Duration::from_secs(20), || {
        engine.reference().current().versions() != before
    })
    .await;
    assert!(swapped, "the running engine picked up the new version");
    let d = engine
        .submit_json(&alert_claiming("NEW-2", "Listed Newly", "9001"))
        .await
        .unwrap();
    let hit = d
        .screening_hits
        .iter()
        .find(|h| h.entry_id == "9001")
        .expect("the new entry is screened");
    assert_ne!(
        hit.class,
        aml_triage::domain::facts::MatchClass::Unverifiable
    );
    assert_ne!(
        d.list_versions, before,
        "the decision names the new list version"
    );
    engine.shutdown().await;
}

fn set_mtime(p: &Path, t: SystemTime) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(t).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_list_fails_ready() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sdn.csv");
    std::fs::write(&file, sdn_csv(120, &[])).unwrap();
    // Fetched three days ago.
    set_mtime(&file, SystemTime::now() - Duration::from_secs(72 * 3600));
    let mut s = crate::http_support::http_settings();
    s.list_paths = vec![dir.path().to_path_buf()];
    s.list_max_age_hours = 26.0;
    s.list_reload_seconds = 0;
    let server = TestServer::start(s).await;
    let r = server.get("/ready", None).await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["failing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "lists"),
        "{body}"
    );
    let metrics = server
        .client
        .get(format!("{}/metrics", server.metrics_base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("aml_triage_list_age_seconds{list=\"OFAC_SDN\"}")),
        "{metrics}"
    );
    // A fresh fetch (the file rewritten now) makes it ready once reloaded.
    std::fs::write(&file, sdn_csv(121, &[])).unwrap();
    let swapped = server.engine.reload_lists().await.expect("reloads");
    assert!(swapped.is_some());
    let r = server.get("/ready", None).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // A required list that is not loaded at all also fails readiness.
    let mut s = crate::http_support::http_settings();
    s.list_required = "UN_CONSOLIDATED".into();
    let engine = Arc::new(Engine::builder(s).start().await.unwrap());
    let other = TestServer::around(engine);
    assert_eq!(other.get("/ready", None).await.status(), 503);
}

//! Fault suite (issue 19): accepted means durable, one validation for every backend, and the
//! HTTP server's limits, each against real servers and, where it matters, a real process
//! killed with SIGKILL.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http_support::{READER, SUBMITTER, TestServer, http_settings};
use crate::store_support::{Kind, TestDb};
use crate::support::*;

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `aml-triage serve` on a free port over `db`; answers the child and its base URL.
fn spawn_serve(db: &TestDb) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aml-triage"))
        .env("DATABASE_URL", &db.url)
        .env("NODE_ID", "sigkill-node")
        .env("LOG_LEVEL", "error")
        .env("PROMETHEUS_PORT", "0")
        .env(
            "AML_TRIAGE_API_KEYS",
            format!("{SUBMITTER}:submitter,{READER}:reader"),
        )
        // Each model call takes a while, so alerts are in flight when the kill lands.
        .env("OFFLINE_LATENCY_MS", "20")
        .env("MAX_CONCURRENT_ALERTS", "64")
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("serve printed its address");
    (Killed(child), base)
}

/// The guarantee: an alert answered 202 is stored, whatever happens to the process next.
/// `serve` on PostgreSQL is killed with SIGKILL while clients submit concurrently; after each
/// kill every alert that got a 202 (or 200) must be in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accepted_alert_survives_sigkill() {
    const KILLS: usize = 4;
    const CLIENTS: usize = 24;
    let db = TestDb::new(Kind::Postgres).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut accepted_total = 0usize;
    let mut refused_total = 0usize;
    let mut report = Vec::new();
    for round in 0..KILLS {
        let (mut child, base) = spawn_serve(&db);
        let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
        let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (client, base, accepted, refused, stop) = (
                client.clone(),
                base.clone(),
                accepted.clone(),
                refused.clone(),
                stop.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let id = format!("kill-{round}-{c}-{i}");
                    i += 1;
                    let sent = client
                        .post(format!("{base}/v1/alerts"))
                        .bearer_auth(SUBMITTER)
                        .header("content-type", "application/json")
                        .body(clean_alert(&id))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 202 || r.status() == 200 => {
                            accepted.lock().unwrap().push(id)
                        }
                        Ok(_) => {
                            // Busy (429): back off a little, as a client would.
                            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        // The process died mid-request: no answer, no promise.
                        Err(_) => break,
                    }
                }
            }));
        }
        // Let the load run, then kill without warning.
        let start = Instant::now();
        while accepted.lock().unwrap().len() < 150 && start.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(50..400))).await;
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        let accepted = accepted.lock().unwrap().clone();
        assert!(!accepted.is_empty(), "round {round}: no alert was accepted");
        let stored: std::collections::HashSet<String> = db
            .texts("SELECT alert_id FROM alerts")
            .await
            .into_iter()
            .collect();
        let lost: Vec<&String> = accepted.iter().filter(|id| !stored.contains(*id)).collect();
        let decided = db.scalar("SELECT COUNT(*) FROM decisions").await;
        report.push(format!(
            "kill {round}: {} accepted, {} refused, {} lost, {} stored in all, {decided} decided",
            accepted.len(),
            refused.load(std::sync::atomic::Ordering::Relaxed),
            lost.len(),
            stored.len()
        ));
        assert!(
            lost.is_empty(),
            "round {round}: {} alert(s) answered 202 are not stored: {:?}\n{}",
            lost.len(),
            &lost[..lost.len().min(10)],
            report.join("\n")
        );
        accepted_total += accepted.len();
        refused_total += refused.load(std::sync::atomic::Ordering::Relaxed);
    }
    // A restart finishes what the kills cut off: one decision per stored alert.
    let (_child, _base) = spawn_serve(&db);
    let stored = db.scalar("SELECT COUNT(*) FROM alerts").await;
    assert!(
        eventually_async(Duration::from_secs(120), || async {
            db.scalar("SELECT COUNT(*) FROM decisions").await >= stored
        })
        .await,
        "the restarted node did not finish the alerts cut off by the kills"
    );
    assert_eq!(
        db.scalar("SELECT COUNT(DISTINCT alert_id) FROM decisions")
            .await,
        stored
    );
    eprintln!(
        "accepted_alert_survives_sigkill: {KILLS} kills, {accepted_total} accepted, \
         {refused_total} refused, 0 lost\n{}",
        report.join("\n")
    );
}

/// The guarantee: a `GET` right after a `202` finds the alert (on PostgreSQL and SQLite).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_after_accept_finds_the_alert() {
    for kind in [Kind::Postgres, Kind::Sqlite] {
        let db = TestDb::new(kind).await;
        let mut settings = http_settings();
        settings.database_url = db.url.clone();
        settings.max_concurrent_alerts = 256;
        // A slow pipeline: the alert is far from decided when the GET comes.
        let script = Scripted::new(
            aml_triage::domain::AgentKind::ContextBuilder,
            vec![Behaviour::Sleep(Duration::from_millis(300))],
        );
        let server = TestServer::start_with(settings, Arc::new(ScriptedProvider(script))).await;
        // What waiting for the commit costs a 202: one at a time, so each waits for its own
        // group commit.
        let mut took = Vec::new();
        for i in 0..50 {
            let t = Instant::now();
            let r = server
                .post(
                    "/v1/alerts",
                    Some(SUBMITTER),
                    clean_alert(&format!("lat-{i}")),
                )
                .await;
            took.push(t.elapsed());
            assert_eq!(r.status(), 202);
        }
        took.sort();
        eprintln!(
            "get_after_accept_finds_the_alert: {kind:?}: 202 latency p50 {:?}, p90 {:?}, max {:?} \
             (50 sequential POSTs, debug build)",
            took[25], took[45], took[49]
        );
        let server = Arc::new(server);
        let mut tasks = Vec::new();
        for i in 0..100 {
            let server = server.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("get-after-{i}");
                let r = server
                    .post("/v1/alerts", Some(SUBMITTER), clean_alert(&id))
                    .await;
                assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
                let got = server.get(&format!("/v1/alerts/{id}"), Some(READER)).await;
                let status = got.status();
                let body: serde_json::Value = got.json().await.unwrap();
                assert_eq!(status, 200, "{kind:?}: GET after 202 of {id}: {body}");
                assert_eq!(body["alert_id"], id.as_str());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(server).ok().unwrap().stop().await;
    }
}

/// Alerts that no backend may store as given, each with the field the refusal must name.
fn unstorable_alerts() -> Vec<(String, &'static str)> {
    let base: serde_json::Value = serde_json::from_str(&clean_alert("nul-base")).unwrap();
    let with = |id: &str, pointer: &str, value: serde_json::Value| {
        let mut v = base.clone();
        v["alert_id"] = id.into();
        *v.pointer_mut(pointer).unwrap() = value;
        v.to_string()
    };
    let tx = serde_json::json!([{"transaction_id": "T1", "timestamp": "2026-01-01T00:00:00Z",
        "amount": 10.0, "currency": "USD", "direction": "IN", "type": "WIRE",
        "description": "rent\u{0}"}]);
    let mut with_tx = base.clone();
    with_tx["alert_id"] = "nul-tx".into();
    with_tx["transactions"] = tx;
    let mut with_meta = base.clone();
    with_meta["alert_id"] = "nul-meta".into();
    with_meta["metadata"] = serde_json::json!({"source": {"note": "a\u{0}b"}});
    let mut big = base.clone();
    big["alert_id"] = "big-amount".into();
    big["transactions"] = serde_json::json!([{"transaction_id": "T1",
        "timestamp": "2026-01-01T00:00:00Z", "amount": 1e308, "currency": "USD",
        "direction": "IN", "type": "WIRE"}]);
    vec![
        (
            with("nul-cust", "/customer/customer_id", "C\u{0}1".into()),
            "customer.customer_id",
        ),
        (with("nul\u{0}id", "/priority", "LOW".into()), "alert_id"),
        (
            with("nul-name", "/customer/name", "Jane\u{0}Roe".into()),
            "customer.name",
        ),
        (with_tx.to_string(), "transactions[0].description"),
        (with_meta.to_string(), "metadata.source.note"),
        (with("a/../b", "/priority", "LOW".into()), "alert_id"),
        (big.to_string(), "transactions[0].amount"),
        (
            with("nul-surrogate", "/priority", "LOW".into())
                .replace("Jane Roe", r"Jane \udc00 Roe"),
            "customer.name",
        ),
    ]
}

/// The guarantee: text a backend cannot store (NUL, lone surrogates, ids outside their
/// character set, absurd amounts) is refused with 422 naming the field, identically on the
/// in-memory store, SQLite and PostgreSQL, through HTTP, the library, RabbitMQ (dead letter
/// with the reason) and the CLI, and nothing of it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_byte_is_refused_on_every_backend() {
    let cases = unstorable_alerts();
    for kind in [None, Some(Kind::Sqlite), Some(Kind::Postgres)] {
        let db = match kind {
            Some(k) => Some(TestDb::new(k).await),
            None => None,
        };
        let mut settings = http_settings();
        if let Some(db) = &db {
            settings.database_url = db.url.clone();
        }
        let server = TestServer::start(settings).await;
        for (body, field) in &cases {
            let r = server
                .post("/v1/alerts", Some(SUBMITTER), body.clone())
                .await;
            let status = r.status();
            let answer: serde_json::Value = r.json().await.unwrap();
            assert_eq!(status, 422, "{kind:?} {field}: {answer}");
            assert_eq!(answer["field"], *field, "{kind:?}: {answer}");
            match server.engine.submit_json(body).await {
                Err(aml_triage::TriageError::Invalid(e)) => {
                    assert_eq!(e.field, *field, "{kind:?}")
                }
                other => panic!("{kind:?} {field}: library answered {other:?}"),
            }
        }
        // A good alert still goes through, and it is the only one stored.
        let r = server
            .post(
                "/v1/alerts?wait=true",
                Some(SUBMITTER),
                clean_alert("nul-ok"),
            )
            .await;
        assert_eq!(r.status(), 200, "{kind:?}");
        if let Some(db) = &db {
            assert_eq!(
                db.scalar("SELECT COUNT(*) FROM alerts").await,
                1,
                "{kind:?}"
            );
        }
        for id in ["nul-cust", "nul-name", "nul-tx", "nul-meta", "big-amount"] {
            assert!(
                server.engine.store().alert(id).await.unwrap().is_none(),
                "{kind:?}: {id} was stored"
            );
        }
        server.stop().await;
    }
    // RabbitMQ (PostgreSQL store): each one is dead-lettered with the field in its reason,
    // and nothing is stored.
    {
        use crate::mq_support::*;
        let vhost = TestVhost::new();
        let db = TestDb::new(Kind::Postgres).await;
        let engine = Arc::new(
            aml_triage::Engine::builder(aml_triage::Settings {
                database_url: db.url.clone(),
                node_id: "nul-mq-node".into(),
                amqp_url: Some(aml_triage::mq::AmqpUrl::new(&vhost.url)),
                ..settings()
            })
            .start()
            .await
            .unwrap(),
        );
        let bridge = aml_triage::bridge::Bridge::start(engine.clone()).unwrap();
        let conn = connect(&vhost.url).await;
        let ch = confirmed_channel(&conn).await;
        declare_queue(&ch, "aml.alerts").await;
        wait_for_consumers(&ch, "aml.alerts", 1, Duration::from_secs(60)).await;
        let bodies: Vec<String> = cases.iter().map(|(b, _)| b.clone()).collect();
        publish_all(&ch, "aml.alerts", &bodies).await;
        let dead = collect(&ch, "aml.alerts.dead", Duration::from_secs(60), |got| {
            got.len() >= bodies.len()
        })
        .await;
        assert_eq!(dead.len(), bodies.len());
        for (body, field) in &cases {
            let r = dead
                .iter()
                .find(|r| r.body == body.as_bytes())
                .unwrap_or_else(|| panic!("not dead-lettered: {field}"));
            assert_eq!(r.headers["x-aml-reason-kind"], "invalid_alert");
            assert!(
                r.headers["x-aml-reason"].starts_with(&format!("{field}:")),
                "{:?}",
                r.headers
            );
        }
        assert_eq!(db.scalar("SELECT COUNT(*) FROM alerts").await, 0);
        bridge.stop().await;
        engine.shutdown().await;
    }
    // The CLI: each refused line is reported with its field; the good line is decided.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut text: String = cases.iter().map(|(b, _)| format!("{b}\n")).collect();
    text.push_str(&clean_alert("cli-ok").replace('\n', " "));
    text.push('\n');
    std::fs::write(&input, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_aml-triage"))
        .current_dir(dir.path())
        .env("DATABASE_URL", "memory")
        .env("LOG_LEVEL", "error")
        .args(["triage", input.to_str().unwrap(), "--out", "out.jsonl"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (i, (_, field)) in cases.iter().enumerate() {
        let line = format!("line {}: {field}:", i + 1);
        assert!(
            stderr.contains(&line),
            "CLI did not report {line:?}: {stderr}"
        );
    }
    let decided = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert_eq!(decided.lines().count(), 1, "{decided}");
}

/// Plain-SQL edits of single columns, each with the table and column `verify` must name.
const COLUMN_TAMPERS: &[(&str, &str, &str)] = &[
    ("decisions", "disposition", "disposition = 'AUTO_CLEAR'"),
    ("decisions", "risk_score", "risk_score = 3.0"),
    ("decisions", "confidence", "confidence = 0.99"),
    (
        "decisions",
        "requires_human_review",
        "requires_human_review = NOT requires_human_review",
    ),
    // Version sets are interned (storage v2): a row pointed at another set.
    (
        "decisions",
        "policy_version",
        "versions_id = (SELECT id FROM version_sets WHERE versions LIKE '%policy-0%')",
    ),
    (
        "decisions",
        "config_version",
        "versions_id = (SELECT id FROM version_sets WHERE versions LIKE '%cfg-0%')",
    ),
    (
        "decisions",
        "list_versions",
        "versions_id = (SELECT id FROM version_sets WHERE versions LIKE '%2099%')",
    ),
    (
        "decisions",
        "decided_at",
        "decided_at = '2020-01-01T00:00:00.000000Z'",
    ),
    (
        "decisions",
        "decision",
        "decision = REPLACE(decision, 'ESCALATE_L2', 'AUTO_CLEAR')",
    ),
    ("alerts", "priority", "priority = 'LOW'"),
    ("alerts", "customer_id", "customer_id = 'C-someone-else'"),
    ("alerts", "alert_type", "alert_type = 'KYC_ONGOING'"),
    (
        "alerts",
        "updated_at",
        "updated_at = '2020-01-01T00:00:00.000000Z'",
    ),
    (
        "alerts",
        "created_at",
        "created_at = '2020-01-01T00:00:00.000000Z'",
    ),
    ("alerts", "raw_json", "raw_json = raw_json || ' '"),
    ("step_journal", "output", "output = '{\"score\":0}'"),
    ("step_journal", "model", "model = 'forged-model'"),
    ("step_journal", "error", "error = 'forged'"),
    ("step_journal", "tokens_in", "tokens_in = 1"),
    ("step_journal", "input_hash", "input_hash = 'x'"),
    ("step_journal", "prompt_version", "prompt_version = 'v0'"),
    (
        "step_journal",
        "policy_version",
        "versions_id = (SELECT id FROM version_sets WHERE versions LIKE '%policy-0%')",
    ),
    (
        "step_journal",
        "recorded_at",
        "recorded_at = '2020-01-01T00:00:00.000000Z'",
    ),
];

/// The guarantee: a plain SQL `UPDATE` of any stored column of `alerts`, `decisions` or
/// `step_journal` is caught by `verify`, which names the table, the row and the column, on
/// PostgreSQL and SQLite; so is a journal row inserted behind the store's back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_tamper_is_detected() {
    use crate::store_support::{alert, full_write_set};
    for kind in [Kind::Postgres, Kind::Sqlite] {
        let db = TestDb::new(kind).await;
        let store = db.store("tamper-node").await;
        let now = chrono::Utc::now();
        for i in 0..=COLUMN_TAMPERS.len() {
            let id = format!("T{i:02}");
            full_write_set(&store, alert(&id, &format!("C{i}"), now), "ESCALATE_L2").await;
        }
        let report = store.verify(None).await.unwrap();
        assert!(report.ok, "{kind:?}: clean store fails: {report:?}");
        // Other version sets a forger could point rows at.
        for (p, c, l) in [
            (
                "policy-0",
                "cfg-abc",
                r#"["OFAC_SDN@2024-05-01","UN@2024-04-28"]"#,
            ),
            (
                "policy-7",
                "cfg-0",
                r#"["OFAC_SDN@2024-05-01","UN@2024-04-28"]"#,
            ),
            ("policy-7", "cfg-abc", r#"["OFAC_SDN@2099-01-01"]"#),
        ] {
            db.exec(&format!(
                "INSERT INTO version_sets (versions) VALUES \
                 ('{{\"config_version\":\"{c}\",\"list_versions\":{l},\"policy_version\":\"{p}\"}}')"
            ))
            .await
            .unwrap();
        }
        for (i, (table, column, set)) in COLUMN_TAMPERS.iter().enumerate() {
            let id = format!("T{i:02}");
            let filter = if *table == "step_journal" {
                format!("alert_id = '{id}' AND step = 'risk_scoring'")
            } else {
                format!("alert_id = '{id}'")
            };
            let changed = db
                .exec(&format!("UPDATE {table} SET {set} WHERE {filter}"))
                .await
                .unwrap();
            assert_eq!(changed, 1, "{kind:?}: {table}.{column}");
            let report = store.verify(Some(&id)).await.unwrap();
            let f = report
                .failure
                .unwrap_or_else(|| panic!("{kind:?}: edit of {table}.{column} not detected"));
            assert_eq!(f.alert_id.as_deref(), Some(id.as_str()), "{kind:?}: {f:?}");
            assert_eq!(f.table, Some(*table), "{kind:?}: {f:?}");
            assert_eq!(f.column, Some(*column), "{kind:?}: {f:?}");
        }
        // A journal row added behind the store's back (a copy with another attempt).
        let last = format!("T{:02}", COLUMN_TAMPERS.len());
        db.exec(&format!(
            "INSERT INTO step_journal (alert_id, step, attempt, status, input_hash, output, \
             provider, model, prompt_version, tokens_in, tokens_out, cost_usd, latency_ms, error, \
             versions_id, recorded_at) \
             SELECT alert_id, step, 2, 'degraded', input_hash, output, provider, model, \
             prompt_version, tokens_in, tokens_out, cost_usd, latency_ms, error, versions_id, \
             recorded_at FROM step_journal \
             WHERE alert_id = '{last}' AND step = 'risk_scoring'"
        ))
        .await
        .unwrap();
        let f = store.verify(Some(&last)).await.unwrap().failure.unwrap();
        assert_eq!(f.table, Some("step_journal"), "{kind:?}: {f:?}");
        // The whole-store verify fails too, on the first tampered alert.
        let report = store.verify(None).await.unwrap();
        assert!(!report.ok);
        assert_eq!(report.failure.unwrap().alert_id.as_deref(), Some("T00"));
        store.close().await;
    }
}

/// What a DBA could do: give alert `alert_id` an `AUTO_CLEAR` decision and rewrite its audit
/// chain consistently, every hash after the edit recomputed with the documented rules.
async fn forge_auto_clear(db: &TestDb, chain: &str, alert_id: &str) {
    use aml_triage::store::audit::{canonical_json, format_ts, sha256_canonical, sha256_hex};
    let reader = db.store("forger").await;
    let mut entries = Vec::new();
    for id in db
        .texts("SELECT alert_id FROM alerts ORDER BY alert_id")
        .await
    {
        entries.extend(reader.audit_trail(&id).await.unwrap());
    }
    reader.close().await;
    entries.retain(|e| e.chain_id == chain);
    entries.sort_by_key(|e| e.seq);
    let mut decision: serde_json::Value = serde_json::from_str(
        &db.text(&format!(
            "SELECT decision FROM decisions WHERE alert_id = '{alert_id}'"
        ))
        .await
        .unwrap(),
    )
    .unwrap();
    decision["disposition"] = "AUTO_CLEAR".into();
    let text = canonical_json(&decision);
    db.exec(&format!(
        "UPDATE decisions SET disposition = 'AUTO_CLEAR', requires_human_review = false, \
         decision = '{text}' WHERE alert_id = '{alert_id}'"
    ))
    .await
    .unwrap();
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut prev = aml_triage::store::audit::GENESIS_HASH.to_string();
    let mut inserts = Vec::new();
    for e in &mut entries {
        if e.action == "decision" && e.alert_id.as_deref() == Some(alert_id) {
            e.payload["disposition"] = "AUTO_CLEAR".into();
            e.payload["requires_human_review"] = false.into();
            e.payload["decision_sha256"] = sha256_canonical(&decision).into();
        }
        let versions = e
            .versions
            .as_ref()
            .map(|v| serde_json::to_value(v).unwrap());
        let hashed = canonical_json(&serde_json::json!({
            "action": e.action, "actor": e.actor, "alert_id": e.alert_id, "chain_id": e.chain_id,
            "created_at": format_ts(e.created_at), "payload": e.payload, "seq": e.seq,
            "versions": versions,
        }));
        let hash = sha256_hex(format!("{prev}\n{hashed}"));
        inserts.push(format!(
            "INSERT INTO audit_entries (chain_id, seq, alert_id, actor, action, payload, versions, \
             created_at, prev_hash, hash) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
            quote(&e.chain_id),
            e.seq,
            e.alert_id.as_deref().map_or("NULL".into(), quote),
            quote(&e.actor),
            quote(&e.action),
            quote(&canonical_json(&e.payload)),
            versions.map_or("NULL".into(), |v| quote(&canonical_json(&v))),
            quote(&format_ts(e.created_at)),
            quote(&prev),
            quote(&hash),
        ));
        prev = hash;
    }
    db.exec(&format!(
        "DELETE FROM audit_entries WHERE chain_id = '{chain}'"
    ))
    .await
    .unwrap();
    for sql in inserts {
        db.exec(&sql).await.unwrap();
    }
}

/// The guarantee: a chain rewritten with correctly recomputed hashes passes the plain
/// `verify`, but not the signed checkpoint taken before the rewrite (library and CLI), on
/// PostgreSQL and SQLite; entries appended after the checkpoint are not flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_chain_is_caught_by_signed_checkpoint() {
    use crate::store_support::{alert, full_write_set};
    use aml_triage::checkpoint::{self, KeyFileSigner};
    for kind in [Kind::Postgres, Kind::Sqlite] {
        let db = TestDb::new(kind).await;
        let store = db.store("forge-node").await;
        let now = chrono::Utc::now();
        for i in 0..3 {
            full_write_set(&store, alert(&format!("F{i}"), "C1", now), "ESCALATE_L2").await;
        }
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("audit.key");
        KeyFileSigner::generate(&key).unwrap();
        let public_file = checkpoint::public_path(&key);
        let public = checkpoint::read_public_key(&public_file).unwrap();
        let signer = KeyFileSigner::from_file(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cp, _) = checkpoint::write_checkpoint(&store, &signer, dir.path())
            .await
            .unwrap();
        assert_eq!(cp.chains.len(), 1);
        // Work goes on after the checkpoint.
        full_write_set(&store, alert("F3", "C1", now), "ESCALATE_L2").await;
        let before = checkpoint::verify_checkpoints(&store, dir.path(), &public, 1825)
            .await
            .unwrap();
        assert!(
            before.ok && before.heads_matched == 1,
            "{kind:?}: {before:?}"
        );
        store.close().await;

        db.allow_audit_updates().await;
        forge_auto_clear(&db, "forge-node", "F1").await;
        let auditor = db.store("auditor").await;
        let plain = auditor.verify(None).await.unwrap();
        assert!(
            plain.ok,
            "{kind:?}: the forgery should be consistent enough to pass the chain alone: {plain:?}"
        );
        let signed = checkpoint::verify_checkpoints(&auditor, dir.path(), &public, 1825)
            .await
            .unwrap();
        assert!(!signed.ok, "{kind:?}: forged chain passed the checkpoint");
        let why = signed.failure.unwrap();
        assert!(why.contains("chain forge-node seq"), "{why}");
        // A checkpoint whose signature does not hold is refused too.
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut forged: checkpoint::Checkpoint =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        forged.chains[0].hash = "0".repeat(64);
        let forged_dir = tempfile::tempdir().unwrap();
        std::fs::write(
            forged_dir.path().join("checkpoint.json"),
            serde_json::to_string(&forged).unwrap(),
        )
        .unwrap();
        let r = checkpoint::verify_checkpoints(&auditor, forged_dir.path(), &public, 1825)
            .await
            .unwrap();
        assert!(r.failure.unwrap().contains("signature is not valid"));
        auditor.close().await;
        // The CLI says so and exits 1.
        let out = Command::new(env!("CARGO_BIN_EXE_aml-triage"))
            .env("DATABASE_URL", &db.url)
            .env("NODE_ID", "cli-auditor")
            .env("LOG_LEVEL", "error")
            .args(["audit", "verify", "--checkpoints"])
            .arg(dir.path())
            .arg("--public-key")
            .arg(&public_file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("SIGNED CHECKPOINT CONTRADICTED"),
            "{stderr}"
        );
        // Removing the signed prefix behind a forged anchor does not pass for retention:
        // nothing signed this recently can have been purged.
        let head = cp.chains[0].seq;
        db.exec(&format!(
            "DELETE FROM audit_entries WHERE chain_id = 'forge-node' AND seq <= {head}"
        ))
        .await
        .unwrap();
        db.exec(&format!(
            "INSERT INTO audit_anchors (chain_id, seq, hash, created_at) VALUES \
             ('forge-node', {}, '{}', '2026-01-01T00:00:00.000000Z')",
            head + 1,
            "f".repeat(64)
        ))
        .await
        .unwrap();
        let auditor = db.store("auditor-2").await;
        let r = checkpoint::verify_checkpoints(&auditor, dir.path(), &public, 1825)
            .await
            .unwrap();
        assert!(!r.ok, "{kind:?}: a forged anchor passed for a purge: {r:?}");
        let why = r.failure.unwrap();
        assert!(why.contains("chain forge-node seq"), "{why}");
        auditor.close().await;
    }
}

/// Reads what the server answers on `stream` until it closes or `limit` passes.
async fn read_answer(stream: &mut tokio::net::TcpStream, limit: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The guarantee: a client that sends its body slowly is answered 408 and its connection
/// closed once `HTTP_CLIENT_TIMEOUT_SECONDS` has passed, a flood of them does not keep the
/// server from answering others, and closed slow connections free their slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_body_is_timed_out() {
    use tokio::io::AsyncWriteExt;
    const SLOW: usize = 200;
    let mut settings = http_settings();
    settings.http_client_timeout_seconds = 1.0;
    let server = TestServer::start(settings).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let head = format!(
        "POST /v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SUBMITTER}\r\n\
         Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{{\"alert_id\":"
    );
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        slow.push(s);
    }
    // Others are served meanwhile.
    let r = server
        .post("/v1/alerts", Some(SUBMITTER), clean_alert("during-flood"))
        .await;
    assert_eq!(r.status(), 202);
    let mut timed_out = 0;
    let mut answers = Vec::new();
    for s in &mut slow {
        let answer = read_answer(s, Duration::from_secs(10)).await;
        if answer.starts_with("HTTP/1.1 408") {
            timed_out += 1;
        }
        answers.push(answer);
    }
    let took = started.elapsed();
    eprintln!("slow_body_is_timed_out: {timed_out} of {SLOW} slow bodies answered 408 in {took:?}");
    assert_eq!(timed_out, SLOW, "first answers: {:?}", &answers[..3]);
    assert!(took < Duration::from_secs(8), "took {took:?}");
    // The 408 says why, as JSON.
    assert!(answers[0].contains("request_timeout") || answers[0].contains("408"));
    server.stop().await;
}

/// HTTP limits answer instead of resetting: the wrong media type is 415, an oversized
/// chunked body 413 (not a reset), an id outside the id character set 404 whatever its
/// encoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_limits_are_answered_not_reset() {
    use tokio::io::AsyncWriteExt;
    let mut settings = http_settings();
    settings.http_max_body_bytes = 2 * 1024 * 1024;
    let server = TestServer::start(settings).await;
    let r = server
        .client
        .post(server.url("/v1/alerts"))
        .bearer_auth(SUBMITTER)
        .header("content-type", "text/plain")
        .body(clean_alert("plain-text"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = server
        .client
        .post(server.url("/v1/alerts"))
        .bearer_auth(SUBMITTER)
        .body(clean_alert("no-type"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // 60 MB, chunked, against a 2 MB limit.
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SUBMITTER}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b' '; 64 * 1024];
        let framed = [
            format!("{:x}\r\n", chunk.len()).into_bytes(),
            chunk,
            b"\r\n".to_vec(),
        ]
        .concat();
        for _ in 0..(60 * 16) {
            if wr.write_all(&framed).await.is_err() {
                break;
            }
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    writer.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "got {answer:?}");
    // Ids: `/` encoded or not, and other characters outside the id set, are never found.
    for path in [
        "/v1/alerts/a%2Fb",
        "/v1/alerts/a%20b",
        "/v1/alerts/%2E%2E%2Fx",
    ] {
        let r = server.get(path, Some(READER)).await;
        assert_eq!(r.status(), 404, "{path}");
    }
    server.stop().await;
}

/// PostgreSQL goes away for two seconds under load (new connections refused, open ones cut)
/// and comes back: every alert answered 202 is decided without a restart (those whose
/// pipeline hit the outage are resumed from their journal), and what was refused during the
/// outage was answered 503, never 202.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage_loses_no_accepted_alert() {
    use crate::http_support::pg_admin;
    const CLIENTS: usize = 8;
    let db = TestDb::new(Kind::Postgres).await;
    let mut settings = http_settings();
    settings.database_url = db.url.clone();
    settings.offline_latency_ms = 10;
    let server = Arc::new(TestServer::start(settings).await);
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let unavailable = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (server, accepted, unavailable, stop) = (
            server.clone(),
            accepted.clone(),
            unavailable.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("pgout-{c}-{i}");
                i += 1;
                let r = server
                    .post("/v1/alerts", Some(SUBMITTER), clean_alert(&id))
                    .await;
                match r.status().as_u16() {
                    200 | 202 => accepted.lock().unwrap().push(id),
                    503 => {
                        unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    429 => tokio::time::sleep(Duration::from_millis(10)).await,
                    other => panic!("{id}: unexpected {other}"),
                }
            }
        }));
    }
    let start = Instant::now();
    while accepted.lock().unwrap().len() < 100 && start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let name = db.url.rsplit('/').next().unwrap().to_string();
    pg_admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
    pg_admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;
    let before = accepted.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = accepted.lock().unwrap().len() - before;
    pg_admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    let decided_all = eventually_async(Duration::from_secs(90), || async {
        db.scalar("SELECT COUNT(*) FROM decisions").await >= accepted.len() as i64
    })
    .await;
    let decided: std::collections::HashSet<String> = db
        .texts("SELECT alert_id FROM decisions")
        .await
        .into_iter()
        .collect();
    let missing: Vec<&String> = accepted
        .iter()
        .filter(|id| !decided.contains(*id))
        .collect();
    eprintln!(
        "database_outage_loses_no_accepted_alert: {} accepted ({during} during the 2 s outage), \
         {} answered 503, {} not decided",
        accepted.len(),
        unavailable.load(std::sync::atomic::Ordering::Relaxed),
        missing.len()
    );
    assert!(
        decided_all && missing.is_empty(),
        "accepted but never decided: {:?}",
        &missing[..missing.len().min(10)]
    );
    assert!(
        unavailable.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the outage was not felt"
    );
    Arc::try_unwrap(server).ok().unwrap().stop().await;
}

/// `audit keygen` makes a key pair, `serve` signs checkpoints every
/// `AUDIT_CHECKPOINT_SECONDS` into `AUDIT_CHECKPOINT_DIR`, `audit checkpoint` signs one on
/// demand, and `audit verify --checkpoints` accepts them all for an untouched store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_signed_periodically_and_on_demand() {
    let db = TestDb::new(Kind::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit.key");
    let checkpoints = dir.path().join("checkpoints");
    let bin = env!("CARGO_BIN_EXE_aml-triage");
    let out = Command::new(bin)
        .args(["audit", "keygen"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = aml_triage::checkpoint::public_path(&key);
    assert!(public.exists());
    // Refuses to overwrite a key.
    let again = Command::new(bin)
        .args(["audit", "keygen"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!again.status.success());

    let mut serve = Killed(
        Command::new(bin)
            .env("DATABASE_URL", &db.url)
            .env("NODE_ID", "ckpt-node")
            .env("LOG_LEVEL", "error")
            .env("PROMETHEUS_PORT", "0")
            .env("AML_TRIAGE_API_KEYS", format!("{SUBMITTER}:submitter"))
            .env("AUDIT_SIGNING_KEY_FILE", &key)
            .env("AUDIT_CHECKPOINT_DIR", &checkpoints)
            .env("AUDIT_CHECKPOINT_SECONDS", "0.3")
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = serve.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    let client = reqwest::Client::new();
    for i in 0..3 {
        let r = client
            .post(format!("{base}/v1/alerts?wait=true"))
            .bearer_auth(SUBMITTER)
            .header("content-type", "application/json")
            .body(clean_alert(&format!("ckpt-{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // A periodic checkpoint that covers the decided alerts.
    let covered = eventually_async(Duration::from_secs(20), || async {
        std::fs::read_dir(&checkpoints)
            .map(|d| {
                d.filter_map(Result::ok).any(|f| {
                    std::fs::read_to_string(f.path())
                        .map(|t| t.contains("ckpt-node"))
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false)
    })
    .await;
    assert!(covered, "no periodic checkpoint of the node's chain");
    drop(serve);
    let on_demand = Command::new(bin)
        .env("DATABASE_URL", &db.url)
        .env("LOG_LEVEL", "error")
        .env("AUDIT_SIGNING_KEY_FILE", &key)
        .env("AUDIT_CHECKPOINT_DIR", &checkpoints)
        .args(["audit", "checkpoint"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&on_demand.stderr);
    assert!(on_demand.status.success(), "{text}");
    assert!(text.contains("checkpoint of 1 chain(s)"), "{text}");
    let verify = Command::new(bin)
        .env("DATABASE_URL", &db.url)
        .env("LOG_LEVEL", "error")
        .args(["audit", "verify", "--checkpoints"])
        .arg(&checkpoints)
        .arg("--public-key")
        .arg(&public)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{text}");
    assert!(text.contains("signed checkpoint(s) hold"), "{text}");
}

//! The HTTP ingress over real sockets: routes, auth, bad input, idempotency, admission,
//! metrics, readiness.

use std::sync::Arc;
use std::time::Duration;

use aml_triage::Engine;
use aml_triage::domain::AgentKind;
use aml_triage::http::openapi;
use aml_triage::metrics::Metrics;
use serde_json::{Value, json};

use crate::http_support::*;
use crate::store_support::{Kind, TestDb};
use crate::support::*;

async fn json_of(r: reqwest::Response) -> Value {
    r.json().await.expect("JSON body")
}

/// Polls the decision route until it answers 200.
async fn decision_of(s: &TestServer, id: &str) -> Value {
    for _ in 0..500 {
        let r = s
            .get(&format!("/v1/alerts/{id}/decision"), Some(READER))
            .await;
        if r.status() == 200 {
            return json_of(r).await;
        }
        assert_eq!(r.status(), 404);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{id} not decided");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_over_http() {
    let s = TestServer::start(http_settings()).await;

    // One alert, accepted then polled.
    let r = s
        .post("/v1/alerts", Some(SUBMITTER), clean_alert("r-1"))
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["location"], "/v1/alerts/r-1");
    assert_eq!(json_of(r).await["status"], "accepted");
    let d = decision_of(&s, "r-1").await;
    assert_eq!(d["alert_id"], "r-1");
    assert_eq!(d["disposition"], "AUTO_CLEAR");

    let a = json_of(s.get("/v1/alerts/r-1", Some(READER)).await).await;
    assert_eq!(a["status"], "decided");
    assert_eq!(a["alert"]["customer"]["name"], "Jane Roe");

    let audit = s.get("/v1/alerts/r-1/audit", Some(AUDITOR)).await;
    assert_eq!(audit.status(), 200);
    let audit = json_of(audit).await;
    assert!(audit["entries"].as_array().unwrap().len() >= 5, "{audit}");
    let pack = s
        .get("/v1/alerts/r-1/audit?export=true", Some(AUDITOR))
        .await;
    assert_eq!(pack.status(), 200);
    assert!(json_of(pack).await.is_object());

    // Waiting for the decision.
    let r = s
        .post("/v1/alerts?wait=true", Some(SUBMITTER), clean_alert("r-2"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(r).await["disposition"], "AUTO_CLEAR");

    // Batches, both shapes; the invalid item does not cost the valid ones.
    let batch = format!(
        "[{},{},{}]",
        clean_alert("b-1"),
        r#"{"alert_id":"b-bad","alert_type":"NOPE"}"#,
        clean_alert("b-2")
    );
    let r = s.post("/v1/alerts?wait=true", Some(SUBMITTER), batch).await;
    assert_eq!(r.status(), 207);
    let b = json_of(r).await;
    assert_eq!(
        (b["decided"].as_u64(), b["rejected"].as_u64()),
        (Some(2), Some(1)),
        "{b}"
    );
    assert_eq!(b["results"][1]["http_status"], 422);
    assert_eq!(b["results"][1]["error"], "invalid_alert");
    assert_eq!(b["results"][2]["decision"]["alert_id"], "b-2");
    let env = format!(r#"{{"alerts":[{}]}}"#, clean_alert("b-3"));
    let r = s.post("/v1/alerts", Some(SUBMITTER), env).await;
    assert_eq!(r.status(), 207);
    assert_eq!(json_of(r).await["results"][0]["http_status"], 202);
    decision_of(&s, "b-3").await;

    // Operational routes.
    assert_eq!(s.get("/health", None).await.status(), 200);
    let ready = s.get("/ready", None).await;
    assert_eq!(ready.status(), 200);
    assert_eq!(json_of(ready).await["ready"], true);
    let st = json_of(s.get("/v1/status", Some(ADMIN)).await).await;
    assert_eq!(st["agents"].as_array().unwrap().len(), 4);
    let m = s.get("/metrics", Some(ADMIN)).await;
    assert_eq!(m.status(), 200);
    assert!(
        m.text()
            .await
            .unwrap()
            .contains("aml_triage_alerts_processed_total")
    );
    assert!(
        s.scrape()
            .await
            .contains("aml_triage_alerts_processed_total")
    );
    let doc = json_of(s.get("/openapi.json", None).await).await;
    for (method, path) in openapi::ROUTES
        .iter()
        .chain(aml_triage::http::openapi_review::ROUTES)
    {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    let nf = s.get("/v1/nothing-here", Some(ADMIN)).await;
    assert_eq!(nf.status(), 404);
    assert_eq!(json_of(nf).await["error"], "not_found");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matrix_distinguishes_401_and_403() {
    let s = TestServer::start(http_settings()).await;
    let r = s
        .post("/v1/alerts?wait=true", Some(ADMIN), clean_alert("auth-0"))
        .await;
    assert_eq!(r.status(), 200);
    let keys = [
        ("none", None),
        ("wrong", Some("not-a-key-at-all-000000")),
        ("submitter", Some(SUBMITTER)),
        ("reader", Some(READER)),
        ("auditor", Some(AUDITOR)),
        ("admin", Some(ADMIN)),
    ];
    let routes: [(&str, &str, &[&str]); 7] = [
        ("POST", "/v1/alerts", &["submitter", "admin"]),
        ("GET", "/v1/alerts/auth-0", &["reader", "auditor", "admin"]),
        (
            "GET",
            "/v1/alerts/auth-0/decision",
            &["reader", "auditor", "admin"],
        ),
        ("GET", "/v1/alerts/auth-0/audit", &["auditor", "admin"]),
        (
            "GET",
            "/v1/alerts/auth-0/audit?export=true",
            &["auditor", "admin"],
        ),
        ("GET", "/v1/status", &["admin"]),
        ("GET", "/metrics", &["admin"]),
    ];
    let mut n = 0;
    for (method, path, allowed) in routes {
        for (name, key) in keys {
            n += 1;
            let r = if method == "POST" {
                s.post(path, key, clean_alert(&format!("auth-{n}"))).await
            } else {
                s.get(path, key).await
            };
            let status = r.status().as_u16();
            let expected_denial = match key {
                None => Some(401),
                Some(_) if name == "wrong" => Some(401),
                Some(_) if !allowed.contains(&name) => Some(403),
                Some(_) => None,
            };
            match expected_denial {
                Some(code) => {
                    assert_eq!(status, code, "{method} {path} with {name}");
                    let body = json_of(r).await;
                    assert_eq!(
                        body["error"],
                        if code == 401 {
                            "unauthorized"
                        } else {
                            "forbidden"
                        }
                    );
                }
                None => assert!(
                    status == 200 || status == 202,
                    "{method} {path} with {name}: {status}"
                ),
            }
        }
    }
    // Open routes need no key.
    for path in ["/health", "/ready", "/openapi.json"] {
        assert_eq!(s.get(path, None).await.status(), 200, "{path}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_clear_errors() {
    let mut settings = http_settings();
    settings.max_alert_bytes = 16 * 1024;
    settings.http_max_body_bytes = 64 * 1024;
    settings.max_batch_alerts = 3;
    let s = TestServer::start(settings).await;
    let post = |body: String| s.post("/v1/alerts", Some(SUBMITTER), body);

    let r = post("{not json".into()).await;
    assert_eq!(r.status(), 400);
    assert_eq!(json_of(r).await["error"], "bad_request");

    let r = post(r#"{"alert_id":"m-1","alert_type":"PEP","priority":"LOW","created_at":"2026-01-01T00:00:00Z"}"#.into()).await;
    assert_eq!(r.status(), 422);
    let e = json_of(r).await;
    assert_eq!(e["error"], "invalid_alert");
    // A missing field is reported at the document level, naming the field in the message.
    assert_eq!(e["field"], "$", "{e}");
    assert!(e["message"].as_str().unwrap().contains("customer"), "{e}");

    let wrong_type = clean_alert("m-2").replace(
        r#""expected_monthly_volume":5000"#,
        r#""expected_monthly_volume":"lots""#,
    );
    let r = post(wrong_type).await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        json_of(r).await["field"],
        "customer.expected_monthly_volume"
    );

    let bad_enum = clean_alert("m-3").replace("KYC_ONGOING", "KYC_SOMETIMES");
    let r = post(bad_enum).await;
    assert_eq!(r.status(), 422);
    assert_eq!(json_of(r).await["field"], "alert_type");

    let r = post("42".into()).await;
    assert_eq!(r.status(), 422);

    // Body over HTTP_MAX_BODY_BYTES.
    let huge = format!(r#"{{"alert_id":"h","pad":"{}"}}"#, "x".repeat(200 * 1024));
    let r = post(huge).await;
    assert_eq!(r.status(), 413);
    assert_eq!(json_of(r).await["error"], "payload_too_large");

    // One alert over MAX_ALERT_BYTES but under the body limit.
    let big = clean_alert("m-4").replace(r#""rule_id""#, "").replacen(
        r#""priority":"LOW","#,
        &format!(r#""priority":"LOW","rule_id":"{}","#, "r".repeat(20 * 1024)),
        1,
    );
    let r = post(big).await;
    assert_eq!(r.status(), 413);

    // Batch over MAX_BATCH_ALERTS, and an empty one.
    let four = format!(
        "[{}]",
        (0..4)
            .map(|i| clean_alert(&format!("hb-{i}")))
            .collect::<Vec<_>>()
            .join(",")
    );
    let r = post(four).await;
    assert_eq!(r.status(), 413);
    assert_eq!(json_of(r).await["error"], "batch_too_large");
    assert_eq!(post("[]".into()).await.status(), 422);

    let r = s
        .post(
            "/v1/alerts?wait=perhaps",
            Some(SUBMITTER),
            clean_alert("m-5"),
        )
        .await;
    assert_eq!(r.status(), 400);

    // Nothing was stored for any of them.
    for id in ["m-1", "m-2", "m-3", "m-4", "hb-0"] {
        assert_eq!(
            s.get(&format!("/v1/alerts/{id}"), Some(READER))
                .await
                .status(),
            404,
            "{id}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmission_returns_the_same_decision_and_conflict_is_409() {
    let s = TestServer::start(http_settings()).await;
    let r = s
        .post(
            "/v1/alerts?wait=true",
            Some(SUBMITTER),
            clean_alert("idem-1"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let first = json_of(r).await;
    // Same content, different formatting: same decision, not a second one.
    let again =
        serde_json::to_string(&serde_json::from_str::<Value>(&clean_alert("idem-1")).unwrap())
            .unwrap();
    for wait in ["", "?wait=true"] {
        let r = s
            .post(&format!("/v1/alerts{wait}"), Some(SUBMITTER), again.clone())
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(json_of(r).await, first);
    }
    let changed = clean_alert("idem-1").replace("Jane Roe", "John Roe");
    let r = s.post("/v1/alerts", Some(SUBMITTER), changed).await;
    assert_eq!(r.status(), 409);
    assert_eq!(json_of(r).await["error"], "conflict");
    assert_eq!(decision_of(&s, "idem-1").await, first);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_admission_answers_429_with_retry_after() {
    let script = Scripted::new(
        AgentKind::ContextBuilder,
        vec![Behaviour::Sleep(Duration::from_millis(1500))],
    );
    let mut settings = http_settings();
    settings.max_concurrent_alerts = 2;
    let s = TestServer::start_with(settings, Arc::new(ScriptedProvider(script.clone()))).await;
    for i in 0..2 {
        let r = s
            .post(
                "/v1/alerts",
                Some(SUBMITTER),
                clean_alert(&format!("busy-{i}")),
            )
            .await;
        assert_eq!(r.status(), 202);
    }
    assert!(eventually(Duration::from_secs(5), || s.engine.in_flight() == 2).await);
    let r = s
        .post("/v1/alerts", Some(SUBMITTER), clean_alert("busy-x"))
        .await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(json_of(r).await["error"], "busy");
    // Refused, not stored: the client resubmits later and it is decided.
    assert_eq!(s.get("/v1/alerts/busy-x", Some(READER)).await.status(), 404);
    let m = s.scrape().await;
    assert!(
        sample(
            &m,
            r#"aml_triage_admission_rejections_total{reason="busy"}"#
        ) >= 1.0,
        "{m}"
    );
    decision_of(&s, "busy-0").await;
    decision_of(&s, "busy-1").await;
    let r = s
        .post(
            "/v1/alerts?wait=true",
            Some(SUBMITTER),
            clean_alert("busy-x"),
        )
        .await;
    assert_eq!(r.status(), 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_present_and_increase_after_processing() {
    let s = TestServer::start(http_settings()).await;
    let before = s.scrape().await;
    let cleared = r#"aml_triage_alerts_processed_total{disposition="AUTO_CLEAR"}"#;
    let steps = r#"aml_triage_agent_step_duration_seconds_count{agent="decision_maker"}"#;
    for i in 0..3 {
        let r = s
            .post(
                "/v1/alerts?wait=true",
                Some(SUBMITTER),
                clean_alert(&format!("met-{i}")),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let after = s.scrape().await;
    assert_eq!(
        sample(&after, cleared) - sample(&before, cleared),
        3.0,
        "{after}"
    );
    assert_eq!(sample(&after, steps) - sample(&before, steps), 3.0);
    assert!(sum_of(&after, "aml_triage_decision_confidence_count") >= 3.0);
    assert!(
        sum_of(&after, "aml_triage_llm_calls_total{") >= 6.0,
        "{after}"
    );
    assert!(sum_of(&after, "aml_triage_llm_tokens_total{") > 0.0);
    assert!(
        sample(
            &after,
            r#"aml_triage_http_requests_total{route="/v1/alerts",method="POST",status="200"}"#
        ) >= 3.0,
        "{after}"
    );
    assert!(after.contains("aml_triage_alerts_in_flight 0"));
    assert!(after.contains(r#"aml_triage_agent_restarts_total{agent="risk_scoring"} 0"#));
    assert!(after.contains(r#"aml_triage_agent_status{agent="decision_maker"} 0"#));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_when_the_database_is_unreachable() {
    let db = TestDb::new(Kind::Postgres).await;
    let mut settings = http_settings();
    settings.database_url = db.url.clone();
    settings.node_id = format!("ready-{}", fastrand::u32(..));
    let s = TestServer::start(settings).await;
    let r = s
        .post(
            "/v1/alerts?wait=true",
            Some(SUBMITTER),
            clean_alert("rdy-1"),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.get("/ready", None).await.status(), 200);

    // The database goes away under the running engine: no new connections, existing ones cut.
    let name = db.url.rsplit('/').next().unwrap().to_string();
    pg_admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
    pg_admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;
    let r = s.get("/ready", None).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body = json_of(r).await;
    assert_eq!(body["failing"], json!(["database"]), "{body}");
    assert!(!body.to_string().contains("postgres://"), "{body}");
    // Liveness is unaffected, and a read answers 503 without internals.
    assert_eq!(s.get("/health", None).await.status(), 200);
    let r = s.get("/v1/alerts/rdy-1", Some(READER)).await;
    assert_eq!(r.status(), 503);
    let body = json_of(r).await;
    assert_eq!(body["error"], "unavailable");
    assert!(!body.to_string().contains("postgres"), "{body}");

    pg_admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
    let mut back = false;
    for _ in 0..100 {
        if s.get("/ready", None).await.status() == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "ready again once the database is back");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_when_an_llm_circuit_is_open() {
    let mut settings = http_settings();
    // A provider that cannot be reached, whose circuit opens at the first failure.
    settings.context_builder_provider = "anthropic".into();
    settings.anthropic_api_key = Some(aml_triage::llm::secret::ApiKey::new("test-key-not-real"));
    settings.anthropic_base_url = "http://127.0.0.1:1".into();
    settings.llm_circuit_failures = 1;
    settings.llm_circuit_cooldown_seconds = 600.0;
    settings.max_retries = 0;
    let engine = Arc::new(Engine::builder(settings).start().await.unwrap());
    let s = TestServer::around(engine);
    assert_eq!(s.get("/ready", None).await.status(), 200);
    let r = s
        .post(
            "/v1/alerts?wait=true",
            Some(SUBMITTER),
            clean_alert("llm-down-1"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let decision = json_of(r).await;
    assert_ne!(decision["disposition"], "AUTO_CLEAR", "{decision}");
    let r = s.get("/ready", None).await;
    assert_eq!(r.status(), 503);
    let body = json_of(r).await;
    assert_eq!(body["failing"], json!(["llm"]), "{body}");
    s.stop().await;
}

/// Identifiers starting with `aml_triage_` in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("aml_triage_") {
        let start = i + pos;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            out.push(expr[start..end].to_string());
        }
        i = end;
    }
    out
}

fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr" | "query", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_only_exported_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/aml-triage.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(all.len() >= 5, "{all:?}");
    // One screening list loaded, so the list-age family has a sample.
    let lists = tempfile::tempdir().unwrap();
    std::fs::write(
        lists.path().join("sdn.csv"),
        "1,\"LISTED, Person\",\"individual\",\"SDGT\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \r\n",
    )
    .unwrap();
    let mut settings = http_settings();
    settings.list_paths = vec![lists.path().to_path_buf()];
    let s = TestServer::start(settings).await;
    s.post(
        "/v1/alerts?wait=true",
        Some(SUBMITTER),
        clean_alert("dash-1"),
    )
    .await;
    let exposition = s.scrape().await;
    let mut checked = 0;
    for expr in &all {
        for name in metric_names(expr) {
            checked += 1;
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suf| name.strip_suffix(suf))
                .filter(|b| exposition.contains(&format!("# TYPE {b} histogram")))
                .unwrap_or(&name);
            assert!(
                Metrics::NAMES.contains(&base),
                "dashboard queries {name}, which the engine does not export ({expr})"
            );
            // Families of failures have no sample after a clean run (prometheus-client omits
            // empty labelled families); `every_listed_name_is_exported` covers them.
            let failure_family = ["failed", "errors", "rejections", "degraded", "cost"]
                .iter()
                .any(|f| name.contains(f));
            assert!(
                failure_family
                    || exposition
                        .lines()
                        .any(|l| l.starts_with(&name) && !l.starts_with('#')),
                "{name} has no sample after processing"
            );
        }
    }
    assert!(checked >= 5);
    // And the scrape config points at the metrics port path.
    let prom = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/prometheus.yml"
    ))
    .unwrap();
    assert!(prom.contains("/metrics") || prom.contains("aml-triage"));
    s.stop().await;
}

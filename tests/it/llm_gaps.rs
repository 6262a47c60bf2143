//! Provider gaps of issue 18, against stubs speaking the real OpenAI and Anthropic JSON:
//! unsupported response formats, 429 `retry-after`, per-provider concurrency, costs of degraded
//! steps, postal codes and cities, streaming with a first-token timeout, the daily budget, and
//! `triage --out` kept across an interruption.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use aml_triage::llm::http::{CircuitBreaker, Resilient};
use aml_triage::llm::openai::{JsonMode, OpenAiProvider};
use aml_triage::llm::pii::{PiiKind, Pseudonymiser, Sensitive};
use aml_triage::llm::pricing::PriceTable;
use aml_triage::llm::registry::ProviderRegistry;
use aml_triage::llm::secret::ApiKey;
use aml_triage::llm::{LlmError, LlmProvider};
use aml_triage::{Disposition, Engine};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::llm::{KEY, PII, anthropic_settings, openai_ok, pii_alert, request, stub_server};
use crate::store_support::{Kind, TestDb};
use crate::support::*;

/// Waits for `cond`, failing after a generous bound (an event, not a timing assertion).
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn openai_error(message: &str) -> Value {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": null,
                     "code": null}})
}

/// An OpenAI-compatible server that knows neither `json_schema` nor `json_object` (as some
/// local servers): it rejects both, naming `response_format`, and answers plain requests.
struct FormatPicky {
    reject_all: bool,
}

impl Respond for FormatPicky {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        match body["response_format"]["type"].as_str() {
            Some("json_schema") => ResponseTemplate::new(500).set_body_json(openai_error(
                "Unsupported response_format type: json_schema (expected text or json_object)",
            )),
            Some(other) => ResponseTemplate::new(400).set_body_json(openai_error(&format!(
                "response_format {other} is not supported by this model"
            ))),
            None if self.reject_all => ResponseTemplate::new(400)
                .set_body_json(openai_error("response_format: this server needs one")),
            None => ResponseTemplate::new(200).set_body_json(openai_ok("{\"ok\":true}", "stop")),
        }
    }
}

fn guarded(raw: OpenAiProvider, breaker: &Arc<CircuitBreaker>) -> Arc<dyn LlmProvider> {
    Arc::new(Resilient::new(
        Arc::new(raw),
        breaker.clone(),
        Duration::from_secs(5),
        Arc::new(PriceTable::parse("").unwrap()),
    ))
}

#[tokio::test]
async fn unsupported_response_format_is_not_an_outage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(FormatPicky { reject_all: false })
        .mount(&server)
        .await;
    let raw = OpenAiProvider::new(
        &format!("{}/v1", server.uri()),
        &ApiKey::new(KEY),
        Duration::from_secs(5),
        JsonMode::JsonSchema,
    )
    .unwrap();
    // A breaker that opens at the first failure that counts against the provider.
    let breaker = Arc::new(CircuitBreaker::new("openai", 1, Duration::from_secs(600)));
    let p = guarded(raw.clone(), &breaker);
    let mut req = request("hello");
    req.schema = Some(json!({"type": "object"}));
    let r = p.complete(req.clone()).await;
    assert!(r.is_ok(), "{r:?}");
    // json_schema (500) -> json_object (400) -> text, within the one call; nothing retried.
    let sent: Vec<Value> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.body_json().unwrap())
        .collect();
    let formats: Vec<Option<&str>> = sent
        .iter()
        .map(|b| b["response_format"]["type"].as_str())
        .collect();
    assert_eq!(
        formats,
        vec![Some("json_schema"), Some("json_object"), None],
        "{sent:?}"
    );
    assert_eq!(raw.mode(), JsonMode::Text);
    assert_eq!(breaker.state(), "closed", "a format rejection is no outage");
    // The fallback sticks: the next call goes out in the working format at once.
    assert!(p.complete(req.clone()).await.is_ok());
    assert_eq!(server.received_requests().await.unwrap().len(), 4);

    // A server that rejects every format: a configuration error, not retried, circuit closed.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(FormatPicky { reject_all: true })
        .mount(&server)
        .await;
    let raw = OpenAiProvider::new(
        &format!("{}/v1", server.uri()),
        &ApiKey::new(KEY),
        Duration::from_secs(5),
        JsonMode::JsonSchema,
    )
    .unwrap();
    let breaker = Arc::new(CircuitBreaker::new("openai", 1, Duration::from_secs(600)));
    let p = guarded(raw, &breaker);
    let e = p.complete(req).await.unwrap_err();
    assert!(
        matches!(&e, LlmError::BadRequest(m) if m.contains("configuration error")),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    assert!(!format!("{e}").contains("SECRET"));
    assert_eq!(breaker.state(), "closed");
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn openai_429_honours_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "7")
                .set_body_json(
                    json!({"error": {"message": "Rate limit reached for requests",
                    "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
                ),
        )
        .mount(&server)
        .await;
    let p = OpenAiProvider::new(
        &format!("{}/v1", server.uri()),
        &ApiKey::new(KEY),
        Duration::from_secs(5),
        JsonMode::JsonObject,
    )
    .unwrap();
    let e = p.complete(request("hello")).await.unwrap_err();
    assert_eq!(
        e,
        LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    // The supervisor's retry policy reads it from here.
    assert!(e.is_retryable());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
}

/// How many requests a stub holds at once.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
    total: AtomicUsize,
}

/// An OpenAI-compatible server that holds every request for `hold` and counts how many it
/// holds at once (as a single-slot local server would queue them).
fn counting_server(hold: Duration) -> (String, Arc<Gauge>) {
    let gauge = Arc::new(Gauge::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let g = gauge.clone();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            HttpServer::new(move || {
                let g = g.clone();
                App::new().route(
                    "/v1/chat/completions",
                    web::post().to(move || {
                        let g = g.clone();
                        async move {
                            let n = g.now.fetch_add(1, Ordering::SeqCst) + 1;
                            g.max.fetch_max(n, Ordering::SeqCst);
                            g.total.fetch_add(1, Ordering::SeqCst);
                            actix_rt::time::sleep(hold).await;
                            g.now.fetch_sub(1, Ordering::SeqCst);
                            HttpResponse::Ok().json(openai_ok("{\"ok\":true}", "stop"))
                        }
                    }),
                )
            })
            .workers(1)
            .listen(listener)
            .unwrap()
            .run()
            .await
            .unwrap();
        });
    });
    (format!("http://{addr}/v1"), gauge)
}

async fn burst(limit: usize, n: usize) -> (Arc<Gauge>, Vec<Result<(), LlmError>>) {
    let (base, gauge) = counting_server(Duration::from_millis(60));
    let s = aml_triage::Settings {
        decision_maker_provider: "openai".into(),
        decision_maker_model: "local".into(),
        openai_base_url: base,
        openai_max_concurrency: limit,
        // Each call takes 60 ms once it has a slot; the queue wait (n / limit calls) is far
        // longer than this, so a timeout that counted the queue would fail the late calls.
        llm_request_timeout_seconds: 1.0,
        ..settings()
    };
    let registry = ProviderRegistry::from_settings(&s).unwrap();
    let calls = (0..n).map(|_| {
        let p = registry.decision.clone();
        async move { p.complete(request("hello")).await.map(|_| ()) }
    });
    let results = futures_util::future::join_all(calls).await;
    (gauge, results)
}

#[tokio::test]
async fn provider_concurrency_is_bounded() {
    let (gauge, results) = burst(2, 40).await;
    for r in &results {
        assert_eq!(r, &Ok(()), "a queued request failed instead of waiting");
    }
    assert_eq!(gauge.total.load(Ordering::SeqCst), 40);
    let max = gauge.max.load(Ordering::SeqCst);
    assert!(max <= 2, "{max} requests on the server at once, limit 2");
    // Without the limit the same burst lands on the server at once.
    let (gauge, _) = burst(0, 40).await;
    assert!(gauge.max.load(Ordering::SeqCst) > 2);
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn degraded_step_costs_are_counted() {
    // The decision model never answers usable JSON: asked, repaired twice, then the step
    // degrades. Each call still used 1000 + 200 tokens at $3/$15 per Mtok.
    let (server, bodies) = stub_server("I am not able to answer in JSON.").await;
    let engine = Engine::builder(anthropic_settings(&server.uri()))
        .start()
        .await
        .unwrap();
    let d = engine
        .submit_json(&pii_alert("degraded-cost"))
        .await
        .unwrap();
    let per_call = (1000.0 * 3.0 + 200.0 * 15.0) / 1e6;
    let calls = bodies.lock().unwrap().len();
    assert_eq!(calls, 5, "narrative, 3 decision calls, check");
    let dm = d
        .agents
        .iter()
        .find(|a| a.agent.as_str() == "decision_maker")
        .unwrap();
    assert!(dm.degraded && d.degraded, "{d:?}");
    assert_eq!((dm.tokens_in, dm.tokens_out), (3000, 600));
    assert!(
        (dm.cost_usd - 3.0 * per_call).abs() < 1e-12,
        "{}",
        dm.cost_usd
    );
    assert_eq!(d.total_tokens, 5 * 1200);
    assert!(
        (d.total_cost_usd - 5.0 * per_call).abs() < 1e-12,
        "{}",
        d.total_cost_usd
    );
    // The journal and the metrics count them too.
    let steps = engine.store().steps("degraded-cost").await.unwrap();
    let s = steps.iter().find(|s| s.step == "decision_maker").unwrap();
    assert_eq!(
        (s.tokens_in, s.tokens_out, s.status.as_str()),
        (3000, 600, "degraded")
    );
    let text = engine.metrics_text();
    assert_eq!(
        metric(
            &text,
            "aml_triage_llm_tokens_total{agent=\"decision_maker\",provider=\"anthropic\",direction=\"in\"}"
        ),
        3000.0,
        "{text}"
    );
    let cost = metric(
        &text,
        "aml_triage_llm_cost_usd_total{agent=\"decision_maker\",provider=\"anthropic\"",
    );
    assert!((cost - 3.0 * per_call).abs() < 1e-9, "{cost}");
    engine.shutdown().await;
}

#[tokio::test]
async fn postal_codes_and_cities_are_pseudonymised() {
    let decision = r#"{"disposition":"ESCALATE_L3","confidence":0.8,"rationale":"PERSON_1 of CITY_1 POSTCODE_1 paid abroad [alert]","cited_evidence":["alert"]}"#;
    let (server, bodies) = stub_server(decision).await;
    let engine = Engine::builder(anthropic_settings(&server.uri()))
        .start()
        .await
        .unwrap();
    let d = engine.submit_json(&pii_alert("pii-postal")).await.unwrap();
    engine.shutdown().await;
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3);
    for b in &bodies {
        for pii in PII.iter().chain(&["Springfield", "62701"]) {
            assert!(!b.contains(pii), "{pii} was sent: {b}");
        }
    }
    assert!(bodies.iter().any(|b| b.contains("CITY_1")));
    assert!(
        d.rationale
            .contains("Margarethe Quillfeather of Springfield 62701 paid"),
        "{}",
        d.rationale
    );
    // Boundary-aware, digits too: a value inside a longer word or number is left alone.
    let p = Pseudonymiser::new(&[
        Sensitive {
            kind: PiiKind::PostalCode,
            value: "62701".into(),
        },
        Sensitive {
            kind: PiiKind::City,
            value: "Split".into(),
        },
    ]);
    assert_eq!(
        p.apply("62701 Split; amount 627010, ref X62701, splitting 1.62701"),
        "POSTCODE_1 CITY_1; amount 627010, ref X62701, splitting 1.POSTCODE_1"
    );
    assert_eq!(p.apply("\"split\":\"62701\""), "\"CITY_1\":\"POSTCODE_1\"");
}

/// Sets a flag when dropped: the server stopped generating.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A streaming OpenAI-compatible server: with `content`, a few tokens and `[DONE]`; without,
/// keep-alive comments and no token, forever (a server stuck before the first token). The
/// flag is set when the server stops streaming because the client went away.
fn streaming_server(content: bool) -> (String, Arc<AtomicBool>) {
    let stopped = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let flag = stopped.clone();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            HttpServer::new(move || {
                let flag = flag.clone();
                App::new().route(
                    "/v1/chat/completions",
                    web::post().to(move |body: web::Json<Value>| {
                        let flag = flag.clone();
                        async move {
                            assert_eq!(body["stream"], true);
                            let chunks: Vec<String> = if content {
                                vec![
                                    r#"{"model":"local","choices":[{"index":0,"delta":{"role":"assistant","content":"{\"ok\""}}]}"#.into(),
                                    r#"{"model":"local","choices":[{"index":0,"delta":{"content":":true}"},"finish_reason":"stop"}]}"#.into(),
                                    r#"{"model":"local","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4}}"#.into(),
                                ]
                            } else {
                                Vec::new()
                            };
                            let guard = DropFlag(flag);
                            let stream = futures_util::stream::unfold(
                                (guard, chunks.into_iter(), false),
                                move |(guard, mut chunks, done)| async move {
                                    if done {
                                        return None;
                                    }
                                    actix_rt::time::sleep(Duration::from_millis(20)).await;
                                    let (line, done) = match chunks.next() {
                                        Some(c) => (format!("data: {c}\n\n"), false),
                                        None if content => ("data: [DONE]\n\n".to_string(), true),
                                        None => (": keep-alive\n\n".to_string(), false),
                                    };
                                    if done {
                                        // A finished answer is no cancellation.
                                        std::mem::forget(guard);
                                        return Some((
                                            Ok::<_, actix_web::Error>(web::Bytes::from(line)),
                                            (DropFlag(Arc::new(AtomicBool::new(false))), chunks, true),
                                        ));
                                    }
                                    Some((Ok(web::Bytes::from(line)), (guard, chunks, false)))
                                },
                            );
                            HttpResponse::Ok()
                                .content_type("text/event-stream")
                                .streaming(stream)
                        }
                    }),
                )
            })
            .workers(1)
            .listen(listener)
            .unwrap()
            .run()
            .await
            .unwrap();
        });
    });
    (format!("http://{addr}/v1"), stopped)
}

fn streaming(base: &str, first_token: Duration) -> OpenAiProvider {
    OpenAiProvider::new(
        base,
        &ApiKey::new(""),
        Duration::from_secs(30),
        JsonMode::JsonObject,
    )
    .unwrap()
    .with_first_token_timeout(Some(first_token))
}

#[tokio::test]
async fn first_token_timeout_cancels_the_stream() {
    // A streamed answer is assembled, usage included.
    let (base, _) = streaming_server(true);
    let r = streaming(&base, Duration::from_secs(10))
        .complete(request("hello"))
        .await
        .unwrap();
    assert_eq!(r.text, "{\"ok\":true}");
    assert_eq!((r.tokens_in, r.tokens_out), (9, 4));

    // No first token in time: a timeout, and the server sees the request abandoned (it
    // would otherwise keep generating for nobody), although the request timeout is 30 s.
    let (base, stopped) = streaming_server(false);
    let started = Instant::now();
    let e = streaming(&base, Duration::from_millis(300))
        .complete(request("hello"))
        .await
        .unwrap_err();
    assert_eq!(e, LlmError::Timeout);
    assert!(started.elapsed() < Duration::from_secs(25));
    eventually("the server stops streaming", || {
        stopped.load(Ordering::SeqCst)
    })
    .await;

    // A caller that stops waiting (the step's deadline) drops the request: cancelled too.
    let (base, stopped) = streaming_server(false);
    let call = streaming(&base, Duration::from_secs(30)).complete(request("hello"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), call)
            .await
            .is_err()
    );
    eventually("the abandoned stream is cancelled", || {
        stopped.load(Ordering::SeqCst)
    })
    .await;
}

#[tokio::test]
async fn budget_exhausted_never_auto_clears() {
    // The model would clear: without a budget, the clean alert is auto-cleared.
    let clear = r#"{"disposition":"AUTO_CLEAR","confidence":0.99,"rationale":"Nothing suspicious in the alert [alert]","cited_evidence":["alert"]}"#;
    let (server, _) = stub_server(clear).await;
    let engine = Engine::builder(anthropic_settings(&server.uri()))
        .start()
        .await
        .unwrap();
    let d = engine
        .submit_json(&clean_alert("budget-control"))
        .await
        .unwrap();
    assert_eq!(d.disposition, Disposition::AutoClear, "{d:?}");
    engine.shutdown().await;

    // 1 token a day: the first call spends it (1200 tokens), every later one is refused.
    let (server, bodies) = stub_server(clear).await;
    let engine = Engine::builder(aml_triage::Settings {
        anthropic_daily_token_budget: 1,
        ..anthropic_settings(&server.uri())
    })
    .start()
    .await
    .unwrap();
    for i in 0..3 {
        let d = engine
            .submit_json(&clean_alert(&format!("budget-{i}")))
            .await
            .unwrap();
        assert_ne!(d.disposition, Disposition::AutoClear, "{i}: {d:?}");
        assert!(d.degraded && d.requires_human_review, "{i}");
        assert!(
            d.degradation_reasons
                .iter()
                .any(|r| r.contains("budget of provider anthropic exhausted")),
            "{i}: {:?}",
            d.degradation_reasons
        );
    }
    assert_eq!(bodies.lock().unwrap().len(), 1, "refused calls were made");
    let text = engine.metrics_text();
    assert!(
        metric(
            &text,
            "aml_triage_llm_budget_exhausted_total{provider=\"anthropic\"}"
        ) >= 3.0,
        "{text}"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn interrupted_triage_keeps_its_decisions() {
    const N: usize = 120;
    let db = TestDb::new(Kind::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("batch.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    for i in 0..N {
        writeln!(
            f,
            "{}",
            clean_alert(&format!("int-{i:04}")).replace('\n', " ")
        )
        .unwrap();
    }
    drop(f);
    let out = dir.path().join("out.jsonl");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_aml-triage"))
            .current_dir(dir.path())
            .env("DATABASE_URL", &db.url)
            .env("NODE_ID", "int-node")
            .env("LOG_LEVEL", "error")
            .env("OFFLINE_LATENCY_MS", "30")
            .env("MAX_CONCURRENT_ALERTS", "4")
            .args(["triage", input.to_str().unwrap(), "--out"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let complete_lines = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with('}'))
            .count()
    };
    let mut child = run();
    // Decisions reach the file as they are made, not at the end of the run.
    eventually("decisions written while the run goes on", || {
        complete_lines() >= 10
    })
    .await;
    child.kill().unwrap(); // SIGKILL: no flush at exit.
    child.wait().unwrap();
    let kept = std::fs::read_to_string(&out).unwrap();
    let kept_lines: Vec<&str> = kept.lines().filter(|l| l.ends_with('}')).collect();
    assert!(
        kept_lines.len() >= 10 && kept_lines.len() < N,
        "{} kept",
        kept_lines.len()
    );

    // The rerun of the same file completes it, deciding nothing twice.
    let mut child = run();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    let all = std::fs::read_to_string(&out).unwrap();
    let ids: Vec<String> = all
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("complete decision lines");
            v["alert_id"].as_str().unwrap().to_string()
        })
        .collect();
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (N, N));
    // The first run's decisions are kept as they were.
    for (i, line) in kept_lines.iter().enumerate() {
        assert_eq!(all.lines().nth(i), Some(*line));
    }
    let store = db.store("check").await;
    for id in &ids {
        assert_eq!(
            store
                .steps(id)
                .await
                .unwrap()
                .iter()
                .filter(|s| s.step == "decision_maker")
                .count(),
            1,
            "{id} decided twice"
        );
    }
}

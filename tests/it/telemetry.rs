//! Traces leave the process over OTLP/HTTP and arrive as one trace per alert.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;

use crate::http_support::*;
use crate::support::*;

/// One received span.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    attrs: HashMap<String, String>,
}

/// A minimal OTLP/HTTP receiver: `POST /v1/traces` with a protobuf body.
fn start_receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = spans.clone();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            HttpServer::new(move || {
                let sink = sink.clone();
                App::new().route(
                    "/v1/traces",
                    web::post().to(move |body: web::Bytes| {
                        let sink = sink.clone();
                        async move {
                            let Ok(req) = ExportTraceServiceRequest::decode(body.as_ref()) else {
                                return HttpResponse::BadRequest().finish();
                            };
                            let mut out = sink.lock().unwrap();
                            for rs in req.resource_spans {
                                for ss in rs.scope_spans {
                                    for s in ss.spans {
                                        let attrs = s
                                            .attributes
                                            .iter()
                                            .map(|kv| {
                                                let v = match kv
                                                    .value
                                                    .as_ref()
                                                    .and_then(|v| v.value.clone())
                                                {
                                                    Some(AnyValue::StringValue(s)) => s,
                                                    Some(AnyValue::IntValue(i)) => i.to_string(),
                                                    Some(AnyValue::DoubleValue(d)) => d.to_string(),
                                                    Some(AnyValue::BoolValue(b)) => b.to_string(),
                                                    other => format!("{other:?}"),
                                                };
                                                (kv.key.clone(), v)
                                            })
                                            .collect();
                                        out.push(Span {
                                            name: s.name,
                                            trace_id: s.trace_id,
                                            span_id: s.span_id,
                                            parent: s.parent_span_id,
                                            attrs,
                                        });
                                    }
                                }
                            }
                            HttpResponse::Ok()
                                .content_type("application/x-protobuf")
                                .finish()
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
    (format!("http://{addr}"), spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_an_otlp_collector() {
    let (endpoint, spans) = start_receiver();
    let mut settings = http_settings();
    settings.otel_exporter_otlp_endpoint = Some(endpoint);
    settings.log_level = "warn".into();
    // The only test that installs the global subscriber; other tests' spans may reach the
    // receiver too, so everything below is filtered by this test's alert ids.
    let telemetry = aml_triage::telemetry::init(&settings).expect("telemetry installs");
    assert!(telemetry.exporting());
    let s = TestServer::start(settings).await;
    let ids: Vec<String> = (0..3)
        .map(|i| format!("trace-{i}-{}", fastrand::u32(..)))
        .collect();
    for id in &ids {
        let r = s
            .post("/v1/alerts?wait=true", Some(SUBMITTER), clean_alert(id))
            .await;
        assert_eq!(r.status(), 200);
    }
    s.stop().await;

    let mut roots: Vec<Span> = Vec::new();
    for _ in 0..100 {
        telemetry.flush();
        let got = spans.lock().unwrap().clone();
        roots = got
            .iter()
            .filter(|s| {
                s.name == "alert"
                    && ids.contains(&s.attrs.get("alert_id").cloned().unwrap_or_default())
            })
            .cloned()
            .collect();
        if roots.len() == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(roots.len(), ids.len(), "one alert span per alert");
    let all = spans.lock().unwrap().clone();
    let mut traces = std::collections::HashSet::new();
    for root in &roots {
        // Root of its own trace.
        assert!(
            root.parent.is_empty() || root.parent.iter().all(|b| *b == 0),
            "{root:?}"
        );
        assert!(traces.insert(root.trace_id.clone()), "one trace per alert");
        assert_eq!(
            root.attrs.get("disposition").map(String::as_str),
            Some("AUTO_CLEAR")
        );
        let steps: Vec<&Span> = all
            .iter()
            .filter(|s| s.name == "agent_step" && s.trace_id == root.trace_id)
            .collect();
        assert_eq!(steps.len(), 4, "four agent steps under {:?}", root.attrs);
        for st in &steps {
            assert_eq!(st.parent, root.span_id, "agent_step is a child of alert");
            assert_eq!(st.attrs.get("alert_id"), root.attrs.get("alert_id"));
            assert!(st.attrs.contains_key("agent") && st.attrs.contains_key("attempt"));
        }
        let llm: Vec<&Span> = all
            .iter()
            .filter(|s| s.name == "llm_call" && s.trace_id == root.trace_id)
            .collect();
        assert_eq!(
            llm.len(),
            3,
            "context builder, decision maker and the supervisor check call the model"
        );
        for c in llm {
            // The agents' calls sit under their step; the supervisor's own check under the
            // alert.
            let check = c.attrs.get("agent").map(String::as_str) == Some("supervisor_check");
            assert!(
                if check {
                    c.parent == root.span_id
                } else {
                    steps.iter().any(|st| st.span_id == c.parent)
                },
                "llm_call misplaced: {:?}",
                c.attrs
            );
            assert!(c.attrs.contains_key("model") && c.attrs.contains_key("tokens_in"));
        }
        // Nothing secret travels with the spans.
        for sp in all.iter().filter(|s| s.trace_id == root.trace_id) {
            for v in sp.attrs.values() {
                assert!(!v.contains(SUBMITTER) && !v.contains(ADMIN), "{sp:?}");
            }
        }
    }
}

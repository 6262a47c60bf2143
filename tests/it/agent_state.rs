//! Agent state that nodes read back (issue 16): provider circuits and limits, restart records,
//! in the real Redis on 127.0.0.1:6379, each test under its own key prefix.

use std::sync::Arc;
use std::time::Duration;

use aml_triage::domain::AgentKind;
use aml_triage::limits::ProviderGate;
use aml_triage::llm::registry::ProviderRegistry;
use aml_triage::llm::{LlmError, LlmRequest, LlmTask};
use aml_triage::state::limits::SharedProviderGate;
use aml_triage::state::{RedisState, StateStore, now_ms};
use aml_triage::{Engine, Settings};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

const REDIS_URL: &str = "redis://127.0.0.1:6379";

fn prefix(test: &str) -> String {
    format!("aml_triage_test:{test}:{:08x}:", fastrand::u32(..))
}

/// A node whose DecisionMaker uses the Anthropic provider at `server`, with its agent
/// state in Redis under `prefix`.
fn node(id: &str, prefix: &str, server: &MockServer) -> Settings {
    Settings {
        node_id: id.into(),
        redis_url: Some(REDIS_URL.into()),
        redis_key_prefix: prefix.into(),
        state_publish_seconds: 0.2,
        decision_maker_provider: "anthropic".into(),
        decision_maker_model: "claude-test".into(),
        anthropic_base_url: server.uri(),
        anthropic_api_key: Some(aml_triage::llm::secret::ApiKey::new("test-key-not-real")),
        llm_request_timeout_seconds: 5.0,
        llm_circuit_failures: 1,
        llm_circuit_cooldown_seconds: 600.0,
        max_retries: 0,
        restart_max: 1,
        restart_window_seconds: 600.0,
        failed_agent_cooldown_seconds: 600.0,
        ..settings()
    }
}

async fn calls(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

fn anthropic_circuit(engine: &Engine) -> &'static str {
    engine
        .providers()
        .circuits()
        .into_iter()
        .find(|(n, _)| n == "anthropic")
        .map_or("none", |(_, s)| s)
}

/// A plain Redis handle on the test's keys, to look at what the nodes keep.
fn redis(prefix: &str) -> RedisState {
    RedisState::new(REDIS_URL, prefix, Duration::from_secs(2)).unwrap()
}

/// A provider circuit opened on one node is open on the others and stays open (until its
/// cooldown) when the node starts again; so do an agent's failed mark and restart count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_state_survives_node_restart() {
    let prefix = prefix("circuit");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let a = Engine::builder(node("node-a", &prefix, &server))
        .start()
        .await
        .unwrap();
    let d = a.submit_json(&clean_alert("cs-a1")).await.unwrap();
    assert!(d.degraded, "{d:?}");
    assert_eq!(calls(&server).await, 1, "one call, then the circuit opened");
    assert_eq!(anthropic_circuit(&a), "open");
    // The open circuit is in Redis, open for the whole cooldown.
    let kept = redis(&prefix).provider_state("anthropic").await.unwrap();
    assert!(
        kept.open_until > now_ms() + 500_000,
        "open until its cooldown ends: {kept:?}"
    );

    // An agent stopped past its restart limit is marked failed; the mark is kept too.
    a.stop_agent(AgentKind::RiskScoring).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || {
            let h = &a.health()[1];
            h.restarts_total == 1
                && h.status == aml_triage::actors::supervision::AgentStatus::Running
        })
        .await,
        "{:?}",
        a.health()
    );
    a.stop_agent(AgentKind::RiskScoring).await.unwrap();
    assert!(
        eventually_async(Duration::from_secs(10), || async {
            redis(&prefix)
                .agent_record("node-a", "risk_scoring")
                .await
                .unwrap()
                .is_some_and(|r| r.failed_until.is_some() && r.restarts_total == 1)
        })
        .await,
        "the failed mark is kept in Redis: {:?}",
        a.health()
    );

    // Another node sees the circuit open and makes no call.
    let b = Engine::builder(node("node-b", &prefix, &server))
        .start()
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || anthropic_circuit(&b) == "open").await,
        "node B does not see the circuit node A opened"
    );
    let d = b.submit_json(&clean_alert("cs-b1")).await.unwrap();
    assert!(d.degraded, "{d:?}");
    assert_eq!(
        calls(&server).await,
        1,
        "node B called a provider whose circuit is open"
    );
    b.shutdown().await;

    // Node A starts again: circuit still open, agent still failed, its restart still counted.
    a.shutdown().await;
    let a = Engine::builder(node("node-a", &prefix, &server))
        .start()
        .await
        .unwrap();
    let h = a.health()[1].clone();
    assert_eq!(h.agent, AgentKind::RiskScoring);
    assert_eq!(
        (h.status, h.restarts_total),
        (aml_triage::actors::supervision::AgentStatus::Failed, 1),
        "{h:?}"
    );
    let d = a.submit_json(&clean_alert("cs-a2")).await.unwrap();
    assert!(d.degraded && d.requires_human_review, "{d:?}");
    assert_eq!(
        calls(&server).await,
        1,
        "a restarted node called an open circuit"
    );
    assert_eq!(anthropic_circuit(&a), "open");
    a.shutdown().await;
}

fn request() -> LlmRequest {
    LlmRequest {
        agent: AgentKind::DecisionMaker,
        model: "claude-test".into(),
        prompt_version: "p@1".into(),
        system: "system".into(),
        prompt: "prompt".into(),
        task: LlmTask::Check { findings: vec![] },
        max_tokens: 50,
        schema: None,
        sensitive: vec![],
        spend: Default::default(),
    }
}

/// One node's providers: the settings' registry behind a gate on its own Redis handle.
fn node_providers(settings: &Settings) -> ProviderRegistry {
    let state: Arc<dyn StateStore> = Arc::new(
        RedisState::new(
            REDIS_URL,
            &settings.redis_key_prefix,
            Duration::from_secs(2),
        )
        .unwrap(),
    );
    let gate: Arc<dyn ProviderGate> = Arc::new(SharedProviderGate::from_settings(state, settings));
    ProviderRegistry::from_settings_gated(settings, Some(gate)).unwrap()
}

fn retry_after(r: Result<aml_triage::llm::LlmResponse, LlmError>) -> Duration {
    match r {
        Err(LlmError::RateLimited {
            retry_after: Some(d),
        }) => d,
        other => panic!("expected a rate-limit refusal, got {other:?}"),
    }
}

/// A 429 seen by one node pauses the provider on every node, and the per-provider request rate
/// (`ANTHROPIC_RATE_LIMIT_RPM`) is counted across nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_rate_limit_is_shared_across_nodes() {
    // A 429 asking for 30 s.
    let limited = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .mount(&limited)
        .await;
    let p = prefix("429");
    let (a, b) = (
        node_providers(&node("node-a", &p, &limited)),
        node_providers(&node("node-b", &p, &limited)),
    );
    let first = retry_after(a.decision.complete(request()).await);
    assert_eq!(first, Duration::from_secs(30));
    assert_eq!(calls(&limited).await, 1);
    // Node B is told to wait for the rest of the pause, without calling.
    let waited = retry_after(b.decision.complete(request()).await);
    assert!(
        waited > Duration::from_secs(20) && waited <= Duration::from_secs(30),
        "{waited:?}"
    );
    assert_eq!(calls(&limited).await, 1, "node B called during the pause");
    // A node on other keys (another cluster) is not paused.
    let other = node_providers(&node("node-c", &prefix("429-other"), &limited));
    retry_after(other.decision.complete(request()).await);
    assert_eq!(calls(&limited).await, 2);

    // Two requests per minute for the whole cluster: A and B each get one, the third waits.
    let ok = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [{"type": "text", "text": "fine"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 1}})))
        .mount(&ok)
        .await;
    let p = prefix("rpm");
    let limit = |id: &str| Settings {
        anthropic_rate_limit_rpm: 2,
        ..node(id, &p, &ok)
    };
    let (a, b) = (
        node_providers(&limit("node-a")),
        node_providers(&limit("node-b")),
    );
    a.decision.complete(request()).await.unwrap();
    b.decision.complete(request()).await.unwrap();
    let waited = retry_after(a.decision.complete(request()).await);
    assert!(
        waited > Duration::from_secs(20) && waited <= Duration::from_secs(30),
        "{waited:?}"
    );
    retry_after(b.decision.complete(request()).await);
    assert_eq!(calls(&ok).await, 2, "the cluster went past its rate limit");
}

/// The Lua scripts Redis runs and the in-process rules give the same answers and records for
/// the same calls at the same times.
#[tokio::test]
async fn provider_rules_are_the_same_in_redis_and_in_process() {
    use aml_triage::limits::{CallOutcome, ProviderRules};
    use aml_triage::state::InProcessState;
    let redis: Arc<dyn StateStore> = Arc::new(redis(&prefix("parity")));
    let local: Arc<dyn StateStore> = Arc::new(InProcessState::default());
    let rules = ProviderRules {
        threshold: 2,
        cooldown: Duration::from_secs(10),
        rpm: 3,
        probe_ttl: Duration::from_secs(2),
    };
    enum Op {
        Admit,
        Record(bool, CallOutcome),
    }
    let t0 = now_ms();
    let rate_limited = CallOutcome::RateLimited {
        retry_after: Some(Duration::from_secs(4)),
    };
    let script = [
        (0, Op::Admit),
        (1, Op::Record(false, CallOutcome::Unhealthy)),
        (2, Op::Admit),
        (3, Op::Admit),
        (4, Op::Admit),
        (5, Op::Record(false, CallOutcome::Unhealthy)),
        (6, Op::Admit),
        (10_006, Op::Admit),
        (10_007, Op::Admit),
        (10_008, Op::Record(true, CallOutcome::Unhealthy)),
        (20_010, Op::Admit),
        (20_011, Op::Record(true, rate_limited)),
        (21_000, Op::Admit),
        (24_100, Op::Admit),
        (24_200, Op::Record(true, CallOutcome::Success)),
        (24_300, Op::Admit),
        (24_400, Op::Record(false, CallOutcome::Neutral)),
    ];
    for (i, (at, op)) in script.iter().enumerate() {
        let now = t0 + at;
        match op {
            Op::Admit => {
                let r = redis.provider_admit("p", now, &rules).await.unwrap();
                let l = local.provider_admit("p", now, &rules).await.unwrap();
                assert_eq!(r, l, "step {i}");
            }
            Op::Record(probe, outcome) => {
                redis
                    .provider_record("p", now, *probe, *outcome, &rules)
                    .await
                    .unwrap();
                local
                    .provider_record("p", now, *probe, *outcome, &rules)
                    .await
                    .unwrap();
            }
        }
        assert_eq!(
            redis.provider_state("p").await.unwrap(),
            local.provider_state("p").await.unwrap(),
            "step {i}"
        );
    }
}

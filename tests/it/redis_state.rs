//! Agent state, leases and caches in a real Redis. Each test has its own key prefix on the
//! shared server (127.0.0.1:6379), except the outage test, which runs a redis-server of its
//! own on a free port so it can stop it.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aml_triage::state::StateStore;
use aml_triage::{Engine, Settings};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::store_support::{Kind, TestDb};
use crate::support::*;

/// The shared Redis the tests use.
const REDIS_URL: &str = "redis://127.0.0.1:6379";

fn prefix(test: &str) -> String {
    format!("aml_triage_test:{test}:{:08x}:", fastrand::u32(..))
}

fn redis_settings(node: &str, prefix: &str) -> Settings {
    Settings {
        node_id: node.into(),
        redis_url: Some(REDIS_URL.into()),
        redis_key_prefix: prefix.into(),
        state_publish_seconds: 0.2,
        ..settings()
    }
}

/// `clean_alert` with another customer id.
fn alert_for(id: &str, customer: &str) -> String {
    clean_alert(id).replace(&format!("\"C-{id}\""), &format!("\"{customer}\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_state_is_visible_across_nodes() {
    let prefix = prefix("agents");
    let a = Engine::builder(redis_settings("node-a", &prefix))
        .start()
        .await
        .unwrap();
    let b = Engine::builder(redis_settings("node-b", &prefix))
        .start()
        .await
        .unwrap();
    for i in 0..3 {
        a.submit_json(&clean_alert(&format!("va-{i}")))
            .await
            .unwrap();
    }
    b.submit_json(&clean_alert("vb-0")).await.unwrap();

    // Node A reads node B's agents out of Redis, and the other way round.
    let sees = |engine: &Engine, other: &'static str, processed: u64| {
        let state = engine.state().clone();
        async move {
            let nodes = state.nodes().await.unwrap_or_default();
            nodes.iter().any(|n| {
                n.node_id == other
                    && n.agents.len() == 5
                    && n.agents
                        .iter()
                        .find(|a| a.agent == "data_enrichment")
                        .is_some_and(|a| a.processed == processed && a.health == "running")
            })
        }
    };
    assert!(
        eventually_async(Duration::from_secs(30), || sees(&a, "node-b", 1)).await,
        "node A does not see node B's agents"
    );
    assert!(
        eventually_async(Duration::from_secs(30), || sees(&b, "node-a", 3)).await,
        "node B does not see node A's agents"
    );

    // And so does `aml-triage status`, from a third process.
    let out = Command::new(env!("CARGO_BIN_EXE_aml-triage"))
        .env("REDIS_URL", REDIS_URL)
        .env("REDIS_KEY_PREFIX", &prefix)
        .env("LOG_LEVEL", "error")
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes: Vec<aml_triage::state::NodeState> = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = nodes.iter().map(|n| n.node_id.as_str()).collect();
    assert_eq!(ids, ["node-a", "node-b"]);
    assert!(nodes.iter().all(|n| n.state_backend == "redis"));
    let table = Command::new(env!("CARGO_BIN_EXE_aml-triage"))
        .env("REDIS_URL", REDIS_URL)
        .env("REDIS_KEY_PREFIX", &prefix)
        .env("LOG_LEVEL", "error")
        .arg("status")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("node node-b") && table.contains("decision_maker"),
        "{table}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hit_skips_external_call() {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/customers/CUST-42/history"))
        .and(header("X-API-Key", "customer-data-key-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "customer_id": "CUST-42",
            "past_alerts": [
                {"alert_id": "OLD-1", "raised_at": "2025-06-01T00:00:00Z",
                 "alert_type": "TRANSACTION", "disposition": "ESCALATE_L2"},
                {"alert_id": "OLD-2", "disposition": "AUTO_CLEAR"}
            ],
            "account_profile": {"kyc_risk_rating": "MEDIUM", "segment": "retail"}
        })))
        .mount(&api)
        .await;
    let settings = Settings {
        external_data_api_url: Some(api.uri()),
        external_data_api_key: Some(aml_triage::llm::secret::ApiKey::new(
            "customer-data-key-123",
        )),
        ..redis_settings("cache-node", &prefix("cache"))
    };
    let engine = Engine::builder(settings).start().await.unwrap();
    for i in 0..3 {
        engine
            .submit_json(&alert_for(&format!("ch-{i}"), "CUST-42"))
            .await
            .unwrap();
    }
    // One call to the API; the other two alerts were served from Redis.
    let calls = api.received_requests().await.unwrap();
    assert_eq!(calls.len(), 1, "external API called {} times", calls.len());
    assert_eq!(engine.metrics().cache_counts("historical"), (2, 1));
    // The cached history is the API's, as the facts show.
    let steps = engine.store().steps("ch-2").await.unwrap();
    let enrichment = steps.iter().find(|s| s.step == "data_enrichment").unwrap();
    let history = &enrichment.output["history"];
    assert_eq!(history["source"], "external");
    assert_eq!(history["prior_alerts"], 2);
    assert_eq!(history["prior_escalations"], 1);
    assert_eq!(history["account_profile"]["segment"], "retail");
    engine.shutdown().await;
}

/// A batch of `n` alerts (the sample file, renumbered).
fn batch(n: usize, tag: &str) -> String {
    let sample = include_str!("../../examples/alerts.sample.jsonl");
    let lines: Vec<&str> = sample.lines().collect();
    let mut out = String::new();
    for i in 0..n {
        let mut v: serde_json::Value = serde_json::from_str(lines[i % lines.len()]).unwrap();
        v["alert_id"] = format!("{tag}-{i:04}").into();
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

/// Kills the child on drop so a failing test leaves no process behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_is_taken_over() {
    const N: usize = 300;
    let db = TestDb::new(Kind::Postgres).await;
    let prefix = prefix("lease");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("batch.jsonl");
    std::fs::File::create(&input)
        .unwrap()
        .write_all(batch(N, "lease").as_bytes())
        .unwrap();
    let node = |name: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_aml-triage"));
        c.current_dir(dir.path())
            .env("DATABASE_URL", &db.url)
            .env("REDIS_URL", REDIS_URL)
            .env("REDIS_KEY_PREFIX", &prefix)
            .env("NODE_ID", name)
            .env("LOG_LEVEL", "error")
            .env("LEASE_TTL_SECONDS", "2")
            .env("LEASE_HEARTBEAT_SECONDS", "0.4")
            .env("MAX_CONCURRENT_ALERTS", "16")
            .env("PROMETHEUS_PORT", "0")
            // Each model call takes a while, so the kill lands with alerts mid-pipeline.
            .env("OFFLINE_LATENCY_MS", "100")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let mut a = Killed(
        node("node-a")
            .args(["triage", input.to_str().unwrap(), "--out", "a.jsonl"])
            .spawn()
            .unwrap(),
    );
    // Kill once some alerts are decided and some are between steps (journalled, undecided).
    let mid_pipeline = "SELECT COUNT(DISTINCT s.alert_id) FROM step_journal s \
             LEFT JOIN decisions d ON d.alert_id = s.alert_id WHERE d.alert_id IS NULL";
    let start = Instant::now();
    while db
        .try_scalar("SELECT COUNT(*) FROM decisions")
        .await
        .unwrap_or(0)
        < 20
        || db.try_scalar(mid_pipeline).await.unwrap_or(0) == 0
    {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "node A made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.0.kill().unwrap(); // SIGKILL: its leases are left to expire.
    a.0.wait().unwrap();
    let decided_by_a = db.scalar("SELECT COUNT(*) FROM decisions").await;
    assert!(decided_by_a < N as i64, "the kill came too late");
    let cut_off = db.scalar(mid_pipeline).await;
    assert!(cut_off > 0, "no alert was caught mid-pipeline");
    let admitted = db.scalar("SELECT COUNT(*) FROM alerts").await;

    // Node B only serves: it never sees the batch, so every alert it finishes it took over.
    let _b = Killed(
        node("node-b")
            .args(["serve", "--bind", "127.0.0.1:0"])
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while db.scalar("SELECT COUNT(*) FROM decisions").await < admitted {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "node B did not finish node A's alerts"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Exactly one decision per alert.
    assert_eq!(
        db.scalar("SELECT COUNT(DISTINCT alert_id) FROM decisions")
            .await,
        admitted
    );
    // The takeover is on the record: node B's audit chain decided alerts that node A's chain
    // received, and their journalled steps were reused, not repeated.
    let taken_over = db
        .scalar(
            "SELECT COUNT(*) FROM audit_entries r JOIN audit_entries d ON d.alert_id = r.alert_id \
             WHERE r.action = 'alert_received' AND r.chain_id = 'node-a' \
               AND d.action = 'decision' AND d.chain_id = 'node-b'",
        )
        .await;
    assert_eq!(taken_over, admitted - decided_by_a);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM (SELECT alert_id, step FROM step_journal GROUP BY alert_id, step HAVING COUNT(*) > 1) t").await,
        0
    );
    let resumed = db
        .scalar("SELECT COUNT(*) FROM decisions WHERE decision LIKE '%\"resumed\":true%'")
        .await;
    assert!(
        resumed > 0,
        "no step of a taken-over alert came from the journal"
    );
}

/// A redis-server of the test's own, on a free port.
struct OwnRedis {
    child: Option<Child>,
}

impl OwnRedis {
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn start(port: u16) -> OwnRedis {
        Self::start_with(port, &[])
    }

    fn start_with(port: u16, extra: &[&str]) -> OwnRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis { child: Some(child) }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_loses_nothing() {
    const N: usize = 300;
    let port = OwnRedis::free_port();
    let mut redis = OwnRedis::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let settings = Settings {
        node_id: "outage-node".into(),
        redis_url: Some(url.clone()),
        redis_timeout_ms: 300,
        state_publish_seconds: 0.2,
        offline_latency_ms: 20,
        max_concurrent_alerts: 8,
        admission_wait_seconds: 300.0,
        ..settings()
    };
    let engine = Arc::new(Engine::builder(settings.clone()).start().await.unwrap());
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..N {
        let (e, done) = (engine.clone(), done.clone());
        // Every tenth customer repeats, so the caches are in use when Redis goes.
        let alert = alert_for(&format!("out-{i:04}"), &format!("C-{}", i % 10));
        tasks.push(tokio::spawn(async move {
            let r = e.submit_json(&alert).await;
            done.fetch_add(1, Ordering::SeqCst);
            r
        }));
    }
    assert!(
        eventually(Duration::from_secs(120), || done.load(Ordering::SeqCst)
            >= N / 5)
        .await
    );
    redis.stop(); // Mid-batch.
    let outage_seen = eventually_async(Duration::from_secs(30), || {
        let state = engine.state().clone();
        async move { state.describe().contains("redis down") }
    })
    .await;
    assert!(outage_seen, "the engine did not notice Redis going");
    assert!(
        done.load(Ordering::SeqCst) < N,
        "the batch ended before the outage"
    );
    let during = done.load(Ordering::SeqCst);
    // Alerts keep being decided while Redis is down.
    assert!(
        eventually(Duration::from_secs(120), || done.load(Ordering::SeqCst)
            > during + 10)
        .await,
        "no progress while Redis was down"
    );
    let _redis = OwnRedis::start(port);
    let mut decided = std::collections::HashSet::new();
    for t in tasks {
        let d = t.await.unwrap().expect("every alert is decided");
        assert!(
            decided.insert(d.alert_id.clone()),
            "two decisions for {}",
            d.alert_id
        );
    }
    assert_eq!(decided.len(), N);
    for id in &decided {
        assert!(
            engine.store().decision(id).await.unwrap().is_some(),
            "{id} not stored"
        );
    }
    // Back on Redis by itself: the node's state is published to the new (empty) server.
    let fresh =
        aml_triage::state::open_redis(&settings, &url, &tokio::runtime::Handle::current()).unwrap();
    let republished = eventually_async(Duration::from_secs(30), || {
        let fresh = fresh.clone();
        async move {
            fresh.nodes().await.is_ok_and(|nodes| {
                nodes
                    .iter()
                    .any(|n| n.node_id == "outage-node" && n.state_backend == "redis")
            })
        }
    })
    .await;
    assert!(
        republished,
        "state not republished to Redis after it came back"
    );
    assert_eq!(engine.state().describe(), "redis");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_left_by_an_earlier_run_are_taken_back() {
    use aml_triage::state::lease::Leases;
    let settings = redis_settings("n1", &prefix("relaunch"));
    let redis: Arc<dyn StateStore> = Arc::new(
        aml_triage::state::open_redis(&settings, REDIS_URL, &tokio::runtime::Handle::current())
            .unwrap(),
    );
    let ttl = Duration::from_secs(60);
    let leases = |node: &str| {
        Leases::new(
            redis.clone(),
            node,
            ttl,
            Duration::from_secs(1),
            aml_triage::metrics::Metrics::new(),
        )
    };
    // n1's earlier process took the lease and died without releasing it.
    assert!(leases("n1").try_acquire("A-1").await);
    // Another node must wait for it to expire; n1's new process takes it back at once.
    assert!(!leases("n2").try_acquire("A-1").await);
    let relaunched = leases("n1");
    assert!(relaunched.try_acquire("A-1").await);
    relaunched.release("A-1").await;
    assert_eq!(redis.lease_holder("A-1").await.unwrap(), None);
    assert!(leases("n2").try_acquire("A-1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_reports_redis_down_while_alerts_are_still_decided() {
    use crate::http_support::{SUBMITTER, TestServer, http_settings};
    // A port nobody listens on: Redis is down from the start.
    let port = OwnRedis::free_port();
    let mut settings = http_settings();
    settings.redis_url = Some(format!("redis://:s3cret-pw@127.0.0.1:{port}"));
    settings.redis_timeout_ms = 200;
    let s = TestServer::start(settings).await;
    let r = s
        .post("/v1/alerts?wait=true", Some(SUBMITTER), clean_alert("rd-1"))
        .await;
    assert_eq!(r.status(), 200, "decided without Redis");
    let r = s.get("/ready", None).await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["failing"], serde_json::json!(["redis"]), "{body}");
    assert!(!body.to_string().contains("s3cret-pw"), "{body}");

    // Redis comes up on that port: the node reconnects by itself and is ready again.
    let _redis = OwnRedis::start_with(port, &["--requirepass", "s3cret-pw"]);
    let mut back = false;
    for _ in 0..100 {
        if s.get("/ready", None).await.status() == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "ready again once Redis is up");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_data_api_failure_falls_back_to_store_history_without_leaking_the_key() {
    let api = MockServer::start().await;
    // First customer: one 503 with Retry-After, then an answer (the retry is honoured).
    Mock::given(method("GET"))
        .and(path("/customers/RETRY-1/history"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/customers/RETRY-1/history"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"past_alerts": [{"alert_id": "X"}]})),
        )
        .mount(&api)
        .await;
    // Second customer: always failing, with the key echoed in the body.
    Mock::given(method("GET"))
        .and(path("/customers/DOWN-1/history"))
        .respond_with(ResponseTemplate::new(500).set_body_string("bad key customer-data-key-123"))
        .mount(&api)
        .await;
    let settings = Settings {
        external_data_api_url: Some(api.uri()),
        external_data_api_key: Some(aml_triage::llm::secret::ApiKey::new(
            "customer-data-key-123",
        )),
        external_data_max_retries: 2,
        cache_ttl: 0,
        ..settings()
    };
    let engine = Engine::builder(settings).start().await.unwrap();
    engine
        .submit_json(&alert_for("cd-1", "RETRY-1"))
        .await
        .unwrap();
    let down = engine
        .submit_json(&alert_for("cd-2", "DOWN-1"))
        .await
        .unwrap();
    // History is context for the analyst, not a score or policy input, so the fallback
    // leaves the disposition as it would be; the gap is on the record.
    assert!(down.degradation_reasons.is_empty(), "{down:?}");
    let facts = |id: &'static str| {
        let store = engine.store().clone();
        async move {
            store
                .steps(id)
                .await
                .unwrap()
                .into_iter()
                .find(|s| s.step == "data_enrichment")
                .unwrap()
                .output
        }
    };
    let retried = facts("cd-1").await;
    assert_eq!(retried["history"]["source"], "external");
    assert_eq!(retried["history"]["prior_alerts"], 1);
    let fell_back = facts("cd-2").await;
    assert_eq!(fell_back["history"]["source"], "store");
    let gaps = fell_back["gaps"].to_string();
    assert!(gaps.contains("customer-data API unavailable"), "{gaps}");
    assert!(!gaps.contains("customer-data-key-123"), "{gaps}");
    // 2 calls for the first customer, 1 + 2 retries for the second.
    let calls = api.received_requests().await.unwrap();
    assert_eq!(calls.len(), 5);
    engine.shutdown().await;
}

/// Guarantee 6 lists "Redis down" among the failure paths that never yield AUTO_CLEAR: an
/// alert processed while Redis is unreachable is decided, marked degraded and escalated; once
/// Redis is back, the same kind of alert clears again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_never_auto_clears() {
    let port = OwnRedis::free_port();
    let mut redis = OwnRedis::start(port);
    let settings = Settings {
        node_id: "redis-down-node".into(),
        redis_url: Some(format!("redis://127.0.0.1:{port}")),
        redis_timeout_ms: 300,
        state_publish_seconds: 0.2,
        ..settings()
    };
    let engine = Engine::builder(settings).start().await.unwrap();
    let before = engine.submit_json(&clean_alert("rd-before")).await.unwrap();
    assert_eq!(
        before.disposition,
        aml_triage::Disposition::AutoClear,
        "control: a clean alert clears while Redis is up"
    );
    redis.stop();
    let state = engine.state().clone();
    let down = eventually_async(Duration::from_secs(30), || {
        let s = state.clone();
        async move { s.unreachable() }
    })
    .await;
    assert!(down, "the engine did not notice Redis going");
    let during = engine.submit_json(&clean_alert("rd-during")).await.unwrap();
    assert_ne!(during.disposition, aml_triage::Disposition::AutoClear);
    assert!(during.degraded && during.requires_human_review);
    assert!(
        during
            .degradation_reasons
            .iter()
            .any(|r| r.contains("Redis")),
        "the decision must say why: {:?}",
        during.degradation_reasons
    );
    let _redis = OwnRedis::start(port);
    let up = eventually_async(Duration::from_secs(30), || {
        let s = state.clone();
        async move { !s.unreachable() }
    })
    .await;
    assert!(up, "the engine did not reconnect to Redis");
    let after = engine.submit_json(&clean_alert("rd-after")).await.unwrap();
    assert_eq!(after.disposition, aml_triage::Disposition::AutoClear);
    engine.shutdown().await;
}

/// Redis goes away while an alert is between its last Redis call and its decision, and no
/// other call notices before the decision is taken (heartbeats and state publishing are
/// slow here). The decision must not be an `AUTO_CLEAR` resting on shared state last seen
/// before the loss: the engine confirms Redis answers before it clears, so the alert is
/// escalated, degraded, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_auto_clear_on_state_after_redis_loss() {
    let port = OwnRedis::free_port();
    let mut redis = OwnRedis::start(port);
    let settings = Settings {
        node_id: "redis-loss-node".into(),
        redis_url: Some(format!("redis://127.0.0.1:{port}")),
        redis_timeout_ms: 300,
        // Nothing else talks to Redis while the alert is in its last steps.
        state_publish_seconds: 60.0,
        lease_heartbeat_seconds: 60.0,
        lease_ttl_seconds: 600.0,
        ..settings()
    };
    // The context builder holds the alert after every Redis read of the pipeline.
    let script = Scripted::new(
        aml_triage::domain::AgentKind::ContextBuilder,
        vec![
            Behaviour::Answer,
            Behaviour::Sleep(Duration::from_millis(1500)),
            Behaviour::Answer,
        ],
    );
    let engine = Arc::new(
        Engine::builder(settings)
            .provider(Arc::new(ScriptedProvider(script.clone())))
            .start()
            .await
            .unwrap(),
    );
    let before = engine.submit_json(&clean_alert("rl-before")).await.unwrap();
    assert_eq!(
        before.disposition,
        aml_triage::Disposition::AutoClear,
        "control: a clean alert clears while Redis is up"
    );
    let e = engine.clone();
    let task = tokio::spawn(async move { e.submit_json(&clean_alert("rl-during")).await });
    assert!(
        eventually(Duration::from_secs(10), || script
            .in_progress
            .load(Ordering::SeqCst)
            == 1)
        .await
    );
    redis.stop();
    assert!(
        !engine.state().unreachable(),
        "the node noticed the loss by itself: the test needs it unnoticed"
    );
    let during = task.await.unwrap().unwrap();
    assert_ne!(
        during.disposition,
        aml_triage::Disposition::AutoClear,
        "cleared on shared state last confirmed before Redis went away"
    );
    assert!(during.degraded && during.requires_human_review);
    assert!(
        during
            .degradation_reasons
            .iter()
            .any(|r| r.contains("Redis")),
        "{:?}",
        during.degradation_reasons
    );
    engine.shutdown().await;
}

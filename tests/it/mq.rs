//! Distribution over RabbitMQ (the real broker on 127.0.0.1:5672, one vhost per test): the
//! bridge, competing nodes, dead letters, remote agents, broker connection loss.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aml_triage::bridge::Bridge;
use aml_triage::domain::AgentKind;
use aml_triage::mq::AmqpUrl;
use aml_triage::worker::Worker;
use aml_triage::{Disposition, Engine, Settings};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};

use crate::mq_support::*;
use crate::store_support::{Kind, TestDb};
use crate::support::{clean_alert, eventually, eventually_async, settings};

const ALERTS: &str = "aml.alerts";
const DECISIONS: &str = "aml.decisions";
const DEAD: &str = "aml.alerts.dead";
/// The tests' own durable queue bound to every decision.
const SINK: &str = "test.decisions";

fn node_settings(db: &TestDb, vhost: &TestVhost, node: &str) -> Settings {
    Settings {
        database_url: db.url.clone(),
        node_id: node.into(),
        amqp_url: Some(AmqpUrl::new(&vhost.url)),
        ..settings()
    }
}

/// An `aml-triage serve` process; SIGKILLed on drop if still running.
struct Node {
    child: Child,
    name: String,
    log: std::path::PathBuf,
}

impl Node {
    fn spawn(db: &TestDb, vhost: &TestVhost, name: &str, dir: &Path, env: &[(&str, &str)]) -> Node {
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aml-triage"));
        cmd.current_dir(dir)
            .env("DATABASE_URL", &db.url)
            .env("NODE_ID", name)
            .env("AMQP_URL", &vhost.url)
            .env("LOG_LEVEL", "warn")
            .env("HTTP_BIND", "127.0.0.1:0")
            .env("PROMETHEUS_PORT", "0")
            .env("MAX_CONCURRENT_ALERTS", "32");
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Competing nodes on one database: takeover is by RabbitMQ redelivery, not by a
        // start-up scan that could grab a live node's alerts.
        let child = cmd
            .args(["serve", "--no-resume"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Node {
            child,
            name: name.into(),
            log,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL: no drain, no ack, no flush.
        let _ = self.child.wait();
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {} ---\n{}",
            self.name,
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two engine processes consume one queue; 1,000 alerts; every alert is decided and published
/// exactly once, both nodes took part, and the queue is drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_alert_gets_one_decision_across_competing_nodes() {
    const N: usize = 1000;
    let vhost = TestVhost::new();
    let db = TestDb::new(Kind::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let conn = connect(&vhost.url).await;
    let ch = confirmed_channel(&conn).await;
    decision_sink(&ch, DECISIONS, SINK).await;
    let nodes = [
        Node::spawn(&db, &vhost, "compete-a", dir.path(), &[]),
        Node::spawn(&db, &vhost, "compete-b", dir.path(), &[]),
    ];
    declare_queue(&ch, ALERTS).await;
    wait_for_consumers(&ch, ALERTS, 2, Duration::from_secs(120)).await;

    let bodies = alerts("compete", N);
    publish_all(&ch, ALERTS, &bodies).await;
    let counts = collect_decisions(&ch, SINK, &ids(&bodies), Duration::from_secs(900)).await;
    let logs = || {
        nodes
            .iter()
            .map(Node::log_tail)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(counts.len(), N, "decisions missing\n{}", logs());
    // Nothing failed, so nothing was redelivered: one published decision per alert.
    assert!(counts.values().all(|&c| c == 1), "{counts:?}");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM decisions").await, N as i64);
    assert_eq!(
        db.scalar("SELECT COUNT(DISTINCT alert_id) FROM decisions")
            .await,
        N as i64
    );
    // Both nodes decided some (each writes the decision audit entry in its own chain).
    let chains = db
        .texts("SELECT DISTINCT chain_id FROM audit_entries WHERE action = 'decision' ORDER BY chain_id")
        .await;
    assert_eq!(chains, vec!["compete-a", "compete-b"], "{}", logs());
    assert!(
        eventually_async(Duration::from_secs(30), || async {
            queue_counts(&ch, ALERTS).await.0 == 0
        })
        .await
    );
    drop(nodes);
}

/// One of two nodes is SIGKILLed with alerts in hand; the broker redelivers them to the
/// other, which finishes each from the journal: every alert ends with exactly one stored
/// decision, and each is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_mid_batch_loses_nothing() {
    const N: usize = 300;
    let vhost = TestVhost::new();
    let db = TestDb::new(Kind::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let conn = connect(&vhost.url).await;
    let ch = confirmed_channel(&conn).await;
    decision_sink(&ch, DECISIONS, SINK).await;
    // Each model call takes a while, so the kill lands with alerts mid-pipeline.
    let slow = [
        ("OFFLINE_LATENCY_MS", "40"),
        ("MAX_CONCURRENT_ALERTS", "16"),
    ];
    let mut victim = Node::spawn(&db, &vhost, "kill-a", dir.path(), &slow);
    let survivor = Node::spawn(&db, &vhost, "kill-b", dir.path(), &slow);
    declare_queue(&ch, ALERTS).await;
    wait_for_consumers(&ch, ALERTS, 2, Duration::from_secs(120)).await;

    let bodies = alerts("kill", N);
    publish_all(&ch, ALERTS, &bodies).await;
    let start = Instant::now();
    loop {
        let by_victim = db
            .try_scalar("SELECT COUNT(*) FROM audit_entries WHERE chain_id = 'kill-a' AND action = 'decision'")
            .await
            .unwrap_or(0);
        // Kill only with alerts in the victim's hands (stored, undecided), so the kill can
        // never miss them, however loaded the machine is.
        let in_hand = db
            .try_scalar(
                "SELECT COUNT(*) FROM audit_entries a WHERE a.chain_id = 'kill-a' \
                 AND a.action = 'alert_received' AND NOT EXISTS \
                 (SELECT 1 FROM decisions d WHERE d.alert_id = a.alert_id)",
            )
            .await
            .unwrap_or(0);
        if by_victim >= 20 && in_hand > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the victim made no progress\n{}",
            victim.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.kill();
    let decided_at_kill = db.scalar("SELECT COUNT(*) FROM decisions").await;
    assert!(
        decided_at_kill < N as i64,
        "the kill came too late to test anything"
    );
    // Alerts the victim had stored but not decided: they can only be finished by takeover.
    let orphaned = db
        .scalar(
            "SELECT COUNT(*) FROM audit_entries a WHERE a.chain_id = 'kill-a' \
             AND a.action = 'alert_received' AND NOT EXISTS \
             (SELECT 1 FROM decisions d WHERE d.alert_id = a.alert_id)",
        )
        .await;
    assert!(orphaned > 0, "no alert was caught in the victim's hands");

    let counts = collect_decisions(&ch, SINK, &ids(&bodies), Duration::from_secs(600)).await;
    assert_eq!(
        counts.len(),
        N,
        "decisions missing\n{}",
        survivor.log_tail()
    );
    assert_eq!(db.scalar("SELECT COUNT(*) FROM decisions").await, N as i64);
    assert_eq!(
        db.scalar("SELECT COUNT(DISTINCT alert_id) FROM decisions")
            .await,
        N as i64
    );
    // Every orphan was finished by the survivor.
    assert_eq!(
        db.scalar(
            "SELECT COUNT(*) FROM audit_entries a WHERE a.chain_id = 'kill-a' \
             AND a.action = 'alert_received' AND NOT EXISTS \
             (SELECT 1 FROM decisions d WHERE d.alert_id = a.alert_id)",
        )
        .await,
        0
    );
    assert!(
        eventually_async(Duration::from_secs(30), || async {
            queue_counts(&ch, ALERTS).await == (0, 1)
        })
        .await
    );
    drop(survivor);
}

/// Invalid JSON, a schema error and a conflicting resubmission go to the dead-letter queue
/// with the reason (naming the field) in a header, are recorded in the audit trail and
/// counted, and do not hold up the valid alert behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_goes_to_dead_letter() {
    let vhost = TestVhost::new();
    let db = TestDb::new(Kind::Postgres).await;
    let engine = Arc::new(
        Engine::builder(node_settings(&db, &vhost, "poison-node"))
            .start()
            .await
            .unwrap(),
    );
    let bridge = Bridge::start(engine.clone()).unwrap();
    let conn = connect(&vhost.url).await;
    let ch = confirmed_channel(&conn).await;
    decision_sink(&ch, DECISIONS, SINK).await;
    declare_queue(&ch, ALERTS).await;
    wait_for_consumers(&ch, ALERTS, 1, Duration::from_secs(60)).await;

    let first = clean_alert("poison-1");
    publish_all(&ch, ALERTS, std::slice::from_ref(&first)).await;
    collect_decisions(&ch, SINK, &["poison-1".into()], Duration::from_secs(60)).await;

    let not_json = "this is {not JSON".to_string();
    let bad_type = clean_alert("poison-2").replace("KYC_ONGOING", "NOT_A_TYPE");
    let conflict = first.replace("Jane Roe", "John Roe");
    let after = clean_alert("poison-3");
    publish_all(
        &ch,
        ALERTS,
        &[not_json.clone(), bad_type.clone(), conflict.clone(), after],
    )
    .await;
    // The queue is not blocked: the valid alert behind the poison is decided.
    let decided = collect_decisions(&ch, SINK, &["poison-3".into()], Duration::from_secs(60)).await;
    assert_eq!(decided.get("poison-3"), Some(&1));

    let dead = collect(&ch, DEAD, Duration::from_secs(30), |got| got.len() >= 3).await;
    assert_eq!(dead.len(), 3);
    let find = |body: &str| {
        dead.iter()
            .find(|r| r.body == body.as_bytes())
            .unwrap_or_else(|| panic!("not dead-lettered: {body}"))
    };
    let r = find(&not_json);
    assert_eq!(r.headers["x-aml-reason-kind"], "invalid_alert");
    assert!(
        r.headers["x-aml-reason"].starts_with("$:"),
        "{:?}",
        r.headers
    );
    let r = find(&bad_type);
    assert_eq!(r.headers["x-aml-reason-kind"], "invalid_alert");
    assert!(
        r.headers["x-aml-reason"].starts_with("alert_type:"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.headers["x-aml-alert-id"], "poison-2");
    let r = find(&conflict);
    assert_eq!(r.headers["x-aml-reason-kind"], "conflict");
    assert!(r.headers["x-aml-reason"].starts_with("alert_id:"));
    assert_eq!(r.headers["x-aml-source-queue"], ALERTS);

    // Recorded: an audit entry each, a metric, and the first version of the alert kept.
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_entries WHERE action = 'message_dead_lettered'")
            .await,
        3
    );
    let metrics = engine.metrics_text();
    assert!(
        metrics.contains(
            "aml_triage_mq_messages_total{outcome=\"dead_lettered\",reason=\"invalid_alert\"} 2"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "aml_triage_mq_messages_total{outcome=\"dead_lettered\",reason=\"conflict\"} 1"
        )
    );
    let raw = db
        .text("SELECT raw_json FROM alerts WHERE alert_id = 'poison-1'")
        .await
        .unwrap();
    assert!(raw.contains("Jane Roe"));
    assert_eq!(queue_counts(&ch, ALERTS).await.0, 0);
    bridge.stop().await;
    engine.shutdown().await;
}

/// The risk agent runs on a worker. The first worker to get the step never answers (hung or
/// lost); the step times out under its own timeout and the retry reaches a live worker: the
/// decision is not degraded and records the second attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_agent_timeout_is_retried() {
    let vhost = TestVhost::new();
    let db = TestDb::new(Kind::Postgres).await;
    let node = Settings {
        remote_agents: "risk".into(),
        // Generous: the live worker must start within one attempt on a loaded machine.
        risk_scoring_timeout_seconds: Some(5.0),
        max_retries: 3,
        ..node_settings(&db, &vhost, "remote-node")
    };
    let engine = Arc::new(Engine::builder(node).start().await.unwrap());

    // A worker that takes the first request and never answers nor acknowledges it.
    let conn = connect(&vhost.url).await;
    let hung = conn.create_channel().await.unwrap();
    declare_queue(&hung, "aml.agent.risk").await;
    hung.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut hung_requests = hung
        .basic_consume(
            ShortString::from("aml.agent.risk"),
            ShortString::from("hung-worker"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let e = engine.clone();
    let task = tokio::spawn(async move { e.submit_json(&clean_alert("remote-1")).await });
    let held = tokio::time::timeout(Duration::from_secs(60), hung_requests.next())
        .await
        .expect("the risk step was never sent")
        .unwrap()
        .unwrap();
    assert!(held.properties.correlation_id().is_some());
    assert!(held.properties.reply_to().is_some());
    assert!(
        held.properties.expiration().is_some(),
        "requests must expire"
    );

    // A live worker joins; the hung one still holds its (unacknowledged) request.
    let worker_settings = Settings {
        remote_agents: String::new(),
        ..node_settings(&db, &vhost, "remote-node:worker")
    };
    let worker_engine = Arc::new(
        Engine::builder(worker_settings)
            .resume_unfinished(false)
            .start()
            .await
            .unwrap(),
    );
    let worker = Worker::start(worker_engine.clone(), vec![AgentKind::RiskScoring]).unwrap();

    let decision = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("no decision")
        .unwrap()
        .unwrap();
    let risk = decision
        .agents
        .iter()
        .find(|c| c.agent == AgentKind::RiskScoring)
        .unwrap();
    assert!(!risk.degraded, "{risk:?}");
    assert!(risk.attempts >= 2, "{risk:?}");
    assert!(!decision.degraded);
    assert!(
        engine.metrics_text().contains(
            "aml_triage_agent_step_errors_total{agent=\"risk_scoring\",kind=\"timeout\"}"
        )
    );
    assert!(
        worker_engine
            .metrics_text()
            .contains("aml_triage_mq_messages_total{outcome=\"reply\",reason=\"risk_scoring\"}")
    );
    drop(held);
    let _ = conn.close(200, ShortString::from("done")).await;
    worker.stop().await;
    worker_engine.shutdown().await;
    engine.shutdown().await;
}

/// A remote agent with no live worker at all is a failed step like a crashed local agent:
/// retried, then the deterministic fail-safe, which never auto-clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_remote_agent_takes_the_fail_safe() {
    let vhost = TestVhost::new();
    let db = TestDb::new(Kind::Postgres).await;
    let node = Settings {
        remote_agents: "decision".into(),
        decision_maker_timeout_seconds: Some(1.0),
        max_retries: 1,
        ..node_settings(&db, &vhost, "lost-node")
    };
    let engine = Engine::builder(node).start().await.unwrap();
    // The same alert auto-clears when every agent answers.
    let decision = engine.submit_json(&clean_alert("lost-1")).await.unwrap();
    assert_ne!(decision.disposition, Disposition::AutoClear);
    assert!(decision.degraded && decision.requires_human_review);
    let step = decision
        .agents
        .iter()
        .find(|c| c.agent == AgentKind::DecisionMaker)
        .unwrap();
    assert!(step.degraded && step.attempts == 2, "{step:?}");
    engine.shutdown().await;
}

/// The broker drops every connection of the node (`rabbitmqctl close_all_connections` on the
/// test's vhost of the shared broker); alerts in flight at that moment and those published
/// after are all decided once, and the bridge is consuming again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_connection_loss_is_survived() {
    const N: usize = 40;
    let vhost = TestVhost::new();
    let db = TestDb::new(Kind::Postgres).await;
    let node = Settings {
        offline_latency_ms: 50,
        max_concurrent_alerts: 8,
        ..node_settings(&db, &vhost, "restart-node")
    };
    let engine = Arc::new(Engine::builder(node).start().await.unwrap());
    let bridge = Bridge::start(engine.clone()).unwrap();
    {
        let conn = connect(&vhost.url).await;
        let ch = confirmed_channel(&conn).await;
        decision_sink(&ch, DECISIONS, SINK).await;
        declare_queue(&ch, ALERTS).await;
        wait_for_consumers(&ch, ALERTS, 1, Duration::from_secs(60)).await;
        publish_all(&ch, ALERTS, &alerts("restart-a", N)).await;
    }
    assert!(
        eventually_async(Duration::from_secs(120), || async {
            db.try_scalar("SELECT COUNT(*) FROM decisions")
                .await
                .unwrap_or(0)
                >= 5
        })
        .await
    );
    vhost.close_all_connections();
    // Noticed: the link went down, or the bridge actor was already restarted on a new one.
    assert!(
        eventually(Duration::from_secs(10), || !bridge.is_connected()
            || bridge.state().restarts >= 1)
        .await,
        "the bridge did not notice the lost connection"
    );
    assert!(
        eventually(Duration::from_secs(60), || bridge.is_connected()).await,
        "the bridge did not reconnect"
    );
    let conn = connect(&vhost.url).await;
    let ch = confirmed_channel(&conn).await;
    let later = alerts("restart-b", N);
    publish_all(&ch, ALERTS, &later).await;
    let mut all = ids(&alerts("restart-a", N));
    all.extend(ids(&later));
    let counts = collect_decisions(&ch, SINK, &all, Duration::from_secs(300)).await;
    assert_eq!(counts.len(), 2 * N);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM decisions").await,
        2 * N as i64
    );
    assert!(
        eventually_async(Duration::from_secs(30), || async {
            queue_counts(&ch, ALERTS).await == (0, 1)
        })
        .await
    );
    assert!(engine.broker_links().iter().all(|(_, up)| *up));
    bridge.stop().await;
    engine.shutdown().await;
}

/// The broker restarts (a RabbitMQ node of the test's own, its application stopped for two
/// seconds then started: listener closed, every connection dropped, queues recovered from
/// disk) while alerts are in flight. The bridge reconnects with backoff; every alert, in
/// flight or published after, is decided exactly once and published; nothing is left queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_is_survived() {
    const N: usize = 40;
    let broker = PrivateBroker::start().await;
    let db = TestDb::new(Kind::Postgres).await;
    let node = Settings {
        database_url: db.url.clone(),
        node_id: "restart-node".into(),
        amqp_url: Some(AmqpUrl::new(broker.url())),
        offline_latency_ms: 50,
        max_concurrent_alerts: 8,
        ..settings()
    };
    let engine = Arc::new(Engine::builder(node).start().await.unwrap());
    let bridge = Bridge::start(engine.clone()).unwrap();
    let first = alerts("restart-a", N);
    {
        let conn = connect(&broker.url()).await;
        let ch = confirmed_channel(&conn).await;
        decision_sink(&ch, DECISIONS, SINK).await;
        declare_queue(&ch, ALERTS).await;
        wait_for_consumers(&ch, ALERTS, 1, Duration::from_secs(60)).await;
        publish_all(&ch, ALERTS, &first).await;
    }
    assert!(
        eventually_async(Duration::from_secs(120), || async {
            db.try_scalar("SELECT COUNT(*) FROM decisions")
                .await
                .unwrap_or(0)
                >= 5
        })
        .await
    );
    let decided_before = db.scalar("SELECT COUNT(*) FROM decisions").await;
    broker.restart(Duration::from_secs(2)).await;
    assert!(
        decided_before < N as i64,
        "the restart came too late to catch alerts in flight"
    );
    assert!(
        eventually(Duration::from_secs(90), || bridge.is_connected()).await,
        "the bridge did not reconnect"
    );
    let conn = connect(&broker.url()).await;
    let ch = confirmed_channel(&conn).await;
    let later = alerts("restart-b", N);
    publish_all(&ch, ALERTS, &later).await;
    let mut all = ids(&first);
    all.extend(ids(&later));
    let counts = collect_decisions(&ch, SINK, &all, Duration::from_secs(300)).await;
    assert_eq!(counts.len(), 2 * N);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM decisions").await,
        2 * N as i64
    );
    assert!(
        eventually_async(Duration::from_secs(30), || async {
            queue_counts(&ch, ALERTS).await == (0, 1)
        })
        .await
    );
    bridge.stop().await;
    engine.shutdown().await;
}

/// Any mix of local and remote agents works by configuration: a node sends enrichment and
/// context to an `aml-triage worker --agents enrichment,context` process and runs the rest
/// itself; its decisions match those of a node running everything locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_run_on_worker_processes_by_configuration() {
    let vhost = TestVhost::new();
    let db = TestDb::new(Kind::Postgres).await;
    let node = Settings {
        remote_agents: "enrichment,context".into(),
        ..node_settings(&db, &vhost, "mix-node")
    };
    // Migrated by the node before the worker starts (the worker migrates too, idempotently).
    let engine = Engine::builder(node).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let ops_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut worker = Command::new(env!("CARGO_BIN_EXE_aml-triage"))
        .env("DATABASE_URL", &db.url)
        .env("PROMETHEUS_PORT", ops_port.to_string())
        .env("NODE_ID", "mix-node")
        .env("AMQP_URL", &vhost.url)
        .env("LOG_LEVEL", "warn")
        .args(["worker", "--agents", "enrichment,context"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let conn = connect(&vhost.url).await;
    let ch = conn.create_channel().await.unwrap();
    for q in ["aml.agent.enrichment", "aml.agent.context"] {
        declare_queue(&ch, q).await;
        wait_for_consumers(&ch, q, 1, Duration::from_secs(120)).await;
    }
    let local = Engine::builder(settings()).start().await.unwrap();
    for body in alerts("mix", 10) {
        let remote = engine.submit_json(&body).await.unwrap();
        let here = local.submit_json(&body).await.unwrap();
        assert!(
            !remote.degraded,
            "{:?}\n{}",
            remote.degradation_reasons,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert_eq!(remote.disposition, here.disposition, "{}", remote.alert_id);
        assert_eq!(remote.risk_score, here.risk_score, "{}", remote.alert_id);
        assert_eq!(remote.agents.len(), here.agents.len());
    }
    // The worker is probed and scraped on its ops port, as deploy/k8s does.
    let ops = reqwest::Client::new();
    for (route, needle) in [
        ("health", "ok"),
        ("ready", "\"broker\""),
        ("metrics", "aml_triage_"),
    ] {
        let r = ops
            .get(format!("http://127.0.0.1:{ops_port}/{route}"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "worker /{route}: {}", r.status());
        let body = r.text().await.unwrap();
        assert!(body.contains(needle), "worker /{route}: {body}");
    }
    let _ = worker.kill();
    let _ = worker.wait();
    local.shutdown().await;
    engine.shutdown().await;
}

/// `/ready` names the broker while the bridge cannot connect (here: a vhost that does not
/// exist yet), and is ready once it can; the password of `AMQP_URL` appears nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_reports_the_broker() {
    use crate::http_support::{TestServer, http_settings};
    let vhost = format!("aml_test_{:016x}", fastrand::u64(..));
    let settings = Settings {
        amqp_url: Some(AmqpUrl::new(format!(
            "amqp://guest:guest@127.0.0.1:5672/{vhost}"
        ))),
        ..http_settings()
    };
    let server = TestServer::start(settings).await;
    let bridge = Bridge::start(server.engine.clone()).unwrap();
    let r = server.get("/ready", None).await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["failing"]
            .as_array()
            .unwrap()
            .contains(&"broker".into()),
        "{body}"
    );
    assert!(!body.to_string().contains("guest:guest"));

    // The vhost appears (as when a broker finishes starting): the bridge connects.
    let created = TestVhost::adopt(&vhost);
    let start = Instant::now();
    loop {
        if server.get("/ready", None).await.status() == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "not ready once the broker is reachable"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(bridge.is_connected());
    bridge.stop().await;
    server.engine.shutdown().await;
    drop(created);
}

/// The bridge actor crashes (an injected panic, then its consuming channel closed under it):
/// its supervisor restarts it with backoff, the new instance consumes again, and the bridge's
/// state (connected, consuming, restarts) is in the node's published agent state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_actor_is_restarted_after_a_crash() {
    use aml_triage::bridge::BridgeFault;
    let vhost = TestVhost::new();
    let node = Settings {
        node_id: "crash-node".into(),
        amqp_url: Some(AmqpUrl::new(&vhost.url)),
        state_publish_seconds: 0.2,
        ..settings()
    };
    let engine = Arc::new(Engine::builder(node).start().await.unwrap());
    let bridge = Bridge::start(engine.clone()).unwrap();
    let conn = connect(&vhost.url).await;
    let ch = confirmed_channel(&conn).await;
    decision_sink(&ch, DECISIONS, SINK).await;
    declare_queue(&ch, ALERTS).await;
    wait_for_consumers(&ch, ALERTS, 1, Duration::from_secs(60)).await;
    let first = alerts("crash-0", 3);
    publish_all(&ch, ALERTS, &first).await;
    let counts = collect_decisions(&ch, SINK, &ids(&first), Duration::from_secs(60)).await;
    assert_eq!(counts.len(), 3);

    for (round, fault) in [BridgeFault::Panic, BridgeFault::CloseChannel]
        .into_iter()
        .enumerate()
    {
        let restarts = round as u64 + 1;
        assert!(bridge.inject(fault), "no bridge instance to crash");
        assert!(
            eventually(Duration::from_secs(30), || {
                let s = bridge.state();
                s.restarts == restarts && s.connected && s.consuming
            })
            .await,
            "the bridge was not restarted after {fault:?}: {:?}",
            bridge.state()
        );
        // One consumer: the crashed instance's is gone, the new one takes alerts.
        assert!(
            eventually_async(Duration::from_secs(30), || async {
                queue_counts(&ch, ALERTS).await.1 == 1
            })
            .await
        );
        let later = alerts(&format!("crash-{restarts}"), 3);
        publish_all(&ch, ALERTS, &later).await;
        // (A decision of the previous round may come again: its alert was redelivered when
        // the crashed instance's channel closed before its ack; consumers dedupe by id.)
        let counts = collect_decisions(&ch, SINK, &ids(&later), Duration::from_secs(60)).await;
        assert!(
            ids(&later).iter().all(|id| counts.get(id) == Some(&1)),
            "after {fault:?}: {counts:?}"
        );
    }
    // The bridge's state is published with the node's agent state.
    assert!(
        eventually_async(Duration::from_secs(10), || async {
            engine.state().nodes().await.unwrap().iter().any(|n| {
                n.node_id == "crash-node"
                    && n.bridge.as_ref().is_some_and(|b| {
                        b.connected && b.consuming && b.restarts == 2 && b.in_flight == 0
                    })
            })
        })
        .await,
        "{:?}",
        engine.state().nodes().await
    );
    bridge.stop().await;
    engine.shutdown().await;
}

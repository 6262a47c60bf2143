//! Analyst review over real sockets and real databases (PostgreSQL and SQLite): sessions and
//! CSRF, four-eyes, the audit chain, blind QA, missed auto-clears, canaries.

use std::collections::BTreeSet;
use std::sync::Arc;

use aml_triage::domain::review::{SamplingPlan, UserRole};
use aml_triage::review::canary::{CanaryDef, default_canaries};
use aml_triage::review::{Review, ReviewConfig};
use serde_json::{Value, json};

use crate::http_support::*;
use crate::store_support::{Kind, TestDb};
use crate::support::*;

const PASSWORD: &str = "a long enough password";

/// A sanctions alert with one screening hit: the offline engine escalates it.
fn hit_alert(id: &str) -> String {
    json!({
        "alert_id": id, "alert_type": "SANCTIONS", "priority": "HIGH",
        "created_at": "2026-01-05T10:00:00Z",
        "customer": {"customer_id": format!("C-{id}"), "name": "Jon Smyth",
                     "entity_type": "INDIVIDUAL", "date_of_birth": "1970-01-01",
                     "nationality": "US"},
        "screening": {"matches": [{"list": "OFAC_SDN", "entry_id": "9999",
            "matched_name": "John Smith", "score": 0.91, "match_type": "NAME"}]}
    })
    .to_string()
}

async fn server_on(db: &TestDb) -> TestServer {
    let mut s = http_settings();
    s.database_url = db.url.clone();
    s.node_id = format!("review-{:08x}", fastrand::u32(..));
    TestServer::start(s).await
}

fn review_of(s: &TestServer) -> Review {
    Review::new(
        s.engine.store().clone(),
        s.engine.metrics().clone(),
        ReviewConfig::default(),
    )
}

async fn add_user(r: &Review, id: &str, roles: &[UserRole]) {
    let roles: BTreeSet<UserRole> = roles.iter().copied().collect();
    r.add_user("test", id, id, roles, Some(PASSWORD))
        .await
        .expect("user added");
}

/// A logged-in user: cookie and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

async fn login(s: &TestServer, user: &str) -> Session {
    let r = s
        .post(
            "/v1/session",
            None,
            json!({"user_id": user, "password": PASSWORD}).to_string(),
        )
        .await;
    assert_eq!(r.status(), 200, "login {user}");
    let cookie = r
        .headers()
        .get("set-cookie")
        .expect("Set-Cookie")
        .to_str()
        .unwrap()
        .to_string();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    let body: Value = r.json().await.unwrap();
    Session {
        cookie: cookie.split(';').next().unwrap().to_string(),
        csrf: body["csrf_token"].as_str().unwrap().to_string(),
    }
}

async fn act(s: &TestServer, who: &Session, path: &str, body: Value) -> (u16, Value) {
    let r = s
        .client
        .post(s.url(path))
        .header("cookie", &who.cookie)
        .header("x-csrf-token", &who.csrf)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn read(s: &TestServer, who: &Session, path: &str) -> (u16, Value) {
    let r = s
        .client
        .get(s.url(path))
        .header("cookie", &who.cookie)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Submits an alert and waits for its decision and, when it is escalated, for its case
/// (opened by a task of its own after the decision).
async fn decide(s: &TestServer, alert: String) -> Value {
    let r = s.post("/v1/alerts?wait=true", Some(SUBMITTER), alert).await;
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    if d["disposition"] != "AUTO_CLEAR" {
        let id = d["alert_id"].as_str().unwrap().to_string();
        let store = s.engine.store().clone();
        let opened = eventually_async(std::time::Duration::from_secs(10), || {
            let (store, id) = (store.clone(), id.clone());
            async move { store.case_for_alert(&id).await.unwrap().is_some() }
        })
        .await;
        assert!(opened, "no case for escalated alert {id}");
    }
    d
}

async fn works_a_case_end_to_end(kind: Kind) {
    let db = TestDb::new(kind).await;
    let s = server_on(&db).await;
    let r = review_of(&s);
    add_user(&r, "alice", &[UserRole::Analyst]).await;
    add_user(&r, "bob", &[UserRole::Reviewer]).await;
    // Holds every role, and works the case: still cannot approve it.
    add_user(&r, "root", &UserRole::ALL).await;
    let d = decide(&s, hit_alert("rv-1")).await;
    assert_ne!(d["disposition"], "AUTO_CLEAR", "{d}");
    let alice = login(&s, "alice").await;
    let bob = login(&s, "bob").await;
    let root = login(&s, "root").await;

    let (st, list) = read(&s, &alice, "/v1/cases?state=open").await;
    assert_eq!(st, 200);
    let case = &list["cases"][0];
    assert_eq!(case["alert_id"], "rv-1", "{list}");
    assert!(case["sla_breach_at"].is_string());
    let id = case["case_id"].as_str().unwrap().to_string();
    let p = |suffix: &str| format!("/v1/cases/{id}/{suffix}");

    let (st, c) = act(&s, &alice, "/v1/cases/pull-next", json!({})).await;
    assert_eq!((st, c["assignee"].clone()), (200, json!("alice")), "{c}");
    let (st, _) = act(
        &s,
        &alice,
        &p("transition"),
        json!({"action": "start_review"}),
    )
    .await;
    assert_eq!(st, 200);
    // Closing needs every hit dispositioned.
    let close = json!({"outcome": "false_positive", "rationale": "DOB and name differ"});
    let (st, e) = act(&s, &alice, &p("close-request"), close.clone()).await;
    assert_eq!(
        (st, e["field"].clone()),
        (422, json!("hit_dispositions")),
        "{e}"
    );
    let (st, _) = act(
        &s,
        &alice,
        &p("hits"),
        json!({"hit": "OFAC_SDN:9999", "disposition": "no_match"}),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = act(
        &s,
        &root,
        &p("comments"),
        json!({"body": "checked the DOB"}),
    )
    .await;
    assert_eq!(st, 201);
    let (st, _) = act(&s, &root, &p("transition"), json!({"action": "escalate"})).await;
    assert_eq!(st, 200);
    let (st, _) = act(
        &s,
        &alice,
        &p("transition"),
        json!({"action": "start_review"}),
    )
    .await;
    assert_eq!(st, 200);
    let (st, c) = act(&s, &alice, &p("close-request"), close).await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["state"]["state"], "pending_approval");

    // Four-eyes: the worker cannot approve, nor can an all-roles user who worked the case.
    for who in [&alice, &root] {
        let (st, e) = act(&s, who, &p("approve"), json!({})).await;
        assert_eq!((st, e["error"].clone()), (403, json!("four_eyes")), "{e}");
    }
    // An API key (even admin) is no named user.
    let r2 = s.post(&p("approve"), Some(ADMIN), "{}".to_string()).await;
    assert_eq!(r2.status(), 403);
    let (st, c) = act(&s, &bob, &p("approve"), json!({"note": "agree"})).await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(
        c["state"],
        json!({"state": "closed", "outcome": "false_positive"})
    );
    assert_eq!(c["doc"]["approved_by"], "bob");

    // Every action is in the audit chain, with the user, and the chain verifies.
    let trail = s.engine.store().audit_trail("rv-1").await.unwrap();
    let seen: Vec<(String, String)> = trail
        .iter()
        .filter(|e| e.action.starts_with("review."))
        .map(|e| (e.actor.clone(), e.action.clone()))
        .collect();
    for (actor, action) in [
        ("engine", "review.case_open"),
        ("user:alice", "review.pull_next"),
        ("user:alice", "review.start_review"),
        ("user:alice", "review.disposition_hit"),
        ("user:root", "review.comment"),
        ("user:root", "review.escalate"),
        ("user:alice", "review.request_close"),
        ("user:bob", "review.approve"),
    ] {
        assert!(
            seen.contains(&(actor.to_string(), action.to_string())),
            "{actor} {action} missing from {seen:?}"
        );
    }
    let report = s.engine.store().verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
    // The approved outcome is a label `eval --from-store` reads back: one escalated false
    // positive, so escalation precision 0 for its rule.
    let (rows, unlabelled) = aml_triage::review::feedback::collect(s.engine.store())
        .await
        .unwrap();
    let fb = aml_triage::review::feedback::report(&rows, unlabelled);
    assert_eq!((fb.from_cases, fb.from_qa), (1, 0), "{fb:?}");
    assert_eq!(
        (
            fb.overall.labelled,
            fb.overall.suspicious,
            fb.overall.escalated
        ),
        (1, 0, 1)
    );
    assert_eq!(fb.overall.precision, Some(0.0));
    assert_eq!(rows[0].alert_id, "rv-1");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_review_action_is_in_the_audit_chain() {
    works_a_case_end_to_end(Kind::Sqlite).await;
    works_a_case_end_to_end(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_token_required() {
    let db = TestDb::new(Kind::Sqlite).await;
    let s = server_on(&db).await;
    let r = review_of(&s);
    add_user(&r, "alice", &[UserRole::Analyst]).await;
    decide(&s, hit_alert("csrf-1")).await;
    let alice = login(&s, "alice").await;
    let path = "/v1/cases/case-csrf-1/transition";
    let body = json!({"action": "start_review"}).to_string();
    // Cookie without a token, and with a wrong one: refused, nothing changes.
    for token in [None, Some("0".repeat(64))] {
        let mut rq = s
            .client
            .post(s.url(path))
            .header("cookie", &alice.cookie)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(t) = token {
            rq = rq.header("x-csrf-token", t);
        }
        let resp = rq.send().await.unwrap();
        assert_eq!(resp.status(), 403);
        let e: Value = resp.json().await.unwrap();
        assert_eq!(e["error"], "csrf");
    }
    let (_, c) = read(&s, &alice, "/v1/cases/case-csrf-1").await;
    assert_eq!(c["state"]["state"], "open", "{c}");
    // Logout is state-changing too.
    let resp = s
        .client
        .delete(s.url("/v1/session"))
        .header("cookie", &alice.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // With the token: done.
    let (st, c) = act(&s, &alice, path, json!({"action": "start_review"})).await;
    assert_eq!((st, c["state"]["state"].clone()), (200, json!("in_review")));
    // Without any credentials: 401; a wrong password: 401.
    assert_eq!(s.post(path, None, body.clone()).await.status(), 401);
    let bad = json!({"user_id": "alice", "password": "wrong password!!"}).to_string();
    assert_eq!(s.post("/v1/session", None, bad).await.status(), 401);
    s.stop().await;
}

async fn auto_clear_and_sample(s: &TestServer, r: &Review, n: usize) -> String {
    for i in 0..n {
        let d = decide(s, clean_alert(&format!("clear-{i}"))).await;
        assert_eq!(d["disposition"], "AUTO_CLEAR", "{d}");
    }
    let period = chrono::Utc::now().format("%Y-%m").to_string();
    let plan = SamplingPlan {
        sample_size: n,
        ..SamplingPlan::default_for(70.0)
    };
    let drawn = r.draw_qa_sample("test", &period, &plan, 42).await.unwrap();
    assert_eq!(drawn.len(), n);
    period
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qa_sample_is_blind() {
    for kind in [Kind::Sqlite, Kind::Postgres] {
        let db = TestDb::new(kind).await;
        let s = server_on(&db).await;
        let r = review_of(&s);
        add_user(&r, "quinn", &[UserRole::Qa]).await;
        add_user(&r, "alice", &[UserRole::Analyst]).await;
        let period = auto_clear_and_sample(&s, &r, 3).await;
        let quinn = login(&s, "quinn").await;
        let (st, q) = read(&s, &quinn, &format!("/v1/qa/samples?period={period}")).await;
        assert_eq!(st, 200);
        let samples = q["samples"].as_array().unwrap().clone();
        assert_eq!(samples.len(), 3);
        for item in &samples {
            // The alert is shown; nothing of the engine's verdict is.
            assert!(item["alert"]["alert_id"].is_string(), "{item}");
            for hidden in [
                "engine_disposition",
                "risk_score",
                "decision",
                "band",
                "inclusion",
            ] {
                assert!(item.get(hidden).is_none(), "{hidden} leaked: {item}");
            }
            assert!(!item.to_string().contains("AUTO_CLEAR"), "{item}");
        }
        let id = samples[0]["sample_id"].as_str().unwrap();
        let (_, one) = read(&s, &quinn, &format!("/v1/qa/samples/{id}")).await;
        assert!(!one.to_string().contains("AUTO_CLEAR"), "{one}");
        // Only QA may see the queue.
        let alice = login(&s, "alice").await;
        assert_eq!(read(&s, &alice, "/v1/qa/samples").await.0, 403);
        // After the reviewer's own verdict, the engine's is revealed.
        let (st, v) = act(
            &s,
            &quinn,
            &format!("/v1/qa/samples/{id}/verdict"),
            json!({"verdict": "ok"}),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["engine_disposition"], "AUTO_CLEAR");
        assert_eq!(v["decision"]["disposition"], "AUTO_CLEAR");
        // A verdict is recorded once.
        let (st, _) = act(
            &s,
            &quinn,
            &format!("/v1/qa/samples/{id}/verdict"),
            json!({"verdict": "miss", "notes": "changed my mind"}),
        )
        .await;
        assert_eq!(st, 409);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_auto_clear_reopens_case() {
    for kind in [Kind::Sqlite, Kind::Postgres] {
        let db = TestDb::new(kind).await;
        let s = server_on(&db).await;
        let r = review_of(&s);
        add_user(&r, "quinn", &[UserRole::Qa]).await;
        let period = auto_clear_and_sample(&s, &r, 2).await;
        let quinn = login(&s, "quinn").await;
        let (_, q) = read(&s, &quinn, &format!("/v1/qa/samples?period={period}")).await;
        let item = &q["samples"][0];
        let (id, alert_id) = (
            item["sample_id"].as_str().unwrap(),
            item["alert_id"].as_str().unwrap().to_string(),
        );
        let path = format!("/v1/qa/samples/{id}/verdict");
        // A miss needs notes.
        let (st, e) = act(&s, &quinn, &path, json!({"verdict": "miss"})).await;
        assert_eq!((st, e["field"].clone()), (422, json!("notes")), "{e}");
        let (st, _) = act(
            &s,
            &quinn,
            &path,
            json!({"verdict": "miss", "notes": "structuring pattern missed"}),
        )
        .await;
        assert_eq!(st, 200);
        let case = s
            .engine
            .store()
            .case_for_alert(&alert_id)
            .await
            .unwrap()
            .expect("a case for the missed alert");
        assert_eq!(case.origin, "qa_miss");
        assert_eq!(case.state.name(), "reopened");
        assert_eq!(case.doc.engine_disposition.as_deref(), Some("AUTO_CLEAR"));
        // It is in the queue, the metric counts it, the report shows it.
        let (_, _) = (period.clone(), ());
        assert_eq!(sample(&s.scrape().await, "aml_triage_qa_misses_total"), 1.0);
        let report = r.qa_report(Some(&period)).await.unwrap();
        assert_eq!(report.periods[0].misses, 1);
        assert_eq!(report.periods[0].reviewed, 1);
        assert_eq!(report.periods[0].missed_alerts, vec![alert_id.clone()]);
        let trail = s.engine.store().audit_trail(&alert_id).await.unwrap();
        assert!(trail.iter().any(|e| e.action == "review.qa_verdict"
            && e.actor == "user:quinn"
            && e.payload["verdict"] == "miss"));
        assert!(
            trail
                .iter()
                .any(|e| e.action == "review.case_open" && e.payload["origin"] == "qa_miss")
        );
        // The QA miss is a suspicious label on an auto-clear: recall 0 in `eval --from-store`;
        // the reopened case gives no label until it is closed again.
        let (rows, unlabelled) = aml_triage::review::feedback::collect(s.engine.store())
            .await
            .unwrap();
        let fb = aml_triage::review::feedback::report(&rows, unlabelled);
        assert_eq!((fb.from_qa, fb.overall.suspicious), (1, 1), "{fb:?}");
        assert_eq!(fb.overall.recall, Some(0.0));
        assert_eq!(fb.unlabelled_cases, 1);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_not_escalated_fails_ready() {
    let db = TestDb::new(Kind::Sqlite).await;
    let s = server_on(&db).await;
    let r = review_of(&s);
    assert_eq!(s.get("/ready", None).await.status(), 200);
    // The built-in canary is escalated: ready, and it opened no case.
    let runs = r
        .inject_canaries(&*s.engine, &default_canaries())
        .await
        .unwrap();
    let d = runs[0].disposition.clone().unwrap();
    assert_ne!(d, "AUTO_CLEAR");
    assert!(
        s.engine
            .store()
            .case_for_alert(&runs[0].alert_id)
            .await
            .unwrap()
            .is_none()
    );
    let body: Value = s.get("/ready", None).await.json().await.unwrap();
    assert_eq!(body["ready"], true, "{body}");
    // A canary the engine clears (here: a clean alert posing as one) fails /ready.
    let broken = CanaryDef {
        name: "broken".into(),
        alert: serde_json::from_str(&clean_alert("template")).unwrap(),
    };
    let runs = r.inject_canaries(&*s.engine, &[broken]).await.unwrap();
    assert_eq!(runs[0].disposition.as_deref(), Some("AUTO_CLEAR"));
    let resp = s.get("/ready", None).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["failing"]
            .as_array()
            .unwrap()
            .contains(&json!("canaries")),
        "{body}"
    );
    assert_eq!(sample(&s.scrape().await, "aml_triage_canary_failures"), 1.0);
    // Canaries are never sampled as real auto-clears.
    let period = chrono::Utc::now().format("%Y-%m").to_string();
    let drawn = r
        .draw_qa_sample("test", &period, &SamplingPlan::default_for(70.0), 1)
        .await
        .unwrap();
    assert!(drawn.is_empty(), "{drawn:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_next_gives_each_case_to_one_user() {
    let db = TestDb::new(Kind::Postgres).await;
    let s = server_on(&db).await;
    let r = review_of(&s);
    for i in 0..4 {
        decide(&s, hit_alert(&format!("pull-{i}"))).await;
    }
    let users = ["u0", "u1", "u2", "u3", "u4", "u5"];
    for u in users {
        add_user(&r, u, &[UserRole::Analyst]).await;
    }
    let r = Arc::new(r);
    let mut tasks = Vec::new();
    for u in users {
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let me = r.user(u).await.unwrap();
            r.pull_next(&me, None).await.unwrap().map(|c| c.case_id)
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        if let Some(c) = t.await.unwrap() {
            got.push(c);
        }
    }
    got.sort();
    let unique: BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(unique.len(), 4, "a case was given twice: {got:?}");
    s.stop().await;
}

/// Escalated alerts of one customer are linked both ways: the later case names the earlier
/// ones, and reading an earlier case shows the later alerts; finished cases drop out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_of_one_customer_are_linked_both_ways() {
    let db = TestDb::new(Kind::Sqlite).await;
    let s = server_on(&db).await;
    let r = review_of(&s);
    let same_customer = |id: &str| {
        let mut a: Value = serde_json::from_str(&hit_alert(id)).unwrap();
        a["customer"]["customer_id"] = json!("C-shared");
        a.to_string()
    };
    for id in ["link-1", "link-2", "link-3"] {
        decide(&s, same_customer(id)).await;
    }
    decide(&s, hit_alert("link-other")).await;
    let linked = |v: &aml_triage::review::CaseView| {
        let mut l = v.case.doc.linked_alerts.clone();
        l.sort();
        l
    };
    let first = r.get("case-link-1").await.unwrap();
    assert_eq!(linked(&first), ["link-2", "link-3"]);
    let last = r.get("case-link-3").await.unwrap();
    assert_eq!(linked(&last), ["link-1", "link-2"]);
    let other = r.get("case-link-other").await.unwrap();
    assert!(linked(&other).is_empty(), "{:?}", linked(&other));
    s.stop().await;
}

/// A case is opened after its decision commits, by a task of its own; shutting the engine
/// down right after the decisions waits for those tasks, so every escalated decision has its
/// case without the next start's sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalated_decisions_have_their_cases_after_shutdown() {
    let db = TestDb::new(Kind::Sqlite).await;
    let s = server_on(&db).await;
    let ids: Vec<String> = (0..40).map(|i| format!("shut-{i}")).collect();
    let mut calls = Vec::new();
    for id in &ids {
        calls.push(s.post("/v1/alerts?wait=true", Some(SUBMITTER), hit_alert(id)));
    }
    let mut escalated = Vec::new();
    for (id, r) in ids.iter().zip(futures_util::future::join_all(calls).await) {
        assert_eq!(r.status(), 200);
        let d: Value = r.json().await.unwrap();
        if d["disposition"] != "AUTO_CLEAR" {
            escalated.push(id.clone());
        }
    }
    assert!(escalated.len() >= 30, "{escalated:?}");
    s.stop().await;
    let store = aml_triage::store::Store::connect(
        Some(&db.url),
        "after-shutdown",
        aml_triage::store::StoreOptions::default(),
    )
    .await
    .unwrap();
    let mut missing = Vec::new();
    for id in &escalated {
        if store.case_for_alert(id).await.unwrap().is_none() {
            missing.push(id.clone());
        }
    }
    assert!(missing.is_empty(), "no case for {missing:?}");
    store.close().await;
}

/// Password guessing is throttled per user id across nodes (the failures are counted in the
/// store): after 5 failures even the right password is refused with 429 and Retry-After, an
/// unknown user id is treated the same (no hint that an account exists), other users are not
/// affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_are_throttled() {
    let db = TestDb::new(Kind::Postgres).await;
    let s = server_on(&db).await;
    let r = review_of(&s);
    add_user(&r, "victim", &[UserRole::Analyst]).await;
    add_user(&r, "bystander", &[UserRole::Analyst]).await;
    let try_login = |user: &'static str, password: &'static str| {
        let s = &s;
        async move {
            s.post(
                "/v1/session",
                None,
                json!({"user_id": user, "password": password}).to_string(),
            )
            .await
        }
    };
    for user in ["victim", "nobody"] {
        for _ in 0..5 {
            assert_eq!(try_login(user, "wrong password guess").await.status(), 401);
        }
        let refused = try_login(user, PASSWORD).await;
        assert_eq!(refused.status(), 429, "{user}");
        let retry: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=15 * 60).contains(&retry), "{retry}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "too_many_attempts");
    }
    // A second node on the same database sees the same count.
    let other_node = review_of(&s);
    assert!(matches!(
        other_node.login("victim", PASSWORD).await,
        Err(aml_triage::review::ReviewServiceError::TooManyAttempts { .. })
    ));
    // Other users log in as usual, and a success clears an earlier failure.
    assert_eq!(
        try_login("bystander", "wrong password guess")
            .await
            .status(),
        401
    );
    login(&s, "bystander").await;
    assert!(
        r.store()
            .login_failures("bystander", chrono::Utc::now() - chrono::Duration::hours(1))
            .await
            .unwrap()
            .is_empty()
    );
    s.stop().await;
}

/// A stub OIDC identity provider: discovery, JWKS and a token endpoint that checks PKCE and
/// signs RS256 ID tokens with a key of its own. The test plays the browser and the user's
/// consent by registering the code the IdP would issue.
mod stub_idp {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use serde_json::{Value, json};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

    /// What the IdP remembers about an issued code.
    #[derive(Clone)]
    pub struct Grant {
        pub sub: String,
        pub nonce: String,
        pub challenge: String,
    }

    pub struct Idp {
        pub server: MockServer,
        pub codes: Arc<Mutex<HashMap<String, Grant>>>,
    }

    pub fn sign(key: &RsaKeyPair, kid: &str, claims: &Value) -> String {
        let h = B64.encode(json!({"alg": "RS256", "typ": "JWT", "kid": kid}).to_string());
        let p = B64.encode(claims.to_string());
        let input = format!("{h}.{p}");
        let mut sig = vec![0; key.public_modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .unwrap();
        format!("{input}.{}", B64.encode(sig))
    }

    struct Token {
        key: Arc<RsaKeyPair>,
        issuer: String,
        codes: Arc<Mutex<HashMap<String, Grant>>>,
    }

    impl Respond for Token {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            let body = String::from_utf8_lossy(&req.body).to_string();
            let form: HashMap<String, String> = reqwest::Url::parse(&format!("http://x/?{body}"))
                .unwrap()
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let code = form.get("code").cloned().unwrap_or_default();
            // A code is used once.
            let Some(grant) = self.codes.lock().unwrap().remove(&code) else {
                return ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"}));
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            if aml_triage::review::oidc::pkce_challenge(&verifier) != grant.challenge
                || form.get("grant_type").map(String::as_str) != Some("authorization_code")
            {
                return ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"}));
            }
            let now = chrono::Utc::now().timestamp();
            let claims = json!({"iss": self.issuer, "aud": "aml-triage", "sub": grant.sub,
                                "nonce": grant.nonce, "iat": now, "exp": now + 300});
            ResponseTemplate::new(200).set_body_json(json!({
                "access_token": "opaque", "token_type": "Bearer",
                "id_token": sign(&self.key, "k1", &claims)}))
        }
    }

    pub async fn start() -> Idp {
        let server = MockServer::start().await;
        let key = Arc::new(RsaKeyPair::generate(KeySize::Rsa2048).unwrap());
        let public = PublicKeyComponents::<Vec<u8>>::from(key.public_key());
        let issuer = server.uri();
        Mock::given(method("GET"))
            .and(path("/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "jwks_uri": format!("{issuer}/jwks"),
            })))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [{
                "kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
                "n": B64.encode(&public.n), "e": B64.encode(&public.e)}]})))
            .mount(&server)
            .await;
        let codes = Arc::new(Mutex::new(HashMap::new()));
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(Token {
                key,
                issuer: issuer.clone(),
                codes: codes.clone(),
            })
            .mount(&server)
            .await;
        Idp { server, codes }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_login_with_stub_idp() {
    let idp = stub_idp::start().await;
    let db = TestDb::new(Kind::Sqlite).await;
    let mut settings = http_settings();
    settings.database_url = db.url.clone();
    settings.oidc_issuer = Some(idp.server.uri());
    settings.oidc_client_id = Some("aml-triage".into());
    settings.oidc_redirect_uri = Some("https://aml.example/v1/session/oidc/callback".into());
    settings.validate().unwrap();
    let s = TestServer::start(settings).await;
    let r = review_of(&s);
    let roles: BTreeSet<UserRole> = [UserRole::Reviewer].into_iter().collect();
    r.add_user("test", "olga", "Olga", roles, None)
        .await
        .unwrap();
    r.link_oidc_subject("test", "olga", "idp|olga")
        .await
        .unwrap();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Start: a redirect to the IdP with state, nonce and an S256 challenge.
    let login = |sub: &'static str| {
        let (browser, s, idp) = (&browser, &s, &idp);
        async move {
            let resp = browser
                .get(s.url("/v1/session/oidc/start"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 302);
            let to = reqwest::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
            assert!(
                to.as_str()
                    .starts_with(&format!("{}/authorize", idp.server.uri()))
            );
            let q: std::collections::HashMap<String, String> = to
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            assert_eq!(q["code_challenge_method"], "S256");
            assert_eq!(q["client_id"], "aml-triage");
            assert_eq!(q["response_type"], "code");
            // The user authenticates at the IdP, which issues a code for them.
            let code = format!("code-{:08x}", fastrand::u32(..));
            idp.codes.lock().unwrap().insert(
                code.clone(),
                stub_idp::Grant {
                    sub: sub.into(),
                    nonce: q["nonce"].clone(),
                    challenge: q["code_challenge"].clone(),
                },
            );
            (code, q["state"].clone())
        }
    };
    let callback = |code: String, state: String| {
        let (browser, s) = (&browser, &s);
        async move {
            browser
                .get(s.url(&format!(
                    "/v1/session/oidc/callback?code={code}&state={state}"
                )))
                .send()
                .await
                .unwrap()
        }
    };

    let (code, state) = login("idp|olga").await;
    let resp = callback(code.clone(), state.clone()).await;
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["user"]["user_id"], "olga");
    // The session works like a local one.
    let olga = Session {
        cookie: cookie.split(';').next().unwrap().to_string(),
        csrf: body["csrf_token"].as_str().unwrap().to_string(),
    };
    let (st, me) = read(&s, &olga, "/v1/session").await;
    assert_eq!((st, me["user"]["user_id"].clone()), (200, json!("olga")));

    // A replayed state is refused.
    assert_eq!(callback(code, state).await.status(), 401);
    // A subject with no provisioned user is refused.
    let (code, state) = login("idp|mallory").await;
    assert_eq!(callback(code, state).await.status(), 401);
    // A token whose nonce is not the one of this login (a replayed token) is refused.
    let (code, state) = login("idp|olga").await;
    idp.codes.lock().unwrap().get_mut(&code).unwrap().nonce = "someone-elses".into();
    assert_eq!(callback(code, state).await.status(), 401);
    // A code the IdP never issued (or a state we never made) is refused.
    let (_, state) = login("idp|olga").await;
    assert_eq!(callback("forged".into(), state).await.status(), 401);
    assert_eq!(
        callback("x".into(), "never-issued".into()).await.status(),
        401
    );
    // A browser (it asks for HTML) is sent on to the review pages, logged in.
    let (code, state) = login("idp|olga").await;
    let resp = browser
        .get(s.url(&format!(
            "/v1/session/oidc/callback?code={code}&state={state}"
        )))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/ui/queue");
    assert!(
        resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("HttpOnly")
    );
    // The logins are in the audit chain.
    assert!(s.engine.store().verify(None).await.unwrap().ok);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sar_filing_needs_four_eyes_and_starts_the_clocks() {
    let db = TestDb::new(Kind::Postgres).await;
    let s = server_on(&db).await;
    let r = review_of(&s);
    add_user(&r, "alice", &[UserRole::Analyst]).await;
    add_user(&r, "bob", &[UserRole::Reviewer]).await;
    add_user(&r, "carol", &[UserRole::Reviewer]).await;
    decide(&s, hit_alert("sar-1")).await;
    let (alice, bob, carol) = (
        login(&s, "alice").await,
        login(&s, "bob").await,
        login(&s, "carol").await,
    );
    let p = |suffix: &str| format!("/v1/cases/case-sar-1/{suffix}");
    act(
        &s,
        &alice,
        &p("transition"),
        json!({"action": "start_review"}),
    )
    .await;
    act(
        &s,
        &alice,
        &p("hits"),
        json!({"hit": "OFAC_SDN:9999", "disposition": "match"}),
    )
    .await;
    // A match cannot be closed as a false positive, and true_positive_sar needs a filing.
    let (st, e) = act(
        &s,
        &alice,
        &p("close-request"),
        json!({"outcome": "false_positive", "rationale": "x"}),
    )
    .await;
    assert_eq!((st, e["field"].clone()), (422, json!("outcome")), "{e}");
    let (st, _) = act(
        &s,
        &alice,
        &p("close-request"),
        json!({"outcome": "true_positive_sar", "rationale": "x"}),
    )
    .await;
    assert_eq!(st, 422);
    let (st, c) = act(
        &s,
        &alice,
        &p("sar-request"),
        json!({"rationale": "confirmed match, structuring", "suspect_identified": false,
               "determined_at": "2026-11-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(st, 200, "{c}");
    // The clock runs while the filing waits for approval: 60 days without a suspect.
    let (_, v) = read(&s, &alice, "/v1/cases/case-sar-1").await;
    assert_eq!(v["sar_due_at"], "2026-12-31T00:00:00Z", "{v}");
    // A reviewer rejects (with a reason), the analyst asks again, another reviewer approves.
    let (st, e) = act(&s, &bob, &p("reject"), json!({"reason": ""})).await;
    assert_eq!((st, e["field"].clone()), (422, json!("reason")));
    let (st, c) = act(
        &s,
        &bob,
        &p("reject"),
        json!({"reason": "add the wire details"}),
    )
    .await;
    assert_eq!((st, c["state"]["state"].clone()), (200, json!("in_review")));
    act(
        &s,
        &alice,
        &p("sar-request"),
        json!({"rationale": "confirmed match, structuring, wires to IR"}),
    )
    .await;
    let (st, c) = act(&s, &carol, &p("approve"), json!({})).await;
    assert_eq!(
        (st, c["state"]["state"].clone()),
        (200, json!("sar_filed")),
        "{c}"
    );
    let (_, v) = read(&s, &alice, "/v1/cases/case-sar-1").await;
    assert!(v["continuing_review_due_at"].is_string(), "{v}");
    assert!(v["continuing_file_due_at"].is_string(), "{v}");
    assert!(
        v["sar_status"].is_null(),
        "a filed SAR has no running clock: {v}"
    );
    // Reopening (continuing activity) needs a reason.
    let (st, _) = act(&s, &alice, &p("transition"), json!({"action": "reopen"})).await;
    assert_eq!(st, 422);
    let (st, c) = act(
        &s,
        &alice,
        &p("transition"),
        json!({"action": "reopen", "reason": "continuing activity review"}),
    )
    .await;
    assert_eq!((st, c["state"]["state"].clone()), (200, json!("reopened")));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_manage_users_but_not_themselves() {
    let db = TestDb::new(Kind::Sqlite).await;
    let s = server_on(&db).await;
    let r = review_of(&s);
    add_user(&r, "ada", &[UserRole::Admin]).await;
    add_user(&r, "alice", &[UserRole::Analyst]).await;
    let ada = login(&s, "ada").await;
    let alice = login(&s, "alice").await;
    // Analysts cannot manage users.
    let (st, _) = act(&s, &alice, "/v1/users/alice", json!({"roles": ["admin"]})).await;
    assert_eq!(st, 403);
    // An admin cannot grant themselves the reviewer role (and so approve).
    let (st, _) = act(
        &s,
        &ada,
        "/v1/users/ada",
        json!({"roles": ["admin", "reviewer"]}),
    )
    .await;
    assert_eq!(st, 403);
    let (st, e) = act(
        &s,
        &ada,
        "/v1/users",
        json!({"user_id": "bob", "roles": ["root"]}),
    )
    .await;
    assert_eq!((st, e["field"].clone()), (422, json!("roles")), "{e}");
    let (st, _) = act(
        &s,
        &ada,
        "/v1/users",
        json!({"user_id": "bob", "roles": ["reviewer"], "password": PASSWORD}),
    )
    .await;
    assert_eq!(st, 201);
    // Changing roles or disabling ends the user's sessions.
    let (st, u) = act(
        &s,
        &ada,
        "/v1/users/alice",
        json!({"roles": ["analyst", "qa"]}),
    )
    .await;
    assert_eq!((st, u["roles"].clone()), (200, json!(["analyst", "qa"])));
    assert_eq!(read(&s, &alice, "/v1/session").await.0, 401);
    let (st, u) = act(&s, &ada, "/v1/users/bob", json!({"disabled": true})).await;
    assert_eq!((st, u["disabled"].clone()), (200, json!(true)));
    let bad = json!({"user_id": "bob", "password": PASSWORD}).to_string();
    assert_eq!(s.post("/v1/session", None, bad).await.status(), 401);
    // The password hash is never shown.
    let (_, users) = read(&s, &ada, "/v1/users").await;
    assert!(!users.to_string().contains("argon2"), "{users}");
    s.stop().await;
}

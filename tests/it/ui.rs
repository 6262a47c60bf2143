//! The review pages (`/ui`) in headless Chromium over WebDriver: four-eyes end to end through
//! the pages, the blind QA queue, escaping, pages without JavaScript, and an axe-core
//! accessibility check of every page. Set `UI_SCREENSHOTS=docs/img` to refresh the
//! screenshots of docs/review.md.

use std::collections::BTreeSet;
use std::time::Duration;

use aml_triage::domain::review::{SamplingPlan, UserRole};
use aml_triage::review::{Review, ReviewConfig};
use serde_json::{Value, json};

use crate::http_support::*;
use crate::store_support::{Kind, TestDb};
use crate::support::*;
use crate::webdriver::Browser;

const PASSWORD: &str = "a long enough password";
const AXE: &str = include_str!("vendor/axe.min.js");

/// A sanctions alert with one screening hit and a few transactions; `name` is the
/// customer's name as the alert gives it.
fn hit_alert(id: &str, name: &str) -> String {
    json!({
        "alert_id": id, "alert_type": "SANCTIONS", "priority": "HIGH",
        "created_at": "2026-01-05T10:00:00Z",
        "customer": {"customer_id": format!("C-{id}"), "name": name,
                     "entity_type": "INDIVIDUAL", "date_of_birth": "1970-01-01",
                     "nationality": "US"},
        "screening": {"matches": [{"list": "OFAC_SDN", "entry_id": "9999",
            "matched_name": "John Smith", "score": 0.91, "match_type": "NAME"}]},
        "transactions": [
            {"transaction_id": "T1", "timestamp": "2026-01-01T09:00:00Z", "amount": 9500.0,
             "currency": "USD", "direction": "IN", "type": "WIRE",
             "counterparty": {"name": "Acme Ltd", "country": "GB"}},
            {"transaction_id": "T2", "timestamp": "2026-01-02T09:00:00Z", "amount": 9400.0,
             "currency": "USD", "direction": "OUT", "type": "WIRE",
             "counterparty": {"name": "Blue Co", "country": "AE"}},
            {"transaction_id": "T3", "timestamp": "2026-01-03T09:00:00Z", "amount": 3000.0,
             "currency": "USD", "direction": "IN", "type": "CASH"}
        ]
    })
    .to_string()
}

struct Ui {
    _db: TestDb,
    _lists: Option<tempfile::TempDir>,
    s: TestServer,
    r: Review,
}

impl Ui {
    async fn start() -> Ui {
        Self::start_with_lists(false).await
    }

    /// With `lists`, an OFAC file holding entry 9999 (`SMITH, John`, born 1970), so the hit
    /// of [`hit_alert`] is checked field by field.
    async fn start_with_lists(lists: bool) -> Ui {
        let db = TestDb::new(Kind::Sqlite).await;
        let mut st = http_settings();
        let dir = lists.then(|| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(
                dir.path().join("sdn.csv"),
                "9999,\"SMITH, John\",\"individual\",\"SDGT\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,\"DOB 01 Jan 1970; nationality United States.\"\r\n",
            )
            .unwrap();
            st.list_paths = vec![dir.path().to_path_buf()];
            dir
        });
        st.database_url = db.url.clone();
        st.node_id = format!("ui-{:08x}", fastrand::u32(..));
        let s = TestServer::start(st).await;
        let r = Review::new(
            s.engine.store().clone(),
            s.engine.metrics().clone(),
            ReviewConfig::default(),
        );
        Ui {
            _db: db,
            _lists: dir,
            s,
            r,
        }
    }

    async fn user(&self, id: &str, name: &str, roles: &[UserRole]) {
        let roles: BTreeSet<UserRole> = roles.iter().copied().collect();
        self.r
            .add_user("test", id, name, roles, Some(PASSWORD))
            .await
            .expect("user added");
    }

    /// Submits an alert, waits for its decision and, when escalated, its case id.
    async fn decide(&self, alert: String) -> (Value, Option<String>) {
        let r = self
            .s
            .post("/v1/alerts?wait=true", Some(SUBMITTER), alert)
            .await;
        let status = r.status();
        let d: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{d}");
        if d["disposition"] == "AUTO_CLEAR" {
            return (d, None);
        }
        let id = d["alert_id"].as_str().unwrap().to_string();
        let store = self.s.engine.store().clone();
        let opened = eventually_async(Duration::from_secs(10), || {
            let (store, id) = (store.clone(), id.clone());
            async move { store.case_for_alert(&id).await.unwrap().is_some() }
        })
        .await;
        assert!(opened, "no case for {id}");
        let case = store.case_for_alert(&id).await.unwrap().unwrap();
        (d, Some(case.case_id))
    }

    async fn login(&self, b: &Browser, user: &str) {
        b.goto(&self.s.url("/ui/login")).await;
        b.fill("#user_id", user).await;
        b.fill("#password", PASSWORD).await;
        b.click("#login").await;
        b.wait_text("#whoami", user).await;
    }

    async fn logout(&self, b: &Browser) {
        b.click("#logout").await;
        b.find("#user_id").await;
    }
}

fn screenshot_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("UI_SCREENSHOTS").map(std::path::PathBuf::from)
}

/// Runs axe-core on the current page; panics on any serious or critical violation.
async fn axe_check(b: &Browser, what: &str) {
    let script = format!(
        "{AXE}\n;var done = arguments[arguments.length - 1];\
         axe.run(document, {{runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})\
         .then(function (r) {{ done(r.violations.map(function (v) {{\
           return {{id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length,\
                    html: v.nodes.slice(0, 2).map(function (n) {{ return n.html; }})}}; }})); }})\
         .catch(function (e) {{ done([{{id: 'axe-error', impact: 'critical', help: String(e)}}]); }});"
    );
    let v = b.run_async(&script).await;
    let bad: Vec<&Value> = v
        .as_array()
        .expect("axe result")
        .iter()
        .filter(|x| matches!(x["impact"].as_str(), Some("serious" | "critical")))
        .collect();
    assert!(bad.is_empty(), "{what}: accessibility violations: {bad:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyst_works_a_case_and_reviewer_approves() {
    let ui = Ui::start_with_lists(true).await;
    ui.user("alice", "Alice Analyst", &[UserRole::Analyst])
        .await;
    ui.user("rob", "Rob Reviewer", &[UserRole::Reviewer]).await;
    let (d, case) = ui.decide(hit_alert("ui-four-eyes", "Jon Smyth")).await;
    let case = case.expect("escalated");
    let b = Browser::start(true).await;

    // The analyst: team queue -> case -> take it -> start -> disposition -> request close.
    ui.login(&b, "alice").await;
    assert!(b.text("#roles").await.contains("analyst"));
    assert_eq!(b.count("#nojs").await, 0, "scripts are on here");
    b.goto(&ui.s.url("/ui/queue?view=team")).await;
    b.wait_text("#cases", &case).await;
    if let Some(dir) = screenshot_dir() {
        b.screenshot(&dir.join("ui-queue.png")).await;
    }
    // The filter form (htmx swaps the table in place and pushes the URL).
    b.select("#f_state", "open").await;
    b.click("#filter").await;
    let mut filtered = false;
    for _ in 0..50 {
        if b.url().await.contains("state=open") {
            filtered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(filtered, "filter not applied: {}", b.url().await);
    b.wait_text("#cases", &case).await;
    b.click("#cases a.case-link").await;
    b.wait_text("#case-id", &case).await;
    // The candidate's per-field breakdown and the transactions with their chart.
    b.wait_text("#breakdown-1", "date of birth").await;
    assert_eq!(b.count("svg.chart rect.bar").await, 3);
    // An analyst sees no approval buttons.
    assert_eq!(b.count("#approve").await, 0);
    b.click("#take").await;
    b.wait_text("#case-assignee", "alice").await;
    b.click("#start-review").await;
    b.wait_text("#case-state", "in_review").await;
    b.select("#disp-1", "no_match").await;
    b.click(".hit-submit").await;
    b.wait_text(".hit-disposition", "no_match").await;
    b.select("#outcome", "false_positive").await;
    b.fill(
        "#close-rationale",
        "Passport copy shows a different person (ID checked with the customer).",
    )
    .await;
    b.fill(
        "#override",
        "Identity documents rule the listed person out.",
    )
    .await;
    b.click("#request-close").await;
    b.wait_text("#case-state", "pending_approval").await;
    assert_eq!(b.count("#approve").await, 0, "the worker may not approve");
    if let Some(dir) = screenshot_dir() {
        b.screenshot(&dir.join("ui-case.png")).await;
    }
    ui.logout(&b).await;

    // The reviewer approves.
    ui.login(&b, "rob").await;
    b.goto(&ui.s.url(&format!("/ui/cases/{case}"))).await;
    b.fill("#approve-note", "Agree.").await;
    b.click("#approve").await;
    b.wait_text("#case-state", "closed").await;
    b.quit().await;

    let c = ui.s.engine.store().case(&case).await.unwrap().unwrap();
    assert_eq!(c.state.name(), "closed", "{d}");
    assert_eq!(c.doc.approved_by.as_deref(), Some("rob"));
    ui.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approver_cannot_approve_own_case_in_the_browser() {
    let ui = Ui::start().await;
    // One person holding both roles works the case.
    ui.user(
        "carol",
        "Carol Both",
        &[UserRole::Analyst, UserRole::Reviewer],
    )
    .await;
    let (_, case) = ui.decide(hit_alert("ui-own", "Jon Smyth")).await;
    let case = case.expect("escalated");
    let b = Browser::start(true).await;
    ui.login(&b, "carol").await;
    b.goto(&ui.s.url(&format!("/ui/cases/{case}"))).await;
    b.click("#take").await;
    b.wait_text("#case-assignee", "carol").await;
    b.click("#start-review").await;
    b.wait_text("#case-state", "in_review").await;
    b.select("#disp-1", "no_match").await;
    b.click(".hit-submit").await;
    b.wait_text(".hit-disposition", "no_match").await;
    b.fill("#close-rationale", "Not our customer.").await;
    b.fill("#override", "Different person.").await;
    b.click("#request-close").await;
    b.wait_text("#case-state", "pending_approval").await;
    // No approve button for her...
    assert_eq!(b.count("#approve").await, 0);
    assert_eq!(b.count("#reject").await, 0);
    // ...and a forged form post with her session and CSRF token is refused by the server.
    let csrf = b.property("input[name=csrf]", "value").await;
    let cookie = b.cookie("aml_session").await.expect("session cookie");
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(ui.s.url(&format!("/ui/cases/{case}/approve")))
        .header("cookie", format!("aml_session={cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&note=self"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.contains("error="), "{to}");
    b.goto(&ui.s.url(&to)).await;
    b.wait_text("#flash-error", "approve").await;
    b.quit().await;
    let c = ui.s.engine.store().case(&case).await.unwrap().unwrap();
    assert_eq!(c.state.name(), "pending_approval");
    assert_eq!(c.doc.approved_by, None);
    ui.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qa_reviewer_does_not_see_the_verdict() {
    let ui = Ui::start().await;
    ui.user("quinn", "Quinn QA", &[UserRole::Qa]).await;
    for i in 0..3 {
        let (d, _) = ui.decide(clean_alert(&format!("ui-clear-{i}"))).await;
        assert_eq!(d["disposition"], "AUTO_CLEAR", "{d}");
    }
    let period = chrono::Utc::now().format("%Y-%m").to_string();
    let plan = SamplingPlan {
        sample_size: 3,
        ..SamplingPlan::default_for(70.0)
    };
    assert_eq!(
        ui.r.draw_qa_sample("test", &period, &plan, 7)
            .await
            .unwrap()
            .len(),
        3
    );
    let b = Browser::start(true).await;
    ui.login(&b, "quinn").await;
    b.goto(&ui.s.url("/ui/qa")).await;
    b.wait_text("#qa-periods", &period).await;
    assert_eq!(b.count("#qa-samples a.sample-link").await, 3);
    // The engine's verdict appears nowhere on the queue or the sample before the verdict.
    assert!(!b.source().await.contains("AUTO_CLEAR"));
    b.click("#qa-samples a.sample-link").await;
    b.find("#record-verdict").await;
    let before = b.source().await;
    assert!(!before.contains("AUTO_CLEAR"), "verdict leaked");
    assert!(!before.contains("risk score"), "score leaked");
    assert_eq!(b.count("#engine-verdict").await, 0);
    b.click("#v-ok").await;
    b.click("#record-verdict").await;
    // Revealed once the reviewer has decided.
    b.wait_text("#engine-verdict", "AUTO_CLEAR").await;
    assert_eq!(b.text("#qa-verdict").await, "ok");
    b.goto(&ui.s.url("/ui/qa")).await;
    b.wait_text("#qa-periods", &period).await;
    if let Some(dir) = screenshot_dir() {
        b.screenshot(&dir.join("ui-qa.png")).await;
    }
    b.quit().await;
    ui.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_text_cannot_inject_script() {
    let ui = Ui::start().await;
    ui.user("alice", "Alice <b>Analyst</b>", &[UserRole::Analyst])
        .await;
    let evil = "Jon Smyth<script>alert('name')</script><img src=x onerror=alert('img')>";
    let (_, case) = ui.decide(hit_alert("ui-evil", evil)).await;
    let case = case.expect("escalated");
    let b = Browser::start(true).await;
    ui.login(&b, "alice").await;
    b.goto(&ui.s.url(&format!("/ui/cases/{case}"))).await;
    let memo = "<script>alert('memo')</script><svg onload=alert('svg')>";
    b.fill("#comment-body", memo).await;
    b.click("#add-comment").await;
    b.wait_text("#comments", "alert('memo')").await;
    // Reload the page that holds both texts, then look for any dialog.
    b.goto(&ui.s.url(&format!("/ui/cases/{case}"))).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.dialog().await, None, "a script ran");
    // The texts are shown as text, not markup.
    assert!(b.text("#customer-name").await.contains(evil));
    assert!(b.text("#comments").await.contains(memo));
    assert!(b.text("#whoami").await.contains("Alice <b>Analyst</b>"));
    assert_eq!(b.count("main script").await, 0);
    assert_eq!(b.count("main img").await, 0);
    assert_eq!(b.count("#comments svg").await, 0);
    let html = b.source().await;
    assert!(
        html.contains("&lt;script&gt;alert('name')")
            || html.contains("&lt;script&gt;alert(&#39;name")
    );
    // And the policy forbids inline scripts anyway.
    let r = ui.s.client.get(ui.s.url("/ui/login")).send().await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    b.quit().await;
    ui.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_work_without_javascript() {
    let ui = Ui::start().await;
    ui.user("alice", "Alice Analyst", &[UserRole::Analyst])
        .await;
    ui.user("rob", "Rob Reviewer", &[UserRole::Reviewer]).await;
    let (_, case) = ui.decide(hit_alert("ui-nojs", "Jon Smyth")).await;
    let case = case.expect("escalated");
    let b = Browser::start(false).await;
    ui.login(&b, "alice").await;
    // Scripts really are off (the <noscript> note is rendered).
    assert_eq!(b.count("#nojs").await, 1);
    // Pull-next gives the case and lands on its page.
    b.click("#pull-next").await;
    b.wait_text("#case-id", &case).await;
    b.click("#start-review").await;
    b.wait_text("#case-state", "in_review").await;
    b.fill("#comment-body", "Checked the passport copy.").await;
    b.click("#add-comment").await;
    b.wait_text("#comments", "passport").await;
    b.goto(&ui.s.url("/ui/queue?view=mine&sort=sla")).await;
    b.wait_text("#cases", &case).await;
    // A SAR filing, approved by a second user, all without scripts.
    b.goto(&ui.s.url(&format!("/ui/cases/{case}"))).await;
    b.select("#disp-1", "match").await;
    b.click(".hit-submit").await;
    b.wait_text(".hit-disposition", "match").await;
    b.fill(
        "#sar-rationale",
        "Confirmed sanctions match; funds passed through.",
    )
    .await;
    b.click("#request-sar").await;
    b.wait_text("#case-state", "pending_approval").await;
    ui.logout(&b).await;
    ui.login(&b, "rob").await;
    b.goto(&ui.s.url("/ui/queue?view=team&state=pending_approval"))
        .await;
    b.wait_text("#cases", &case).await;
    b.click("#cases a.case-link").await;
    b.click("#approve").await;
    b.wait_text("#case-state", "sar_filed").await;
    ui.logout(&b).await;
    b.quit().await;
    ui.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_have_no_serious_accessibility_violations() {
    let ui = Ui::start().await;
    ui.user(
        "sam",
        "Sam All",
        &[
            UserRole::Analyst,
            UserRole::Qa,
            UserRole::Admin,
            UserRole::Supervisor,
        ],
    )
    .await;
    ui.user("rob", "Rob Reviewer", &[UserRole::Reviewer]).await;
    let (_, case) = ui.decide(hit_alert("ui-a11y", "Jon Smyth")).await;
    let case = case.expect("escalated");
    let b = Browser::start(true).await;
    b.goto(&ui.s.url("/ui/login")).await;
    axe_check(&b, "login").await;
    // Keyboard only: Tab to the user id, type, Tab to the password, type, Enter.
    b.keys(&format!("\u{E004}sam\u{E004}{PASSWORD}\u{E007}"))
        .await;
    b.wait_text("#whoami", "sam").await;
    // The first Tab on a page reaches the skip link, and the focus is drawn.
    b.goto(&ui.s.url("/ui/queue")).await;
    b.keys("\u{E004}").await;
    let focused = b
        .run(
            "var e = document.activeElement; var s = getComputedStyle(e); \
             return [e.className, s.outlineStyle, s.outlineWidth];",
        )
        .await;
    assert_eq!(focused[0], "skip", "{focused}");
    assert_ne!(focused[1], "none", "no visible focus: {focused}");
    b.goto(&ui.s.url("/ui/queue?view=team")).await;
    axe_check(&b, "queue").await;
    b.goto(&ui.s.url(&format!("/ui/cases/{case}"))).await;
    b.click("#take").await;
    b.wait_text("#case-assignee", "sam").await;
    b.click("#start-review").await;
    b.wait_text("#case-state", "in_review").await;
    axe_check(&b, "case").await;
    b.goto(&ui.s.url("/ui/qa")).await;
    axe_check(&b, "qa").await;
    b.goto(&ui.s.url("/ui/admin")).await;
    axe_check(&b, "admin").await;
    // htmx and the pages run under the CSP: the console holds no violation.
    let log = b.console().await;
    assert!(
        !log.iter().any(|m| m.contains("Content Security Policy")),
        "{log:#?}"
    );
    b.quit().await;
    ui.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_forms_need_the_csrf_token() {
    let ui = Ui::start().await;
    ui.user(
        "sam",
        "Sam All",
        &[
            UserRole::Analyst,
            UserRole::Qa,
            UserRole::Admin,
            UserRole::Supervisor,
        ],
    )
    .await;
    let (_, case) = ui.decide(hit_alert("ui-csrf", "Jon Smyth")).await;
    let case = case.expect("escalated");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .post(ui.s.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "user_id=sam&password={}",
            PASSWORD.replace(' ', "+")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    // Every post form of every page carries the token (login has no session yet).
    let mut token = String::new();
    for page in [
        "/ui/queue?view=team".to_string(),
        format!("/ui/cases/{case}"),
        "/ui/qa".into(),
        "/ui/admin".into(),
    ] {
        let r = http
            .get(ui.s.url(&page))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{page}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        let html = r.text().await.unwrap();
        let forms: Vec<&str> = html.split("<form").skip(1).collect();
        assert!(!forms.is_empty(), "{page}");
        for f in forms {
            let f = &f[..f.find("</form>").unwrap()];
            if f.contains("method=\"post\"") {
                assert!(
                    f.contains("name=\"csrf\""),
                    "{page}: form without token: {f}"
                );
                let at = f.find("name=\"csrf\" value=\"").unwrap() + 19;
                token = f[at..at + 64].to_string();
            }
        }
    }
    // A post without the token, or with a wrong one, changes nothing.
    for body in ["body=hello", "csrf=0000&body=hello"] {
        let r = http
            .post(ui.s.url(&format!("/ui/cases/{case}/comment")))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(matches!(r.status().as_u16(), 400 | 403), "{body}");
    }
    assert!(ui.r.comments(&case).await.unwrap().is_empty());
    // With the page's token it goes through.
    let r = http
        .post(ui.s.url(&format!("/ui/cases/{case}/comment")))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}&body=hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(ui.r.comments(&case).await.unwrap().len(), 1);
    ui.s.stop().await;
}

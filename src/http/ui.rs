//! `/ui`: the analysts' pages, rendered on the server (askama templates under
//! `templates/ui/`, checked at compile time, HTML auto-escaped). Every page works without
//! JavaScript: forms post and the server redirects (303) back to a page. The vendored htmx
//! (`static/htmx.min.js`) only boosts links and forms. Every action calls the same
//! [`crate::review::Review`] functions as the JSON API, so the rules are the same.
//!
//! Security: the session cookie of `POST /v1/session`; every form carries the session's CSRF
//! token in a hidden `csrf` field, compared in constant time; the answers carry a
//! Content-Security-Policy without inline scripts or styles.

use std::collections::BTreeMap;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::review::{cookie_token, oidc_config, service, session_cookie};
use super::ui_chart::{Point, bars};
use crate::domain::facts::{FieldCheck, HitBreakdown};
use crate::domain::review::four_eyes::can_work;
use crate::domain::review::{SlaStatus, UserRole};
use crate::review::ReviewServiceError;
use crate::review::auth::{SESSION_COOKIE, ct_eq};
use crate::store::review::{CaseFilter, SessionRecord};

/// The policy of every page: nothing inline, nothing from elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const HTMX: &[u8] = include_bytes!("../../static/htmx.min.js");
const CSS: &[u8] = include_bytes!("../../static/ui.css");

/// Who is logged in, as every page's header shows it.
struct Nav {
    user_id: String,
    display_name: String,
    roles: String,
    csrf: String,
    can_work: bool,
    is_qa: bool,
    is_admin: bool,
}

impl Nav {
    fn of(s: &SessionRecord) -> Nav {
        let r = &s.user.roles;
        Nav {
            user_id: s.user.user_id.clone(),
            display_name: s.user.display_name.clone(),
            roles: r.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", "),
            csrf: s.csrf_token.clone(),
            can_work: can_work(r),
            is_qa: r.contains(&UserRole::Qa) || r.contains(&UserRole::Supervisor),
            is_admin: r.contains(&UserRole::Admin),
        }
    }
}

/// A page that failed or a notice: the query's `error` and `msg`.
#[derive(Deserialize, Default)]
struct Flash {
    error: Option<String>,
    msg: Option<String>,
}

fn page(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .body(body)
}

fn render(t: &impl Template) -> HttpResponse {
    match t.render() {
        Ok(b) => page(b),
        Err(e) => {
            tracing::error!(error = %e, "a page failed to render");
            HttpResponse::InternalServerError().body("internal error")
        }
    }
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn with_flash(to: &str, key: &str, text: &str) -> String {
    let sep = if to.contains('?') { '&' } else { '?' };
    format!("{to}{sep}{key}={}", enc(text))
}

/// What a user may read of an error (store and internal details go to the log only).
fn message(e: &ReviewServiceError) -> String {
    match e {
        ReviewServiceError::Store(s) => {
            tracing::error!(error = %s, "store error on a page");
            "the service is temporarily unavailable; retry later".into()
        }
        ReviewServiceError::Internal(m) => {
            tracing::error!(error = %m, "internal error on a page");
            "internal error".into()
        }
        other => other.to_string(),
    }
}

async fn session(req: &HttpRequest, state: &AppState) -> Option<SessionRecord> {
    let token = cookie_token(req)?;
    service(state).session(&token).await.ok()
}

fn login_redirect() -> HttpResponse {
    see_other("/ui/login")
}

/// The session of a form post, with its CSRF token checked.
async fn form_session(
    req: &HttpRequest,
    state: &AppState,
    csrf: &str,
) -> Result<SessionRecord, HttpResponse> {
    let Some(s) = session(req, state).await else {
        return Err(login_redirect());
    };
    if !ct_eq(csrf, &s.csrf_token) {
        return Err(HttpResponse::Forbidden()
            .content_type("text/plain; charset=utf-8")
            .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
            .body("csrf: the form's token is missing or wrong; reload the page"));
    }
    Ok(s)
}

// ---- static ----

async fn static_file(req: HttpRequest) -> HttpResponse {
    // htmx is a pinned vendored file: cached for a year. The stylesheet changes with the
    // project, so a day.
    let (body, ty, cache) = match req.match_info().get("file") {
        Some("htmx.min.js") => (
            HTMX,
            "text/javascript; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
        Some("ui.css") => (CSS, "text/css; charset=utf-8", "public, max-age=86400"),
        _ => return HttpResponse::NotFound().finish(),
    };
    HttpResponse::Ok()
        .content_type(ty)
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

// ---- login ----

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage {
    error: Option<String>,
    oidc: bool,
}

async fn login_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let f = web::Query::<Flash>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    render(&LoginPage {
        error: f.error,
        oidc: oidc_config(&state).is_ok(),
    })
}

#[derive(Deserialize)]
struct LoginForm {
    user_id: String,
    password: String,
}

async fn login(state: web::Data<AppState>, form: web::Form<LoginForm>) -> HttpResponse {
    match service(&state).login(&form.user_id, &form.password).await {
        Ok((token, s)) => {
            let mut r = see_other("/ui/queue");
            if let Ok(v) = header::HeaderValue::from_str(&session_cookie(&token, &s)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(ReviewServiceError::Unauthenticated) => see_other(&with_flash(
            "/ui/login",
            "error",
            "wrong user id or password",
        )),
        Err(e) => see_other(&with_flash("/ui/login", "error", &message(&e))),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let s = match form_session(&req, &state, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(token) = cookie_token(&req) {
        let _ = service(&state).logout(&token, &s.user).await;
    }
    let mut r = see_other("/ui/login");
    let gone = format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict");
    if let Ok(v) = header::HeaderValue::from_str(&gone) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

// ---- queue ----

struct Row {
    case_id: String,
    path_id: String,
    alert_id: String,
    alert_type: String,
    priority: String,
    state: String,
    assignee: String,
    opened_at: String,
    sla_due: String,
    sla_class: &'static str,
    sar_due: String,
    sar_class: &'static str,
}

fn sla_class(s: SlaStatus) -> &'static str {
    match s {
        SlaStatus::Ok => "ok",
        SlaStatus::Warn => "warn",
        SlaStatus::Breach => "breach",
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[derive(Template)]
#[template(path = "ui/queue.html")]
struct QueuePage {
    nav: Nav,
    flash: Flash,
    view: String,
    alert_type: String,
    priority: String,
    state: String,
    sla: String,
    sort: String,
    rows: Vec<Row>,
}

#[derive(Deserialize, Default)]
struct QueueQuery {
    view: Option<String>,
    alert_type: Option<String>,
    priority: Option<String>,
    state: Option<String>,
    sla: Option<String>,
    sort: Option<String>,
    error: Option<String>,
    msg: Option<String>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

async fn queue(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(s) = session(&req, &state).await else {
        return login_redirect();
    };
    let q = web::Query::<QueueQuery>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let view = match q.view.as_deref() {
        Some("team") => "team",
        _ => "mine",
    };
    let filter = CaseFilter {
        state: nonempty(&q.state),
        assignee: (view == "mine").then(|| s.user.user_id.clone()),
        alert_type: nonempty(&q.alert_type),
        priority: nonempty(&q.priority),
        customer_id: None,
        limit: Some(500),
    };
    let sla = nonempty(&q.sla);
    let mut flash = Flash {
        error: q.error.clone(),
        msg: q.msg.clone(),
    };
    let mut cases = match service(&state).list(&filter, sla.as_deref()).await {
        Ok(c) => c,
        Err(e) => {
            flash.error = Some(message(&e));
            Vec::new()
        }
    };
    let sort = match q.sort.as_deref() {
        Some("oldest") => "oldest",
        Some("sla") => "sla",
        _ => "priority",
    };
    match sort {
        "oldest" => cases.sort_by_key(|c| c.case.opened_at),
        "sla" => cases.sort_by_key(|c| c.sla_breach_at),
        _ => {}
    }
    let rows = cases
        .into_iter()
        .map(|c| Row {
            path_id: enc(&c.case.case_id),
            case_id: c.case.case_id.clone(),
            alert_id: c.case.alert_id.clone(),
            alert_type: c.case.alert_type.clone(),
            priority: c.case.priority.clone(),
            state: c.case.state.name().to_string(),
            assignee: c.case.assignee.clone().unwrap_or_else(|| "-".into()),
            opened_at: when(c.case.opened_at),
            sla_due: if c.case.state.is_terminal() {
                "-".into()
            } else {
                when(c.sla_breach_at)
            },
            sla_class: sla_class(c.sla_status),
            sar_due: c.sar_due_at.map(when).unwrap_or_else(|| "-".into()),
            sar_class: c.sar_status.map(sla_class).unwrap_or("ok"),
        })
        .collect();
    render(&QueuePage {
        nav: Nav::of(&s),
        flash,
        view: view.into(),
        alert_type: q.alert_type.unwrap_or_default(),
        priority: q.priority.unwrap_or_default(),
        state: q.state.unwrap_or_default(),
        sla: q.sla.unwrap_or_default(),
        sort: sort.into(),
        rows,
    })
}

#[derive(Deserialize)]
struct PullForm {
    csrf: String,
    alert_type: Option<String>,
}

async fn pull_next(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<PullForm>,
) -> HttpResponse {
    let s = match form_session(&req, &state, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match service(&state)
        .pull_next(&s.user, nonempty(&form.alert_type).as_deref())
        .await
    {
        Ok(Some(c)) => see_other(&format!("/ui/cases/{}", enc(&c.case_id))),
        Ok(None) => see_other(&with_flash("/ui/queue", "msg", "no case is waiting")),
        Err(e) => see_other(&with_flash("/ui/queue", "error", &message(&e))),
    }
}

// ---- case ----

/// A citation: the evidence id and the page anchor of its row (transactions and screening
/// hits are their own targets; other evidence is listed under the decision).
struct Cite {
    id: String,
    anchor: String,
    listed: bool,
}

fn cite(id: &str) -> Cite {
    Cite {
        listed: !(id.starts_with("tx:") || id.starts_with("screen:")),
        id: id.to_string(),
        anchor: format!(
            "ev-{}",
            id.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect::<String>()
        ),
    }
}

struct FactorView {
    name: String,
    points: String,
    explanation: String,
    evidence: Vec<Cite>,
}

struct HitView {
    hit_id: String,
    anchor: String,
    evidence_id: String,
    matched_name: String,
    customer_name: String,
    score: String,
    class: String,
    discount_reason: String,
    breakdown: Option<BreakdownView>,
    disposition: String,
}

/// The per-field score breakdown of one screening candidate.
struct BreakdownView {
    name_level: String,
    pairs: Vec<PairView>,
    fields: Vec<FieldView>,
    customer_only: String,
    list_only: String,
    disqualifiers: String,
}

struct PairView {
    customer: String,
    list: String,
    relation: String,
    edits: u32,
    similarity: String,
}

struct FieldView {
    field: &'static str,
    relation: String,
    customer: String,
    list: String,
}

fn breakdown_view(v: &Value) -> Option<BreakdownView> {
    let b: HitBreakdown = serde_json::from_value(v.clone()).ok()?;
    let field = |field: &'static str, c: &FieldCheck| FieldView {
        field,
        relation: c.relation.clone(),
        customer: c.customer.clone().unwrap_or_else(|| "-".into()),
        list: if c.list.is_empty() {
            "-".into()
        } else {
            c.list.join("; ")
        },
    };
    Some(BreakdownView {
        name_level: b.name_level.clone(),
        pairs: b
            .name_pairs
            .iter()
            .map(|p| PairView {
                customer: p.customer.clone(),
                list: p.list.clone(),
                relation: p.relation.clone(),
                edits: p.edits,
                similarity: format!("{:.2}", p.similarity),
            })
            .collect(),
        fields: vec![
            field("date of birth", &b.date_of_birth),
            field("country", &b.country),
            field("entity type", &b.entity_type),
            field("identifiers", &b.identifiers),
        ],
        customer_only: b.customer_only.join(", "),
        list_only: b.list_only.join(", "),
        disqualifiers: b
            .disqualifiers
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

struct TxView {
    id: String,
    anchor: String,
    at: String,
    amount: String,
    direction: String,
    kind: String,
    counterparty: String,
    description: String,
}

struct AgentView {
    agent: String,
    model: String,
    latency_ms: String,
    cost: String,
    degraded: bool,
    note: String,
}

struct EventView {
    at: String,
    actor: String,
    action: String,
    detail: String,
}

struct CommentView {
    at: String,
    user: String,
    body: String,
}

#[derive(Template)]
#[template(path = "ui/case.html")]
struct CasePage {
    nav: Nav,
    flash: Flash,
    case_id: String,
    path_id: String,
    alert_id: String,
    customer_id: String,
    customer_name: String,
    alert_type: String,
    priority: String,
    state: String,
    assignee: String,
    sla_due: String,
    sla_class: &'static str,
    sar_due: String,
    sar_class: &'static str,
    engine_disposition: String,
    risk_score: String,
    rationale: String,
    narrative: String,
    evidence_ids: Vec<Cite>,
    factors: Vec<FactorView>,
    hits: Vec<HitView>,
    transactions: Vec<TxView>,
    chart: String,
    agents: Vec<AgentView>,
    history: Vec<EventView>,
    comments: Vec<CommentView>,
    requested_by: String,
    case_rationale: String,
    // What the user may do.
    may_work: bool,
    may_assign: bool,
    may_approve: bool,
    terminal: bool,
    is_open: bool,
}

fn s_of(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn hit_view(v: &Value, dispositions: &BTreeMap<String, String>) -> HitView {
    let hit_id = format!("{}:{}", s_of(v, "/list"), s_of(v, "/entry_id"));
    let breakdown = v.get("breakdown").and_then(breakdown_view);
    HitView {
        anchor: cite(&s_of(v, "/evidence_id")).anchor,
        disposition: dispositions.get(&hit_id).cloned().unwrap_or_default(),
        hit_id,
        evidence_id: s_of(v, "/evidence_id"),
        matched_name: s_of(v, "/matched_name"),
        customer_name: s_of(v, "/customer_name"),
        score: v
            .get("score")
            .and_then(Value::as_f64)
            .map(|f| format!("{f:.3}"))
            .unwrap_or_default(),
        class: s_of(v, "/class"),
        discount_reason: s_of(v, "/discount_reason"),
        breakdown,
    }
}

async fn case_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(s) = session(&req, &state).await else {
        return login_redirect();
    };
    let flash = web::Query::<Flash>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let id = req.match_info().get("id").unwrap_or_default().to_string();
    let review = service(&state);
    let view = match review.get(&id).await {
        Ok(v) => v,
        Err(e) => {
            let status = match e {
                ReviewServiceError::NotFound(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            let mut r = render(&ErrorPage {
                nav: Nav::of(&s),
                message: message(&e),
            });
            *r.status_mut() = status;
            return r;
        }
    };
    let comments = review.comments(&id).await.unwrap_or_default();
    let store = state.engine.store();
    let alert: Value = match store.alert(&view.case.alert_id).await {
        Ok(Some(a)) => serde_json::from_str(&a.raw_json).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let decision: Value = store
        .decision(&view.case.alert_id)
        .await
        .ok()
        .flatten()
        .unwrap_or(Value::Null);
    let c = &view.case;
    let doc = &c.doc;
    let dispositions: BTreeMap<String, String> = doc
        .hit_dispositions
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().to_string()))
        .collect();
    let mut hits: Vec<HitView> = decision
        .get("screening_hits")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|h| hit_view(h, &dispositions)).collect())
        .unwrap_or_default();
    // Hits of the case the decision does not detail (older decisions) are still listed.
    for h in &doc.hits {
        if !hits.iter().any(|x| &x.hit_id == h) {
            hits.push(HitView {
                anchor: cite(&format!("screen:{h}")).anchor,
                hit_id: h.clone(),
                evidence_id: String::new(),
                matched_name: String::new(),
                customer_name: String::new(),
                score: String::new(),
                class: String::new(),
                discount_reason: String::new(),
                breakdown: None,
                disposition: dispositions.get(h).cloned().unwrap_or_default(),
            });
        }
    }
    let factors = decision
        .get("factors")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|f| FactorView {
                    name: s_of(f, "/name"),
                    points: f
                        .get("points")
                        .and_then(Value::as_f64)
                        .map(|p| format!("{p:+.1}"))
                        .unwrap_or_default(),
                    explanation: s_of(f, "/explanation"),
                    evidence: f
                        .get("evidence")
                        .and_then(Value::as_array)
                        .map(|e| e.iter().filter_map(|x| x.as_str().map(cite)).collect())
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    let txs: Vec<Value> = alert
        .get("transactions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let transactions: Vec<TxView> = txs
        .iter()
        .map(|t| TxView {
            anchor: cite(&format!("tx:{}", s_of(t, "/transaction_id"))).anchor,
            id: s_of(t, "/transaction_id"),
            at: s_of(t, "/timestamp"),
            amount: format!(
                "{} {}",
                t.get("amount")
                    .and_then(Value::as_f64)
                    .map(|a| format!("{a:.2}"))
                    .unwrap_or_default(),
                s_of(t, "/currency")
            ),
            direction: s_of(t, "/direction"),
            kind: {
                let k = s_of(t, "/type");
                if k.is_empty() { s_of(t, "/kind") } else { k }
            },
            counterparty: s_of(t, "/counterparty/name"),
            description: s_of(t, "/description"),
        })
        .collect();
    let points: Vec<Point> = txs
        .iter()
        .map(|t| Point {
            label: s_of(t, "/timestamp").chars().take(10).collect(),
            value: t.get("amount").and_then(Value::as_f64).unwrap_or(0.0),
            class: if s_of(t, "/direction").eq_ignore_ascii_case("OUT") {
                "out"
            } else {
                "in"
            },
        })
        .collect();
    let chart = if points.is_empty() {
        String::new()
    } else {
        bars(
            "Transaction amounts over time (inbound and outbound)",
            &points,
            None,
        )
    };
    let agents = decision
        .get("agents")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|g| AgentView {
                    agent: s_of(g, "/agent"),
                    model: format!("{} / {}", s_of(g, "/provider"), s_of(g, "/model")),
                    latency_ms: s_of(g, "/latency_ms"),
                    cost: g
                        .get("cost_usd")
                        .and_then(Value::as_f64)
                        .map(|x| format!("${x:.4}"))
                        .unwrap_or_default(),
                    degraded: g.get("degraded").and_then(Value::as_bool).unwrap_or(false),
                    note: s_of(g, "/note"),
                })
                .collect()
        })
        .unwrap_or_default();
    let history = doc
        .history
        .iter()
        .rev()
        .map(|e| EventView {
            at: when(e.at),
            actor: e.actor.clone(),
            action: e.action.clone(),
            detail: if e.detail.is_null() {
                String::new()
            } else {
                e.detail.to_string()
            },
        })
        .collect();
    let roles = &s.user.roles;
    let me = s.user.user_id.clone();
    let pending = c.state.name() == "pending_approval";
    let terminal = c.state.is_terminal();
    let page = CasePage {
        may_work: can_work(roles) && !terminal && !pending,
        may_assign: roles.contains(&UserRole::Supervisor),
        may_approve: pending
            && roles.contains(&UserRole::Reviewer)
            && !doc.workers.contains(&me)
            && doc.requested_by.as_deref() != Some(me.as_str()),
        terminal,
        is_open: matches!(c.state.name(), "open" | "reopened" | "escalated"),
        nav: Nav::of(&s),
        flash,
        path_id: enc(&c.case_id),
        case_id: c.case_id.clone(),
        alert_id: c.alert_id.clone(),
        customer_id: c.customer_id.clone(),
        customer_name: s_of(&alert, "/customer/name"),
        alert_type: c.alert_type.clone(),
        priority: c.priority.clone(),
        state: c.state.name().to_string(),
        assignee: c.assignee.clone().unwrap_or_else(|| "nobody".into()),
        sla_due: if terminal {
            "-".into()
        } else {
            when(view.sla_breach_at)
        },
        sla_class: sla_class(view.sla_status),
        sar_due: view.sar_due_at.map(when).unwrap_or_else(|| "-".into()),
        sar_class: view.sar_status.map(sla_class).unwrap_or("ok"),
        engine_disposition: s_of(&decision, "/disposition"),
        risk_score: decision
            .get("risk_score")
            .and_then(Value::as_f64)
            .map(|x| format!("{x:.1}"))
            .unwrap_or_default(),
        rationale: s_of(&decision, "/rationale"),
        narrative: s_of(&decision, "/narrative"),
        evidence_ids: decision
            .get("evidence_ids")
            .and_then(Value::as_array)
            .map(|e| e.iter().filter_map(|x| x.as_str().map(cite)).collect())
            .unwrap_or_default(),
        factors,
        hits,
        transactions,
        chart,
        agents,
        history,
        comments: comments
            .into_iter()
            .map(|c| CommentView {
                at: when(c.created_at),
                user: c.user_id,
                body: c.body,
            })
            .collect(),
        requested_by: doc.requested_by.clone().unwrap_or_default(),
        case_rationale: doc.rationale.clone().unwrap_or_default(),
    };
    render(&page)
}

/// Every action form of the case page: the fields of all of them.
#[derive(Deserialize)]
struct ActionForm {
    csrf: String,
    assignee: Option<String>,
    action: Option<String>,
    reason: Option<String>,
    hit: Option<String>,
    disposition: Option<String>,
    body: Option<String>,
    outcome: Option<String>,
    rationale: Option<String>,
    override_reason: Option<String>,
    suspect_identified: Option<String>,
    note: Option<String>,
}

async fn case_action(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<ActionForm>,
) -> HttpResponse {
    let s = match form_session(&req, &state, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let id = req.match_info().get("id").unwrap_or_default().to_string();
    let action = req.match_info().get("action").unwrap_or_default();
    let back = format!("/ui/cases/{}", enc(&id));
    let review = service(&state);
    let u = &s.user;
    let f = form.into_inner();
    let text = |o: &Option<String>| o.clone().unwrap_or_default();
    let result: Result<&str, ReviewServiceError> = match action {
        "assign" => review
            .assign(u, &id, nonempty(&f.assignee).as_deref())
            .await
            .map(|_| "assigned"),
        "transition" => review
            .transition(u, &id, &text(&f.action), nonempty(&f.reason).as_deref())
            .await
            .map(|_| "done"),
        "hit" => review
            .disposition_hit(u, &id, &text(&f.hit), &text(&f.disposition))
            .await
            .map(|_| "hit dispositioned"),
        "comment" => review
            .comment(u, &id, &text(&f.body))
            .await
            .map(|_| "comment added"),
        "close" => review
            .request_close(
                u,
                &id,
                &text(&f.outcome),
                &text(&f.rationale),
                nonempty(&f.override_reason).as_deref(),
            )
            .await
            .map(|_| "close requested; a reviewer must approve"),
        "sar" => review
            .request_sar(
                u,
                &id,
                &text(&f.rationale),
                f.suspect_identified.as_deref() != Some("no"),
                None,
            )
            .await
            .map(|_| "SAR filing requested; a reviewer must approve"),
        "approve" => review
            .approve(u, &id, nonempty(&f.note).as_deref())
            .await
            .map(|_| "approved"),
        "reject" => review
            .reject(u, &id, &text(&f.reason))
            .await
            .map(|_| "rejected"),
        _ => return HttpResponse::NotFound().finish(),
    };
    match result {
        Ok(m) => see_other(&with_flash(&back, "msg", m)),
        Err(e) => see_other(&with_flash(&back, "error", &message(&e))),
    }
}

#[derive(Template)]
#[template(path = "ui/error.html")]
struct ErrorPage {
    nav: Nav,
    message: String,
}

// ---- QA ----

struct SampleRow {
    sample_id: String,
    path_id: String,
    period: String,
    alert_id: String,
    reviewed: bool,
    verdict: String,
}

struct PeriodRow {
    period: String,
    drawn: u64,
    reviewed: u64,
    misses: u64,
    upper_bound: String,
    sprt: String,
}

#[derive(Template)]
#[template(path = "ui/qa.html")]
struct QaPage {
    nav: Nav,
    flash: Flash,
    may_review: bool,
    samples: Vec<SampleRow>,
    periods: Vec<PeriodRow>,
    chart: String,
    confidence: String,
    canary: String,
    canary_class: &'static str,
}

async fn qa_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(s) = session(&req, &state).await else {
        return login_redirect();
    };
    let mut flash = web::Query::<Flash>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let review = service(&state);
    let roles = &s.user.roles;
    let may_review = roles.contains(&UserRole::Qa);
    let may_report = may_review || roles.contains(&UserRole::Supervisor);
    if !may_report {
        let mut r = render(&ErrorPage {
            nav: Nav::of(&s),
            message: "forbidden: the QA pages need the qa or supervisor role".into(),
        });
        *r.status_mut() = StatusCode::FORBIDDEN;
        return r;
    }
    let samples = if may_review {
        match review.qa_queue(&s.user, None).await {
            Ok(items) => items
                .into_iter()
                .map(|i| SampleRow {
                    path_id: enc(&i.sample_id),
                    sample_id: i.sample_id,
                    period: i.period,
                    alert_id: i.alert_id,
                    reviewed: i.reviewed,
                    verdict: i.verdict.unwrap_or_default(),
                })
                .collect(),
            Err(e) => {
                flash.error = Some(message(&e));
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let (periods, chart, confidence) = match review.qa_report(None).await {
        Ok(r) => {
            let points: Vec<Point> = r
                .periods
                .iter()
                .map(|p| Point {
                    label: p.period.clone(),
                    value: p.upper_bound * 100.0,
                    class: if p.misses > 0 { "warn" } else { "in" },
                })
                .collect();
            let chart = if points.is_empty() {
                String::new()
            } else {
                bars(
                    &format!(
                        "Upper bound on the miss rate per period, percent, {:.0}% confidence",
                        r.confidence * 100.0
                    ),
                    &points,
                    None,
                )
            };
            let rows = r
                .periods
                .iter()
                .map(|p| PeriodRow {
                    period: p.period.clone(),
                    drawn: p.drawn,
                    reviewed: p.reviewed,
                    misses: p.misses,
                    upper_bound: format!("{:.2}%", p.upper_bound * 100.0),
                    sprt: format!("{:?}", p.sprt.decision),
                })
                .collect();
            (rows, chart, format!("{:.0}%", r.confidence * 100.0))
        }
        Err(e) => {
            flash.error = Some(message(&e));
            (Vec::new(), String::new(), String::new())
        }
    };
    let (canary, canary_class) = match review.canary_status().await {
        Ok(c) => {
            let v = serde_json::to_value(&c).unwrap_or(Value::Null);
            let ok = v.get("ok").and_then(Value::as_bool).unwrap_or(false);
            (
                if ok {
                    "passing".to_string()
                } else {
                    format!("failing: {}", s_of(&v, "/failures"))
                },
                if ok { "ok" } else { "breach" },
            )
        }
        Err(e) => (message(&e), "warn"),
    };
    render(&QaPage {
        nav: Nav::of(&s),
        flash,
        may_review,
        samples,
        periods,
        chart,
        confidence,
        canary,
        canary_class,
    })
}

#[derive(Template)]
#[template(path = "ui/qa_item.html")]
struct QaItemPage {
    nav: Nav,
    flash: Flash,
    sample_id: String,
    path_id: String,
    alert_id: String,
    alert_json: String,
    reviewed: bool,
    verdict: String,
    engine_disposition: String,
    risk_score: String,
}

async fn qa_item_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(s) = session(&req, &state).await else {
        return login_redirect();
    };
    let flash = web::Query::<Flash>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let id = req.match_info().get("id").unwrap_or_default().to_string();
    match service(&state).qa_item(&s.user, &id).await {
        Ok(i) => render(&QaItemPage {
            nav: Nav::of(&s),
            flash,
            path_id: enc(&i.sample_id),
            sample_id: i.sample_id,
            alert_id: i.alert_id,
            alert_json: serde_json::to_string_pretty(&i.alert).unwrap_or_default(),
            reviewed: i.reviewed,
            verdict: i.verdict.unwrap_or_default(),
            engine_disposition: i.engine_disposition.unwrap_or_default(),
            risk_score: i.risk_score.map(|x| format!("{x:.1}")).unwrap_or_default(),
        }),
        Err(e) => {
            let mut r = render(&ErrorPage {
                nav: Nav::of(&s),
                message: message(&e),
            });
            *r.status_mut() = StatusCode::FORBIDDEN;
            r
        }
    }
}

#[derive(Deserialize)]
struct VerdictForm {
    csrf: String,
    verdict: String,
    #[serde(default)]
    notes: String,
}

async fn qa_verdict(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<VerdictForm>,
) -> HttpResponse {
    let s = match form_session(&req, &state, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let id = req.match_info().get("id").unwrap_or_default().to_string();
    let back = format!("/ui/qa/{}", enc(&id));
    match service(&state)
        .qa_record(&s.user, &id, &form.verdict, &form.notes)
        .await
    {
        Ok(_) => see_other(&with_flash(&back, "msg", "verdict recorded")),
        Err(e) => see_other(&with_flash(&back, "error", &message(&e))),
    }
}

// ---- admin ----

struct UserRow {
    user_id: String,
    path_id: String,
    display_name: String,
    roles: String,
    disabled: bool,
}

#[derive(Template)]
#[template(path = "ui/admin.html")]
struct AdminPage {
    nav: Nav,
    flash: Flash,
    users: Vec<UserRow>,
}

async fn admin_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(s) = session(&req, &state).await else {
        return login_redirect();
    };
    let mut flash = web::Query::<Flash>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    if !s.user.roles.contains(&UserRole::Admin) {
        let mut r = render(&ErrorPage {
            nav: Nav::of(&s),
            message: "forbidden: user administration needs the admin role".into(),
        });
        *r.status_mut() = StatusCode::FORBIDDEN;
        return r;
    }
    let users = match state.engine.store().users().await {
        Ok(u) => u,
        Err(e) => {
            flash.error = Some(message(&e.into()));
            Vec::new()
        }
    };
    render(&AdminPage {
        nav: Nav::of(&s),
        flash,
        users: users
            .into_iter()
            .map(|u| UserRow {
                path_id: enc(&u.user_id),
                roles: u
                    .roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                user_id: u.user_id,
                display_name: u.display_name,
                disabled: u.disabled,
            })
            .collect(),
    })
}

#[derive(Deserialize)]
struct RolesForm {
    csrf: String,
    roles: String,
}

async fn admin_roles(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<RolesForm>,
) -> HttpResponse {
    let s = match form_session(&req, &state, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let target = req.match_info().get("id").unwrap_or_default().to_string();
    let result = if !s.user.roles.contains(&UserRole::Admin) {
        Err(ReviewServiceError::Forbidden(
            "user administration needs the admin role".into(),
        ))
    } else if target == s.user.user_id {
        Err(ReviewServiceError::Forbidden(
            "an admin cannot change their own account (ask another admin)".into(),
        ))
    } else {
        match UserRole::parse_list(&form.roles) {
            Ok(roles) => {
                service(&state)
                    .set_roles(&format!("user:{}", s.user.user_id), &target, roles)
                    .await
            }
            Err(e) => Err(e.into()),
        }
    };
    match result {
        Ok(_) => see_other(&with_flash("/ui/admin", "msg", "roles changed")),
        Err(e) => see_other(&with_flash("/ui/admin", "error", &message(&e))),
    }
}

async fn root() -> HttpResponse {
    see_other("/ui/queue")
}

/// The `/ui` routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ui").route(web::get().to(root)))
        .service(web::resource("/ui/").route(web::get().to(root)))
        .service(web::resource("/ui/static/{file}").route(web::get().to(static_file)))
        .service(
            web::resource("/ui/login")
                .route(web::get().to(login_page))
                .route(web::post().to(login)),
        )
        .service(web::resource("/ui/logout").route(web::post().to(logout)))
        .service(web::resource("/ui/queue").route(web::get().to(queue)))
        .service(web::resource("/ui/queue/pull-next").route(web::post().to(pull_next)))
        .service(web::resource("/ui/cases/{id}").route(web::get().to(case_page)))
        .service(web::resource("/ui/cases/{id}/{action}").route(web::post().to(case_action)))
        .service(web::resource("/ui/qa").route(web::get().to(qa_page)))
        .service(web::resource("/ui/qa/{id}").route(web::get().to(qa_item_page)))
        .service(web::resource("/ui/qa/{id}/verdict").route(web::post().to(qa_verdict)))
        .service(web::resource("/ui/admin").route(web::get().to(admin_page)))
        .service(web::resource("/ui/admin/users/{id}").route(web::post().to(admin_roles)));
}

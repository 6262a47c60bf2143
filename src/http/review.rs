//! `/v1/session`, `/v1/cases`, `/v1/qa`, `/v1/users`, `/v1/canaries`: analyst review over
//! HTTP. Handlers only parse, authenticate and call [`crate::review::Review`], where every rule
//! is enforced (the browser pages call the same service).
//!
//! Authentication: a named user's session cookie (`aml_session`: Secure, HttpOnly,
//! SameSite=Strict; the session lives in the store), from `POST /v1/session`. Every
//! state-changing request made with the cookie must carry the session's CSRF token in
//! `X-CSRF-Token` (synchronizer token, compared in constant time), or it is refused with 403
//! `csrf`. API keys keep working for machines on the read routes (reader, auditor, admin);
//! review actions need a named user, so a shared key can never be one of the four eyes.

use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Access;
use super::error::ApiError;
use crate::domain::review::{ReviewError, UserRole};
use crate::review::auth::{CSRF_HEADER, SESSION_COOKIE, ct_eq};
use crate::review::{Review, ReviewConfig, ReviewServiceError};
use crate::store::StoreError;
use crate::store::review::{CaseFilter, SessionRecord, UserRecord};

/// An error of a review route: `{"error": code, "message": text, "field": name?}`.
#[derive(Debug, thiserror::Error)]
pub enum ReviewApiError {
    /// From the service.
    #[error(transparent)]
    Service(#[from] ReviewServiceError),
    /// From API-key authentication.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A state-changing request with the session cookie lacks the right CSRF token.
    #[error("a valid X-CSRF-Token header is required with a session cookie")]
    Csrf,
    /// The route needs a named user's session, not an API key.
    #[error("this route needs a named user's session (POST /v1/session)")]
    NeedsUser,
    /// The JSON body does not have the route's shape.
    #[error("{field}: {message}")]
    BadBody {
        /// Path of the offending field (`body` for the whole).
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl From<StoreError> for ReviewApiError {
    fn from(e: StoreError) -> Self {
        ReviewApiError::Service(e.into())
    }
}

impl ReviewApiError {
    fn code_and_field(&self) -> (&'static str, Option<&'static str>) {
        use ReviewServiceError as S;
        match self {
            ReviewApiError::Csrf => ("csrf", None),
            ReviewApiError::NeedsUser => ("user_required", None),
            ReviewApiError::BadBody { .. } => ("invalid", None),
            ReviewApiError::Api(e) => (e.code(), None),
            ReviewApiError::Service(e) => match e {
                S::Rule(r) => match r {
                    ReviewError::InvalidTransition { .. } => ("invalid_transition", None),
                    ReviewError::ApproverWorkedCase(_) => ("four_eyes", None),
                    ReviewError::MissingRole { .. } => ("forbidden", None),
                    ReviewError::MissingRationale => ("invalid", Some("rationale")),
                    ReviewError::UndispositionedHit(_) => ("invalid", Some("hit_dispositions")),
                    ReviewError::OverrideNeedsReason { .. } => ("invalid", Some("override_reason")),
                    ReviewError::Invalid { field, .. } => ("invalid", Some(field)),
                },
                S::Unauthenticated => ("unauthorized", None),
                S::Forbidden(_) => ("forbidden", None),
                S::NotFound(_) => ("not_found", None),
                S::Conflict(_) => ("conflict", None),
                S::TooManyAttempts { .. } => ("too_many_attempts", None),
                S::Invalid { field, .. } => ("invalid", Some(field)),
                S::Store(StoreError::Unavailable(_)) => ("not_supported", None),
                S::Store(_) => ("unavailable", None),
                S::Internal(_) => ("internal", None),
            },
        }
    }
}

impl ResponseError for ReviewApiError {
    fn status_code(&self) -> StatusCode {
        use ReviewServiceError as S;
        match self {
            ReviewApiError::Csrf | ReviewApiError::NeedsUser => StatusCode::FORBIDDEN,
            ReviewApiError::BadBody { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ReviewApiError::Api(e) => e.status_code(),
            ReviewApiError::Service(e) => match e {
                S::Rule(ReviewError::InvalidTransition { .. }) => StatusCode::CONFLICT,
                S::Rule(ReviewError::ApproverWorkedCase(_) | ReviewError::MissingRole { .. }) => {
                    StatusCode::FORBIDDEN
                }
                S::Rule(_) | S::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                S::Unauthenticated => StatusCode::UNAUTHORIZED,
                S::Forbidden(_) => StatusCode::FORBIDDEN,
                S::NotFound(_) => StatusCode::NOT_FOUND,
                S::Conflict(_) => StatusCode::CONFLICT,
                S::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
                S::Store(StoreError::Unavailable(_)) => StatusCode::NOT_IMPLEMENTED,
                S::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
                S::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (code, field) = self.code_and_field();
        let message = match self {
            ReviewApiError::Service(ReviewServiceError::Store(e)) => {
                // Database details go to the log only.
                tracing::error!(error = %e, "store error on a review route");
                "the service is temporarily unavailable; retry later".to_string()
            }
            ReviewApiError::Service(ReviewServiceError::Internal(m)) => {
                tracing::error!(error = %m, "internal error on a review route");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let mut body = json!({"error": code, "message": message});
        if let Some(f) = field {
            body["field"] = json!(f);
        }
        if let ReviewApiError::BadBody { field, .. } = self {
            body["field"] = json!(field);
        }
        let mut response = HttpResponse::build(self.status_code());
        if let ReviewApiError::Service(ReviewServiceError::TooManyAttempts {
            retry_after_seconds,
        }) = self
        {
            response.insert_header((header::RETRY_AFTER, retry_after_seconds.to_string()));
        }
        response.json(body)
    }
}

type Result<T> = std::result::Result<T, ReviewApiError>;

pub(super) fn service(state: &AppState) -> Review {
    Review::new(
        state.engine.store().clone(),
        state.engine.metrics().clone(),
        ReviewConfig::from_settings(state.engine.settings()),
    )
}

pub(super) fn cookie_token(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Who is calling.
enum Caller {
    /// A named user with a session.
    User(SessionRecord),
    /// A machine with an API key.
    Key,
}

/// Authenticates: the session cookie (with the CSRF check on state-changing methods), else a
/// bearer API key with `key_access` (when the route allows keys).
async fn caller(req: &HttpRequest, state: &AppState, key_access: Option<Access>) -> Result<Caller> {
    if let Some(token) = cookie_token(req) {
        let session = service(state).session(&token).await?;
        let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = req
                .headers()
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !ct_eq(sent, &session.csrf_token) {
                return Err(ReviewApiError::Csrf);
            }
        }
        return Ok(Caller::User(session));
    }
    match key_access {
        Some(access) if req.headers().contains_key(header::AUTHORIZATION) => {
            state.keys.check(req, access)?;
            Ok(Caller::Key)
        }
        Some(_) => Err(ReviewServiceError::Unauthenticated.into()),
        None => {
            if req.headers().contains_key(header::AUTHORIZATION) {
                Err(ReviewApiError::NeedsUser)
            } else {
                Err(ReviewServiceError::Unauthenticated.into())
            }
        }
    }
}

/// A named user (session) is required.
async fn user(req: &HttpRequest, state: &AppState) -> Result<UserRecord> {
    match caller(req, state, None).await? {
        Caller::User(s) => Ok(s.user),
        Caller::Key => Err(ReviewApiError::NeedsUser),
    }
}

fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ReviewApiError::BadBody {
            field: if path == "." { "body".into() } else { path },
            message: e.inner().to_string(),
        }
    })
}

fn id(req: &HttpRequest) -> String {
    req.match_info().get("id").unwrap_or_default().to_string()
}

fn query<T: DeserializeOwned>(req: &HttpRequest) -> Result<T> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::BadRequest(format!("query string: {e}")).into())
}

fn session_json(s: &SessionRecord) -> Value {
    json!({
        "user": s.user,
        "csrf_token": s.csrf_token,
        "expires_at": s.expires_at,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    user_id: String,
    password: String,
}

/// `POST /v1/session`: log in with a local account.
pub async fn login(state: web::Data<AppState>, bytes: web::Bytes) -> Result<HttpResponse> {
    let b: LoginBody = body(&bytes)?;
    let review = service(&state);
    let (token, s) = review.login(&b.user_id, &b.password).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::SET_COOKIE, session_cookie(&token, &s)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(session_json(&s)))
}

pub(super) fn session_cookie(token: &str, s: &SessionRecord) -> String {
    let max_age = (s.expires_at - Utc::now()).num_seconds().max(0);
    format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
    )
}

pub(super) fn oidc_config(state: &AppState) -> Result<crate::review::oidc::OidcConfig> {
    crate::review::oidc::OidcConfig::from_settings(state.engine.settings()).ok_or_else(|| {
        ReviewServiceError::NotFound("OIDC login (OIDC_ISSUER is not configured)".into()).into()
    })
}

/// `GET /v1/session/oidc/start`: 302 to the IdP (authorization code + PKCE).
pub async fn oidc_start(state: web::Data<AppState>) -> Result<HttpResponse> {
    let cfg = oidc_config(&state)?;
    let url = service(&state).oidc_start(&cfg).await?;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /v1/session/oidc/callback?code=...&state=...`: finishes the login; sets the session
/// cookie and answers like `POST /v1/session`.
pub async fn oidc_callback(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    let cfg = oidc_config(&state)?;
    let q: CallbackQuery = query(&req)?;
    if let Some(e) = q.error {
        tracing::warn!(error = %e.chars().take(100).collect::<String>(), "OIDC: the IdP refused the login");
        return Err(ReviewServiceError::Unauthenticated.into());
    }
    let (code, st) = match (q.code, q.state) {
        (Some(c), Some(s)) => (c, s),
        (None, _) => {
            return Err(ReviewServiceError::Invalid {
                field: "code",
                message: "missing".into(),
            }
            .into());
        }
        (_, None) => {
            return Err(ReviewServiceError::Invalid {
                field: "state",
                message: "missing".into(),
            }
            .into());
        }
    };
    let (token, s) = service(&state).oidc_callback(&cfg, &code, &st).await?;
    // A browser (it asks for HTML) lands on the review pages; API clients get JSON.
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        return Ok(HttpResponse::SeeOther()
            .insert_header((header::SET_COOKIE, session_cookie(&token, &s)))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::LOCATION, "/ui/queue"))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::SET_COOKIE, session_cookie(&token, &s)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(session_json(&s)))
}

/// `GET /v1/session`: the current user and the CSRF token.
pub async fn current(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    match caller(&req, &state, None).await? {
        Caller::User(s) => Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(session_json(&s))),
        Caller::Key => Err(ReviewApiError::NeedsUser),
    }
}

/// `DELETE /v1/session`: log out.
pub async fn logout(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    let u = user(&req, &state).await?;
    if let Some(token) = cookie_token(&req) {
        service(&state).logout(&token, &u).await?;
    }
    Ok(HttpResponse::NoContent()
        .insert_header((
            header::SET_COOKIE,
            format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict"),
        ))
        .finish())
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    assignee: Option<String>,
    alert_type: Option<String>,
    priority: Option<String>,
    sla: Option<String>,
    customer_id: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/cases`: the queue, filtered (`state`, `assignee`, `alert_type`, `priority`, `sla`,
/// `limit`); `assignee=me` means the caller.
pub async fn list_cases(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    let who = caller(&req, &state, Some(Access::Read)).await?;
    let mut q: ListQuery = query(&req)?;
    if q.assignee.as_deref() == Some("me") {
        q.assignee = match &who {
            Caller::User(s) => Some(s.user.user_id.clone()),
            Caller::Key => return Err(ReviewApiError::NeedsUser),
        };
    }
    let filter = CaseFilter {
        state: q.state,
        assignee: q.assignee,
        alert_type: q.alert_type,
        priority: q.priority,
        customer_id: q.customer_id,
        limit: q.limit,
    };
    let cases = service(&state).list(&filter, q.sla.as_deref()).await?;
    Ok(HttpResponse::Ok().json(json!({"cases": cases})))
}

/// `GET /v1/cases/{id}`: a case with its clocks and comments.
pub async fn get_case(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    caller(&req, &state, Some(Access::Read)).await?;
    let review = service(&state);
    let case = review.get(&id(&req)).await?;
    let comments = review.comments(&id(&req)).await?;
    let mut v = serde_json::to_value(&case).unwrap_or_default();
    v["comments"] = json!(comments);
    Ok(HttpResponse::Ok().json(v))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    assignee: Option<String>,
}

/// `POST /v1/cases/{id}/assign`: `{"assignee": "bob"}` (omit for least-loaded).
pub async fn assign(
    req: HttpRequest,
    state: web::Data<AppState>,
    bytes: web::Bytes,
) -> Result<HttpResponse> {
    let u = user(&req, &state).await?;
    let b: AssignBody = if bytes.is_empty() {
        AssignBody::default()
    } else {
        body(&bytes)?
    };
    let c = service(&state)
        .assign(&u, &id(&req), b.assignee.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(c))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PullBody {
    alert_type: Option<String>,
}

/// `POST /v1/cases/pull-next`: take the next case of the queue, locked to the caller.
pub async fn pull_next(
    req: HttpRequest,
    state: web::Data<AppState>,
    bytes: web::Bytes,
) -> Result<HttpResponse> {
    let u = user(&req, &state).await?;
    let b: PullBody = if bytes.is_empty() {
        PullBody::default()
    } else {
        body(&bytes)?
    };
    match service(&state)
        .pull_next(&u, b.alert_type.as_deref())
        .await?
    {
        Some(c) => Ok(HttpResponse::Ok().json(c)),
        None => Ok(HttpResponse::NoContent().finish()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionBody {
    action: String,
    reason: Option<String>,
}

/// `POST /v1/cases/{id}/transition`: `start_review`, `escalate`, `reopen` (with `reason`).
pub async fn transition(
    req: HttpRequest,
    state: web::Data<AppState>,
    bytes: web::Bytes,
) -> Result<HttpResponse> {
    let u = user(&req, &state).await?;
    let b: TransitionBody = body(&bytes)?;
    let c = service(&state)
        .transition(&u, &id(&req), &b.action, b.reason.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HitBody {
    hit: String,
    disposition: String,
}

/// `POST /v1/cases/{id}/hits`: `{"hit": "OFAC_SDN:123", "disposition": "no_match"}`.
pub async fn disposition_hit(
    req: HttpRequest,
    state: web::Data<AppState>,
    bytes: web::Bytes,
) -> Result<HttpResponse> {
    let u = user(&req, &state).await?;
    let b: HitBody = body(&bytes)?;
    let c = service(&state)
        .disposition_hit(&u, &id(&req), &b.hit, &b.disposition)
        .await?;
    Ok(HttpResponse::Ok().json(c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentBody {
    body: String,
}

/// `POST /v1/cases/{id}/comments`.
pub async fn comment(
    req: HttpRequest,
    state: web::Data<AppState>,
    bytes: web::Bytes,
) -> Result<HttpResponse> {
    let u = user(&req, &state).await?;
    let b: CommentBody = body(&bytes)?;
    let c = service(&state).comment(&u, &id(&req), &b.body).await?;
    Ok(HttpResponse::Created().json(c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    outcome: String,
    rationale: String,
    override_reason: Option<String>,
}

/// `POST /v1/cases/{id}/close-request`: ask a reviewer to approve a close.
pub async fn close_request(
    req: HttpRequest,
    state: web::Data<AppState>,
    bytes: web::Bytes,
) -> Result<HttpResponse> {
    let u = user(&req, &state).await?;
    let b: CloseBody = body(&bytes)?;
    let c = service(&state)
        .request_close(
            &u,
            &id(&req),
            &b.outcome,
            &b.rationale,
            b.override_reason.as_deref(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SarBody {
    rationale: String,
    #[serde(default = "yes")]
    suspect_identified: bool,
    determined_at: Option<DateTime<Utc>>,
}

fn yes() -> bool {
    true
}

/// `POST /v1/cases/{id}/sar-request`: ask a reviewer to approve a SAR filing.
pub async fn sar_request(
    req: HttpRequest,
    state: web::Data<AppState>,
    bytes: web::Bytes,
) -> Result<HttpResponse> {
    let u = user(&req, &state).await?;
    let b: SarBody = body(&bytes)?;
    let c = service(&state)
        .request_sar(
            &u,
            &id(&req),
            &b.rationale,
            b.suspect_identified,
            b.determined_at,
        )
        .await?;
    Ok(HttpResponse::Ok().json(c))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    note: Option<String>,
}

/// `POST /v1/cases/{id}/approve`: four-eyes approval.
pub async fn approve(
    req: HttpRequest,
    state: web::Data<AppState>,
    bytes: web::Bytes,
) -> Result<HttpResponse> {
    let u = user(&req, &state).await?;
    let b: ApproveBody = if bytes.is_empty() {
        ApproveBody::default()
    } else {
        body(&bytes)?
    };
    let c = service(&state)
        .approve(&u, &id(&req), b.note.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectBody {
    reason: String,
}

/// `POST /v1/cases/{id}/reject`: send back to review with a reason.
pub async fn reject(
    req: HttpRequest,
    state: web::Data<AppState>,
    bytes: web::Bytes,
) -> Result<HttpResponse> {
    let u = user(&req, &state).await?;
    let b: RejectBody = body(&bytes)?;
    let c = service(&state).reject(&u, &id(&req), &b.reason).await?;
    Ok(HttpResponse::Ok().json(c))
}

#[derive(Deserialize)]
struct PeriodQuery {
    period: Option<String>,
    format: Option<String>,
}

/// `GET /v1/qa/samples?period=YYYY-MM`: the blind QA queue (role `qa`).
pub async fn qa_queue(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    let u = user(&req, &state).await?;
    let q: PeriodQuery = query(&req)?;
    let items = service(&state).qa_queue(&u, q.period.as_deref()).await?;
    Ok(HttpResponse::Ok().json(json!({"samples": items})))
}

/// `GET /v1/qa/samples/{id}`: one sample, blind until reviewed.
pub async fn qa_item(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    let u = user(&req, &state).await?;
    let item = service(&state).qa_item(&u, &id(&req)).await?;
    Ok(HttpResponse::Ok().json(item))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerdictBody {
    verdict: String,
    #[serde(default)]
    notes: String,
}

/// `POST /v1/qa/samples/{id}/verdict`: `{"verdict": "ok"|"miss", "notes": ...}`; the
/// response reveals the engine's verdict.
pub async fn qa_verdict(
    req: HttpRequest,
    state: web::Data<AppState>,
    bytes: web::Bytes,
) -> Result<HttpResponse> {
    let u = user(&req, &state).await?;
    let b: VerdictBody = body(&bytes)?;
    let item = service(&state)
        .qa_record(&u, &id(&req), &b.verdict, &b.notes)
        .await?;
    Ok(HttpResponse::Ok().json(item))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrawBody {
    period: String,
    seed: Option<u64>,
}

/// `POST /v1/qa/draw`: draw the period's sample (role `supervisor` or `qa`).
pub async fn qa_draw(
    req: HttpRequest,
    state: web::Data<AppState>,
    bytes: web::Bytes,
) -> Result<HttpResponse> {
    let u = user(&req, &state).await?;
    if !(u.roles.contains(&UserRole::Supervisor) || u.roles.contains(&UserRole::Qa)) {
        return Err(ReviewServiceError::Rule(ReviewError::MissingRole {
            needed: "supervisor",
            action: "qa_draw",
        })
        .into());
    }
    let b: DrawBody = body(&bytes)?;
    let plan = crate::domain::review::SamplingPlan::default_for(
        state.engine.settings().risk_score_high_threshold,
    );
    let seed = b.seed.unwrap_or_else(|| fastrand::u64(..));
    let drawn = service(&state)
        .draw_qa_sample(&format!("user:{}", u.user_id), &b.period, &plan, seed)
        .await?;
    Ok(HttpResponse::Ok().json(json!({"period": b.period, "seed": seed, "drawn": drawn.len()})))
}

/// `GET /v1/qa/report?period=YYYY-MM&format=json|html`: the examiner report (roles `qa`,
/// `supervisor`, or an auditor/admin API key).
pub async fn qa_report(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    if let Caller::User(s) = caller(&req, &state, Some(Access::Audit)).await?
        && !(s.user.roles.contains(&UserRole::Qa) || s.user.roles.contains(&UserRole::Supervisor))
    {
        return Err(ReviewServiceError::Rule(ReviewError::MissingRole {
            needed: "qa",
            action: "qa_report",
        })
        .into());
    }
    let q: PeriodQuery = query(&req)?;
    let report = service(&state).qa_report(q.period.as_deref()).await?;
    if q.format.as_deref() == Some("html") {
        return Ok(HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(crate::review::qa::report_html(&report)));
    }
    Ok(HttpResponse::Ok().json(report))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    user_id: String,
    #[serde(default)]
    display_name: String,
    roles: Vec<String>,
    password: Option<String>,
}

fn require_admin(u: &UserRecord) -> Result<()> {
    if u.roles.contains(&UserRole::Admin) {
        Ok(())
    } else {
        Err(ReviewServiceError::Rule(ReviewError::MissingRole {
            needed: "admin",
            action: "users",
        })
        .into())
    }
}

/// `GET /v1/users` (admin user, or an admin API key).
pub async fn list_users(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    if let Caller::User(s) = caller(&req, &state, Some(Access::Admin)).await? {
        require_admin(&s.user)?;
    }
    let users = state.engine.store().users().await?;
    Ok(HttpResponse::Ok().json(json!({"users": users})))
}

/// `POST /v1/users` (admin user): `{"user_id", "display_name", "roles": [...], "password"}`.
pub async fn add_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    bytes: web::Bytes,
) -> Result<HttpResponse> {
    let u = user(&req, &state).await?;
    require_admin(&u)?;
    let b: NewUser = body(&bytes)?;
    let roles = UserRole::parse_list(&b.roles.join(",")).map_err(ReviewServiceError::from)?;
    let created = service(&state)
        .add_user(
            &format!("user:{}", u.user_id),
            &b.user_id,
            &b.display_name,
            roles,
            b.password.as_deref(),
        )
        .await?;
    Ok(HttpResponse::Created().json(created))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChange {
    roles: Option<Vec<String>>,
    disabled: Option<bool>,
}

/// `POST /v1/users/{id}` (admin user): `{"roles": [...]}` and/or `{"disabled": true}`. Either
/// ends the user's sessions. An admin cannot change their own account here.
pub async fn change_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    bytes: web::Bytes,
) -> Result<HttpResponse> {
    let u = user(&req, &state).await?;
    require_admin(&u)?;
    let target = id(&req);
    if target == u.user_id {
        return Err(ReviewServiceError::Forbidden(
            "an admin cannot change their own account (ask another admin)".into(),
        )
        .into());
    }
    let b: UserChange = body(&bytes)?;
    let review = service(&state);
    let by = format!("user:{}", u.user_id);
    if let Some(roles) = b.roles {
        let roles = UserRole::parse_list(&roles.join(",")).map_err(ReviewServiceError::from)?;
        review.set_roles(&by, &target, roles).await?;
    }
    if b.disabled == Some(true) {
        review.disable_user(&by, &target).await?;
    }
    Ok(HttpResponse::Ok().json(review.user(&target).await?))
}

/// `GET /v1/canaries`: the latest run of each canary (admin or auditor API key, or a
/// supervisor).
pub async fn canaries(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    if let Caller::User(s) = caller(&req, &state, Some(Access::Audit)).await?
        && !s.user.roles.contains(&UserRole::Supervisor)
    {
        return Err(ReviewServiceError::Rule(ReviewError::MissingRole {
            needed: "supervisor",
            action: "canaries",
        })
        .into());
    }
    let status = service(&state).canary_status().await?;
    Ok(HttpResponse::Ok().json(status))
}

/// The review routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/session")
            .route(web::post().to(login))
            .route(web::get().to(current))
            .route(web::delete().to(logout)),
    )
    .service(web::resource("/v1/session/oidc/start").route(web::get().to(oidc_start)))
    .service(web::resource("/v1/session/oidc/callback").route(web::get().to(oidc_callback)))
    .service(web::resource("/v1/cases").route(web::get().to(list_cases)))
    .service(web::resource("/v1/cases/pull-next").route(web::post().to(pull_next)))
    .service(web::resource("/v1/cases/{id}").route(web::get().to(get_case)))
    .service(web::resource("/v1/cases/{id}/assign").route(web::post().to(assign)))
    .service(web::resource("/v1/cases/{id}/transition").route(web::post().to(transition)))
    .service(web::resource("/v1/cases/{id}/hits").route(web::post().to(disposition_hit)))
    .service(web::resource("/v1/cases/{id}/comments").route(web::post().to(comment)))
    .service(web::resource("/v1/cases/{id}/close-request").route(web::post().to(close_request)))
    .service(web::resource("/v1/cases/{id}/sar-request").route(web::post().to(sar_request)))
    .service(web::resource("/v1/cases/{id}/approve").route(web::post().to(approve)))
    .service(web::resource("/v1/cases/{id}/reject").route(web::post().to(reject)))
    .service(web::resource("/v1/qa/samples").route(web::get().to(qa_queue)))
    .service(web::resource("/v1/qa/samples/{id}").route(web::get().to(qa_item)))
    .service(web::resource("/v1/qa/samples/{id}/verdict").route(web::post().to(qa_verdict)))
    .service(web::resource("/v1/qa/draw").route(web::post().to(qa_draw)))
    .service(web::resource("/v1/qa/report").route(web::get().to(qa_report)))
    .service(
        web::resource("/v1/users")
            .route(web::get().to(list_users))
            .route(web::post().to(add_user)),
    )
    .service(web::resource("/v1/users/{id}").route(web::post().to(change_user)))
    .service(web::resource("/v1/canaries").route(web::get().to(canaries)));
}

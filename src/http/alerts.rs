//! `/v1/alerts`: submit (one alert or a batch), read an alert, its decision, its audit trail.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::AppState;
use super::auth::Access;
use super::error::ApiError;
use crate::domain::alert::Alert;
use crate::engine::content_hash;
use crate::error::TriageError;
use crate::store::STATUS_DECIDED;
use crate::{Decision, Engine};

#[derive(Deserialize)]
struct SubmitQuery {
    #[serde(default)]
    wait: bool,
}

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default)]
    export: bool,
}

fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::BadRequest(format!("query string: {e}")))
}

fn location(id: &str) -> String {
    // Ids are free text: percent-encode what cannot stand in a path segment.
    let mut out = String::from("/v1/alerts/");
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How one submitted alert ended, as far as this request is concerned.
enum Outcome {
    /// Accepted; being processed (202).
    Accepted(String),
    /// Decided (200): now (`?wait=true`) or earlier (idempotent resubmission).
    Decided(Value),
    /// Refused (4xx/5xx).
    Failed(ApiError),
}

/// A submission in progress: either already settled or a receiver for its decision.
enum Pending {
    Done(Outcome),
    Running {
        alert_id: String,
        rx: oneshot::Receiver<Result<Decision, TriageError>>,
    },
}

/// Validates and admits one alert. Idempotency first: an alert_id already stored answers
/// with its decision (same content), 409 (different content) or 202 (still in progress),
/// without taking an admission slot.
async fn admit_one(state: &AppState, raw: &str, wait: bool) -> Pending {
    if raw.len() > state.limits.max_alert_bytes {
        return Pending::Done(Outcome::Failed(ApiError::TooLarge {
            what: "alert",
            limit: state.limits.max_alert_bytes,
        }));
    }
    let alert = match Alert::from_json_limited(raw, state.limits.max_alert_bytes) {
        Ok(a) => a,
        Err(e) => return Pending::Done(Outcome::Failed(TriageError::Invalid(e).into())),
    };
    let id = alert.alert_id.clone();
    let engine: &Arc<Engine> = &state.engine;
    match engine.store().alert(&id).await {
        Err(e) => return Pending::Done(Outcome::Failed(e.into())),
        Ok(Some(stored)) => {
            if stored.content_hash != content_hash(&alert) {
                return Pending::Done(Outcome::Failed(ApiError::Conflict { alert_id: id }));
            }
            if stored.status == STATUS_DECIDED {
                return Pending::Done(match engine.store().decision(&id).await {
                    Ok(Some(d)) => Outcome::Decided(d),
                    Ok(None) => Outcome::Accepted(id),
                    Err(e) => Outcome::Failed(e.into()),
                });
            }
            if !wait {
                return Pending::Done(Outcome::Accepted(id));
            }
            // In flight here: submitting joins the running twin and shares its decision.
        }
        Ok(None) => {}
    }
    // Answered only once the alert row is committed: a 202 survives a crash of this process
    // and a GET right after it finds the alert.
    let fut = match engine.try_accept(alert, Some(Arc::from(raw))).await {
        Ok(crate::Accepted::Stored { decision, .. }) => decision,
        Ok(crate::Accepted::Decided(d)) => {
            return Pending::Done(Outcome::Decided(
                serde_json::to_value(&*d).unwrap_or_default(),
            ));
        }
        Err(TriageError::InProgress { .. }) => {
            // Another node holds the alert: accepted only if its row is already stored.
            return Pending::Done(match engine.store().alert(&id).await {
                Ok(Some(_)) => Outcome::Accepted(id),
                Ok(None) => Outcome::Failed(ApiError::from(TriageError::Unavailable(
                    "the alert is being admitted by another node; retry".into(),
                ))),
                Err(e) => Outcome::Failed(e.into()),
            });
        }
        Err(e) => return Pending::Done(Outcome::Failed(e.into())),
    };
    let (tx, rx) = oneshot::channel();
    let alert_id = id.clone();
    // Runs to the decision whether or not anyone still waits for it (202 means exactly that).
    let retry_engine = state.engine.clone();
    state.background.spawn(async move {
        let result = fut.await;
        let result = super::limits::retry_accepted(&retry_engine, &alert_id, result).await;
        if let Err(e) = &result {
            match e {
                TriageError::Conflict { .. } | TriageError::InProgress { .. } => {}
                other => tracing::error!(alert_id = %alert_id, error = %other, "accepted alert not decided"),
            }
        }
        let _ = tx.send(result);
    });
    Pending::Running { alert_id: id, rx }
}

/// Waits (up to the deadline) for a running submission when the client asked to wait.
async fn settle(p: Pending, deadline: Option<tokio::time::Instant>) -> Outcome {
    match p {
        Pending::Done(o) => o,
        Pending::Running { alert_id, rx } => {
            let Some(deadline) = deadline else {
                return Outcome::Accepted(alert_id);
            };
            match tokio::time::timeout_at(deadline, rx).await {
                Err(_) | Ok(Err(_)) => Outcome::Accepted(alert_id),
                Ok(Ok(Ok(d))) => Outcome::Decided(serde_json::to_value(&d).unwrap_or_default()),
                Ok(Ok(Err(TriageError::InProgress { .. }))) => Outcome::Accepted(alert_id),
                Ok(Ok(Err(e))) => Outcome::Failed(e.into()),
            }
        }
    }
}

fn accepted_body(id: &str) -> Value {
    json!({"alert_id": id, "status": "accepted", "location": location(id)})
}

/// `POST /v1/alerts[?wait=true]`: one alert object, a JSON array of alerts, or
/// `{"alerts": [...]}`.
pub async fn submit(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.keys.check(&req, Access::Submit)?;
    let q: SubmitQuery = query(&req)?;
    if !state.engine.is_accepting() {
        return Err(ApiError::ShuttingDown);
    }
    super::limits::require_json(&req)?;
    let body = super::limits::read_body(
        &req,
        payload,
        state.limits.max_body_bytes,
        state.limits.body_timeout,
    )
    .await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the body is not UTF-8 text".into()))?;
    let items = parse_items(text)?;
    let deadline = q
        .wait
        .then(|| tokio::time::Instant::now() + state.limits.wait);
    match items {
        Items::One => {
            let p = admit_one(&state, text, q.wait).await;
            match settle(p, deadline).await {
                Outcome::Accepted(id) => Ok(HttpResponse::Accepted()
                    .insert_header((header::LOCATION, location(&id)))
                    .json(accepted_body(&id))),
                Outcome::Decided(d) => {
                    let id = d["alert_id"].as_str().unwrap_or_default().to_string();
                    Ok(HttpResponse::Ok()
                        .insert_header((header::LOCATION, location(&id)))
                        .json(d))
                }
                Outcome::Failed(e) => Err(e),
            }
        }
        Items::Batch(raws) => {
            if raws.is_empty() {
                return Err(ApiError::Invalid {
                    field: "alerts".into(),
                    message: "the batch is empty".into(),
                });
            }
            if raws.len() > state.limits.max_batch_alerts {
                return Err(ApiError::BatchTooLarge {
                    max: state.limits.max_batch_alerts,
                    got: raws.len(),
                });
            }
            // Admit every item first (each one independently: an invalid or refused item
            // never affects the others), then wait for those running if asked to.
            // Admitted concurrently, so the batch's rows share group commits.
            let pending = futures_util::future::join_all(
                raws.iter().map(|raw| admit_one(&state, raw.get(), q.wait)),
            )
            .await;
            let outcomes =
                futures_util::future::join_all(pending.into_iter().map(|p| settle(p, deadline)))
                    .await;
            let mut counts = [0usize; 3];
            let results: Vec<Value> = outcomes
                .into_iter()
                .enumerate()
                .map(|(index, o)| match o {
                    Outcome::Accepted(id) => {
                        counts[0] += 1;
                        let mut v = accepted_body(&id);
                        v["index"] = json!(index);
                        v["http_status"] = json!(202);
                        v
                    }
                    Outcome::Decided(d) => {
                        counts[1] += 1;
                        json!({"index": index, "alert_id": d["alert_id"], "status": "decided",
                               "http_status": 200, "location": location(d["alert_id"].as_str().unwrap_or_default()),
                               "decision": d})
                    }
                    Outcome::Failed(e) => {
                        counts[2] += 1;
                        let mut v = e.body();
                        v["index"] = json!(index);
                        v["status"] = json!("rejected");
                        v["http_status"] = json!(actix_web::ResponseError::status_code(&e).as_u16());
                        if let Some(s) = e.retry_after() {
                            v["retry_after_seconds"] = json!(s);
                        }
                        v
                    }
                })
                .collect();
            Ok(
                HttpResponse::build(actix_web::http::StatusCode::MULTI_STATUS).json(json!({
                    "accepted": counts[0],
                    "decided": counts[1],
                    "rejected": counts[2],
                    "results": results,
                })),
            )
        }
    }
}

enum Items {
    One,
    Batch(Vec<Box<RawValue>>),
}

/// Tells a single alert from a batch, keeping each batch item's text exactly as sent.
fn parse_items(text: &str) -> Result<Items, ApiError> {
    let bad = |e: serde_json::Error| ApiError::BadRequest(format!("malformed JSON: {e}"));
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let v: Vec<Box<RawValue>> = serde_json::from_str(text).map_err(bad)?;
        return Ok(Items::Batch(v));
    }
    if !trimmed.starts_with('{') {
        // Checked as JSON first so that garbage is a 400, not a 422.
        let _: Value = serde_json::from_str(text).map_err(bad)?;
        return Err(ApiError::Invalid {
            field: "$".into(),
            message: "expected an alert object, an array of alerts or {\"alerts\": [...]}".into(),
        });
    }
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        alerts: Option<&'a RawValue>,
        #[serde(borrow)]
        alert_id: Option<&'a RawValue>,
    }
    let env: Envelope<'_> = serde_json::from_str(text).map_err(bad)?;
    match (env.alerts, env.alert_id) {
        (Some(list), None) => {
            let v: Vec<Box<RawValue>> =
                serde_json::from_str(list.get()).map_err(|e| ApiError::Invalid {
                    field: "alerts".into(),
                    message: format!("must be an array of alerts: {e}"),
                })?;
            Ok(Items::Batch(v))
        }
        _ => Ok(Items::One),
    }
}

/// The `{id}` segment, as actix decodes it. Alert ids keep to `A-Z a-z 0-9 . _ : -` (see
/// [`crate::domain::alert::check_id`]), which never needs percent-encoding: an id outside that
/// set (`%2F`, a space, a NUL) cannot have been stored and is answered 404 here, before the
/// store is asked, whatever the encoding it arrived in.
fn path_id(req: &HttpRequest) -> Result<String, ApiError> {
    let id = req.match_info().get("id").unwrap_or_default();
    if let Err(e) = crate::domain::alert::check_id("id", id) {
        return Err(ApiError::NotFound(format!(
            "no alert {}: {}",
            id.escape_debug(),
            e.message
        )));
    }
    Ok(id.to_string())
}

async fn stored(state: &AppState, id: &str) -> Result<crate::store::StoredAlert, ApiError> {
    state
        .engine
        .store()
        .alert(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))
}

/// `GET /v1/alerts/{id}`: the alert as received, and its status.
pub async fn get_alert(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.keys.check(&req, Access::Read)?;
    let id = path_id(&req)?;
    let a = stored(&state, &id).await?;
    let alert: Value = serde_json::from_str(&a.raw_json).unwrap_or(Value::String(a.raw_json));
    let mut body = json!({
        "alert_id": a.alert_id,
        "status": a.status,
        "alert_type": a.alert_type,
        "priority": a.priority,
        "customer_id": a.customer_id,
        "created_at": a.created_at,
        "received_at": a.received_at,
        "updated_at": a.updated_at,
        "alert": alert,
    });
    if a.status == STATUS_DECIDED {
        body["decision"] = json!(format!("{}/decision", location(&id)));
    }
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /v1/alerts/{id}/decision`: the decision, or 404 with the alert's status.
pub async fn get_decision(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.keys.check(&req, Access::Read)?;
    let id = path_id(&req)?;
    match state.engine.store().decision(&id).await? {
        Some(d) => Ok(HttpResponse::Ok().json(d)),
        None => {
            let a = stored(&state, &id).await?;
            Err(ApiError::NotDecided {
                alert_id: a.alert_id,
                status: a.status,
            })
        }
    }
}

/// `GET /v1/alerts/{id}/audit[?export=true]`: the alert's audit entries, or the regulator
/// pack.
pub async fn get_audit(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.keys.check(&req, Access::Audit)?;
    let q: AuditQuery = query(&req)?;
    let id = path_id(&req)?;
    stored(&state, &id).await?;
    let store = state.engine.store();
    if q.export {
        let pack = store.export(&id).await?;
        return Ok(HttpResponse::Ok().json(pack));
    }
    let entries = store.audit_trail(&id).await?;
    Ok(HttpResponse::Ok().json(json!({"alert_id": id, "entries": entries})))
}

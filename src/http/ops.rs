//! Operational routes: liveness, readiness, status, metrics, the OpenAPI document.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::AppState;
use super::auth::Access;
use super::error::ApiError;
use crate::actors::supervision::AgentStatus;

/// How long the readiness database check may take.
const DB_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Content type of the Prometheus text exposition prometheus-client writes.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /health`: the process answers (liveness). No key.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /ready`: 200 when every check passes, else 503 listing the failing ones. No key.
/// Checks: the database (a `SELECT 1`), Redis (a `PING`, when `REDIS_URL` is set; while it
/// fails the node still decides alerts on in-process state, without cache), the agents (none
/// marked failed), the model providers' circuits, the screening lists (required ones loaded,
/// none older than `LIST_MAX_AGE_HOURS`), admission (not shutting down).
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let engine = &state.engine;
    let mut checks = Vec::new();
    let db = engine.store().ping(DB_PING_TIMEOUT).await;
    if let Err(e) = &db {
        // The error may name hosts; it goes to the log, not to the unauthenticated client.
        tracing::warn!(error = %e, "readiness: database check failed");
    }
    checks.push(json!({
        "name": "database",
        "ok": db.is_ok(),
        "backend": engine.store().backend_name(),
        "message": if db.is_ok() { "reachable" } else { "unreachable" },
    }));
    if engine.settings().redis_url().is_some() {
        let redis = tokio::time::timeout(DB_PING_TIMEOUT, engine.state().ping()).await;
        let ok = matches!(redis, Ok(Ok(())));
        checks.push(json!({
            "name": "redis",
            "ok": ok,
            "message": if ok { "reachable" } else { "unreachable: running on in-process state without cache" },
        }));
    } else {
        checks.push(json!({
            "name": "redis",
            "ok": true,
            "message": "not configured: in-process state (single node)",
        }));
    }
    let failed: Vec<&str> = engine
        .health()
        .iter()
        .filter(|h| h.status == AgentStatus::Failed)
        .map(|h| h.agent.as_str())
        .collect();
    checks.push(json!({
        "name": "agents",
        "ok": failed.is_empty(),
        "message": if failed.is_empty() { "no agent failed".to_string() } else { format!("failed: {}", failed.join(", ")) },
    }));
    // An open circuit means a model provider keeps failing: alerts still get (degraded,
    // escalated) decisions, but the node is not serving as configured.
    let circuits = engine.providers().circuits();
    let open: Vec<&str> = circuits
        .iter()
        .filter(|(_, state)| *state == "open")
        .map(|(name, _)| name.as_str())
        .collect();
    checks.push(json!({
        "name": "llm",
        "ok": open.is_empty(),
        "message": if open.is_empty() { "no provider circuit open".to_string() } else { format!("circuit open: {}", open.join(", ")) },
    }));
    // With AMQP_URL set, every RabbitMQ link this node uses (the bridge, remote agents) must
    // be up: while one is down the node takes no queued alerts or cannot reach its agents.
    if engine.settings().amqp_url.is_some() {
        let down: Vec<&str> = engine
            .broker_links()
            .into_iter()
            .filter(|(_, up)| !up)
            .map(|(name, _)| name)
            .collect();
        checks.push(json!({
            "name": "broker",
            "ok": down.is_empty(),
            "message": if down.is_empty() { "connected".to_string() } else { format!("not connected: {}", down.join(", ")) },
        }));
    }
    // Screening lists: each required list (LIST_REQUIRED, or every loaded one) must be
    // loaded and, with LIST_MAX_AGE_HOURS set, fetched recently enough. Deciding sanctions
    // alerts against a stale list is exactly the failure this guards against.
    let settings = engine.settings();
    let stale = engine.reference().stale(
        &settings.required_lists(),
        settings.list_max_age_hours,
        chrono::Utc::now(),
    );
    checks.push(json!({
        "name": "lists",
        "ok": stale.is_empty(),
        "message": if stale.is_empty() { "required lists loaded and fresh".to_string() } else { stale.join("; ") },
    }));
    // Canaries (analyst review): the latest run of each must have been escalated. They are
    // read from the database, so they are only checked while it answers.
    if db.is_ok()
        && let Some(check) =
            crate::review::canary::ready_check(engine.store(), engine.metrics(), engine.settings())
                .await
    {
        checks.push(check);
    }
    checks.push(json!({
        "name": "admission",
        "ok": engine.is_accepting(),
        "message": if engine.is_accepting() { "accepting alerts" } else { "shutting down" },
    }));
    let failing: Vec<serde_json::Value> = checks
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].clone())
        .collect();
    let body = json!({"ready": failing.is_empty(), "failing": failing, "checks": checks});
    if failing.is_empty() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}

/// `GET /v1/status` (admin): admission, agents, versions.
pub async fn status(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.keys.check(&req, Access::Admin)?;
    let e = &state.engine;
    let s = e.settings();
    Ok(HttpResponse::Ok().json(json!({
        "node_id": s.node_id,
        "accepting": e.is_accepting(),
        "in_flight": e.in_flight(),
        "max_concurrent_alerts": s.max_concurrent_alerts,
        "store_backend": e.store().backend_name(),
        "state_backend": e.state().describe(),
        "leases_held": e.leases().held_count(),
        "config_version": s.config_version(),
        "policy_version": crate::domain::policy::POLICY_VERSION,
        "agents": e.health(),
    })))
}

fn metrics_response(state: &AppState) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(METRICS_CONTENT_TYPE)
        .body(state.engine.metrics_text())
}

/// `GET /metrics` on the main port: admin key required, since the API port may be exposed
/// beyond the monitoring network.
pub async fn metrics_with_key(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.keys.check(&req, Access::Admin)?;
    Ok(metrics_response(&state))
}

/// `GET /metrics` on `PROMETHEUS_PORT`: no key (that port belongs on the monitoring network).
pub async fn metrics_open(state: web::Data<AppState>) -> HttpResponse {
    metrics_response(&state)
}

/// `GET /openapi.json`.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(super::openapi::document())
}

/// Anything else: a JSON 404.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such route".into()))
}

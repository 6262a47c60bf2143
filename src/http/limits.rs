//! What a client may cost the server: connection limits, the body's media type, size and
//! arrival time.
//!
//! - The request head must arrive within `HTTP_CLIENT_TIMEOUT_SECONDS` (actix answers 408), and
//!   so must the whole body ([`read_body`] answers 408): a client trickling a body cannot hold
//!   a connection, a file descriptor and a buffer for long.
//! - Idle keep-alive connections close after `HTTP_KEEP_ALIVE_SECONDS`; each worker holds at
//!   most `HTTP_MAX_CONNECTIONS` connections (later ones wait in the listen backlog), so
//!   buffered request memory is bounded by workers x connections x `HTTP_MAX_BODY_BYTES`.
//! - A body over `HTTP_MAX_BODY_BYTES` is answered 413 whether its length is declared or it
//!   comes chunked; what the client still sends is read and dropped (for a bounded time) so
//!   that it receives the 413 instead of a reset connection.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;

use super::error::ApiError;
use crate::config::Settings;
use crate::error::TriageError;
use crate::{Decision, Engine};

/// Waits between retries of an accepted alert whose pipeline failed on the store: doubling
/// from the first, at most [`RETRY_CAP`]; [`RETRIES`] in all (about a minute).
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_CAP: Duration = Duration::from_secs(10);
const RETRIES: u32 = 8;

/// An alert answered 202 is stored, so a store failure later in its pipeline (the database
/// went away) must not leave it waiting for the next restart: it is resumed from its journal
/// with backoff while the engine runs. Each failure is counted
/// (`aml_triage_alerts_failed_total`); if the retries run out it is logged and resumed at the
/// next start (or by another node's lease sweeper).
pub async fn retry_accepted(
    engine: &Engine,
    alert_id: &str,
    mut result: Result<Decision, TriageError>,
) -> Result<Decision, TriageError> {
    let mut wait = RETRY_FIRST;
    for attempt in 1..=RETRIES {
        match &result {
            Err(TriageError::Store(_) | TriageError::Unavailable(_)) if engine.is_accepting() => {}
            _ => return result,
        }
        tracing::warn!(
            alert_id,
            attempt,
            "accepted alert failed on the store: resuming it"
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_CAP);
        result = engine.resume_alert(alert_id).await;
    }
    result
}

/// How long a client that sent too much may keep sending before the connection is dropped.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Connection limits of the API server, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest the request head may take (`HTTP_CLIENT_TIMEOUT_SECONDS`).
    pub request_head: Duration,
    /// Longest a response may wait for the client to close after the server did.
    pub disconnect: Duration,
    /// Idle keep-alive (`HTTP_KEEP_ALIVE_SECONDS`).
    pub keep_alive: Duration,
    /// Connections per worker (`HTTP_MAX_CONNECTIONS`).
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The limits configured in `s`.
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            request_head: Duration::from_secs_f64(s.http_client_timeout_seconds),
            disconnect: Duration::from_secs(1),
            keep_alive: Duration::from_secs_f64(s.http_keep_alive_seconds),
            max_connections: s.http_max_connections,
        }
    }
}

/// Refuses a body not declared as `application/json` (parameters such as `charset=utf-8`
/// are allowed) with 415.
pub fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    let given = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)").to_string());
    let essence = given
        .as_deref()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType(
            given.unwrap_or_else(|| "no Content-Type".into()),
        )),
    }
}

/// Reads the body up to `limit` bytes within `timeout` of the call: 413 as soon as it is known
/// to be larger (declared or counted), 408 when it is late.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<web::BytesMut, ApiError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let too_large = ApiError::TooLarge {
        what: "request body",
        limit,
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        drain(payload).await;
        return Err(too_large);
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    loop {
        let next = match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(next) => next,
            Err(_) => return Err(ApiError::Timeout(timeout.as_secs_f64())),
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            drop(body);
            drain(payload).await;
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads and drops what the client still sends, for at most [`DRAIN_LIMIT`].
async fn drain(mut payload: web::Payload) {
    let _ = tokio::time::timeout(DRAIN_LIMIT, async {
        while let Some(Ok(_)) = payload.next().await {}
    })
    .await;
}

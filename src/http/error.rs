//! The errors the API answers with. Each maps to one status code and a JSON body
//! `{"error": code, "message": text, "field": path?}`; internal details (database errors,
//! URLs, stack traces) are logged on the server and never sent to the client.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::error::TriageError;

/// An API error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization: Bearer` key, or an unknown one (401).
    #[error("a valid API key is required (Authorization: Bearer KEY)")]
    Unauthorized,
    /// The key's role does not allow this route (403).
    #[error("this API key's role may not use this route")]
    Forbidden,
    /// Nothing at this route or under this id (404).
    #[error("{0}")]
    NotFound(String),
    /// The alert exists but has no decision yet (404, with its status).
    #[error("alert {alert_id} has no decision yet")]
    NotDecided {
        /// The alert.
        alert_id: String,
        /// Its status (`received`).
        status: String,
    },
    /// The body or query is not what the route reads (400).
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than allowed (413).
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// What is too large (`request body`, `alert`).
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The body is not sent as `Content-Type: application/json` (415).
    #[error("Content-Type must be application/json, got {0}")]
    UnsupportedMediaType(String),
    /// The client did not send its body within `HTTP_CLIENT_TIMEOUT_SECONDS` (408).
    #[error("the request body did not arrive within {0} s")]
    Timeout(f64),
    /// The batch holds more alerts than allowed (413).
    #[error("a batch holds at most {max} alerts, got {got}")]
    BatchTooLarge {
        /// `MAX_BATCH_ALERTS`.
        max: usize,
        /// Alerts sent.
        got: usize,
    },
    /// The alert is invalid (422).
    #[error("{field}: {message}")]
    Invalid {
        /// Path of the offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Same alert_id, different content (409).
    #[error("alert {alert_id} was already received with different content")]
    Conflict {
        /// The id.
        alert_id: String,
    },
    /// Admission is full (429, Retry-After).
    #[error("the engine is at its in-flight limit; retry later")]
    Busy {
        /// Suggested wait.
        retry_after: Duration,
    },
    /// The engine is shutting down (503, Retry-After).
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// A dependency failed; the details are in the server log (503).
    #[error("the service is temporarily unavailable; retry later")]
    Unavailable,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alert_id: Option<&'a str>,
}

impl ApiError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::NotDecided { .. } => "not_decided",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::TooLarge { .. } => "payload_too_large",
            ApiError::BatchTooLarge { .. } => "batch_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Timeout(_) => "request_timeout",
            ApiError::Invalid { .. } => "invalid_alert",
            ApiError::Conflict { .. } => "conflict",
            ApiError::Busy { .. } => "busy",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Unavailable => "unavailable",
        }
    }

    /// The JSON body, also used for per-item results of a batch.
    pub fn body(&self) -> serde_json::Value {
        let (field, status, alert_id) = match self {
            ApiError::Invalid { field, .. } => (Some(field.as_str()), None, None),
            ApiError::NotDecided { alert_id, status } => {
                (None, Some(status.as_str()), Some(alert_id.as_str()))
            }
            ApiError::Conflict { alert_id } => (None, None, Some(alert_id.as_str())),
            _ => (None, None, None),
        };
        let message = match self {
            ApiError::Invalid { message, .. } => message.clone(),
            other => other.to_string(),
        };
        serde_json::to_value(Body {
            error: self.code(),
            message,
            field,
            status,
            alert_id,
        })
        .unwrap_or_default()
    }

    /// Retry-After in whole seconds, when the client should come back.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Busy { retry_after } => {
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            ApiError::ShuttingDown | ApiError::Unavailable => Some(5),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::NotDecided { .. } => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } | ApiError::BatchTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ShuttingDown | ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status_code());
        if let Some(s) = self.retry_after() {
            r.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        if matches!(self, ApiError::Unauthorized) {
            r.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"aml-triage\""),
            ));
        }
        r.json(self.body())
    }
}

impl From<TriageError> for ApiError {
    fn from(e: TriageError) -> Self {
        match e {
            TriageError::Invalid(a) => ApiError::Invalid {
                field: a.field,
                message: a.message,
            },
            TriageError::Conflict { alert_id } => ApiError::Conflict { alert_id },
            // Callers answer 202 for this one; reaching here means a twin is mid-flight.
            TriageError::InProgress { alert_id } => ApiError::NotDecided {
                alert_id,
                status: "in_progress".into(),
            },
            TriageError::Busy { retry_after } => ApiError::Busy { retry_after },
            TriageError::NotFound { alert_id } => {
                ApiError::NotFound(format!("no alert {alert_id}"))
            }
            TriageError::ShuttingDown => ApiError::ShuttingDown,
            TriageError::Store(m) | TriageError::Unavailable(m) => {
                tracing::error!(error = %m, "engine unavailable while serving a request");
                ApiError::Unavailable
            }
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store error while serving a request");
        ApiError::Unavailable
    }
}

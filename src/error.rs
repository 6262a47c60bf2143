//! Errors the engine returns to callers.

use std::time::Duration;

use crate::domain::alert::AlertError;

/// Why an alert was not decided.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TriageError {
    /// The alert is invalid; nothing was stored.
    #[error("invalid alert: {0}")]
    Invalid(#[from] AlertError),
    /// The same alert_id was already received with different content; nothing was overwritten.
    #[error("alert {alert_id} was already received with different content")]
    Conflict {
        /// The id.
        alert_id: String,
    },
    /// The alert is being processed by another node (or awaits resume); ask again later.
    #[error("alert {alert_id} is already in progress")]
    InProgress {
        /// The id.
        alert_id: String,
    },
    /// The node is at its in-flight limit; try again after the delay.
    #[error("at capacity: retry after {retry_after:?}")]
    Busy {
        /// Suggested wait.
        retry_after: Duration,
    },
    /// No alert with this id was ever stored (only from [`crate::Engine::resume_alert`]).
    #[error("alert {alert_id} is not stored")]
    NotFound {
        /// The id.
        alert_id: String,
    },
    /// The engine is shutting down and takes no new alerts.
    #[error("engine is shutting down")]
    ShuttingDown,
    /// The store failed; the alert was not decided and will be resumed if it was persisted.
    #[error("store: {0}")]
    Store(String),
    /// The actor system is gone.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The store could not be opened or migrated.
    #[error("store: {0}")]
    Store(String),
    /// Reference data could not be loaded.
    #[error("reference data: {0}")]
    ReferenceData(String),
    /// The actor system could not be started.
    #[error("actor system: {0}")]
    System(String),
}

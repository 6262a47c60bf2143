//! SQLite backend: connection and migrations.
//!
//! The database runs in WAL mode with `synchronous=FULL`, so a commit is on disk when it
//! returns. Timestamps are stored as fixed-width RFC 3339 text with six fractional digits and
//! `Z` (the form that is hashed), so text order is time order and values round-trip exactly.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::StoreOptions;
use super::audit::{format_ts, parse_ts};
use super::error::{StoreError, redact_url, scrub};

fn ts_to_db(t: DateTime<Utc>) -> String {
    format_ts(t)
}

fn ts_from_db(t: String) -> Result<DateTime<Utc>, String> {
    parse_ts(&t).map_err(|_| t)
}

// IMMEDIATE takes the write lock at BEGIN, so a batch never fails half-way on a lock upgrade
// when another process writes the same file; busy_timeout makes it wait instead.
super::sql::sql_backend!(
    db: sqlx::Sqlite,
    ts: String,
    to_db: super::ts_to_db,
    from_db: super::ts_from_db,
    begin: "BEGIN IMMEDIATE"
);

/// SQLite has no array parameters: every insert is a multi-row `VALUES` statement (in
/// power-of-two chunks, see `sql::pow2_chunks`). In process, those cost no round trips.
impl db::Tx {
    pub(crate) async fn array_insert_alerts(
        &mut self,
        _rows: &[&super::records::AlertRecord],
        _now: DateTime<Utc>,
    ) -> Option<Result<std::collections::HashSet<String>, StoreError>> {
        None
    }

    pub(crate) async fn array_insert_steps(
        &mut self,
        _rows: &[&super::writer::QueuedStep],
        _version_ids: &std::collections::HashMap<String, i64>,
        _now: DateTime<Utc>,
    ) -> Option<Result<std::collections::HashSet<(String, String)>, StoreError>> {
        None
    }

    pub(crate) async fn array_insert_decisions(
        &mut self,
        _rows: &[&super::writer::QueuedDecision],
        _version_ids: &std::collections::HashMap<String, i64>,
        _now: DateTime<Utc>,
    ) -> Option<Result<std::collections::HashSet<String>, StoreError>> {
        None
    }

    pub(crate) async fn array_insert_audit(
        &mut self,
        _entries: &[super::audit::AuditRow],
    ) -> Option<Result<(), StoreError>> {
        None
    }
}

/// The embedded migrations; the binary needs no migrations folder at run time.
pub(crate) fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "review".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0003_review.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "storage v2".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0004_storage_v2.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            "login throttle".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0005_login_throttle.sql").into_sql_str(),
            false,
        ),
    ])
}

/// Opens (creating if missing) the database file.
pub(crate) async fn connect(url: &str, opts: &StoreOptions) -> Result<Backend, StoreError> {
    let err = |e: sqlx::Error| StoreError::Connect {
        url: redact_url(url),
        message: scrub(&e.to_string(), url),
    };
    let options = SqliteConnectOptions::from_str(url)
        .map_err(err)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(opts.acquire_timeout);
    let pool = SqlitePoolOptions::new()
        .max_connections(opts.max_connections)
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(err)?;
    Ok(Backend { pool })
}

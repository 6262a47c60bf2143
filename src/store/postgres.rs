//! PostgreSQL backend: connection, migrations, and the chain lock.
//!
//! Timestamps are `TIMESTAMPTZ`, which keeps microseconds: values are truncated to microseconds
//! before they are bound (PostgreSQL would round instead), so what is read back is exactly what
//! was hashed.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, SqlSafeStr};

use super::StoreOptions;
use super::audit::{sha256_hex, truncate_micros};
use super::error::{StoreError, redact_url, scrub};

fn ts_to_db(t: DateTime<Utc>) -> DateTime<Utc> {
    truncate_micros(t)
}

fn ts_from_db(t: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    Ok(t)
}

super::sql::sql_backend!(
    db: sqlx::Postgres,
    ts: DateTime<Utc>,
    to_db: super::ts_to_db,
    from_db: super::ts_from_db,
    begin: "BEGIN"
);

/// The embedded migrations; the binary needs no migrations folder at run time.
pub(crate) fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "review".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0003_review.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "storage v2".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0004_storage_v2.sql").into_sql_str(),
            false,
        ),
    ])
}

fn connect_error(url: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Connect {
        url: redact_url(url),
        message: scrub(&e.to_string(), url),
    }
}

fn options(url: &str, node_id: &str) -> Result<PgConnectOptions, StoreError> {
    Ok(PgConnectOptions::from_str(url)
        .map_err(|e| connect_error(url, e))?
        .application_name(&format!("aml-triage/{node_id}")))
}

/// Opens the pool.
pub(crate) async fn connect(
    url: &str,
    node_id: &str,
    opts: &StoreOptions,
) -> Result<Backend, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(opts.max_connections)
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(options(url, node_id)?)
        .await
        .map_err(|e| connect_error(url, e))?;
    Ok(Backend { pool })
}

/// Advisory-lock key of a chain: the first 8 bytes of a namespaced sha256 of the node id.
fn chain_lock_key(node_id: &str) -> i64 {
    let digest = sha256_hex(format!("aml-triage/audit-chain/{node_id}"));
    i64::from_str_radix(&digest[..15], 16).unwrap_or(0)
}

/// Takes the session advisory lock of `node_id`'s chain on a dedicated connection, held for the
/// store's lifetime, so that two processes with the same node id fail clearly instead of
/// interleaving one chain.
pub(crate) async fn lock_chain(url: &str, node_id: &str) -> Result<PgConnection, StoreError> {
    let mut conn = PgConnection::connect_with(&options(url, node_id)?)
        .await
        .map_err(|e| connect_error(url, e))?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(chain_lock_key(node_id))
        .fetch_one(&mut conn)
        .await?;
    if !locked {
        let _ = conn.close().await;
        return Err(StoreError::ChainLocked(node_id.to_string()));
    }
    Ok(conn)
}

/// Releases the chain lock and closes its connection.
pub(crate) async fn unlock_chain(mut conn: PgConnection, node_id: &str) {
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(chain_lock_key(node_id))
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
}

//! Test helpers: a database of its own per test, and record fixtures.
#![allow(dead_code)]

use aml_triage::store::audit::sha256_canonical;
use aml_triage::store::{
    AlertRecord, AuditVersions, DecisionRecord, STEP_COMPLETED, StepRecord, Store, StoreOptions,
};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::Connection;

/// PostgreSQL server used by the tests (trust auth).
pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Sqlite,
}

/// A fresh, empty database: `aml_test_<random>` on PostgreSQL (dropped on drop, even when the
/// test panics), or a file in a temporary directory for SQLite.
pub struct TestDb {
    pub kind: Kind,
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(kind: Kind) -> TestDb {
        match kind {
            Kind::Postgres => {
                let name = format!("aml_test_{:016x}", fastrand::u64(..));
                let mut admin = sqlx::PgConnection::connect(PG_ADMIN_URL)
                    .await
                    .expect("PostgreSQL must run on 127.0.0.1:5432");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                let _ = admin.close().await;
                TestDb {
                    kind,
                    url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    pg_name: Some(name),
                    _dir: None,
                }
            }
            Kind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("store.db");
                TestDb {
                    kind,
                    url: format!("sqlite:{}", path.display()),
                    pg_name: None,
                    _dir: Some(dir),
                }
            }
        }
    }

    /// A migrated store on this database.
    pub async fn store(&self, node_id: &str) -> Store {
        let opts = StoreOptions {
            max_connections: 4,
            ..StoreOptions::default()
        };
        let store = Store::connect(Some(&self.url), node_id, opts)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// Runs plain SQL on a connection of its own (as an operator or attacker would).
    pub async fn exec(&self, sql: &str) -> Result<u64, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self.kind {
            Kind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await?;
                let n = sqlx::query(sql).execute(&mut c).await?.rows_affected();
                let _ = c.close().await;
                Ok(n)
            }
            Kind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await?;
                let n = sqlx::query(sql).execute(&mut c).await?.rows_affected();
                let _ = c.close().await;
                Ok(n)
            }
        }
    }

    /// A single integer from plain SQL on a fresh connection.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self.kind {
            Kind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
            }
            Kind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
            }
        }
    }

    /// A single integer, or `None` while the database or table does not exist yet.
    pub async fn try_scalar(&self, sql: &str) -> Option<i64> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self.kind {
            Kind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.ok()?;
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut c)
                    .await
                    .ok()
            }
            Kind::Sqlite => {
                let path = self.url.trim_start_matches("sqlite:");
                if !std::path::Path::new(path).exists() {
                    return None;
                }
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.ok()?;
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut c)
                    .await
                    .ok()
            }
        }
    }

    /// Every text of a one-column query, on a fresh connection.
    pub async fn texts(&self, sql: &str) -> Vec<String> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self.kind {
            Kind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar::<_, String>(sql)
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
            }
            Kind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar::<_, String>(sql)
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
            }
        }
    }

    /// A single optional text from plain SQL on a fresh connection.
    pub async fn text(&self, sql: &str) -> Option<String> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self.kind {
            Kind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar::<_, String>(sql)
                    .fetch_optional(&mut c)
                    .await
                    .unwrap()
            }
            Kind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar::<_, String>(sql)
                    .fetch_optional(&mut c)
                    .await
                    .unwrap()
            }
        }
    }

    /// Lets the next plain-SQL UPDATE of an audit entry through (an attacker with DBA rights).
    pub async fn allow_audit_updates(&self) {
        let sql = match self.kind {
            Kind::Postgres => "ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_no_update",
            Kind::Sqlite => "DROP TRIGGER audit_entries_no_update",
        };
        self.exec(sql).await.unwrap();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime; use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(PG_ADMIN_URL).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// An alert body with deliberate whitespace, to check it is kept byte for byte.
pub fn alert(id: &str, customer: &str, received_at: DateTime<Utc>) -> AlertRecord {
    let raw = format!(
        "{{ \"alert_id\": \"{id}\",  \"alert_type\": \"TRANSACTION\", \"priority\": \"HIGH\",\n  \
         \"created_at\": \"{}\", \"customer\": {{\"customer_id\": \"{customer}\"}} }}",
        received_at.to_rfc3339()
    );
    let parsed: Value = serde_json::from_str(&raw).unwrap();
    AlertRecord {
        alert_id: id.into(),
        content_hash: sha256_canonical(&parsed),
        raw_json: raw,
        customer_id: customer.into(),
        alert_type: "TRANSACTION".into(),
        priority: "HIGH".into(),
        created_at: received_at,
        received_at,
    }
}

pub fn versions() -> AuditVersions {
    AuditVersions {
        policy_version: "policy-7".into(),
        config_version: "cfg-abc".into(),
        list_versions: vec!["OFAC_SDN@2024-05-01".into(), "UN@2024-04-28".into()],
    }
}

pub fn step(alert_id: &str, name: &str, status: &str) -> StepRecord {
    StepRecord {
        alert_id: alert_id.into(),
        step: name.into(),
        attempt: 1,
        status: status.into(),
        input_hash: format!("in-{alert_id}-{name}"),
        output: json!({"step": name, "score": 41.5, "notes": ["a", "b"], "nested": {"z": 1, "a": 2}}),
        provider: "rules".into(),
        model: "none".into(),
        prompt_version: "v3".into(),
        tokens_in: 120,
        tokens_out: 80,
        cost_usd: 0.0012,
        latency_ms: 15,
        error: None,
        versions: versions(),
    }
}

pub fn completed(alert_id: &str, name: &str) -> StepRecord {
    step(alert_id, name, STEP_COMPLETED)
}

pub fn decision(alert_id: &str, disposition: &str) -> DecisionRecord {
    DecisionRecord {
        alert_id: alert_id.into(),
        disposition: disposition.into(),
        risk_score: 37.25,
        confidence: 0.9,
        requires_human_review: disposition != "AUTO_CLEAR",
        decision: json!({
            "alert_id": alert_id,
            "disposition": disposition,
            "risk_score": 37.25,
            "factors": [{"name": "velocity", "points": 12.5}],
        }),
        versions: versions(),
        decided_at: Utc::now(),
    }
}

/// The four pipeline steps written before a decision in the tests and the benchmark.
pub const STEPS: [&str; 4] = [
    "data_enrichment",
    "risk_scoring",
    "context_builder",
    "decision_maker",
];

/// Admit, four completed steps and a decision: one alert's full write set.
pub async fn full_write_set(store: &Store, a: AlertRecord, disposition: &str) {
    let id = a.alert_id.clone();
    store.admit(a).await.unwrap();
    for s in STEPS {
        store.append_step(completed(&id, s)).await.unwrap();
    }
    store
        .record_decision(decision(&id, disposition))
        .await
        .unwrap();
}

/// Generates, for each named `async fn NAME(kind: Kind)` in the calling module, a test
/// `postgres::NAME` and a test `sqlite::NAME`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Sqlite).await
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;

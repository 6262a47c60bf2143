//! A real server on 127.0.0.1:0 in front of a real engine, and a client for it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::sync::Arc;

use aml_triage::llm::LlmProvider;
use aml_triage::llm::offline::OfflineProvider;
use aml_triage::{Engine, Settings, http};

pub const SUBMITTER: &str = "submitter-key-0123456789";
pub const READER: &str = "reader-key-0123456789ab";
pub const AUDITOR: &str = "auditor-key-0123456789a";
pub const ADMIN: &str = "admin-key-0123456789abc";

/// Settings with the four test keys.
pub fn http_settings() -> Settings {
    let mut s = crate::support::settings();
    s.api_keys = aml_triage::config::ApiKeys::parse(&format!(
        "{SUBMITTER}:submitter,{READER}:reader,{AUDITOR}:auditor,{ADMIN}:admin"
    ));
    s.http_wait_seconds = 20.0;
    s
}

pub struct TestServer {
    pub engine: Arc<Engine>,
    server: Option<http::Server>,
    pub base: String,
    pub metrics_base: String,
    pub client: reqwest::Client,
}

impl TestServer {
    pub async fn start(settings: Settings) -> TestServer {
        Self::start_with(settings, Arc::new(OfflineProvider::default())).await
    }

    pub async fn start_with(settings: Settings, provider: Arc<dyn LlmProvider>) -> TestServer {
        let engine = Arc::new(
            Engine::builder(settings)
                .provider(provider)
                .start()
                .await
                .expect("engine starts"),
        );
        Self::around(engine)
    }

    pub fn around(engine: Arc<Engine>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let metrics = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = http::start(
            engine.clone(),
            listener,
            Some(metrics),
            tokio::runtime::Handle::current(),
            2,
        )
        .expect("server starts");
        TestServer {
            engine,
            base: format!("http://{}", server.addr),
            metrics_base: format!("http://{}", server.metrics_addr.unwrap()),
            server: Some(server),
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let mut r = self.client.get(self.url(path));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send().await.expect("request")
    }

    pub async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut r = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send().await.expect("request")
    }

    /// Prometheus text from the metrics port (no key).
    pub async fn scrape(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.metrics_base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
        self.engine.shutdown().await;
    }
}

/// The value of one sample line (`name{labels} value`), 0 when absent.
pub fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

/// Sum of every sample of a family whose line starts with `prefix`.
pub fn sum_of(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs SQL as the PostgreSQL superuser on the maintenance database.
pub async fn pg_admin(sql: &str) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(crate::store_support::PG_ADMIN_URL)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut c)
        .await
        .expect(sql);
    let _ = c.close().await;
}

//! Test providers and helpers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aml_triage::llm::offline::OfflineProvider;
use aml_triage::llm::{LlmError, LlmProvider, LlmRequest, LlmResponse};
use aml_triage::{Engine, Settings};
use futures_util::future::BoxFuture;

/// A clean alert: nothing adverse, complete data. The offline engine auto-clears it, which
/// makes it the right probe for "this failure must not auto-clear".
pub fn clean_alert(id: &str) -> String {
    format!(
        r#"{{"alert_id":"{id}","alert_type":"KYC_ONGOING","priority":"LOW",
        "created_at":"2026-01-05T10:00:00Z",
        "customer":{{"customer_id":"C-{id}","name":"Jane Roe","entity_type":"INDIVIDUAL",
          "date_of_birth":"1980-02-03","nationality":"US","kyc_risk_rating":"LOW",
          "account_opened":"2015-01-01","expected_monthly_volume":5000,
          "addresses":[{{"street":"1 Main St","city":"Springfield","state":"IL","postal_code":"62701","country":"US"}}]}}}}"#
    )
}

/// Settings for tests: in-memory store, fast retries and restarts.
pub fn settings() -> Settings {
    Settings {
        database_url: "memory".into(),
        log_level: "warn".into(),
        retry_base_delay_ms: 10,
        retry_max_delay_ms: 50,
        restart_backoff_ms: 10,
        agent_timeout_seconds: 5.0,
        ..Settings::default()
    }
}

/// Starts an engine with `provider`.
pub async fn engine_with(settings: Settings, provider: Arc<dyn LlmProvider>) -> Engine {
    Engine::builder(settings)
        .provider(provider)
        .start()
        .await
        .expect("engine starts")
}

/// What a scripted provider does on each call.
#[derive(Clone)]
pub enum Behaviour {
    /// Answer like the offline provider.
    Answer,
    /// Panic.
    Panic,
    /// Fail with this error.
    Fail(LlmError),
    /// Answer with this text.
    Text(String),
    /// Sleep this long, then answer.
    Sleep(Duration),
}

/// A provider that follows a script: call `n` behaves as `script[n]`, later calls as the
/// last entry. It counts calls, completions and calls dropped before completing, and tracks
/// how many calls are in progress at once.
pub struct Scripted {
    script: Vec<Behaviour>,
    pub calls: AtomicUsize,
    pub completed: AtomicUsize,
    pub dropped: AtomicUsize,
    pub in_progress: AtomicUsize,
    pub max_in_progress: AtomicUsize,
    /// Only calls from this agent follow the script; others answer offline.
    pub agent: aml_triage::domain::AgentKind,
}

impl Scripted {
    pub fn new(agent: aml_triage::domain::AgentKind, script: Vec<Behaviour>) -> Arc<Self> {
        Arc::new(Self {
            script,
            calls: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            in_progress: AtomicUsize::new(0),
            max_in_progress: AtomicUsize::new(0),
            agent,
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// Counts a call as dropped unless it was marked complete.
struct CallGuard {
    owner: Arc<Scripted>,
    done: bool,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.owner.in_progress.fetch_sub(1, Ordering::SeqCst);
        if self.done {
            self.owner.completed.fetch_add(1, Ordering::SeqCst);
        } else {
            self.owner.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A handle so the provider can hand itself to its futures.
pub struct ScriptedProvider(pub Arc<Scripted>);

impl LlmProvider for ScriptedProvider {
    fn name(&self) -> &str {
        "scripted"
    }

    fn needs_prompt(&self) -> bool {
        false
    }

    fn complete(&self, request: LlmRequest) -> BoxFuture<'static, Result<LlmResponse, LlmError>> {
        let owner = self.0.clone();
        if request.agent != owner.agent {
            return OfflineProvider::default().complete(request);
        }
        let n = owner.calls.fetch_add(1, Ordering::SeqCst);
        let behaviour = owner
            .script
            .get(n)
            .or(owner.script.last())
            .cloned()
            .unwrap_or(Behaviour::Answer);
        Box::pin(async move {
            let now = owner.in_progress.fetch_add(1, Ordering::SeqCst) + 1;
            owner.max_in_progress.fetch_max(now, Ordering::SeqCst);
            let mut guard = CallGuard {
                owner: owner.clone(),
                done: false,
            };
            let result = match behaviour {
                Behaviour::Answer => OfflineProvider::default().complete(request).await,
                Behaviour::Panic => panic!("scripted provider panics"),
                Behaviour::Fail(e) => Err(e),
                Behaviour::Text(text) => {
                    let mut r = OfflineProvider::default().complete(request).await?;
                    r.text = text;
                    Ok(r)
                }
                Behaviour::Sleep(d) => {
                    tokio::time::sleep(d).await;
                    OfflineProvider::default().complete(request).await
                }
            };
            guard.done = true;
            result
        })
    }
}

/// Polls `cond` every 10 ms for up to `limit`.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// Polls the async `cond` every 100 ms until it holds or `limit` passes.
pub async fn eventually_async<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cond().await
}

/// The shared data folder (`AML_SHARED_DATA`, else `../shared/data` next to the crate). Tests
/// that need it fail without it: a silent skip would pass a run that checked nothing.
pub fn shared_data() -> std::path::PathBuf {
    let candidates = [
        std::env::var("AML_SHARED_DATA")
            .ok()
            .map(std::path::PathBuf::from),
        Some(std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("screening-dev.eval.jsonl").exists())
        .expect("shared data folder (../shared/data or AML_SHARED_DATA) is required")
}

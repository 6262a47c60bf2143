//! The durable store: alerts, the step journal, decisions and the audit hash chain, on
//! PostgreSQL or SQLite (or in memory, for tests and benchmarks).
//!
//! Writes go through one batching writer task per store (see `writer.rs`): a write returns
//! only after its transaction has committed. Reads go straight to the pool.
//!
//! ```no_run
//! # async fn demo() -> Result<(), aml_triage::store::StoreError> {
//! use aml_triage::store::{Store, StoreOptions};
//! let store = Store::connect(Some("sqlite:aml-triage.db"), "node-a", StoreOptions::default()).await?;
//! store.migrate().await?;
//! // ... admit, append_step, record_decision ...
//! store.close().await;
//! # Ok(()) }
//! ```

pub mod audit;
mod columns;
mod error;
mod export;
mod memory;
mod postgres;
mod purge;
mod read;
pub mod records;
pub mod review;
mod sql;
mod sqlite;
mod verify;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

pub(crate) use error::scrub as scrub_url_secret;
pub use error::{StoreError, redact_url};
pub use export::PACK_FORMAT;
pub use records::{
    AdmitOutcome, AlertRecord, AuditAnchor, AuditEntry, AuditVersions, DecisionOutcome,
    DecisionRecord, PurgeReport, STATUS_DECIDED, STATUS_RECEIVED, STEP_COMPLETED, STEP_DEGRADED,
    StepRecord, StoredAlert, UnfinishedAlert, VerifyFailure, VerifyReport,
};

use audit::{ChainHead, PendingEntry};
use read::ReadBackend;
use writer::{Command, Op, QueuedDecision, QueuedStep, Reply, Writer};

/// Database used when no URL is given: a file in the working directory.
pub const DEFAULT_URL: &str = "sqlite:aml-triage.db";

/// Tuning of a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most commands written in one transaction.
    pub batch_max: usize,
    /// Commands that may wait for the writer before callers are made to wait (backpressure).
    pub queue_capacity: usize,
    /// Pool size (reads, plus the writer's one connection).
    pub max_connections: u32,
    /// How long to wait for a pooled connection, or for a SQLite lock.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            batch_max: 500,
            queue_capacity: 4_096,
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// Which database a store runs on.
#[derive(Debug, Clone)]
enum Backend {
    Memory(memory::Backend),
    Sqlite(sqlite::Backend),
    Postgres(postgres::Backend),
}

/// Runs `$body` with `$b` bound to the concrete backend.
macro_rules! with_backend {
    ($self:expr, $b:ident => $body:expr) => {
        match &$self.inner.backend {
            Backend::Memory($b) => $body,
            Backend::Sqlite($b) => $body,
            Backend::Postgres($b) => $body,
        }
    };
}

struct Inner {
    backend: Backend,
    node_id: String,
    commands: mpsc::Sender<Command>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// PostgreSQL only: the connection holding this node's chain lock.
    chain_lock: Mutex<Option<sqlx::PgConnection>>,
    /// Head of this node's chain as last committed by the writer.
    committed_head: Arc<std::sync::Mutex<Option<ChainHead>>>,
    /// How many times a caller has waited for a commit (see [`Store::commit_waits`]).
    commit_waits: Arc<AtomicU64>,
    /// Follow-up work started after a commit (a review case for an escalated decision):
    /// [`Store::close`] waits for it before it stops the writer and closes the pools.
    follow_ups: tokio_util::task::TaskTracker,
}

/// A queued write; [`PendingWrite::committed`] resolves when its batch has committed.
#[derive(Debug)]
pub struct PendingWrite {
    rx: oneshot::Receiver<Result<Reply, StoreError>>,
    waits: Arc<AtomicU64>,
}

impl PendingWrite {
    /// Waits until the write is committed (or has failed). Counts as a commit wait (see
    /// [`Store::commit_waits`]).
    pub async fn committed(self) -> Result<(), StoreError> {
        self.waits.fetch_add(1, Ordering::Relaxed);
        match self.rx.await.map_err(|_| StoreError::Closed)?? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The outcome if the writer has already answered, without waiting: `None` while the
    /// write is still queued or in a transaction. A write queued before a later write of the
    /// same caller has always been answered once that later write has been.
    pub fn outcome(mut self) -> Option<Result<(), StoreError>> {
        match self.rx.try_recv() {
            Ok(Ok(Reply::Done)) => Some(Ok(())),
            Ok(Ok(other)) => Some(Err(unexpected(other))),
            Ok(Err(e)) => Some(Err(e)),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(StoreError::Closed)),
        }
    }
}

/// The store. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend_name())
            .field("node_id", &self.inner.node_id)
            .finish()
    }
}

fn unexpected(reply: Reply) -> StoreError {
    StoreError::Internal(format!("unexpected writer reply {reply:?}"))
}

impl Store {
    /// Opens a store.
    ///
    /// `url` is `None` or `sqlite:PATH` (default [`DEFAULT_URL`]; the file is created if
    /// missing), `postgres://...`/`postgresql://...`, or `memory`. `node_id` names this
    /// process's audit chain: each running instance needs its own. On PostgreSQL the chain is
    /// locked for the store's lifetime, and a second store with the same node id fails with
    /// [`StoreError::ChainLocked`]. Call [`Store::migrate`] before writing.
    pub async fn connect(
        url: Option<&str>,
        node_id: &str,
        opts: StoreOptions,
    ) -> Result<Store, StoreError> {
        if node_id.is_empty() {
            return Err(StoreError::InvalidInput("node_id is empty".into()));
        }
        let url = url.unwrap_or(DEFAULT_URL);
        let mut chain_lock = None;
        let backend = if url == "memory" {
            Backend::Memory(memory::Backend::default())
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite(sqlite::connect(url, &opts).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let b = postgres::connect(url, node_id, &opts).await?;
            chain_lock = Some(postgres::lock_chain(url, node_id).await?);
            Backend::Postgres(b)
        } else {
            return Err(StoreError::Connect {
                url: redact_url(url),
                message: "unsupported database URL: use sqlite:PATH, postgres://... or memory"
                    .into(),
            });
        };
        let (commands, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let committed_head = Arc::new(std::sync::Mutex::new(None));
        let batch_max = opts.batch_max.max(1);
        let chain_id = node_id.to_string();
        // Spawned per concrete backend so the compiler sees a concrete (Send) future.
        let handle = match &backend {
            Backend::Memory(b) => tokio::spawn(
                Writer {
                    backend: b.clone(),
                    chain_id,
                    batch_max,
                    committed_head: committed_head.clone(),
                    head: None,
                    failed_journal: Default::default(),
                }
                .run(rx),
            ),
            Backend::Sqlite(b) => tokio::spawn(
                Writer {
                    backend: b.clone(),
                    chain_id,
                    batch_max,
                    committed_head: committed_head.clone(),
                    head: None,
                    failed_journal: Default::default(),
                }
                .run(rx),
            ),
            Backend::Postgres(b) => tokio::spawn(
                Writer {
                    backend: b.clone(),
                    chain_id,
                    batch_max,
                    committed_head: committed_head.clone(),
                    head: None,
                    failed_journal: Default::default(),
                }
                .run(rx),
            ),
        };
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                node_id: node_id.to_string(),
                commands,
                writer: Mutex::new(Some(handle)),
                chain_lock: Mutex::new(chain_lock),
                committed_head,
                commit_waits: Arc::new(AtomicU64::new(0)),
                follow_ups: tokio_util::task::TaskTracker::new(),
            }),
        })
    }

    /// `memory`, `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match &self.inner.backend {
            Backend::Memory(_) => "memory",
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// How many times callers of this store have waited for a commit: each call of a write
    /// method that returns after its commit ([`Store::admit`], [`Store::record_decision`],
    /// [`Store::append_step`], [`Store::record_audit_event`], [`Store::purge`]) and each
    /// [`PendingWrite::committed`] is one wait. Instrumentation of the write path's latency
    /// budget: the pipeline waits for two commits per alert (its admission, its decision);
    /// journal writes in between are queued without waiting.
    pub fn commit_waits(&self) -> u64 {
        self.inner.commit_waits.load(Ordering::Relaxed)
    }

    /// This node's id, which is also its audit chain id.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// A cheap round trip to the database (`SELECT 1` on a pooled connection), for readiness
    /// checks. Gives up after `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), StoreError> {
        let run = async {
            match &self.inner.backend {
                Backend::Memory(_) => Ok(()),
                Backend::Sqlite(b) => sqlx::query("SELECT 1").execute(&b.pool).await.map(|_| ()),
                Backend::Postgres(b) => sqlx::query("SELECT 1").execute(&b.pool).await.map(|_| ()),
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(StoreError::Internal("database ping timed out".into())),
        }
    }

    /// Applies the embedded migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Sqlite(b) => Ok(sqlite::migrator().run(&b.pool).await?),
            Backend::Postgres(b) => Ok(postgres::migrator().run(&b.pool).await?),
        }
    }

    async fn send(&self, op: Op) -> Result<Reply, StoreError> {
        self.inner.commit_waits.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Command { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores a new alert, or reports what is already stored under its id. Resolves after the
    /// alert is committed, so work may start once it returns `Inserted`.
    pub async fn admit(&self, alert: AlertRecord) -> Result<AdmitOutcome, StoreError> {
        match self.send(Op::Admit(alert)).await? {
            Reply::Admit(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    /// Journals a step and its audit entry, atomically. A second `completed` record for the
    /// same (alert, step) fails with [`StoreError::StepAlreadyCompleted`].
    pub async fn append_step(&self, step: StepRecord) -> Result<(), StoreError> {
        self.enqueue_step(step).await?.committed().await
    }

    /// Queues a step for the writer and returns once it is queued, not committed: the caller
    /// can go on and await [`PendingWrite::committed`] later. The writer is one FIFO queue, so
    /// everything queued after this write by the same caller commits in the same batch or a
    /// later one; and once a journal write of an alert has failed, the writer refuses that
    /// alert's next decision. So a decision queued after its steps can never be durable
    /// without them, and the caller need not wait for the steps before queueing it.
    pub async fn enqueue_step(&self, step: StepRecord) -> Result<PendingWrite, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Command {
                op: Op::Step(QueuedStep::new(step)),
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(PendingWrite {
            rx,
            waits: self.inner.commit_waits.clone(),
        })
    }

    /// Stores the decision, its audit entry and the alert's new status, atomically; if the
    /// alert already has a decision, returns it and writes nothing.
    pub async fn record_decision(&self, d: DecisionRecord) -> Result<DecisionOutcome, StoreError> {
        match self.send(Op::Decision(QueuedDecision::new(d))).await? {
            Reply::Decision(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    /// Appends an audit entry for something that is not a step or decision (a user action, a
    /// configuration load, ...).
    pub async fn record_audit_event(
        &self,
        actor: &str,
        action: &str,
        alert_id: Option<&str>,
        payload: Value,
    ) -> Result<(), StoreError> {
        let entry = PendingEntry {
            alert_id: alert_id.map(str::to_string),
            actor: actor.to_string(),
            action: action.to_string(),
            payload,
            versions: None,
        };
        match self.send(Op::Event(entry)).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Alerts without a decision, oldest received first, each with its completed steps.
    pub async fn unfinished(&self) -> Result<Vec<UnfinishedAlert>, StoreError> {
        with_backend!(self, b => b.unfinished().await)
    }

    /// Ids of the alerts without a decision, oldest received first (cheap: no payloads).
    pub async fn unfinished_ids(&self) -> Result<Vec<String>, StoreError> {
        with_backend!(self, b => b.unfinished_ids().await)
    }

    /// An alert as stored.
    pub async fn alert(&self, id: &str) -> Result<Option<StoredAlert>, StoreError> {
        with_backend!(self, b => b.alert(id).await)
    }

    /// The decision of an alert.
    pub async fn decision(&self, id: &str) -> Result<Option<Value>, StoreError> {
        let text = with_backend!(self, b => b.decision_text(id).await)?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("decision: {e}")))
        })
        .transpose()
    }

    /// The journal of an alert, in write order.
    pub async fn steps(&self, id: &str) -> Result<Vec<StepRecord>, StoreError> {
        with_backend!(self, b => b.steps(id).await)
    }

    /// The audit entries of an alert, by chain and seq (not verified: see [`Store::verify`]).
    pub async fn audit_trail(&self, id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = with_backend!(self, b => b.audit_rows_for_alert(id).await)?;
        rows.into_iter().map(|r| r.into_entry()).collect()
    }

    /// `(prior alerts, prior escalations)` of a customer: other alerts raised no later than
    /// `excluding_alert`, and those among them decided with a disposition other than
    /// `AUTO_CLEAR`.
    pub async fn customer_history(
        &self,
        customer_id: &str,
        excluding_alert: &str,
    ) -> Result<(u32, u32), StoreError> {
        with_backend!(self, b => b.customer_history(customer_id, excluding_alert).await)
    }

    /// Recomputes hashes and links of every chain (or of one alert's entries and their
    /// neighbours), and checks alerts and decisions against their audit entries. Reports the
    /// first problem found.
    pub async fn verify(&self, alert: Option<&str>) -> Result<VerifyReport, StoreError> {
        match alert {
            Some(id) => {
                with_backend!(self, b => verify::verify_alert(b, id).await.map(|(r, _, _)| r))
            }
            None => {
                let head = self
                    .inner
                    .committed_head
                    .lock()
                    .map(|h| h.clone())
                    .unwrap_or(None);
                with_backend!(self, b => verify::verify_all(b, (&self.inner.node_id, head)).await)
            }
        }
    }

    /// The stored head `(chain_id, seq, hash)` of every chain (its last entry, else its latest
    /// anchor): what a signed checkpoint vouches for.
    pub async fn chain_heads(&self) -> Result<Vec<(String, i64, String)>, StoreError> {
        with_backend!(self, b => {
            let mut out = Vec::new();
            for (chain, _) in b.chains().await? {
                let head = b.stored_head(&chain).await?;
                out.push((chain, head.seq, head.hash));
            }
            Ok(out)
        })
    }

    /// The hash stored for entry `seq` of `chain_id`: the entry's, else (when retention
    /// removed it) the hash of an anchor at exactly that seq. `Ok(None)` when neither exists;
    /// the second value tells whether retention has removed entries up to or past `seq`.
    pub async fn entry_hash(
        &self,
        chain_id: &str,
        seq: i64,
    ) -> Result<(Option<String>, bool), StoreError> {
        with_backend!(self, b => {
            let anchor = b.latest_anchor(chain_id).await?;
            let purged = anchor.as_ref().is_some_and(|a| a.seq >= seq);
            if let Some(row) = b.audit_row(chain_id, seq).await? {
                return Ok((Some(row.hash), purged));
            }
            Ok((anchor.filter(|a| a.seq == seq).map(|a| a.hash), purged))
        })
    }

    /// The regulator pack of one alert (see `export.rs` and `docs/audit.md`).
    pub async fn export(&self, alert_id: &str) -> Result<Value, StoreError> {
        with_backend!(self, b => export::build(b, &self.inner.node_id, alert_id).await)
    }

    /// Removes decided alerts received more than `retention_days` before `now`, with their
    /// decisions, steps and audit entries, following the rule in `purge.rs`; records anchors
    /// and a `purge` audit entry in the same transaction.
    pub async fn purge(
        &self,
        retention_days: u32,
        now: DateTime<Utc>,
    ) -> Result<PurgeReport, StoreError> {
        let cutoff = now - chrono::Duration::days(i64::from(retention_days));
        match self
            .send(Op::Purge {
                retention_days,
                cutoff,
            })
            .await?
        {
            Reply::Purge(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Runs `work` (store writes that follow a commit, such as opening a review case) as a
    /// task that [`Store::close`] waits for, so a shutdown does not cut it off half-way.
    pub fn spawn_follow_up<F>(&self, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.follow_ups.spawn(work);
    }

    /// Waits (up to 10 s) for follow-up work, writes everything queued, stops the writer,
    /// releases the chain lock and closes pools. Later writes fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        self.inner.follow_ups.close();
        if tokio::time::timeout(
            std::time::Duration::from_secs(10),
            self.inner.follow_ups.wait(),
        )
        .await
        .is_err()
        {
            tracing::warn!(
                "follow-up writes still running at close: the next start's sweep completes them"
            );
        }
        let _ = self.send(Op::Shutdown).await;
        if let Some(handle) = self.inner.writer.lock().await.take() {
            let _ = handle.await;
        }
        if let Some(conn) = self.inner.chain_lock.lock().await.take() {
            postgres::unlock_chain(conn, &self.inner.node_id).await;
        }
        match &self.inner.backend {
            Backend::Memory(_) => {}
            Backend::Sqlite(b) => b.pool.close().await,
            Backend::Postgres(b) => b.pool.close().await,
        }
    }
}

//! The library API for embedding services: start the actor system from a configuration,
//! submit alerts and await their decisions, shut down with a drain.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use aml_triage::{Engine, Settings};
//! let engine = Engine::builder(Settings::load(None)?).start().await?;
//! let decision = engine.submit_json(r#"{"alert_id":"A1", "...": "..."}"#).await?;
//! println!("{}", decision.disposition);
//! engine.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The actors run on a dedicated actix system thread (plus one arbiter thread per agent), so
//! the engine can be driven from any tokio runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::{Actor, Addr, Arbiter};
use chrono::Utc;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

use crate::actors::context_builder::ContextBuilder;
use crate::actors::data_enrichment::DataEnrichment;
use crate::actors::decision_maker::DecisionMaker;
use crate::actors::risk_scoring::RiskScoring;
use crate::actors::supervision::{AgentHealth, RestartPolicy, RetryPolicy, Slot};
use crate::actors::supervisor::{Agents, PipelineConfig, Supervisor};
use crate::assessment::enrichment::ReferenceData;
use crate::config::Settings;
use crate::domain::AgentKind;
use crate::domain::alert::Alert;
use crate::domain::decision::Decision;
use crate::domain::policy::POLICY_VERSION;
use crate::error::{StartError, TriageError};
use crate::llm::LlmProvider;
use crate::llm::check::Checker;
use crate::llm::registry::ProviderRegistry;
use crate::messages::supervisor::{StopAgentOf, TriageAlert};
use crate::metrics::Metrics;
use crate::mq::LinkStatus;
use crate::mq::remote::{RemoteAgent, RemoteClient, StepRequest, StepResponse};
use crate::reference::ReferenceHandle;
use crate::state::StateStore;
use crate::state::cache::Caches;
use crate::state::lease::{Leases, ResumeFn};
use crate::store::{AuditVersions, StepRecord, Store, StoreOptions};

/// Suggested wait given to callers turned away at admission.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// SHA-256 (hex) of an alert's canonical JSON: the idempotency fingerprint. Two submissions
/// with the same content but different whitespace or key order have the same fingerprint.
pub fn content_hash(alert: &Alert) -> String {
    let canonical = serde_json::to_vec(alert).unwrap_or_default();
    hex::encode(Sha256::digest(&canonical))
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    settings: Settings,
    provider: Option<Arc<dyn LlmProvider>>,
    refs: Option<ReferenceData>,
    resume: bool,
    migrate: bool,
    take_over: bool,
}

impl EngineBuilder {
    /// Uses `provider` for every model-backed agent instead of the offline default.
    pub fn provider(mut self, provider: Arc<dyn LlmProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Uses already loaded reference data instead of loading it from the configured paths.
    pub fn reference_data(mut self, refs: ReferenceData) -> Self {
        self.refs = Some(refs);
        self
    }

    /// Whether to apply pending migrations at start (default: yes).
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Whether to resume unfinished alerts at start (default: yes).
    pub fn resume_unfinished(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Whether this node takes over alerts whose lease expired on another node (default: yes,
    /// when `REDIS_URL` is set). Off for processes that take no alerts, such as workers.
    pub fn take_over_alerts(mut self, take_over: bool) -> Self {
        self.take_over = take_over;
        self
    }

    /// Opens the store, applies migrations, starts the actor system and, unless disabled,
    /// resumes every alert left without a decision.
    pub async fn start(self) -> Result<Engine, StartError> {
        self.settings.validate()?;
        let settings = Arc::new(self.settings);
        let refs = match self.refs {
            Some(r) => r,
            None => ReferenceData::load(&settings).map_err(StartError::ReferenceData)?,
        };
        let reference = Arc::new(ReferenceHandle::new(refs, settings.list_paths.clone()));
        let refs = reference.clone();
        let state_runtime = StoreRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("aml-triage-state")
                .enable_all()
                .build()
                .map_err(|e| StartError::System(e.to_string()))?,
        ));
        let state_rt = state_runtime.handle();
        let state = crate::state::open(&settings, &state_rt)?;
        // An explicitly given provider serves every agent; otherwise each agent's provider
        // comes from the configuration (offline by default), remote ones behind the
        // provider gate kept in the agent state (circuit and rate limits shared by nodes).
        let mut providers = match self.provider {
            Some(p) => ProviderRegistry::uniform(p),
            None => {
                let gate = Arc::new(crate::state::limits::SharedProviderGate::from_settings(
                    state.clone(),
                    &settings,
                ));
                gate.spawn_refresh(
                    &state_rt,
                    Duration::from_secs_f64(settings.state_publish_seconds.max(0.1)),
                );
                ProviderRegistry::from_settings_gated(&settings, Some(gate))?
            }
        };
        // Every model call becomes an `llm_call` span (see `crate::telemetry`).
        let traced = |p: Arc<dyn LlmProvider>| -> Arc<dyn LlmProvider> {
            Arc::new(crate::telemetry::TracedProvider(p))
        };
        providers.context = traced(providers.context);
        providers.decision = traced(providers.decision);
        providers.supervisor = traced(providers.supervisor);
        let registry = providers.clone();
        let metrics = Metrics::new();
        let thread_metrics = metrics.clone();
        let (tx, rx) = oneshot::channel();
        let thread_settings = settings.clone();
        let (store, store_runtime) = open_store(&settings, self.migrate).await?;
        let thread_store = store.clone();
        let sources = crate::actors::data_enrichment::Sources {
            store: store.clone(),
            external: crate::customer_data::CustomerDataClient::from_settings(&settings)?
                .map(Arc::new),
            caches: Caches::new(
                state.clone(),
                Duration::from_secs(settings.cache_ttl),
                metrics.clone(),
            ),
        };
        let leases = Arc::new(Leases::new(
            state.clone(),
            &settings.node_id,
            Duration::from_secs_f64(settings.lease_ttl_seconds),
            Duration::from_secs_f64(settings.lease_heartbeat_seconds),
            metrics.clone(),
        ));
        leases.spawn_heartbeat(&state_rt);
        // Agents in REMOTE_AGENTS are reached over RabbitMQ; the connection lives on the
        // caller's runtime, next to the rest of the node's I/O.
        let remote_kinds = settings.remote_agent_kinds();
        let remote = if remote_kinds.is_empty() {
            None
        } else {
            Some(
                RemoteClient::start(&settings, &remote_kinds, &tokio::runtime::Handle::current())
                    .map_err(|e| StartError::System(e.to_string()))?,
            )
        };
        let thread_remote = remote.clone();
        let thread = std::thread::Builder::new()
            .name("aml-triage-actors".into())
            .spawn(move || {
                let system = actix_rt::System::new();
                let built = system.block_on(build(
                    thread_settings,
                    thread_store,
                    sources,
                    refs,
                    providers,
                    thread_metrics,
                    thread_remote,
                ));
                let ok = built.is_ok();
                let _ = tx.send(built);
                if ok {
                    let _ = system.run();
                }
            })
            .map_err(|e| StartError::System(e.to_string()))?;
        let parts = rx
            .await
            .map_err(|_| StartError::System("actor system thread exited".into()))??;
        let submitter = Submitter {
            supervisor: parts.supervisor,
            admission: Arc::new(Semaphore::new(settings.max_concurrent_alerts)),
            accepting: Arc::new(AtomicBool::new(true)),
            admission_wait: Duration::from_secs_f64(settings.admission_wait_seconds),
            metrics: metrics.clone(),
            leases: leases.clone(),
            state_rt: state_rt.clone(),
            bridge: Arc::default(),
        };
        if settings.redis_url().is_some() && self.take_over {
            // Shared state: other nodes' alerts may need taking over.
            let (s, st) = (submitter.clone(), store.clone());
            let resume: ResumeFn = Arc::new(move |alert_id: String| {
                let (s, st) = (s.clone(), st.clone());
                Box::pin(async move {
                    resume_stored(&s, &st, &alert_id)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
            });
            leases.spawn_sweeper(&state_rt, Arc::downgrade(&store), resume);
        }
        if settings.list_reload_seconds > 0 && !settings.list_paths.is_empty() {
            spawn_list_reloader(&state_rt, &reference, &settings, &metrics);
        }
        crate::state::publisher::spawn(
            &state_rt,
            state.clone(),
            Duration::from_secs_f64(settings.state_publish_seconds),
            node_state_fn(&settings, &submitter, &parts.agents, &registry, &state),
        );
        let (resume_tx, resume_rx) = watch::channel(None);
        if self.resume {
            let s = submitter.clone();
            let store = store.clone();
            tokio::spawn(async move {
                let report = resume(&s, &store).await;
                let _ = resume_tx.send(Some(report));
            });
        } else {
            let _ = resume_tx.send(Some(ResumeReport::default()));
        }
        let broker_links = remote
            .iter()
            .map(|r| ("remote_agents", r.status()))
            .collect();
        Ok(Engine {
            remote,
            broker_links: std::sync::Mutex::new(broker_links),
            submitter,
            settings,
            store,
            _store_runtime: store_runtime,
            agents: parts.agents,
            system: parts.system,
            thread: std::sync::Mutex::new(Some(thread)),
            resumed: resume_rx,
            providers: registry,
            metrics,
            state,
            leases,
            reference,
            _state_runtime: state_runtime,
        })
    }
}

/// Counts and logs the outcome of a list reload.
fn record_reload(
    metrics: &Metrics,
    out: &Result<Option<Vec<String>>, crate::reference::ReloadError>,
) {
    match out {
        Ok(Some(versions)) => {
            metrics.list_reload("swapped");
            tracing::info!(?versions, "screening lists reloaded");
        }
        Ok(None) => {}
        Err(e) => {
            metrics.list_reload("refused");
            tracing::error!(error = %e, "screening list reload refused; keeping the lists in force");
        }
    }
}

/// Checks the list paths every `LIST_RELOAD_SECONDS` and swaps in a changed set once it has
/// loaded and passed its checks; a set that fails is refused and logged, and the node goes on
/// with the lists it has. Ends with the state runtime.
fn spawn_list_reloader(
    rt: &tokio::runtime::Handle,
    reference: &Arc<ReferenceHandle>,
    settings: &Arc<Settings>,
    metrics: &Metrics,
) {
    let weak = Arc::downgrade(reference);
    let (settings, metrics) = (settings.clone(), metrics.clone());
    let every = Duration::from_secs(settings.list_reload_seconds);
    rt.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(reference) = weak.upgrade() else {
                return;
            };
            let s = settings.clone();
            let r = reference.clone();
            let out = tokio::task::spawn_blocking(move || r.reload_if_changed(&s))
                .await
                .unwrap_or_else(|e| Err(crate::reference::ReloadError::Load(e.to_string())));
            record_reload(&metrics, &out);
        }
    });
}

/// Builds this node's published state from what the engine knows.
fn node_state_fn(
    settings: &Settings,
    submitter: &Submitter,
    agents: &Arc<Agents>,
    providers: &ProviderRegistry,
    state: &Arc<dyn StateStore>,
) -> crate::state::publisher::NodeStateFn {
    let node_id = settings.node_id.clone();
    let max = settings.max_concurrent_alerts;
    let agent_providers: Vec<(AgentKind, String)> = vec![
        (
            AgentKind::ContextBuilder,
            settings.context_builder_provider.clone(),
        ),
        (
            AgentKind::DecisionMaker,
            settings.decision_maker_provider.clone(),
        ),
        (
            AgentKind::SupervisorCheck,
            settings.supervisor_provider.clone(),
        ),
    ];
    let (submitter, agents, providers, state) = (
        submitter.clone(),
        agents.clone(),
        providers.clone(),
        state.clone(),
    );
    Arc::new(move || {
        let tallies = submitter.metrics.agent_tallies();
        let circuits = providers.circuits();
        let health = agents.health();
        let kinds = AgentKind::ALL
            .iter()
            .copied()
            .chain(std::iter::once(AgentKind::SupervisorCheck));
        let agent_states = kinds
            .map(|kind| {
                let name = kind.as_str();
                let t = tallies.get(name).cloned().unwrap_or_default();
                let h = health.iter().find(|h| h.agent == kind);
                let circuit = agent_providers
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .and_then(|(_, p)| circuits.iter().find(|(n, _)| n == p))
                    .map_or("none", |(_, c)| *c);
                crate::state::AgentState {
                    agent: name.to_string(),
                    health: h.map_or("running".to_string(), |h| {
                        serde_json::to_value(h.status)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    }),
                    in_flight: t.started.saturating_sub(t.processed),
                    processed: t.processed,
                    failed: t.failed,
                    restarts: h.map_or(0, |h| h.restarts_total),
                    last_error: t.last_error,
                    circuit: circuit.to_string(),
                }
            })
            .collect();
        crate::state::NodeState {
            node_id: node_id.clone(),
            updated_at: Utc::now(),
            in_flight: (max - submitter.admission.available_permits()) as u64,
            leases: submitter.leases.held_count() as u64,
            takeovers: submitter.leases.takeovers(),
            accepting: submitter.accepting.load(Ordering::Acquire),
            state_backend: state.describe(),
            agents: agent_states,
            bridge: submitter.bridge_state(),
        }
    })
}

struct Parts {
    supervisor: Addr<Supervisor>,
    agents: Arc<Agents>,
    system: actix::System,
}

/// Opens the store on a runtime of its own, so that its writer (which serialises, hashes and
/// commits every batch) and its connections never compete with the actors' event loops for a
/// thread: measured on PostgreSQL, sharing the supervisor's thread left the database idle in
/// transaction, waiting on the client.
async fn open_store(
    settings: &Settings,
    migrate: bool,
) -> Result<(Arc<Store>, StoreRuntime), StartError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("aml-triage-store")
        .enable_all()
        .build()
        .map_err(|e| StartError::System(e.to_string()))?;
    let (url, node) = (settings.database_url.clone(), settings.node_id.clone());
    let store = runtime
        .spawn(async move {
            let store = Store::connect(Some(&url), &node, StoreOptions::default()).await?;
            if migrate {
                store.migrate().await?;
            }
            Ok::<_, crate::store::StoreError>(store)
        })
        .await
        .map_err(|e| StartError::System(e.to_string()))?
        .map_err(|e| StartError::Store(e.to_string()))?;
    Ok((Arc::new(store), StoreRuntime(Some(runtime))))
}

/// The store's runtime (and the state runtime). Shut down without blocking when dropped,
/// since the engine may be dropped inside another runtime, where a blocking shutdown would
/// panic.
struct StoreRuntime(Option<tokio::runtime::Runtime>);

impl StoreRuntime {
    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(rt) => rt.handle().clone(),
            None => tokio::runtime::Handle::current(),
        }
    }
}

impl Drop for StoreRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

async fn build(
    settings: Arc<Settings>,
    store: Arc<Store>,
    sources: crate::actors::data_enrichment::Sources,
    refs: Arc<ReferenceHandle>,
    providers: ProviderRegistry,
    metrics: Metrics,
    remote: Option<Arc<RemoteClient>>,
) -> Result<Parts, StartError> {
    let state_outages = crate::state::OutageWatch::new(sources.caches.state().clone());
    let agent_state = sources.caches.state().clone();
    let remote_kinds = settings.remote_agent_kinds();
    let remote_for = |kind: AgentKind| -> Option<Arc<dyn crate::protocol::RemoteSteps>> {
        let client = remote.as_ref().filter(|_| remote_kinds.contains(&kind))?;
        Some(Arc::new(RemoteAgent::new(
            client.clone(),
            kind,
            &settings.amqp_agent_queue_prefix,
        )))
    };
    let restart = RestartPolicy {
        max_restarts: settings.restart_max,
        window: Duration::from_secs_f64(settings.restart_window_seconds),
        backoff: Duration::from_millis(settings.restart_backoff_ms),
        cooldown: Duration::from_secs_f64(settings.failed_agent_cooldown_seconds),
    };
    let t = settings.thresholds();
    let scorecard = crate::model::load_scorecard(settings.scorecard_path.as_deref())
        .map_err(|e| crate::config::ConfigError::Invalid {
            key: "SCORECARD_PATH".into(),
            message: e.to_string(),
        })?
        .map(Arc::new);
    let challenger = crate::model::load_scorecard(settings.scorecard_shadow_path.as_deref())
        .map_err(|e| crate::config::ConfigError::Invalid {
            key: "SCORECARD_SHADOW_PATH".into(),
            message: e.to_string(),
        })?
        .map(Arc::new);
    let sc = scorecard.clone();
    // Each agent gets a mailbox as large as the admission limit: every in-flight alert has at
    // most one message at a time with a given agent, so senders never wait on a full mailbox
    // in normal operation, and the bound still holds if something goes wrong.
    let mailbox = settings.max_concurrent_alerts.max(16);

    let arbiter = Arbiter::new().handle();
    let (s, r) = (settings.clone(), refs.clone());
    let rm = remote_for(AgentKind::DataEnrichment);
    let enrichment = Arc::new(Slot::new(
        AgentKind::DataEnrichment,
        restart,
        Box::new(move || {
            let agent = DataEnrichment::new(
                r.clone(),
                sources.clone(),
                s.data_enrichment_model.clone(),
                mailbox,
            )
            .with_remote(rm.clone());
            DataEnrichment::start_in_arbiter(&arbiter, move |_| agent)
        }),
    ));
    let arbiter = Arbiter::new().handle();
    let s = settings.clone();
    let rm = remote_for(AgentKind::RiskScoring);
    let scoring = Arc::new(Slot::new(
        AgentKind::RiskScoring,
        restart,
        Box::new(move || {
            let agent = RiskScoring::new(t, s.risk_scoring_model.clone(), mailbox)
                .with_remote(rm.clone())
                .with_scorecard(sc.clone())
                .with_shadow(challenger.clone());
            RiskScoring::start_in_arbiter(&arbiter, move |_| agent)
        }),
    ));
    let arbiter = Arbiter::new().handle();
    let (s, p) = (settings.clone(), providers.context.clone());
    let rm = remote_for(AgentKind::ContextBuilder);
    let context = Arc::new(Slot::new(
        AgentKind::ContextBuilder,
        restart,
        Box::new(move || {
            let agent = ContextBuilder::new(p.clone(), s.context_builder_model.clone(), mailbox)
                .with_remote(rm.clone());
            ContextBuilder::start_in_arbiter(&arbiter, move |_| agent)
        }),
    ));
    let arbiter = Arbiter::new().handle();
    let (s, p) = (settings.clone(), providers.decision.clone());
    let rm = remote_for(AgentKind::DecisionMaker);
    let decision = Arc::new(Slot::new(
        AgentKind::DecisionMaker,
        restart,
        Box::new(move || {
            let agent = DecisionMaker::new(p.clone(), s.decision_maker_model.clone(), t, mailbox)
                .with_remote(rm.clone());
            DecisionMaker::start_in_arbiter(&arbiter, move |_| agent)
        }),
    ));
    // Restart counts and failed marks are kept in the agent state; a node starting again
    // under the same NODE_ID starts from them.
    let node = settings.node_id.as_str();
    enrichment.keep_record_in(agent_state.clone(), node).await;
    scoring.keep_record_in(agent_state.clone(), node).await;
    context.keep_record_in(agent_state.clone(), node).await;
    decision.keep_record_in(agent_state, node).await;
    let agents = Arc::new(Agents {
        enrichment,
        scoring,
        context,
        decision,
        checker: Arc::new(Checker::new(
            providers.supervisor.clone(),
            settings.supervisor_model.clone(),
            t,
        )),
    });
    let cfg = PipelineConfig {
        thresholds: t,
        retries: AgentKind::ALL.map(|k| {
            let (max_retries, base, max) = settings.agent_retry(k);
            RetryPolicy {
                max_retries,
                base: Duration::from_millis(base),
                max: Duration::from_millis(max),
            }
        }),
        timeouts: AgentKind::ALL.map(|k| settings.agent_timeout(k)),
        versions: AuditVersions {
            policy_version: POLICY_VERSION.to_string(),
            config_version: crate::model::config_version_with(
                settings.config_version(),
                scorecard.as_deref(),
            ),
            list_versions: refs.current().versions(),
        },
        mailbox: settings.max_concurrent_alerts.max(16),
        metrics,
        state_outages,
    };
    let supervisor = Supervisor::new(cfg, store.clone(), agents.clone()).start();
    Ok(Parts {
        supervisor,
        agents,
        system: actix::System::current(),
    })
}

/// What resuming unfinished alerts at start did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumeReport {
    /// Alerts found without a decision.
    pub found: usize,
    /// Of those, decided now.
    pub decided: usize,
    /// Of those, still failing (they stay unfinished and are tried at the next start).
    pub failed: usize,
    /// Of those, left alone because another live node holds their lease (it finishes them,
    /// or they are taken over when its lease expires).
    pub held_elsewhere: usize,
}

async fn resume(s: &Submitter, store: &Store) -> ResumeReport {
    let unfinished = match store.unfinished().await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "cannot list unfinished alerts: none resumed");
            return ResumeReport::default();
        }
    };
    let mut report = ResumeReport {
        found: unfinished.len(),
        ..Default::default()
    };
    if unfinished.is_empty() {
        return report;
    }
    tracing::info!(count = unfinished.len(), "resuming unfinished alerts");
    let results: Vec<Result<Decision, TriageError>> = futures_util::stream::iter(unfinished)
        .map(|u| async move {
            let alert = Alert::from_json_limited(&u.alert.raw_json, usize::MAX)?;
            let permit = s.admit(true).await?;
            s.triage(
                alert,
                Arc::from(u.alert.raw_json),
                Some(u.completed_steps),
                permit,
            )
            .await
        })
        .buffer_unordered(s.admission.available_permits().max(1))
        .collect()
        .await;
    for r in results {
        match r {
            Ok(_) => report.decided += 1,
            Err(TriageError::InProgress { .. }) => report.held_elsewhere += 1,
            Err(e) => {
                report.failed += 1;
                tracing::error!(error = %e, "resume failed");
            }
        }
    }
    report
}

#[derive(Clone)]
struct Submitter {
    supervisor: Addr<Supervisor>,
    admission: Arc<Semaphore>,
    accepting: Arc<AtomicBool>,
    admission_wait: Duration,
    metrics: Metrics,
    leases: Arc<Leases>,
    /// Where each alert's lease is held and released, so a caller dropping its future does
    /// not leave a lease behind.
    state_rt: tokio::runtime::Handle,
    /// The bridge's live state, once a bridge is registered (published with the node).
    bridge: Arc<std::sync::Mutex<Option<crate::state::BridgeStatus>>>,
}

impl Submitter {
    fn bridge_state(&self) -> Option<crate::state::BridgeState> {
        self.bridge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|b| b.snapshot())
    }

    async fn admit(&self, wait: bool) -> Result<OwnedSemaphorePermit, TriageError> {
        let admitted = self.admit_inner(wait).await;
        if let Err(e) = &admitted {
            self.metrics.admission_rejected(rejection_reason(e));
        }
        admitted
    }

    async fn admit_inner(&self, wait: bool) -> Result<OwnedSemaphorePermit, TriageError> {
        if !self.accepting.load(Ordering::Acquire) {
            return Err(TriageError::ShuttingDown);
        }
        let busy = TriageError::Busy {
            retry_after: BUSY_RETRY_AFTER,
        };
        if !wait {
            return self.admission.clone().try_acquire_owned().map_err(|_| busy);
        }
        match tokio::time::timeout(self.admission_wait, self.admission.clone().acquire_owned())
            .await
        {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(TriageError::ShuttingDown),
            Err(_) => Err(busy),
        }
    }

    async fn triage(
        &self,
        alert: Alert,
        raw: Arc<str>,
        resume: Option<Vec<StepRecord>>,
        permit: OwnedSemaphorePermit,
    ) -> Result<Decision, TriageError> {
        join_result(self.start(alert, raw, resume, permit, None)).await
    }

    /// Starts an alert's pipeline in a task of its own (it runs to its decision whether or
    /// not anyone awaits the handle); `admitted` is told once its row is committed.
    fn start(
        &self,
        alert: Alert,
        raw: Arc<str>,
        resume: Option<Vec<StepRecord>>,
        permit: OwnedSemaphorePermit,
        admitted: Option<oneshot::Sender<()>>,
    ) -> tokio::task::JoinHandle<Result<Decision, TriageError>> {
        let alert_id = alert.alert_id.clone();
        let msg = TriageAlert {
            content_hash: content_hash(&alert),
            alert: Arc::new(alert),
            raw,
            received_at: Utc::now(),
            permit,
            resume,
            admitted,
        };
        let (supervisor, leases) = (self.supervisor.clone(), self.leases.clone());
        // The lease is taken before the alert is admitted or resumed, and released once it
        // is decided or has failed, in a task of its own so that a caller giving up on the
        // answer does not cut the lease short.
        self.state_rt.spawn(async move {
            if !leases.try_acquire(&alert_id).await {
                return Err(TriageError::InProgress { alert_id });
            }
            let result = supervisor
                .send(msg)
                .await
                .map_err(|e| TriageError::Unavailable(e.to_string()));
            leases.release(&alert_id).await;
            result?
        })
    }
}

async fn join_result(
    handle: tokio::task::JoinHandle<Result<Decision, TriageError>>,
) -> Result<Decision, TriageError> {
    handle
        .await
        .map_err(|e| TriageError::Unavailable(format!("alert task ended: {e}")))?
}

/// An alert durably accepted by [`Engine::try_accept`].
pub enum Accepted {
    /// Its row is committed; the pipeline goes on in the background. `decision` resolves to
    /// its decision (dropping it does not stop the pipeline).
    Stored {
        /// The alert's id.
        alert_id: String,
        /// The decision, once taken.
        decision: BoxFuture<'static, Result<Decision, TriageError>>,
    },
    /// The alert was already decided (an idempotent resubmission), or was decided before
    /// its admission was reported.
    Decided(Box<Decision>),
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Accepted::Stored { alert_id, .. } => f
                .debug_struct("Stored")
                .field("alert_id", alert_id)
                .finish(),
            Accepted::Decided(d) => f.debug_tuple("Decided").field(&d.alert_id).finish(),
        }
    }
}

fn rejection_reason(e: &TriageError) -> &'static str {
    match e {
        TriageError::ShuttingDown => "shutting_down",
        _ => "busy",
    }
}

/// A running engine.
pub struct Engine {
    /// The client of remote agents (`REMOTE_AGENTS`), if any.
    remote: Option<Arc<RemoteClient>>,
    /// RabbitMQ links whose state `/ready` reports (remote agents, the bridge).
    broker_links: std::sync::Mutex<Vec<(&'static str, LinkStatus)>>,
    submitter: Submitter,
    settings: Arc<Settings>,
    store: Arc<Store>,
    /// Dropped last: after the store has been closed by `shutdown`.
    _store_runtime: StoreRuntime,
    agents: Arc<Agents>,
    system: actix::System,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    resumed: watch::Receiver<Option<ResumeReport>>,
    providers: ProviderRegistry,
    metrics: Metrics,
    state: Arc<dyn StateStore>,
    leases: Arc<Leases>,
    /// The screening lists and jurisdiction table in force.
    reference: Arc<ReferenceHandle>,
    /// Runs the Redis connection, lease heartbeat, sweeper and state publisher; dropped
    /// (ending them) with the engine.
    _state_runtime: StoreRuntime,
}

/// Finishes one stored alert from its journal (see [`Engine::resume_alert`]).
async fn resume_stored(
    submitter: &Submitter,
    store: &Store,
    alert_id: &str,
) -> Result<Decision, TriageError> {
    let store_err = |e: crate::store::StoreError| TriageError::Store(e.to_string());
    if let Some(decision) = store.decision(alert_id).await.map_err(store_err)? {
        return serde_json::from_value(decision)
            .map_err(|e| TriageError::Store(format!("stored decision unreadable: {e}")));
    }
    let stored = store
        .alert(alert_id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| TriageError::NotFound {
            alert_id: alert_id.to_string(),
        })?;
    let steps: Vec<StepRecord> = store
        .steps(alert_id)
        .await
        .map_err(store_err)?
        .into_iter()
        .filter(|s| s.status == "completed" || s.status == "degraded")
        .collect();
    let alert = Alert::from_json_limited(&stored.raw_json, usize::MAX)?;
    let permit = submitter.admit(true).await?;
    submitter
        .triage(alert, Arc::from(stored.raw_json), Some(steps), permit)
        .await
}

impl Engine {
    /// A builder over `settings`.
    pub fn builder(settings: Settings) -> EngineBuilder {
        EngineBuilder {
            settings,
            provider: None,
            refs: None,
            resume: true,
            migrate: true,
            take_over: true,
        }
    }

    /// Submits a validated alert and waits for its decision. Waits up to
    /// `ADMISSION_WAIT_SECONDS` for an in-flight slot, then answers [`TriageError::Busy`].
    pub async fn submit(&self, alert: Alert) -> Result<Decision, TriageError> {
        alert.validate()?;
        let raw: Arc<str> = Arc::from(serde_json::to_string(&alert).unwrap_or_default());
        let permit = self.submitter.admit(true).await?;
        self.submitter.triage(alert, raw, None, permit).await
    }

    /// Parses, validates and submits one alert given as JSON text; the text is stored exactly
    /// as given.
    pub async fn submit_json(&self, raw: &str) -> Result<Decision, TriageError> {
        let alert = Alert::from_json_limited(raw, self.settings.max_alert_bytes)?;
        let permit = self.submitter.admit(true).await?;
        self.submitter
            .triage(alert, Arc::from(raw), None, permit)
            .await
    }

    /// Validates `alert` and takes an admission slot if one is free right now; the raw body
    /// defaults to the alert's JSON.
    fn admit_now(
        &self,
        alert: &Alert,
        raw: Option<Arc<str>>,
    ) -> Result<(OwnedSemaphorePermit, Arc<str>), TriageError> {
        alert.validate()?;
        if !self.submitter.accepting.load(Ordering::Acquire) {
            self.submitter.metrics.admission_rejected("shutting_down");
            return Err(TriageError::ShuttingDown);
        }
        let permit = self
            .submitter
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                self.submitter.metrics.admission_rejected("busy");
                TriageError::Busy {
                    retry_after: BUSY_RETRY_AFTER,
                }
            })?;
        let raw =
            raw.unwrap_or_else(|| Arc::from(serde_json::to_string(alert).unwrap_or_default()));
        Ok((permit, raw))
    }

    /// Admits an alert only if a slot is free right now (for ingress that must answer 429
    /// rather than wait). On success the returned future runs it to its decision; the alert
    /// is durable only once that future has made progress past admission, so an ingress
    /// that answers "accepted" before the decision uses [`Engine::try_accept`] instead.
    pub fn try_submit(
        &self,
        alert: Alert,
        raw: Option<Arc<str>>,
    ) -> Result<BoxFuture<'static, Result<Decision, TriageError>>, TriageError> {
        let (permit, raw) = self.admit_now(&alert, raw)?;
        let s = self.submitter.clone();
        Ok(Box::pin(
            async move { s.triage(alert, raw, None, permit).await },
        ))
    }

    /// Admits an alert only if a slot is free right now, like [`Engine::try_submit`], and
    /// returns once its row is committed (group commit: the wait is one batch of the store's
    /// writer), so an [`Accepted::Stored`] alert survives a crash of this process and is
    /// readable at once. The pipeline goes on in the background.
    pub async fn try_accept(
        &self,
        alert: Alert,
        raw: Option<Arc<str>>,
    ) -> Result<Accepted, TriageError> {
        let (permit, raw) = self.admit_now(&alert, raw)?;
        let alert_id = alert.alert_id.clone();
        let (tx, rx) = oneshot::channel();
        let mut handle = self.submitter.start(alert, raw, None, permit, Some(tx));
        tokio::select! {
            biased;
            admitted = rx => {
                if admitted.is_ok() {
                    return Ok(Accepted::Stored {
                        alert_id,
                        decision: Box::pin(join_result(handle)),
                    });
                }
                join_result(handle).await.map(|d| Accepted::Decided(Box::new(d)))
            }
            done = &mut handle => {
                done.map_err(|e| TriageError::Unavailable(format!("alert task ended: {e}")))?
                    .map(|d| Accepted::Decided(Box::new(d)))
            }
        }
    }

    /// Submits many alerts, at most the admission limit at a time, and returns their results
    /// in input order.
    pub async fn submit_many(&self, alerts: Vec<Alert>) -> Vec<Result<Decision, TriageError>> {
        let width = self.settings.max_concurrent_alerts;
        futures_util::stream::iter(alerts)
            .map(|a| self.submit(a))
            .buffered(width)
            .collect()
            .await
    }

    /// Finishes one stored alert from its journal: the completed steps are taken as they are
    /// and the rest run now. Answers the existing decision if it is already decided. This is
    /// how a node takes over an alert another node started (an expired lease, a redelivered
    /// queue message); the store still keeps exactly one decision if both finish. The
    /// alert's lease is taken first: while another live node holds it, this answers
    /// [`TriageError::InProgress`].
    pub async fn resume_alert(&self, alert_id: &str) -> Result<Decision, TriageError> {
        resume_stored(&self.submitter, &self.store, alert_id).await
    }

    /// Where agent state, leases and caches are kept (Redis or in process).
    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.state
    }

    /// This node's leases on in-flight alerts.
    pub fn leases(&self) -> &Arc<Leases> {
        &self.leases
    }

    /// Runs one step sent by another node on this engine's local agents (worker mode, see
    /// [`crate::worker`]). One attempt; the sending supervisor retries.
    pub async fn run_remote_step(&self, request: StepRequest) -> StepResponse {
        crate::actors::serve::serve_step(&self.agents, request).await
    }

    /// Adds a RabbitMQ link (the bridge's, a worker's) to what `/ready` checks.
    pub fn register_broker_link(&self, name: &'static str, status: LinkStatus) {
        self.broker_links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name, status));
    }

    /// Registers the bridge actor's state, published with the node's agent state.
    pub fn register_bridge(&self, status: crate::state::BridgeStatus) {
        *self
            .submitter
            .bridge
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(status);
    }

    /// Each RabbitMQ link this node uses and whether it is up (empty without `AMQP_URL`).
    pub fn broker_links(&self) -> Vec<(&'static str, bool)> {
        self.broker_links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, status)| (*name, status.is_up()))
            .collect()
    }

    /// Health of the four agents.
    pub fn health(&self) -> Vec<AgentHealth> {
        self.agents.health()
    }

    /// This engine's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The Prometheus exposition of this engine's metrics, sampled now.
    pub fn metrics_text(&self) -> String {
        let now = Utc::now();
        for f in self.reference.freshness() {
            self.metrics.list_age(&f.list_id, f.age_seconds(now));
        }
        self.metrics.encode(self.in_flight(), &self.health())
    }

    /// The reference data in force (screening lists, jurisdictions) and their freshness.
    pub fn reference(&self) -> &Arc<ReferenceHandle> {
        &self.reference
    }

    /// Reloads the screening lists now if their files changed (see [`ReferenceHandle`]).
    /// Returns the new list versions when it swapped.
    pub async fn reload_lists(&self) -> Result<Option<Vec<String>>, crate::reference::ReloadError> {
        let (r, s) = (self.reference.clone(), self.settings.clone());
        let out = tokio::task::spawn_blocking(move || r.reload_if_changed(&s))
            .await
            .unwrap_or_else(|e| Err(crate::reference::ReloadError::Load(e.to_string())));
        record_reload(&self.metrics, &out);
        out
    }

    /// Whether new alerts are taken (false once shutdown has begun).
    pub fn is_accepting(&self) -> bool {
        self.submitter.accepting.load(Ordering::Acquire)
    }

    /// Alerts in flight now.
    pub fn in_flight(&self) -> usize {
        self.settings.max_concurrent_alerts - self.submitter.admission.available_permits()
    }

    /// Stops one agent; the supervisor restarts it under its restart policy.
    pub async fn stop_agent(&self, agent: AgentKind) -> Result<(), TriageError> {
        self.submitter
            .supervisor
            .send(StopAgentOf(agent))
            .await
            .map_err(|e| TriageError::Unavailable(e.to_string()))
    }

    /// Waits until the alerts found unfinished at start have been resumed.
    pub async fn resumed(&self) -> ResumeReport {
        let mut rx = self.resumed.clone();
        loop {
            if let Some(r) = rx.borrow().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                return ResumeReport::default();
            }
        }
    }

    /// The model providers and their circuit breakers (for readiness checks).
    pub fn providers(&self) -> &ProviderRegistry {
        &self.providers
    }

    /// The effective settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Stops taking alerts (later submissions get [`TriageError::ShuttingDown`]), waits up to `SHUTDOWN_GRACE_SECONDS` for those in flight to be
    /// decided, flushes the store and stops the actor system. Returns how many were still in
    /// flight when the grace period ran out (they resume at the next start).
    pub async fn shutdown(&self) -> usize {
        self.submitter.accepting.store(false, Ordering::Release);
        self.leases.stop_sweeping();
        let grace = Duration::from_secs_f64(self.settings.shutdown_grace_seconds);
        let all = self.settings.max_concurrent_alerts as u32;
        let left =
            match tokio::time::timeout(grace, self.submitter.admission.acquire_many(all)).await {
                Ok(Ok(permits)) => {
                    // Keep every slot taken so nothing new is admitted after the drain.
                    permits.forget();
                    0
                }
                Ok(Err(_)) => 0,
                Err(_) => self.in_flight(),
            };
        if left > 0 {
            tracing::warn!(
                left,
                "shutdown grace over: unfinished alerts resume at next start"
            );
        }
        if let Some(remote) = &self.remote {
            remote.stop();
        }
        self.store.close().await;
        self.system.stop();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        left
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Dropped without shutdown(): stop the actor system so its threads do not outlive
        // the engine. Unfinished alerts resume at the next start.
        if self.thread.lock().map(|t| t.is_some()).unwrap_or(false) {
            self.system.stop();
        }
        if let Some(remote) = &self.remote {
            remote.stop();
        }
    }
}

impl crate::review::canary::SubmitAlert for Engine {
    fn submit_alert_json(&self, json: String) -> BoxFuture<'_, Result<Decision, TriageError>> {
        Box::pin(async move { self.submit_json(&json).await })
    }
}

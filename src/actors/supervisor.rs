//! The Supervisor: routes each alert through the four agents, supervises them, and turns every
//! failure into a degraded, escalated decision rather than a lost alert or an auto-clear.
//!
//! Per alert: persist it (idempotently) before any agent runs, then for each step either take
//! its completed output from the journal (resume) or call the agent under its timeout and
//! retry policy, journal the result, and move on. A step that still fails falls back to the
//! deterministic path and is marked degraded; the policy never auto-clears a degraded alert.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, AsyncContext, Context, Handler, MailboxError, Message, ResponseFuture};
use chrono::Utc;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::containment::{contain, contain_async, escalated_proposal};
use super::context_builder::ContextBuilder;
use super::data_enrichment::{DETERMINISTIC, DataEnrichment};
use super::decision_maker::{DecisionMaker, citable_ids, cited_evidence, policy_floor};
use super::risk_scoring::RiskScoring;
use super::supervision::{AgentHealth, RetryPolicy, Slot};
use crate::assessment::context::{CaseContext, guidance, timeline};
use crate::assessment::enrichment::{data_completeness, unverifiable_claim};
use crate::assessment::scoring::{RiskAssessment, assess};
use crate::domain::AgentKind;
use crate::domain::alert::{Alert, Priority};
use crate::domain::decision::{AgentContribution, Decision, Disposition, RiskLevel};
use crate::domain::facts::{EnrichmentFacts, Factor};
use crate::domain::policy::{self, ScreeningSummary, Thresholds};
use crate::error::TriageError;
use crate::llm::check::{self, CheckVerdict, Checker};
use crate::llm::{LlmError, Spend};
use crate::messages::context::BuildContext;
use crate::messages::control::StopAgent;
use crate::messages::decision::{Decide, DecisionProposal};
use crate::messages::enrichment::Enrich;
use crate::messages::scoring::Score;
use crate::messages::supervisor::{GetHealth, StopAgentOf, TriageAlert};
use crate::messages::{AgentError, StepEnvelope, StepMeta, StepResult};
use crate::store::{
    AdmitOutcome, AlertRecord, AuditVersions, DecisionOutcome, DecisionRecord, PendingWrite,
    StepRecord, Store,
};

/// Extra time the caller gives an agent beyond its own deadline before giving up on the
/// mailbox itself (an agent that cannot even answer is treated as timed out).
const CALLER_GRACE: Duration = Duration::from_millis(250);

/// How often the watchdog looks for agents that stopped between calls.
const WATCHDOG_PERIOD: Duration = Duration::from_millis(250);

/// The supervised agents.
pub struct Agents {
    /// DataEnrichment.
    pub enrichment: Arc<Slot<DataEnrichment>>,
    /// RiskScoring.
    pub scoring: Arc<Slot<RiskScoring>>,
    /// ContextBuilder.
    pub context: Arc<Slot<ContextBuilder>>,
    /// DecisionMaker.
    pub decision: Arc<Slot<DecisionMaker>>,
    /// The supervisor's second-model check of each decision (run by the supervisor itself).
    pub checker: Arc<Checker>,
}

impl Agents {
    /// Health of all four, in pipeline order.
    pub fn health(&self) -> Vec<AgentHealth> {
        vec![
            self.enrichment.health(),
            self.scoring.health(),
            self.context.health(),
            self.decision.health(),
        ]
    }

    fn check_all(&self) {
        self.enrichment.check();
        self.scoring.check();
        self.context.check();
        self.decision.check();
    }
}

/// What the pipeline needs to know besides the agents.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Policy thresholds.
    pub thresholds: Thresholds,
    /// Per-agent retry policies, in [`AgentKind::ALL`] order.
    pub retries: [RetryPolicy; 4],
    /// Per-agent timeouts, in [`AgentKind::ALL`] order.
    pub timeouts: [Duration; 4],
    /// Policy, config and list versions recorded with every step.
    pub versions: AuditVersions,
    /// Supervisor mailbox capacity.
    pub mailbox: usize,
    /// Where steps and decisions are counted (see `crate::metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Whether shared state (Redis) was unreachable while an alert was processed.
    pub state_outages: crate::state::OutageWatch,
}

impl PipelineConfig {
    fn timeout(&self, kind: AgentKind) -> Duration {
        // The supervisor check is not one of the four agents: it runs under the
        // DecisionMaker's timeout.
        let i = (kind as usize).min(AgentKind::DecisionMaker as usize);
        self.timeouts[i]
    }

    fn retry(&self, kind: AgentKind) -> RetryPolicy {
        // The supervisor check follows the DecisionMaker's policy, like its timeout.
        let i = (kind as usize).min(AgentKind::DecisionMaker as usize);
        self.retries[i]
    }
}

struct InFlight {
    content_hash: String,
    waiters: Vec<oneshot::Sender<Result<Decision, TriageError>>>,
    /// Turns true once the alert row is committed.
    admitted: tokio::sync::watch::Receiver<bool>,
}

struct Shared {
    cfg: PipelineConfig,
    store: Arc<Store>,
    agents: Arc<Agents>,
    in_flight: Mutex<HashMap<String, InFlight>>,
}

/// The Supervisor actor.
pub struct Supervisor {
    shared: Arc<Shared>,
}

impl Supervisor {
    /// A supervisor over `agents`, persisting to `store`.
    pub fn new(cfg: PipelineConfig, store: Arc<Store>, agents: Arc<Agents>) -> Self {
        Self {
            shared: Arc::new(Shared {
                cfg,
                store,
                agents,
                in_flight: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.shared.cfg.mailbox);
        ctx.run_interval(WATCHDOG_PERIOD, |act, _| act.shared.agents.check_all());
    }
}

impl Handler<TriageAlert> for Supervisor {
    type Result = ResponseFuture<Result<Decision, TriageError>>;

    fn handle(&mut self, msg: TriageAlert, _ctx: &mut Self::Context) -> Self::Result {
        Box::pin(triage(self.shared.clone(), msg))
    }
}

impl Handler<GetHealth> for Supervisor {
    type Result = Vec<AgentHealth>;

    fn handle(&mut self, _: GetHealth, _ctx: &mut Self::Context) -> Self::Result {
        self.shared.agents.health()
    }
}

impl Handler<StopAgentOf> for Supervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: StopAgentOf, _ctx: &mut Self::Context) -> Self::Result {
        let agents = self.shared.agents.clone();
        Box::pin(async move {
            let sent = match msg.0 {
                AgentKind::DataEnrichment => stop(&agents.enrichment).await,
                AgentKind::RiskScoring => stop(&agents.scoring).await,
                AgentKind::ContextBuilder => stop(&agents.context).await,
                AgentKind::DecisionMaker => stop(&agents.decision).await,
                // Not an actor: nothing to stop.
                AgentKind::SupervisorCheck => Ok(()),
            };
            if let Err(e) = sent {
                tracing::warn!(agent = %msg.0, error = %e, "stop request not delivered");
            }
        })
    }
}

async fn stop<A>(slot: &Arc<Slot<A>>) -> Result<(), AgentError>
where
    A: Actor<Context = Context<A>> + Handler<StopAgent>,
{
    let (addr, _) = slot.current()?;
    addr.send(StopAgent).await.map_err(|_| AgentError::Stopped)
}

/// Removes the alert's in-flight entry however the pipeline ends (even if its future is
/// dropped), handing the result to any twin submissions waiting on it.
struct InFlightGuard {
    shared: Arc<Shared>,
    alert_id: String,
    result: Option<Result<Decision, TriageError>>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let entry = self
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.alert_id);
        let result = self.result.take().unwrap_or_else(|| {
            Err(TriageError::Unavailable(
                "processing of the first submission was interrupted".into(),
            ))
        });
        for w in entry.map(|e| e.waiters).unwrap_or_default() {
            let _ = w.send(result.clone());
        }
    }
}

async fn triage(shared: Arc<Shared>, msg: TriageAlert) -> Result<Decision, TriageError> {
    let alert_id = msg.alert.alert_id.clone();
    let (admitted_tx, admitted_rx) = tokio::sync::watch::channel(false);
    let waiting = {
        let mut map = shared.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(&alert_id) {
            Some(existing) if existing.content_hash != msg.content_hash => {
                return Err(TriageError::Conflict { alert_id });
            }
            Some(existing) => {
                let (tx, rx) = oneshot::channel();
                existing.waiters.push(tx);
                Some((rx, existing.admitted.clone()))
            }
            None => {
                map.insert(
                    alert_id.clone(),
                    InFlight {
                        content_hash: msg.content_hash.clone(),
                        waiters: Vec::new(),
                        admitted: admitted_rx,
                    },
                );
                None
            }
        }
    };
    if let Some((rx, twin_admitted)) = waiting {
        // A twin of this alert is being processed here: share its admission and result.
        return crate::actors::admission::join_twin(rx, twin_admitted, msg.admitted).await;
    }
    let mut msg = msg;
    let (relay_tx, relay_rx) = oneshot::channel();
    let notify = msg.admitted.replace(relay_tx);
    let relay = crate::actors::admission::relay(relay_rx, admitted_tx, notify);
    let mut guard = InFlightGuard {
        shared: shared.clone(),
        alert_id: alert_id.clone(),
        result: None,
    };
    // `parent: None`: each alert is the root of its own trace, whatever span the caller had.
    let span = tracing::info_span!(
        parent: None,
        "alert",
        alert_id = %alert_id,
        alert_type = ?msg.alert.alert_type,
        disposition = tracing::field::Empty,
        resumed = msg.resume.is_some(),
        trace_id = tracing::field::Empty,
    );
    crate::telemetry::record_trace_id(&span);
    let (result, ()) =
        futures_util::future::join(run(&shared, msg).instrument(span.clone()), relay).await;
    match &result {
        Ok(d) => {
            span.record("disposition", d.disposition.as_str());
            shared
                .cfg
                .metrics
                .decided(d.disposition.as_str(), d.confidence, d.risk_score);
        }
        Err(e) => shared.cfg.metrics.alert_failed(e),
    }
    guard.result = Some(result.clone());
    result
}

fn store_error(e: impl std::fmt::Display) -> TriageError {
    TriageError::Store(e.to_string())
}

fn decode_decision(v: serde_json::Value) -> Result<Decision, TriageError> {
    serde_json::from_value(v)
        .map_err(|e| TriageError::Store(format!("stored decision unreadable: {e}")))
}

async fn run(shared: &Arc<Shared>, msg: TriageAlert) -> Result<Decision, TriageError> {
    let started = Instant::now();
    let TriageAlert {
        alert,
        raw,
        content_hash,
        received_at,
        permit,
        resume,
        admitted,
    } = msg;
    // Held until the alert is decided or fails: this is the admission bound.
    let _permit = permit;
    let journal = match resume {
        Some(steps) => {
            // Resumed: the alert row is already stored.
            crate::actors::admission::notify(admitted);
            steps
        }
        None => {
            let record = AlertRecord {
                alert_id: alert.alert_id.clone(),
                raw_json: raw.to_string(),
                content_hash: content_hash.clone(),
                customer_id: alert.customer.customer_id.clone(),
                alert_type: enum_name(&alert.alert_type),
                priority: enum_name(&alert.priority),
                created_at: alert.created_at,
                received_at,
            };
            match shared.store.admit(record).await.map_err(store_error)? {
                AdmitOutcome::Inserted => {
                    // Committed: whoever waits to answer "accepted" may now do so.
                    crate::actors::admission::notify(admitted);
                    Vec::new()
                }
                AdmitOutcome::Duplicate {
                    decision: Some(decision),
                } => return decode_decision(decision),
                AdmitOutcome::Duplicate { decision: None } => {
                    crate::actors::admission::notify(admitted);
                    return Err(TriageError::InProgress {
                        alert_id: alert.alert_id.clone(),
                    });
                }
                AdmitOutcome::Conflict { .. } => {
                    return Err(TriageError::Conflict {
                        alert_id: alert.alert_id.clone(),
                    });
                }
            }
        }
    };

    let mut p = Progress {
        shared: shared.clone(),
        alert: alert.clone(),
        journal,
        input_hash: content_hash,
        contributions: Vec::new(),
        degraded: Vec::new(),
        reasons: Vec::new(),
        pending_writes: Vec::new(),
    };
    let agents = shared.agents.clone();
    let t = shared.cfg.thresholds;
    let outage_mark = shared.cfg.state_outages.mark();

    let facts = Arc::new(
        p.step(
            AgentKind::DataEnrichment,
            &agents.enrichment,
            |env| Enrich { env },
            |e| fallback_facts(&alert, e),
        )
        .await?,
    );
    let risk = Arc::new(
        p.step(
            AgentKind::RiskScoring,
            &agents.scoring,
            |env| Score {
                env,
                facts: facts.clone(),
            },
            |e| fallback_risk(&alert, &facts, &t, e),
        )
        .await?,
    );
    let context = Arc::new(
        p.step(
            AgentKind::ContextBuilder,
            &agents.context,
            |env| BuildContext {
                env,
                facts: facts.clone(),
                risk: risk.clone(),
            },
            |e| fallback_context(&alert, &facts, &risk, e),
        )
        .await?,
    );
    p.note_state_outage(outage_mark);
    let degraded_before = p.degraded.clone();
    // The model may only raise a disposition above the deterministic floor; when the floor is
    // already the most severe disposition there is nothing it could change, so it is not asked.
    let terminal = terminal_floor_proposal(&alert, &facts, &risk, &degraded_before, &t);
    let proposal = match terminal {
        Some((proposal, why)) => {
            p.skipped_step(AgentKind::DecisionMaker, proposal, &why)
                .await?
        }
        None => {
            p.step(
                AgentKind::DecisionMaker,
                &agents.decision,
                |env| Decide {
                    env,
                    facts: facts.clone(),
                    risk: risk.clone(),
                    context: context.clone(),
                    degraded_steps: degraded_before.clone(),
                },
                |e| fallback_proposal(&alert, &facts, &risk, &degraded_before, &t, e),
            )
            .await?
        }
    };
    let verdict = p.check_step(&facts, &risk, &proposal).await?;
    let floor = proposal.disposition.max(proposal.policy.disposition);
    let evidence = proposal.evidence_ids.clone();
    let proposal = contain(
        "check_apply",
        || check::apply(proposal, &verdict),
        |why| {
            p.mark_degraded(
                AgentKind::SupervisorCheck,
                &format!("applying the verdict panicked: {why}"),
            );
            escalated_proposal(&why, floor, evidence)
        },
    );

    // The journal writes are not awaited here: the decision is queued behind them in the
    // writer's FIFO, which refuses it if one of them failed, so the alert waits for two
    // commits in all (its admission and its decision).
    if proposal.disposition == Disposition::AutoClear {
        // Clear only on shared state confirmed reachable now, not merely at the last call.
        shared.cfg.state_outages.confirm().await;
    }
    p.note_state_outage(outage_mark);
    let decision = assemble(&p, &alert, &facts, &risk, &context, proposal, started, &t);
    let record = DecisionRecord {
        alert_id: decision.alert_id.clone(),
        disposition: decision.disposition.as_str().to_string(),
        risk_score: decision.risk_score,
        confidence: decision.confidence,
        requires_human_review: decision.requires_human_review,
        decision: serde_json::to_value(&decision).map_err(store_error)?,
        versions: p.versions(&facts),
        decided_at: decision.decided_at,
    };
    let recorded = shared.store.record_decision(record).await;
    // Answered by now (they were queued first): a failed journal write is the reason to report.
    p.journal_outcome()?;
    match recorded.map_err(store_error)? {
        DecisionOutcome::Inserted => {
            // An escalated decision opens a review case (see crate::review).
            crate::review::on_decision(&shared.store, &shared.cfg.metrics, &decision).await;
            Ok(decision)
        }
        // Another node (or an earlier run) decided first: there is exactly one decision.
        DecisionOutcome::AlreadyDecided(existing) => decode_decision(existing),
    }
}

fn enum_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The pipeline's running state for one alert.
struct Progress {
    shared: Arc<Shared>,
    alert: Arc<Alert>,
    journal: Vec<StepRecord>,
    input_hash: String,
    contributions: Vec<AgentContribution>,
    degraded: Vec<String>,
    reasons: Vec<String>,
    pending_writes: Vec<PendingWrite>,
}

/// Name under which an outage of shared state is listed among the degraded parts.
pub const SHARED_STATE: &str = "shared_state";

impl Progress {
    /// Marks the alert degraded if shared state (Redis) was unreachable at any time since
    /// `mark`: the design lists "Redis down" among the failures that must never yield
    /// AUTO_CLEAR, even though the decision's inputs do not come from Redis.
    fn note_state_outage(&mut self, mark: u64) {
        if self.degraded.iter().any(|d| d == SHARED_STATE)
            || !self.shared.cfg.state_outages.since(mark)
        {
            return;
        }
        tracing::warn!("shared state (Redis) unreachable during this alert: not auto-clearing");
        self.degraded.push(SHARED_STATE.to_string());
        self.reasons.push(format!(
            "{SHARED_STATE}: Redis unreachable while this alert was processed (caches and leases fell back to this node)"
        ));
    }

    /// Marks `kind` degraded after its output was already recorded (a later panic in the
    /// supervisor's own handling of it).
    fn mark_degraded(&mut self, kind: AgentKind, why: &str) {
        self.degraded.push(kind.as_str().to_string());
        self.reasons.push(format!("{kind}: {why}; escalated"));
    }

    /// The outcome of every journal write queued so far. Called after the decision was
    /// answered, when the writer (one FIFO) has answered them all; one that has not (only
    /// when the decision was refused early) is waited for.
    fn journal_outcome(&mut self) -> Result<(), TriageError> {
        for w in self.pending_writes.drain(..) {
            match w.outcome() {
                Some(r) => r.map_err(store_error)?,
                None => {
                    return Err(store_error(
                        "a journal write was not answered before the decision",
                    ));
                }
            }
        }
        Ok(())
    }

    fn versions(&self, facts: &EnrichmentFacts) -> AuditVersions {
        let mut v = self.shared.cfg.versions.clone();
        if !facts.list_versions.is_empty() {
            v.list_versions = facts.list_versions.clone();
        }
        v
    }

    /// Runs one step: from the journal if it completed before, else by calling the agent, else
    /// by the fallback. The result is journalled before the pipeline moves on.
    async fn step<A, M, O>(
        &mut self,
        kind: AgentKind,
        slot: &Arc<Slot<A>>,
        make: impl Fn(StepEnvelope) -> M,
        fallback: impl FnOnce(&AgentError) -> O,
    ) -> Result<O, TriageError>
    where
        A: Actor<Context = Context<A>> + Handler<M>,
        M: Message<Result = StepResult<O>> + Send + 'static,
        O: Serialize + DeserializeOwned + Send + 'static,
    {
        if let Some(done) = self.take_from_journal::<O>(kind) {
            return Ok(done);
        }
        let started = Instant::now();
        self.shared.cfg.metrics.step_started(kind.as_str());
        let spend = Spend::default();
        let outcome = call_agent(slot, kind, &self.shared.cfg, &self.alert, &spend, make).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let (output, meta, attempts, error) = match outcome {
            Ok((reply, attempts)) => (reply.output, reply.meta, attempts, None),
            Err((e, attempts)) => {
                tracing::warn!(agent = %kind, error = %e, attempts, "step failed: taking the deterministic fallback");
                let output = fallback(&e);
                let meta = StepMeta::fallback();
                (output, meta, attempts, Some(e.to_string()))
            }
        };
        let meta = meta.with_spend(&spend);
        self.record_step(kind, &output, meta, &spend, attempts, latency_ms, error)
            .await?;
        Ok(output)
    }

    /// Records `kind` as skipped: its output was decided without calling the agent (no model
    /// call), for the reason `why`, which is journalled (the step's model is
    /// [`SKIPPED_MODEL`]) and kept as the step's contribution note. A step already journalled
    /// (resume) is taken from the journal as usual.
    async fn skipped_step<O>(
        &mut self,
        kind: AgentKind,
        output: O,
        why: &str,
    ) -> Result<O, TriageError>
    where
        O: Serialize + DeserializeOwned,
    {
        if let Some(done) = self.take_from_journal::<O>(kind) {
            return Ok(done);
        }
        self.shared.cfg.metrics.step_started(kind.as_str());
        let meta = StepMeta {
            provider: DETERMINISTIC.into(),
            model: SKIPPED_MODEL.into(),
            notes: vec![format!("skipped: {why}")],
            ..Default::default()
        };
        self.record_step(kind, &output, meta, &Spend::default(), 0, 0, None)
            .await?;
        if let Some(c) = self.contributions.last_mut() {
            c.note = Some(format!("skipped: {why}"));
        }
        Ok(output)
    }

    fn take_from_journal<O: DeserializeOwned>(&mut self, kind: AgentKind) -> Option<O> {
        let rec = self.journal.iter().find(|r| {
            r.step == kind.as_str() && (r.status == "completed" || r.status == "degraded")
        })?;
        let output = match serde_json::from_value::<O>(rec.output.clone()) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(agent = %kind, error = %e, "journalled output unreadable: running the step again");
                return None;
            }
        };
        let degraded = rec.status == "degraded";
        if degraded {
            self.degraded.push(kind.as_str().to_string());
            self.reasons.push(format!(
                "{kind}: {} (journalled)",
                rec.error.as_deref().unwrap_or("degraded")
            ));
        }
        self.contributions.push(AgentContribution {
            agent: kind,
            provider: rec.provider.clone(),
            model: rec.model.clone(),
            prompt_version: rec.prompt_version.clone(),
            latency_ms: rec.latency_ms,
            attempts: rec.attempt,
            tokens_in: rec.tokens_in,
            tokens_out: rec.tokens_out,
            cost_usd: rec.cost_usd,
            degraded,
            note: rec.error.clone(),
            resumed: true,
        });
        self.input_hash = chain_hash(&self.input_hash, &rec.output);
        Some(output)
    }
}

impl Progress {
    /// The supervisor check (`SUPERVISOR_MODEL`) of the finished proposal: journalled as the
    /// `supervisor_check` step, retried like a step, and on failure a verdict that escalates
    /// (the step is marked degraded, so nothing can auto-clear).
    async fn check_step(
        &mut self,
        facts: &EnrichmentFacts,
        risk: &RiskAssessment,
        proposal: &DecisionProposal,
    ) -> Result<CheckVerdict, TriageError> {
        let kind = AgentKind::SupervisorCheck;
        if let Some(done) = self.take_from_journal::<CheckVerdict>(kind) {
            return Ok(done);
        }
        let checker = self.shared.agents.checker.clone();
        let (timeout, retry) = (self.shared.cfg.timeout(kind), self.shared.cfg.retry(kind));
        let citable = citable_ids(facts, risk);
        let started = Instant::now();
        self.shared.cfg.metrics.step_started(kind.as_str());
        let spend = Spend::default();
        let mut attempt = 0u32;
        let mut panicked_before = false;
        let outcome = loop {
            attempt += 1;
            // Panic-isolated like an agent's request: a panic fails this attempt only.
            let check = contain_async(async {
                checker
                    .check(&self.alert, facts, risk, proposal, &citable, &spend)
                    .await
            });
            // Dropping the check on timeout cancels its model call.
            let r = tokio::time::timeout(timeout, check)
                .await
                .unwrap_or(Err(AgentError::Llm(LlmError::Timeout)));
            if let Err(AgentError::Llm(LlmError::BudgetExhausted(provider))) = &r {
                self.shared.cfg.metrics.llm_budget_exhausted(provider);
            }
            match r {
                Err(AgentError::Panicked(_)) if panicked_before => break r,
                Err(e) if e.is_retryable() && attempt <= retry.max_retries => {
                    panicked_before = matches!(e, AgentError::Panicked(_));
                    tokio::time::sleep(retry.delay(attempt, e.retry_after())).await;
                }
                other => break other,
            }
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        let (verdict, meta, error) = match outcome {
            Ok(o) => {
                let (verdict, meta) = o.into_parts();
                (verdict, meta, None)
            }
            Err(e) => {
                tracing::warn!(agent = %kind, error = %e, attempts = attempt, "supervisor check failed: escalating");
                let meta = StepMeta::fallback();
                (
                    CheckVerdict::failed(&e.to_string()),
                    meta,
                    Some(e.to_string()),
                )
            }
        };
        let meta = meta.with_spend(&spend);
        self.record_step(kind, &verdict, meta, &spend, attempt, latency_ms, error)
            .await?;
        Ok(verdict)
    }

    /// Records a finished step: metrics, the journal entry (queued) and its contribution.
    #[allow(clippy::too_many_arguments)]
    async fn record_step<O: Serialize>(
        &mut self,
        kind: AgentKind,
        output: &O,
        meta: StepMeta,
        spend: &Spend,
        attempts: u32,
        latency_ms: u64,
        error: Option<String>,
    ) -> Result<(), TriageError> {
        let metrics = &self.shared.cfg.metrics;
        metrics.step(kind.as_str(), latency_ms as f64 / 1000.0, error.is_some());
        // A degraded step's calls are paid for too: counted under the provider that took them.
        let billed = match spend.source() {
            Some(source) if meta.provider == DETERMINISTIC => source,
            _ => (meta.provider.clone(), meta.model.clone()),
        };
        if billed.0 != DETERMINISTIC {
            metrics.llm_call(
                kind.as_str(),
                &billed.0,
                &billed.1,
                meta.tokens_in,
                meta.tokens_out,
                meta.cost_usd,
            );
        }
        let value = serde_json::to_value(output).map_err(store_error)?;
        let record = StepRecord {
            alert_id: self.alert.alert_id.clone(),
            step: kind.as_str().to_string(),
            attempt: attempts,
            status: if error.is_some() {
                "degraded"
            } else {
                "completed"
            }
            .to_string(),
            input_hash: self.input_hash.clone(),
            output: value,
            provider: meta.provider.clone(),
            model: meta.model.clone(),
            prompt_version: meta.prompt_version.clone(),
            tokens_in: meta.tokens_in,
            tokens_out: meta.tokens_out,
            cost_usd: meta.cost_usd,
            latency_ms,
            error: error.clone(),
            versions: self.shared.cfg.versions.clone(),
        };
        self.input_hash = chain_hash(&self.input_hash, &record.output);
        // Queued, not awaited: the next step starts while this one commits (group commit
        // pipelining). All are awaited before the decision is written; the writer's FIFO order
        // means a journalled step is never missing behind a later one.
        let pending = self
            .shared
            .store
            .enqueue_step(record)
            .await
            .map_err(store_error)?;
        self.pending_writes.push(pending);
        if let Some(e) = &error {
            self.degraded.push(kind.as_str().to_string());
            self.reasons.push(format!(
                "{kind}: {e} after {attempts} attempt(s); deterministic fallback used"
            ));
        }
        let is_error = error.is_some();
        // Repairs inside a successful step (model output rejected, re-asked) are kept with
        // the step's contribution rather than dropped.
        let note = error.or_else(|| {
            (!meta.notes.is_empty()).then(|| format!("repaired: {}", meta.notes.join("; ")))
        });
        self.contributions.push(AgentContribution {
            agent: kind,
            provider: meta.provider,
            model: meta.model,
            prompt_version: meta.prompt_version,
            latency_ms,
            attempts,
            tokens_in: meta.tokens_in,
            tokens_out: meta.tokens_out,
            cost_usd: meta.cost_usd,
            degraded: is_error,
            note,
            resumed: false,
        });
        Ok(())
    }
}

/// The next step's input fingerprint: the previous fingerprint and the previous output.
fn chain_hash(previous: &str, output: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(previous.as_bytes());
    h.update(b"\n");
    h.update(output.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// Calls an agent under its timeout and the retry policy. Each attempt's work is cancelled
/// when the attempt ends, whichever way it ends.
async fn call_agent<A, M, O>(
    slot: &Arc<Slot<A>>,
    kind: AgentKind,
    cfg: &PipelineConfig,
    alert: &Arc<Alert>,
    spend: &Spend,
    make: impl Fn(StepEnvelope) -> M,
) -> Result<(crate::messages::StepReply<O>, u32), (AgentError, u32)>
where
    A: Actor<Context = Context<A>> + Handler<M>,
    M: Message<Result = StepResult<O>> + Send + 'static,
    O: Send + 'static,
{
    let timeout = cfg.timeout(kind);
    let retry = cfg.retry(kind);
    let mut attempt = 0u32;
    let mut panicked_before = false;
    loop {
        attempt += 1;
        let error = match slot.current() {
            Err(e) => e,
            Ok((addr, generation)) => {
                let cancel = CancellationToken::new();
                // Dropping the guard (attempt over, or this whole future dropped) cancels
                // whatever the agent is still doing for this attempt.
                let _cancel_on_exit = cancel.clone().drop_guard();
                let env = StepEnvelope {
                    alert: alert.clone(),
                    attempt,
                    deadline: Instant::now() + timeout,
                    cancel,
                    span: tracing::Span::current(),
                    spend: spend.clone(),
                };
                match tokio::time::timeout(timeout + CALLER_GRACE, addr.send(make(env))).await {
                    Ok(Ok(Ok(reply))) => return Ok((reply, attempt)),
                    // A panic failed this request only: the instance is not suspect.
                    Ok(Ok(Err(e))) => e,
                    Ok(Err(MailboxError::Closed)) => {
                        slot.report_crash(generation, "mailbox closed");
                        AgentError::Stopped
                    }
                    Ok(Err(MailboxError::Timeout)) | Err(_) => AgentError::Timeout,
                }
            }
        };
        cfg.metrics.step_error(kind.as_str(), error.kind());
        if let AgentError::Llm(LlmError::BudgetExhausted(provider)) = &error {
            cfg.metrics.llm_budget_exhausted(provider);
        }
        let panicked = matches!(error, AgentError::Panicked(_));
        if panicked && panicked_before {
            tracing::warn!(agent = %kind, attempt, error = %error, "panicked twice on the same input: deterministic, not retried");
            return Err((error, attempt));
        }
        panicked_before = panicked;
        if !error.is_retryable() || attempt > retry.max_retries {
            return Err((error, attempt));
        }
        let delay = retry.delay(attempt, error.retry_after());
        tracing::warn!(agent = %kind, attempt, error = %error, delay_ms = delay.as_millis() as u64, "step attempt failed: retrying");
        tokio::time::sleep(delay).await;
    }
}

/// Enrichment fallback: only what the alert itself says. Every claimed screening hit is
/// unverifiable, so the alert cannot be cleared. Panic-isolated: if even that panics, no facts
/// and a gap saying so (the step is degraded either way, so nothing can clear).
fn fallback_facts(alert: &Alert, e: &AgentError) -> EnrichmentFacts {
    contain(
        "enrichment_fallback",
        || fallback_facts_inner(alert, e),
        |why| EnrichmentFacts {
            gaps: vec![format!(
                "data enrichment failed ({e}) and its fallback panicked ({why}): no facts"
            )],
            ..Default::default()
        },
    )
}

fn fallback_facts_inner(alert: &Alert, e: &AgentError) -> EnrichmentFacts {
    let claims = alert
        .screening_matches()
        .iter()
        .map(|m| unverifiable_claim(alert, m, "enrichment failed: claim not verified".into()))
        .collect();
    EnrichmentFacts {
        unverifiable_claims: claims,
        data_completeness: data_completeness(alert),
        gaps: vec![format!(
            "data enrichment failed ({e}): no screening, typology or history facts"
        )],
        ..Default::default()
    }
}

/// Scoring fallback: the pure scoring function, guarded; if even that fails, a score at the
/// medium threshold with a blocker, so the alert is escalated.
fn fallback_risk(
    alert: &Alert,
    facts: &EnrichmentFacts,
    t: &Thresholds,
    e: &AgentError,
) -> RiskAssessment {
    match std::panic::catch_unwind(AssertUnwindSafe(|| assess(alert, facts, t))) {
        Ok(mut r) => {
            r.clearance_blockers
                .push(format!("risk scoring agent failed ({e})"));
            r
        }
        Err(_) => RiskAssessment {
            score: t.medium_score,
            level: RiskLevel::Medium,
            factors: vec![Factor {
                name: "scoring_unavailable".into(),
                points: t.medium_score,
                evidence: vec!["alert".into()],
                explanation: format!("risk could not be scored ({e}); set to the medium threshold"),
            }],
            clearance_blockers: vec!["risk could not be scored".into()],
            scorecard_version: None,
            shadow: None,
        },
    }
}

/// Context fallback: the deterministic timeline and guidance, no narrative.
fn fallback_context(
    alert: &Alert,
    facts: &EnrichmentFacts,
    risk: &RiskAssessment,
    e: &AgentError,
) -> CaseContext {
    let built = std::panic::catch_unwind(AssertUnwindSafe(|| {
        (timeline(alert), guidance(facts, risk))
    }));
    let (timeline, guidance) = built.unwrap_or_default();
    CaseContext {
        timeline,
        narrative: format!(
            "Narrative unavailable: the context builder failed ({e}). Deterministic timeline and guidance only."
        ),
        guidance,
    }
}

/// The model name journalled for a step that was skipped (no model was called).
pub const SKIPPED_MODEL: &str = "skipped";

/// Whether `d` is the most severe disposition there is: nothing can raise it.
fn is_terminal(d: Disposition) -> bool {
    Disposition::ALL.iter().all(|other| *other <= d)
}

/// When the deterministic policy floor is already the most severe disposition, the decision
/// the model could not change, with the reason the model call is skipped; otherwise `None`.
/// Panic-isolated: a panic here means "ask the model as usual".
fn terminal_floor_proposal(
    alert: &Alert,
    facts: &EnrichmentFacts,
    risk: &RiskAssessment,
    degraded_before: &[String],
    t: &Thresholds,
) -> Option<(DecisionProposal, String)> {
    contain(
        "terminal_floor",
        || {
            let (floor, conf) = policy_floor(alert, facts, risk, degraded_before, t);
            if !is_terminal(floor.disposition) {
                return None;
            }
            let why = format!(
                "policy floor {} is already the most severe disposition ({}); the decision model could not change it",
                floor.disposition,
                floor.reasons.join("; ")
            );
            let evidence: Vec<String> = cited_evidence(risk).into_iter().take(8).collect();
            let proposal = DecisionProposal {
                disposition: floor.disposition,
                confidence: conf,
                rationale: format!("Deterministic policy decision (decision model skipped: {why})"),
                evidence_ids: evidence,
                policy: floor,
                model_disposition: None,
            };
            Some((proposal, why))
        },
        |_| None,
    )
}

/// Decision fallback: the deterministic policy with this step counted as degraded, which
/// rules out AUTO_CLEAR. Panic-isolated: if the policy itself panics, an L2 escalation.
fn fallback_proposal(
    alert: &Alert,
    facts: &EnrichmentFacts,
    risk: &RiskAssessment,
    degraded_before: &[String],
    t: &Thresholds,
    e: &AgentError,
) -> DecisionProposal {
    contain(
        "decision_fallback",
        || fallback_proposal_inner(alert, facts, risk, degraded_before, t, e),
        |why| {
            escalated_proposal(
                &format!("decision maker failed ({e}) and the policy fallback panicked ({why})"),
                Disposition::EscalateL2,
                Vec::new(),
            )
        },
    )
}

fn fallback_proposal_inner(
    alert: &Alert,
    facts: &EnrichmentFacts,
    risk: &RiskAssessment,
    degraded_before: &[String],
    t: &Thresholds,
    e: &AgentError,
) -> DecisionProposal {
    let mut degraded = degraded_before.to_vec();
    degraded.push(AgentKind::DecisionMaker.as_str().to_string());
    let (floor, conf) = policy_floor(alert, facts, risk, &degraded, t);
    let evidence: Vec<String> = cited_evidence(risk).into_iter().take(8).collect();
    DecisionProposal {
        disposition: floor.disposition,
        confidence: conf,
        rationale: format!(
            "Deterministic policy decision (decision maker failed: {e}): {}",
            floor.reasons.join("; ")
        ),
        evidence_ids: evidence,
        policy: floor,
        model_disposition: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    p: &Progress,
    alert: &Alert,
    facts: &EnrichmentFacts,
    risk: &RiskAssessment,
    context: &CaseContext,
    proposal: DecisionProposal,
    started: Instant,
    t: &Thresholds,
) -> Decision {
    // Defence in depth: whatever the steps returned, the floor holds and nothing degraded is
    // auto-cleared.
    let mut disposition = proposal.disposition.max(proposal.policy.disposition);
    if disposition == Disposition::AutoClear
        && (!p.degraded.is_empty()
            || !policy::reaches(proposal.confidence, t.auto_clear_confidence))
    {
        disposition = Disposition::EscalateL2;
    }
    let screening = ScreeningSummary::of(facts);
    // Blocking needs a confirmed sanctions hit; a model asking for a block without one gets
    // the case escalated for a person to decide instead.
    if disposition == Disposition::BlockTransaction && !screening.confirmed_sanctions {
        disposition = Disposition::EscalateL3.max(proposal.policy.disposition);
    }
    let source_high = alert.priority >= Priority::High;
    let sar_filing_deadline = if disposition == Disposition::EscalateSar {
        proposal.policy.sar_filing_deadline.or_else(|| {
            alert
                .created_at
                .date_naive()
                .checked_add_days(chrono::Days::new(policy::SAR_FILING_DAYS))
        })
    } else {
        None
    };
    let citable = citable_ids(facts, risk);
    let mut seen = std::collections::HashSet::new();
    let evidence_ids: Vec<String> = proposal
        .evidence_ids
        .into_iter()
        .filter(|id| citable.binary_search(id).is_ok() && seen.insert(id.clone()))
        .collect();
    Decision {
        alert_id: alert.alert_id.clone(),
        disposition,
        confidence: proposal.confidence,
        risk_score: risk.score,
        risk_level: risk.level,
        factors: risk.factors.clone(),
        screening_hits: facts
            .screening_hits
            .iter()
            .chain(&facts.unverifiable_claims)
            .cloned()
            .collect(),
        rationale: proposal.rationale,
        evidence_ids,
        requires_human_review: disposition != Disposition::AutoClear,
        escalation_priority: policy::escalation_priority(disposition, source_high),
        recommended_actions: policy::recommended_actions(
            disposition,
            &screening,
            sar_filing_deadline,
        ),
        sar_filing_deadline,
        narrative: context.narrative.clone(),
        total_tokens: p
            .contributions
            .iter()
            .map(|c| c.tokens_in + c.tokens_out)
            .sum(),
        total_cost_usd: p.contributions.iter().map(|c| c.cost_usd).sum(),
        agents: p.contributions.clone(),
        degraded: !p.degraded.is_empty(),
        degradation_reasons: p.reasons.clone(),
        policy_version: proposal.policy.policy_version,
        config_version: p.shared.cfg.versions.config_version.clone(),
        list_versions: facts.list_versions.clone(),
        processing_time_ms: started.elapsed().as_millis() as u64,
        decided_at: Utc::now(),
    }
}

//! The batching writer (group commit).
//!
//! Every write of a store goes through one task. Callers send a [`Command`] over a bounded
//! channel and wait on a oneshot. The task takes whatever is queued (up to `batch_max`), writes
//! it in one transaction with multi-row INSERTs, commits, and only then answers every caller: a
//! caller's future resolves after its data is durable. One task per store also makes it the
//! only writer of this node's audit chain, so it can keep the chain head in memory and assign
//! `seq`/`prev_hash` in batch order without reading them back.
//!
//! If the database rejects a statement of a batch (say one step refers to an unknown alert),
//! the whole transaction is rolled back and the commands are written again one per
//! transaction, so only the bad command fails. Errors that are not a rejected statement
//! (connection lost, pool timeout) fail the whole batch without retry: the commit outcome may
//! be unknown, and callers retry through the idempotent API instead.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::audit::{
    AuditRow, ChainHead, PendingEntry, canonical_json, format_ts, seal, sha256_hex,
    truncate_micros, versions_json,
};
use super::error::StoreError;
use super::purge::{self, PurgeScan};
use super::records::{
    AdmitOutcome, AlertRecord, AuditAnchor, DecisionOutcome, DecisionRecord, PurgeReport,
    STEP_COMPLETED, STEP_DEGRADED, StepRecord,
};

/// A write request.
#[derive(Debug)]
pub(crate) enum Op {
    Admit(AlertRecord),
    Step(QueuedStep),
    Decision(QueuedDecision),
    Event(PendingEntry),
    Purge {
        retention_days: u32,
        cutoff: DateTime<Utc>,
    },
    /// Finish what is queued before it, answer, and stop.
    Shutdown,
}

/// A journal row as queued for the writer: its output already reduced to canonical JSON and
/// that text's hash, on the caller's thread. The queue then holds compact text rather than a
/// value tree (it can be long while many alerts are in flight), and the single writer does not
/// serialise the same output twice (once for the row, once for the audit hash).
#[derive(Debug)]
pub(crate) struct QueuedStep {
    /// The record; its `output` is `Null` (see `output_json`).
    record: StepRecord,
    /// The output as canonical JSON.
    pub output_json: String,
    /// SHA-256 of `output_json`, hex.
    pub output_sha256: String,
    /// The version set as canonical JSON: its key in `version_sets`.
    pub versions_json: String,
}

impl QueuedStep {
    pub fn new(mut record: StepRecord) -> Self {
        let output_json = canonical_json(&record.output);
        let output_sha256 = sha256_hex(&output_json);
        let versions_json = canonical_json(&versions_json(&record.versions));
        record.output = Value::Null;
        Self {
            record,
            output_json,
            output_sha256,
            versions_json,
        }
    }
}

impl std::ops::Deref for QueuedStep {
    type Target = StepRecord;
    fn deref(&self) -> &StepRecord {
        &self.record
    }
}

/// A decision as queued for the writer, its document already canonical JSON with its hash
/// (see [`QueuedStep`]).
#[derive(Debug)]
pub(crate) struct QueuedDecision {
    /// The record; its `decision` is `Null` (see `decision_json`).
    record: DecisionRecord,
    /// The decision document as canonical JSON.
    pub decision_json: String,
    /// SHA-256 of `decision_json`, hex.
    pub decision_sha256: String,
    /// The version set as canonical JSON: its key in `version_sets`.
    pub versions_json: String,
}

impl QueuedDecision {
    pub fn new(mut record: DecisionRecord) -> Self {
        let decision_json = canonical_json(&record.decision);
        let decision_sha256 = sha256_hex(&decision_json);
        let versions_json = canonical_json(&versions_json(&record.versions));
        record.decision = Value::Null;
        Self {
            record,
            decision_json,
            decision_sha256,
            versions_json,
        }
    }
}

impl std::ops::Deref for QueuedDecision {
    type Target = DecisionRecord;
    fn deref(&self) -> &DecisionRecord {
        &self.record
    }
}

/// The answer to an [`Op`].
#[derive(Debug)]
pub(crate) enum Reply {
    Admit(AdmitOutcome),
    Done,
    Decision(DecisionOutcome),
    Purge(PurgeReport),
}

/// An [`Op`] with the channel its answer goes to.
pub(crate) struct Command {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Reply, StoreError>>,
}

/// What an existing alert looks like to a resubmission.
#[derive(Debug, Clone)]
pub(crate) struct AlertState {
    pub content_hash: String,
    pub decision: Option<String>,
}

/// Row counts removed by a purge.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PurgeCounts {
    pub alerts: u64,
    pub decisions: u64,
    pub steps: u64,
    pub audit_entries: u64,
}

/// The operations a batch needs inside one transaction. Implemented by each backend; the batch
/// logic ([`apply_batch`]) is written once against this trait.
pub(crate) trait WriteTx: Send + Sized {
    /// Inserts alerts that do not exist yet; returns the ids actually inserted.
    fn insert_alerts(
        &mut self,
        rows: &[&AlertRecord],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<HashSet<String>, StoreError>> + Send;
    /// Content hash and decision of existing alerts.
    fn alert_states(
        &mut self,
        ids: &[&str],
    ) -> impl Future<Output = Result<HashMap<String, AlertState>, StoreError>> + Send;
    /// Stores the version sets (canonical JSON texts) not stored yet; returns the id of each.
    fn intern_versions(
        &mut self,
        sets: &[&str],
    ) -> impl Future<Output = Result<HashMap<String, i64>, StoreError>> + Send;
    /// Inserts journal rows, skipping completed ones that already exist; returns the
    /// `(alert_id, step)` keys of the completed rows actually inserted. `version_ids` holds
    /// the id of every row's version set (see [`WriteTx::intern_versions`]).
    fn insert_steps(
        &mut self,
        rows: &[&QueuedStep],
        version_ids: &HashMap<String, i64>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<HashSet<(String, String)>, StoreError>> + Send;
    /// Inserts decisions of undecided alerts (the decision row is what makes an alert
    /// decided); returns the ids actually inserted.
    fn insert_decisions(
        &mut self,
        rows: &[&QueuedDecision],
        version_ids: &HashMap<String, i64>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<HashSet<String>, StoreError>> + Send;
    /// Stored decisions (canonical JSON text) of the given alerts.
    fn decisions(
        &mut self,
        ids: &[&str],
    ) -> impl Future<Output = Result<HashMap<String, String>, StoreError>> + Send;
    /// Appends audit entries.
    fn insert_audit(
        &mut self,
        entries: &[AuditRow],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Reads what a purge needs to plan (see [`purge::plan`]).
    fn purge_scan(
        &mut self,
        cutoff: DateTime<Utc>,
    ) -> impl Future<Output = Result<PurgeScan, StoreError>> + Send;
    /// Deletes the alerts (with decisions and steps) and the chain prefixes up to the anchors,
    /// and records the anchors.
    fn purge_delete(
        &mut self,
        alerts: &[String],
        anchors: &[AuditAnchor],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<PurgeCounts, StoreError>> + Send;
    /// Commits.
    fn commit(self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A backend the writer can run on.
pub(crate) trait WriteBackend: Send + Sync + 'static {
    /// Its transaction type.
    type Tx: WriteTx;
    /// Starts a transaction.
    fn begin(&self) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send;
    /// The head of `chain_id`: its last entry, else its latest anchor, else genesis.
    fn load_head(
        &self,
        chain_id: &str,
    ) -> impl Future<Output = Result<ChainHead, StoreError>> + Send;
}

/// Checks what the schema cannot represent before it reaches a batch.
fn validate(op: &Op) -> Result<(), StoreError> {
    let bad = |m: String| Err(StoreError::InvalidInput(m));
    match op {
        Op::Admit(a) => {
            if a.alert_id.is_empty() {
                return bad("alert_id is empty".into());
            }
            if a.content_hash.is_empty() {
                return bad(format!("alert `{}`: content_hash is empty", a.alert_id));
            }
        }
        Op::Step(s) => {
            if s.status != STEP_COMPLETED && s.status != STEP_DEGRADED {
                return bad(format!(
                    "step `{}` of alert `{}`: status `{}` is neither `{STEP_COMPLETED}` nor `{STEP_DEGRADED}`",
                    s.step, s.alert_id, s.status
                ));
            }
            for (name, v) in [
                ("tokens_in", s.tokens_in),
                ("tokens_out", s.tokens_out),
                ("latency_ms", s.latency_ms),
            ] {
                if i64::try_from(v).is_err() {
                    return bad(format!("step `{}`: {name} {v} is too large", s.step));
                }
            }
            if !s.cost_usd.is_finite() {
                return bad(format!("step `{}`: cost_usd is not finite", s.step));
            }
        }
        Op::Decision(d) => {
            if !d.risk_score.is_finite() || !d.confidence.is_finite() {
                return bad(format!(
                    "decision of `{}`: risk_score and confidence must be finite",
                    d.alert_id
                ));
            }
        }
        Op::Event(_) | Op::Purge { .. } | Op::Shutdown => {}
    }
    Ok(())
}

fn parse_stored(text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored decision: {e}")))
}

/// Payload of the `alert_received` entry.
fn received_payload(a: &AlertRecord) -> Value {
    json!({
        "content_hash": a.content_hash,
        "raw_sha256": sha256_hex(&a.raw_json),
        "customer_id": a.customer_id,
        "alert_type": a.alert_type,
        "priority": a.priority,
        "created_at": format_ts(a.created_at),
        "received_at": format_ts(a.received_at),
    })
}

/// Payload of a `step` entry: the journal row with its output reduced to a hash.
pub(crate) fn step_payload(s: &QueuedStep) -> Value {
    json!({
        "step": s.step,
        "attempt": s.attempt,
        "status": s.status,
        "input_hash": s.input_hash,
        "output_sha256": s.output_sha256,
        "provider": s.provider,
        "model": s.model,
        "prompt_version": s.prompt_version,
        "tokens_in": s.tokens_in,
        "tokens_out": s.tokens_out,
        "cost_usd": s.cost_usd,
        "latency_ms": s.latency_ms,
        "error": s.error,
    })
}

/// Payload of a `decision` entry: the decision's summary and the hash of its full document.
fn decision_payload(d: &QueuedDecision) -> Value {
    json!({
        "disposition": d.disposition,
        "risk_score": d.risk_score,
        "confidence": d.confidence,
        "requires_human_review": d.requires_human_review,
        "decision_sha256": d.decision_sha256,
        "decided_at": format_ts(d.decided_at),
    })
}

/// Writes `ops` inside `tx`, appending their audit entries to the chain at `head`.
///
/// Returns one result per op; an `Err` of the whole function means the transaction must be
/// rolled back. Ops are handled by kind (admits, then steps, then decisions) so each kind is one
/// multi-row statement, but audit entries take their seq in arrival order.
pub(crate) async fn apply_batch<T: WriteTx>(
    tx: &mut T,
    chain_id: &str,
    head: &mut ChainHead,
    ops: &[&Op],
) -> Result<Vec<Result<Reply, StoreError>>, StoreError> {
    let now = truncate_micros(Utc::now());
    let mut results: Vec<Option<Result<Reply, StoreError>>> = ops.iter().map(|_| None).collect();
    let mut pending: Vec<Option<PendingEntry>> = ops.iter().map(|_| None).collect();
    for (i, op) in ops.iter().enumerate() {
        if let Err(e) = validate(op) {
            results[i] = Some(Err(e));
        }
    }
    let valid = |i: usize, r: &[Option<Result<Reply, StoreError>>]| r[i].is_none();

    // Admits. The first admit of an id in the batch is the one written; later ones in the same
    // batch are answered against it, exactly as if they had come in a later batch.
    let mut first_admit: HashMap<&str, usize> = HashMap::new();
    let mut admit_rows: Vec<&AlertRecord> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if let Op::Admit(a) = op
            && valid(i, &results)
            && !first_admit.contains_key(a.alert_id.as_str())
        {
            first_admit.insert(&a.alert_id, i);
            admit_rows.push(a);
        }
    }
    if !admit_rows.is_empty() {
        let inserted = tx.insert_alerts(&admit_rows, now).await?;
        let existing: Vec<&str> = admit_rows
            .iter()
            .map(|a| a.alert_id.as_str())
            .filter(|id| !inserted.contains(*id))
            .collect();
        let states = if existing.is_empty() {
            HashMap::new()
        } else {
            tx.alert_states(&existing).await?
        };
        for (i, op) in ops.iter().enumerate() {
            let Op::Admit(a) = op else { continue };
            if !valid(i, &results) {
                continue;
            }
            let first = first_admit[a.alert_id.as_str()];
            if i == first && inserted.contains(&a.alert_id) {
                results[i] = Some(Ok(Reply::Admit(AdmitOutcome::Inserted)));
                pending[i] = Some(PendingEntry {
                    alert_id: Some(a.alert_id.clone()),
                    actor: "ingest".into(),
                    action: "alert_received".into(),
                    payload: received_payload(a),
                    versions: None,
                });
                continue;
            }
            let (existing_hash, decision) = if inserted.contains(&a.alert_id) {
                match ops[first] {
                    Op::Admit(f) => (f.content_hash.clone(), None),
                    _ => unreachable!("first_admit only indexes admits"),
                }
            } else {
                match states.get(&a.alert_id) {
                    Some(s) => (s.content_hash.clone(), s.decision.clone()),
                    // Neither inserted nor found: deleted between the two statements (a purge
                    // on another node). Let the caller retry.
                    None => {
                        results[i] = Some(Err(StoreError::Unavailable(format!(
                            "alert `{}` changed during admission; retry",
                            a.alert_id
                        ))));
                        continue;
                    }
                }
            };
            if existing_hash == a.content_hash {
                let decision = decision.as_deref().map(parse_stored).transpose();
                results[i] = Some(
                    decision.map(|decision| Reply::Admit(AdmitOutcome::Duplicate { decision })),
                );
            } else {
                // A different alert under a known id is worth an audit record: it is either a
                // source-system bug or an attempt to rewrite history.
                pending[i] = Some(PendingEntry {
                    alert_id: Some(a.alert_id.clone()),
                    actor: "ingest".into(),
                    action: "alert_conflict_rejected".into(),
                    payload: json!({
                        "content_hash": a.content_hash,
                        "existing_content_hash": existing_hash,
                    }),
                    versions: None,
                });
                results[i] = Some(Ok(Reply::Admit(AdmitOutcome::Conflict {
                    existing_content_hash: existing_hash,
                })));
            }
        }
    }

    // Version sets of this batch's steps and decisions, interned once per batch.
    let mut sets: Vec<&str> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let text = match op {
            Op::Step(s) => s.versions_json.as_str(),
            Op::Decision(d) => d.versions_json.as_str(),
            _ => continue,
        };
        if valid(i, &results) && !sets.contains(&text) {
            sets.push(text);
        }
    }
    let version_ids = tx.intern_versions(&sets).await?;

    // Steps. A second completed record of the same (alert, step), in this batch or before it,
    // is refused; degraded records may repeat (one per attempt).
    let mut seen_completed: HashSet<(&str, &str)> = HashSet::new();
    let mut step_rows: Vec<(usize, &QueuedStep)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let Op::Step(s) = op else { continue };
        if !valid(i, &results) {
            continue;
        }
        if s.status == STEP_COMPLETED && !seen_completed.insert((&s.alert_id, &s.step)) {
            results[i] = Some(Err(StoreError::StepAlreadyCompleted {
                alert_id: s.alert_id.clone(),
                step: s.step.clone(),
            }));
            continue;
        }
        step_rows.push((i, s));
    }
    if !step_rows.is_empty() {
        let rows: Vec<&QueuedStep> = step_rows.iter().map(|(_, s)| *s).collect();
        let inserted_completed = tx.insert_steps(&rows, &version_ids, now).await?;
        for (i, s) in step_rows {
            if s.status == STEP_COMPLETED
                && !inserted_completed.contains(&(s.alert_id.clone(), s.step.clone()))
            {
                results[i] = Some(Err(StoreError::StepAlreadyCompleted {
                    alert_id: s.alert_id.clone(),
                    step: s.step.clone(),
                }));
                continue;
            }
            results[i] = Some(Ok(Reply::Done));
            pending[i] = Some(PendingEntry {
                alert_id: Some(s.alert_id.clone()),
                // The agent that produced the step; its model and prompt are in the payload.
                actor: format!("agent:{}", s.step),
                action: "step".into(),
                payload: step_payload(s),
                versions: Some(s.versions.clone()),
            });
        }
    }

    // A decision is never written after a journal write of its alert failed in this batch:
    // its caller queued the decision without waiting for the steps (see `Store::enqueue_step`).
    let failed_journal: HashSet<String> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match (op, &results[i]) {
            (Op::Step(s), Some(Err(_))) => Some(s.alert_id.clone()),
            _ => None,
        })
        .collect();
    for (i, op) in ops.iter().enumerate() {
        if let Op::Decision(d) = op
            && valid(i, &results)
            && failed_journal.contains(&d.alert_id)
        {
            results[i] = Some(Err(journal_failed(&d.alert_id)));
        }
    }

    // Decisions: one per alert; the first wins and nothing is ever overwritten.
    let mut first_decision: HashMap<&str, usize> = HashMap::new();
    let mut decision_rows: Vec<&QueuedDecision> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if let Op::Decision(d) = op
            && valid(i, &results)
            && !first_decision.contains_key(d.alert_id.as_str())
        {
            first_decision.insert(&d.alert_id, i);
            decision_rows.push(d);
        }
    }
    if !decision_rows.is_empty() {
        let inserted = tx
            .insert_decisions(&decision_rows, &version_ids, now)
            .await?;
        let existing: Vec<&str> = decision_rows
            .iter()
            .map(|d| d.alert_id.as_str())
            .filter(|id| !inserted.contains(*id))
            .collect();
        let stored = if existing.is_empty() {
            HashMap::new()
        } else {
            tx.decisions(&existing).await?
        };
        for (i, op) in ops.iter().enumerate() {
            let Op::Decision(d) = op else { continue };
            if !valid(i, &results) {
                continue;
            }
            let first = first_decision[d.alert_id.as_str()];
            if inserted.contains(&d.alert_id) {
                if i == first {
                    results[i] = Some(Ok(Reply::Decision(DecisionOutcome::Inserted)));
                    pending[i] = Some(PendingEntry {
                        alert_id: Some(d.alert_id.clone()),
                        actor: "engine".into(),
                        action: "decision".into(),
                        payload: decision_payload(d),
                        versions: Some(d.versions.clone()),
                    });
                } else if let Op::Decision(f) = &ops[first] {
                    results[i] = Some(
                        parse_stored(&f.decision_json)
                            .map(|v| Reply::Decision(DecisionOutcome::AlreadyDecided(v))),
                    );
                }
            } else {
                results[i] = Some(match stored.get(&d.alert_id) {
                    Some(text) => parse_stored(text)
                        .map(|v| Reply::Decision(DecisionOutcome::AlreadyDecided(v))),
                    None => Err(StoreError::UnknownAlert(d.alert_id.clone())),
                });
            }
        }
    }

    for (i, op) in ops.iter().enumerate() {
        if let Op::Event(e) = op {
            pending[i] = Some(e.clone());
            results[i] = Some(Ok(Reply::Done));
        }
    }

    let entries: Vec<AuditRow> = pending
        .into_iter()
        .flatten()
        .map(|p| seal(p, chain_id, head, now))
        .collect();
    if !entries.is_empty() {
        tx.insert_audit(&entries).await?;
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Err(StoreError::InvalidInput("command not handled".into()))))
        .collect())
}

/// The refusal of a decision whose alert had a journal write fail.
fn journal_failed(alert_id: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "a journal write of alert `{alert_id}` failed: its decision is not recorded; retry"
    ))
}

/// Alerts remembered as having a failed journal write, at most (a failed pipeline normally
/// sends its decision right after, which clears the entry).
const FAILED_JOURNAL_MAX: usize = 65_536;

/// Plans and performs a purge inside `tx`, recording anchors and the `purge` entry.
async fn apply_purge<T: WriteTx>(
    tx: &mut T,
    chain_id: &str,
    head: &mut ChainHead,
    retention_days: u32,
    cutoff: DateTime<Utc>,
) -> Result<PurgeReport, StoreError> {
    let now = truncate_micros(Utc::now());
    let cutoff = truncate_micros(cutoff);
    let scan = tx.purge_scan(cutoff).await?;
    let plan = purge::plan(&scan, cutoff);
    let counts = tx
        .purge_delete(&plan.alerts, &plan.new_anchors, now)
        .await?;
    let report = PurgeReport {
        cutoff,
        alerts: counts.alerts,
        decisions: counts.decisions,
        steps: counts.steps,
        audit_entries: counts.audit_entries,
        kept_undecided: scan.old_undecided,
        kept_interleaved: plan.kept_interleaved,
        anchors: plan.new_anchors.clone(),
    };
    let anchors: Vec<Value> = plan
        .latest_anchors
        .iter()
        .map(|a| json!({"chain_id": a.chain_id, "seq": a.seq, "hash": a.hash}))
        .collect();
    let entry = seal(
        PendingEntry {
            alert_id: None,
            actor: "retention".into(),
            action: "purge".into(),
            payload: json!({
                "retention_days": retention_days,
                "cutoff": format_ts(cutoff),
                "alerts": report.alerts,
                "decisions": report.decisions,
                "steps": report.steps,
                "audit_entries": report.audit_entries,
                "kept_undecided": report.kept_undecided,
                "kept_interleaved": report.kept_interleaved,
                "anchors": anchors,
            }),
            versions: None,
        },
        chain_id,
        head,
        now,
    );
    tx.insert_audit(std::slice::from_ref(&entry)).await?;
    Ok(report)
}

/// Whether a batch error means "the database refused a statement" (retry one by one) rather
/// than "the database could not be reached" (fail the batch).
fn is_statement_error(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Database(sqlx::Error::Database(_)) | StoreError::UnknownAlert(_)
    )
}

/// Turns a refused statement of a single-command batch into the caller's error.
fn single_error(e: StoreError, op: &Op) -> StoreError {
    if let StoreError::Database(sqlx::Error::Database(db)) = &e
        && db.is_foreign_key_violation()
    {
        match op {
            Op::Step(s) => return StoreError::UnknownAlert(s.alert_id.clone()),
            Op::Decision(d) => return StoreError::UnknownAlert(d.alert_id.clone()),
            _ => {}
        }
    }
    e
}

/// The writer task's state.
pub(crate) struct Writer<B: WriteBackend> {
    pub backend: B,
    pub chain_id: String,
    pub batch_max: usize,
    /// Last committed head, shared with readers so `verify` can detect a truncated tail.
    pub committed_head: Arc<Mutex<Option<ChainHead>>>,
    /// `None` until loaded, and after any failure (another process may have moved it).
    pub head: Option<ChainHead>,
    /// Alerts with a journal write that failed in an earlier batch: their next decision is
    /// refused (see [`Store::enqueue_step`](super::Store::enqueue_step)).
    pub failed_journal: HashSet<String>,
}

impl<B: WriteBackend> Writer<B> {
    /// Runs until a `Shutdown` command or until every sender is gone.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut queue: Vec<Command> = Vec::with_capacity(self.batch_max);
        loop {
            let Some(first) = rx.recv().await else { break };
            queue.push(first);
            // Let callers woken by the previous batch's answers enqueue their next command, so
            // a batch is not split into a large one and a straggler.
            tokio::task::yield_now().await;
            while queue.len() < self.batch_max {
                match rx.try_recv() {
                    Ok(c) => queue.push(c),
                    Err(_) => break,
                }
            }
            let mut group: Vec<Command> = Vec::new();
            let mut stop = None;
            for cmd in queue.drain(..) {
                match cmd.op {
                    Op::Purge {
                        retention_days,
                        cutoff,
                    } => {
                        self.write_group(std::mem::take(&mut group)).await;
                        let r = self.purge(retention_days, cutoff).await;
                        let _ = cmd.reply.send(r.map(Reply::Purge));
                    }
                    Op::Shutdown => stop = Some(cmd.reply),
                    _ => group.push(cmd),
                }
            }
            self.write_group(group).await;
            if let Some(reply) = stop {
                let _ = reply.send(Ok(Reply::Done));
                break;
            }
        }
    }

    async fn head(&mut self) -> Result<ChainHead, StoreError> {
        match &self.head {
            Some(h) => Ok(h.clone()),
            None => self.backend.load_head(&self.chain_id).await,
        }
    }

    fn committed(&mut self, head: ChainHead) {
        if let Ok(mut shared) = self.committed_head.lock() {
            *shared = Some(head.clone());
        }
        self.head = Some(head);
    }

    async fn try_batch(
        &mut self,
        ops: &[&Op],
    ) -> Result<Vec<Result<Reply, StoreError>>, StoreError> {
        let mut head = self.head().await?;
        let mut tx = self.backend.begin().await?;
        let results = apply_batch(&mut tx, &self.chain_id, &mut head, ops).await?;
        tx.commit().await?;
        tracing::debug!(commands = ops.len(), head = head.seq, "batch committed");
        self.committed(head);
        Ok(results)
    }

    async fn purge(
        &mut self,
        retention_days: u32,
        cutoff: DateTime<Utc>,
    ) -> Result<PurgeReport, StoreError> {
        let attempt = async {
            let mut head = self.head().await?;
            let mut tx = self.backend.begin().await?;
            let report =
                apply_purge(&mut tx, &self.chain_id, &mut head, retention_days, cutoff).await?;
            tx.commit().await?;
            Ok::<_, StoreError>((report, head))
        };
        match attempt.await {
            Ok((report, head)) => {
                self.committed(head);
                Ok(report)
            }
            Err(e) => {
                self.head = None;
                Err(e)
            }
        }
    }

    async fn write_group(&mut self, cmds: Vec<Command>) {
        // Decisions of alerts whose journal write failed in an earlier batch are refused.
        let cmds: Vec<Command> = if self.failed_journal.is_empty() {
            cmds
        } else {
            let mut kept = Vec::with_capacity(cmds.len());
            for cmd in cmds {
                if let Op::Decision(d) = &cmd.op
                    && self.failed_journal.remove(&d.alert_id)
                {
                    let _ = cmd.reply.send(Err(journal_failed(&d.alert_id)));
                    continue;
                }
                kept.push(cmd);
            }
            kept
        };
        if cmds.is_empty() {
            return;
        }
        let mut answered = Vec::with_capacity(cmds.len());
        self.write_group_inner(cmds, &mut answered).await;
        for (cmd, r) in answered {
            if let (Op::Step(s), Err(_)) = (&cmd.op, &r) {
                if self.failed_journal.len() >= FAILED_JOURNAL_MAX {
                    self.failed_journal.clear();
                }
                self.failed_journal.insert(s.alert_id.clone());
            }
            let _ = cmd.reply.send(r);
        }
    }

    /// Writes `cmds` and collects each command's answer in `answered` (in order).
    async fn write_group_inner(
        &mut self,
        cmds: Vec<Command>,
        answered: &mut Vec<(Command, Result<Reply, StoreError>)>,
    ) {
        let ops: Vec<&Op> = cmds.iter().map(|c| &c.op).collect();
        let err = match self.try_batch(&ops).await {
            Ok(results) => {
                for (cmd, r) in cmds.into_iter().zip(results) {
                    answered.push((cmd, r));
                }
                return;
            }
            Err(e) => e,
        };
        self.head = None;
        if cmds.len() == 1 || !is_statement_error(&err) {
            tracing::error!(error = %err, commands = cmds.len(), "write batch failed");
            if cmds.len() == 1 {
                if let Some(cmd) = cmds.into_iter().next() {
                    let e = single_error(err, &cmd.op);
                    answered.push((cmd, Err(e)));
                }
                return;
            }
            let message = err.to_string();
            for cmd in cmds {
                answered.push((cmd, Err(StoreError::Unavailable(message.clone()))));
            }
            return;
        }
        tracing::warn!(error = %err, commands = cmds.len(), "batch refused; writing its commands one by one");
        for cmd in cmds {
            if let Op::Decision(d) = &cmd.op
                && answered.iter().any(|(c, r)| {
                    r.is_err() && matches!(&c.op, Op::Step(s) if s.alert_id == d.alert_id)
                })
            {
                let e = journal_failed(&d.alert_id);
                answered.push((cmd, Err(e)));
                continue;
            }
            let r = match self.try_batch(&[&cmd.op]).await {
                Ok(mut results) => results
                    .pop()
                    .unwrap_or(Err(StoreError::InvalidInput("command not handled".into()))),
                Err(e) => {
                    self.head = None;
                    Err(single_error(e, &cmd.op))
                }
            };
            answered.push((cmd, r));
        }
    }
}

//! In-memory backend, for tests and benchmarks of the rest of the engine. Not durable.
//!
//! It goes through the same writer and batch logic as the SQL backends; a transaction holds the
//! state's lock and an undo log that is replayed if it is dropped without commit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::audit::{AuditRow, ChainHead};
use super::error::StoreError;
use super::purge::{PurgeScan, ScanEntry};
use super::read::{ReadBackend, RecordCheckRow};
use super::records::{
    AlertRecord, AuditAnchor, STATUS_DECIDED, STATUS_RECEIVED, STEP_COMPLETED, StepRecord,
    StoredAlert, UnfinishedAlert,
};
use super::writer::{AlertState, PurgeCounts, QueuedDecision, QueuedStep, WriteBackend, WriteTx};

#[derive(Debug, Default)]
struct State {
    alerts: HashMap<String, StoredAlert>,
    steps: HashMap<String, Vec<StepRecord>>,
    completed: HashSet<(String, String)>,
    /// alert id -> (disposition, canonical decision text)
    decisions: HashMap<String, (String, String)>,
    audit: BTreeMap<(String, i64), AuditRow>,
    anchors: Vec<AuditAnchor>,
}

impl State {
    fn latest_anchor(&self, chain_id: &str) -> Option<AuditAnchor> {
        self.anchors
            .iter()
            .filter(|a| a.chain_id == chain_id)
            .max_by_key(|a| a.seq)
            .cloned()
    }

    fn head(&self, chain_id: &str) -> ChainHead {
        let last = self
            .audit
            .range((chain_id.to_string(), i64::MIN)..=(chain_id.to_string(), i64::MAX))
            .next_back()
            .map(|(_, e)| ChainHead {
                seq: e.seq,
                hash: e.hash.clone(),
            });
        last.or_else(|| {
            self.latest_anchor(chain_id).map(|a| ChainHead {
                seq: a.seq,
                hash: a.hash,
            })
        })
        .unwrap_or_else(ChainHead::genesis)
    }

    fn first_payload(&self, alert_id: &str, action: &str) -> Option<String> {
        self.audit
            .values()
            .find(|e| e.alert_id.as_deref() == Some(alert_id) && e.action == action)
            .map(|e| e.payload.clone())
    }

    fn record_check(&self, a: &StoredAlert) -> RecordCheckRow {
        RecordCheckRow {
            alert_id: a.alert_id.clone(),
            raw_json: a.raw_json.clone(),
            content_hash: a.content_hash.clone(),
            received_payload: self.first_payload(&a.alert_id, "alert_received"),
            decision: self.decisions.get(&a.alert_id).map(|d| d.1.clone()),
            decision_payload: self.first_payload(&a.alert_id, "decision"),
            columns: None,
        }
    }
}

fn row_of(e: &AuditRow) -> AuditRow {
    e.clone()
}

/// The in-memory backend.
#[derive(Debug, Clone, Default)]
pub(crate) struct Backend {
    state: Arc<Mutex<State>>,
}

enum Undo {
    Alert(String),
    Step {
        alert_id: String,
        completed: bool,
        step: String,
    },
    Decision {
        alert_id: String,
        status: String,
        updated_at: DateTime<Utc>,
    },
    Audit(String, i64),
}

/// A memory transaction: exclusive access plus an undo log.
pub(crate) struct Tx {
    state: OwnedMutexGuard<State>,
    undo: Vec<Undo>,
}

impl Drop for Tx {
    fn drop(&mut self) {
        // Not committed: put everything back, newest first.
        while let Some(u) = self.undo.pop() {
            let s = &mut *self.state;
            match u {
                Undo::Alert(id) => {
                    s.alerts.remove(&id);
                }
                Undo::Step {
                    alert_id,
                    completed,
                    step,
                } => {
                    if let Some(v) = s.steps.get_mut(&alert_id) {
                        v.pop();
                    }
                    if completed {
                        s.completed.remove(&(alert_id, step));
                    }
                }
                Undo::Decision {
                    alert_id,
                    status,
                    updated_at,
                } => {
                    s.decisions.remove(&alert_id);
                    if let Some(a) = s.alerts.get_mut(&alert_id) {
                        a.status = status;
                        a.updated_at = updated_at;
                    }
                }
                Undo::Audit(chain, seq) => {
                    s.audit.remove(&(chain, seq));
                }
            }
        }
    }
}

impl WriteBackend for Backend {
    type Tx = Tx;

    async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            state: self.state.clone().lock_owned().await,
            undo: Vec::new(),
        })
    }

    async fn load_head(&self, chain_id: &str) -> Result<ChainHead, StoreError> {
        Ok(self.state.lock().await.head(chain_id))
    }
}

impl WriteTx for Tx {
    async fn insert_alerts(
        &mut self,
        rows: &[&AlertRecord],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>, StoreError> {
        let mut inserted = HashSet::new();
        for a in rows {
            if self.state.alerts.contains_key(&a.alert_id) {
                continue;
            }
            self.state.alerts.insert(
                a.alert_id.clone(),
                StoredAlert {
                    alert_id: a.alert_id.clone(),
                    raw_json: a.raw_json.clone(),
                    content_hash: a.content_hash.clone(),
                    customer_id: a.customer_id.clone(),
                    alert_type: a.alert_type.clone(),
                    priority: a.priority.clone(),
                    status: STATUS_RECEIVED.into(),
                    created_at: super::audit::truncate_micros(a.created_at),
                    received_at: super::audit::truncate_micros(a.received_at),
                    updated_at: now,
                },
            );
            self.undo.push(Undo::Alert(a.alert_id.clone()));
            inserted.insert(a.alert_id.clone());
        }
        Ok(inserted)
    }

    async fn alert_states(
        &mut self,
        ids: &[&str],
    ) -> Result<HashMap<String, AlertState>, StoreError> {
        Ok(ids
            .iter()
            .filter_map(|id| {
                self.state.alerts.get(*id).map(|a| {
                    (
                        a.alert_id.clone(),
                        AlertState {
                            content_hash: a.content_hash.clone(),
                            decision: self.state.decisions.get(*id).map(|d| d.1.clone()),
                        },
                    )
                })
            })
            .collect())
    }

    async fn intern_versions(
        &mut self,
        _sets: &[&str],
    ) -> Result<HashMap<String, i64>, StoreError> {
        // Records keep their versions in memory; there is nothing to intern.
        Ok(HashMap::new())
    }

    async fn insert_steps(
        &mut self,
        rows: &[&QueuedStep],
        _version_ids: &HashMap<String, i64>,
        _now: DateTime<Utc>,
    ) -> Result<HashSet<(String, String)>, StoreError> {
        // Check before changing anything, like a refused statement would.
        if let Some(s) = rows
            .iter()
            .find(|s| !self.state.alerts.contains_key(&s.alert_id))
        {
            return Err(StoreError::UnknownAlert(s.alert_id.clone()));
        }
        let mut completed = HashSet::new();
        for s in rows {
            let key = (s.alert_id.clone(), s.step.clone());
            let is_completed = s.status == STEP_COMPLETED;
            if is_completed {
                if self.state.completed.contains(&key) {
                    continue;
                }
                self.state.completed.insert(key.clone());
                completed.insert(key);
            }
            let mut stored = StepRecord::clone(s);
            stored.output = serde_json::from_str(&s.output_json)
                .map_err(|e| StoreError::InvalidInput(e.to_string()))?;
            self.state
                .steps
                .entry(s.alert_id.clone())
                .or_default()
                .push(stored);
            self.undo.push(Undo::Step {
                alert_id: s.alert_id.clone(),
                completed: is_completed,
                step: s.step.clone(),
            });
        }
        Ok(completed)
    }

    async fn insert_decisions(
        &mut self,
        rows: &[&QueuedDecision],
        _version_ids: &HashMap<String, i64>,
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>, StoreError> {
        if let Some(d) = rows
            .iter()
            .find(|d| !self.state.alerts.contains_key(&d.alert_id))
        {
            return Err(StoreError::UnknownAlert(d.alert_id.clone()));
        }
        let mut inserted = HashSet::new();
        for d in rows {
            if self.state.decisions.contains_key(&d.alert_id) {
                continue;
            }
            let s = &mut *self.state;
            s.decisions.insert(
                d.alert_id.clone(),
                (d.disposition.clone(), d.decision_json.clone()),
            );
            if let Some(a) = s.alerts.get_mut(&d.alert_id) {
                self.undo.push(Undo::Decision {
                    alert_id: d.alert_id.clone(),
                    status: std::mem::replace(&mut a.status, STATUS_DECIDED.into()),
                    updated_at: std::mem::replace(&mut a.updated_at, now),
                });
            }
            inserted.insert(d.alert_id.clone());
        }
        Ok(inserted)
    }

    async fn decisions(&mut self, ids: &[&str]) -> Result<HashMap<String, String>, StoreError> {
        Ok(ids
            .iter()
            .filter_map(|id| {
                self.state
                    .decisions
                    .get(*id)
                    .map(|d| (id.to_string(), d.1.clone()))
            })
            .collect())
    }

    async fn insert_audit(&mut self, entries: &[AuditRow]) -> Result<(), StoreError> {
        for e in entries {
            let key = (e.chain_id.clone(), e.seq);
            if self.state.audit.contains_key(&key) {
                return Err(StoreError::InvalidInput(format!(
                    "audit entry {}/{} exists",
                    e.chain_id, e.seq
                )));
            }
            self.state.audit.insert(key.clone(), e.clone());
            self.undo.push(Undo::Audit(key.0, key.1));
        }
        Ok(())
    }

    async fn purge_scan(&mut self, cutoff: DateTime<Utc>) -> Result<PurgeScan, StoreError> {
        let s = &*self.state;
        let mut chains: Vec<String> = s.anchors.iter().map(|a| a.chain_id.clone()).collect();
        chains.sort();
        chains.dedup();
        let latest_anchors = chains.iter().filter_map(|c| s.latest_anchor(c)).collect();
        let entries = s
            .audit
            .values()
            .filter(|e| e.seq > s.latest_anchor(&e.chain_id).map_or(0, |a| a.seq))
            .map(|e| ScanEntry {
                chain_id: e.chain_id.clone(),
                seq: e.seq,
                alert_id: e.alert_id.clone(),
                alert_exists: e
                    .alert_id
                    .as_ref()
                    .is_some_and(|id| s.alerts.contains_key(id)),
                created_at: e.created_at.clone().ok(),
                hash: e.hash.clone(),
            })
            .collect();
        let mut old: Vec<&StoredAlert> = s
            .alerts
            .values()
            .filter(|a| a.received_at < cutoff)
            .collect();
        old.sort_by(|a, b| (a.received_at, &a.alert_id).cmp(&(b.received_at, &b.alert_id)));
        let (decided, undecided): (Vec<&StoredAlert>, Vec<&StoredAlert>) = old
            .into_iter()
            .partition(|a| s.decisions.contains_key(&a.alert_id));
        Ok(PurgeScan {
            entries,
            latest_anchors,
            old_decided: decided.iter().map(|a| a.alert_id.clone()).collect(),
            old_undecided: undecided.len() as u64,
        })
    }

    async fn purge_delete(
        &mut self,
        alerts: &[String],
        anchors: &[AuditAnchor],
        _now: DateTime<Utc>,
    ) -> Result<PurgeCounts, StoreError> {
        let s = &mut *self.state;
        let mut counts = PurgeCounts::default();
        for id in alerts {
            counts.decisions += u64::from(s.decisions.remove(id).is_some());
            let steps = s.steps.remove(id).unwrap_or_default();
            counts.steps += steps.len() as u64;
            s.completed.retain(|(a, _)| a != id);
            counts.alerts += u64::from(s.alerts.remove(id).is_some());
        }
        for a in anchors {
            let before = s.audit.len();
            s.audit
                .retain(|(chain, seq), _| !(chain == &a.chain_id && *seq <= a.seq));
            counts.audit_entries += (before - s.audit.len()) as u64;
            s.anchors.push(a.clone());
        }
        Ok(counts)
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        self.undo.clear();
        Ok(())
    }
}

impl ReadBackend for Backend {
    async fn alert(&self, id: &str) -> Result<Option<StoredAlert>, StoreError> {
        Ok(self.state.lock().await.alerts.get(id).cloned())
    }

    async fn decision_text(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .state
            .lock()
            .await
            .decisions
            .get(id)
            .map(|d| d.1.clone()))
    }

    async fn steps(&self, id: &str) -> Result<Vec<StepRecord>, StoreError> {
        Ok(self
            .state
            .lock()
            .await
            .steps
            .get(id)
            .cloned()
            .unwrap_or_default())
    }

    async fn audit_rows_for_alert(&self, id: &str) -> Result<Vec<AuditRow>, StoreError> {
        Ok(self
            .state
            .lock()
            .await
            .audit
            .values()
            .filter(|e| e.alert_id.as_deref() == Some(id))
            .map(row_of)
            .collect())
    }

    async fn audit_row(&self, chain_id: &str, seq: i64) -> Result<Option<AuditRow>, StoreError> {
        Ok(self
            .state
            .lock()
            .await
            .audit
            .get(&(chain_id.to_string(), seq))
            .map(row_of))
    }

    async fn audit_page(
        &self,
        chain_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let s = self.state.lock().await;
        Ok(s.audit
            .range(
                (chain_id.to_string(), after.saturating_add(1))..=(chain_id.to_string(), i64::MAX),
            )
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|(_, e)| row_of(e))
            .collect())
    }

    async fn chains(&self) -> Result<Vec<(String, Option<AuditAnchor>)>, StoreError> {
        let s = self.state.lock().await;
        let mut ids: Vec<String> = s
            .audit
            .keys()
            .map(|k| k.0.clone())
            .chain(s.anchors.iter().map(|a| a.chain_id.clone()))
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids
            .into_iter()
            .map(|id| {
                let a = s.latest_anchor(&id);
                (id, a)
            })
            .collect())
    }

    async fn latest_anchor(&self, chain_id: &str) -> Result<Option<AuditAnchor>, StoreError> {
        Ok(self.state.lock().await.latest_anchor(chain_id))
    }

    async fn record_checks(
        &self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<RecordCheckRow>, StoreError> {
        let s = self.state.lock().await;
        let mut alerts: Vec<&StoredAlert> = s
            .alerts
            .values()
            .filter(|a| a.alert_id.as_str() > after)
            .collect();
        alerts.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
        Ok(alerts
            .into_iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|a| s.record_check(a))
            .collect())
    }

    async fn step_checks(
        &self,
        _first: &str,
        _last: &str,
    ) -> Result<(Vec<super::columns::StepCheckRow>, Vec<AuditRow>), StoreError> {
        // Rows live only behind the writer: nothing can edit a column of them.
        Ok((Vec::new(), Vec::new()))
    }

    async fn record_check(&self, id: &str) -> Result<Option<RecordCheckRow>, StoreError> {
        let s = self.state.lock().await;
        Ok(s.alerts.get(id).map(|a| s.record_check(a)))
    }

    async fn unfinished_ids(&self) -> Result<Vec<String>, StoreError> {
        let s = self.state.lock().await;
        let mut alerts: Vec<&StoredAlert> = s
            .alerts
            .values()
            .filter(|a| !s.decisions.contains_key(&a.alert_id))
            .collect();
        alerts.sort_by(|a, b| (a.received_at, &a.alert_id).cmp(&(b.received_at, &b.alert_id)));
        Ok(alerts.into_iter().map(|a| a.alert_id.clone()).collect())
    }

    async fn unfinished(&self) -> Result<Vec<UnfinishedAlert>, StoreError> {
        let s = self.state.lock().await;
        let mut alerts: Vec<&StoredAlert> = s
            .alerts
            .values()
            .filter(|a| !s.decisions.contains_key(&a.alert_id))
            .collect();
        alerts.sort_by(|a, b| (a.received_at, &a.alert_id).cmp(&(b.received_at, &b.alert_id)));
        Ok(alerts
            .into_iter()
            .map(|a| UnfinishedAlert {
                alert: a.clone(),
                completed_steps: s
                    .steps
                    .get(&a.alert_id)
                    .map(|v| {
                        v.iter()
                            .filter(|st| st.status == STEP_COMPLETED)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect())
    }

    async fn customer_history(
        &self,
        customer_id: &str,
        excluding_alert: &str,
    ) -> Result<(u32, u32), StoreError> {
        let s = self.state.lock().await;
        let limit = s.alerts.get(excluding_alert).map(|a| a.created_at);
        let prior = s.alerts.values().filter(|a| {
            a.customer_id == customer_id
                && a.alert_id != excluding_alert
                && limit.is_none_or(|t| a.created_at <= t)
        });
        let (mut alerts, mut escalations) = (0u32, 0u32);
        for a in prior {
            alerts = alerts.saturating_add(1);
            if s.decisions
                .get(&a.alert_id)
                .is_some_and(|d| d.0 != "AUTO_CLEAR")
            {
                escalations = escalations.saturating_add(1);
            }
        }
        Ok((alerts, escalations))
    }

    async fn stored_head(&self, chain_id: &str) -> Result<ChainHead, StoreError> {
        Ok(self.state.lock().await.head(chain_id))
    }
}

//! Interim in-memory store with the durable store's interface; replaced by the sqlx store.
#![allow(missing_docs)]
use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Other(String),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditVersions {
    pub policy_version: String,
    pub config_version: String,
    pub list_versions: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AlertRecord {
    pub alert_id: String,
    pub raw_json: String,
    pub content_hash: String,
    pub customer_id: String,
    pub alert_type: String,
    pub priority: String,
    pub created_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub alert_id: String,
    pub step: String,
    pub attempt: u32,
    pub status: String,
    pub input_hash: String,
    pub output: Value,
    pub provider: String,
    pub model: String,
    pub prompt_version: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    pub latency_ms: u64,
    pub error: Option<String>,
    pub versions: AuditVersions,
}

#[derive(Debug, Clone)]
pub struct DecisionRecord {
    pub alert_id: String,
    pub disposition: String,
    pub risk_score: f64,
    pub confidence: f64,
    pub requires_human_review: bool,
    pub decision: Value,
    pub versions: AuditVersions,
    pub decided_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub enum AdmitOutcome {
    Inserted,
    Duplicate { decision: Option<Value> },
    Conflict { existing_content_hash: String },
}

#[derive(Debug, Clone)]
pub enum DecisionOutcome {
    Inserted,
    AlreadyDecided(Value),
}

#[derive(Debug, Clone)]
pub struct UnfinishedAlert {
    pub raw_json: String,
    pub steps: Vec<StepRecord>,
}

#[derive(Default)]
struct Inner {
    alerts: HashMap<String, AlertRecord>,
    steps: HashMap<String, Vec<StepRecord>>,
    decisions: HashMap<String, Value>,
}

#[derive(Default)]
pub struct Store {
    inner: Mutex<Inner>,
}

impl Store {
    pub async fn connect(_url: Option<&str>, _node: &str) -> Result<Store, StoreError> {
        Ok(Store::default())
    }
    pub async fn admit(&self, a: AlertRecord) -> Result<AdmitOutcome, StoreError> {
        let mut g = self.inner.lock().unwrap();
        if let Some(old) = g.alerts.get(&a.alert_id) {
            if old.content_hash != a.content_hash {
                return Ok(AdmitOutcome::Conflict {
                    existing_content_hash: old.content_hash.clone(),
                });
            }
            return Ok(AdmitOutcome::Duplicate {
                decision: g.decisions.get(&a.alert_id).cloned(),
            });
        }
        g.alerts.insert(a.alert_id.clone(), a);
        Ok(AdmitOutcome::Inserted)
    }
    pub async fn append_step(&self, s: StepRecord) -> Result<(), StoreError> {
        self.inner
            .lock()
            .unwrap()
            .steps
            .entry(s.alert_id.clone())
            .or_default()
            .push(s);
        Ok(())
    }
    pub async fn record_decision(&self, d: DecisionRecord) -> Result<DecisionOutcome, StoreError> {
        let mut g = self.inner.lock().unwrap();
        if let Some(v) = g.decisions.get(&d.alert_id) {
            return Ok(DecisionOutcome::AlreadyDecided(v.clone()));
        }
        g.decisions.insert(d.alert_id, d.decision);
        Ok(DecisionOutcome::Inserted)
    }
    pub async fn unfinished(&self) -> Result<Vec<UnfinishedAlert>, StoreError> {
        let g = self.inner.lock().unwrap();
        Ok(g.alerts
            .values()
            .filter(|a| !g.decisions.contains_key(&a.alert_id))
            .map(|a| UnfinishedAlert {
                raw_json: a.raw_json.clone(),
                steps: g.steps.get(&a.alert_id).cloned().unwrap_or_default(),
            })
            .collect())
    }
    pub async fn customer_history(
        &self,
        customer_id: &str,
        excluding: &str,
    ) -> Result<(u32, u32), StoreError> {
        let g = self.inner.lock().unwrap();
        let mut n = 0;
        let mut e = 0;
        for a in g
            .alerts
            .values()
            .filter(|a| a.customer_id == customer_id && a.alert_id != excluding)
        {
            n += 1;
            if g.decisions
                .get(&a.alert_id)
                .and_then(|d| d.get("disposition"))
                .and_then(|v| v.as_str())
                .is_some_and(|d| d != "AUTO_CLEAR")
            {
                e += 1;
            }
        }
        Ok((n, e))
    }
    pub async fn close(&self) {}
}

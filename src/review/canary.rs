//! Canaries: known-bad synthetic alerts, marked in the store before they are submitted
//! through the normal path. Each must come out escalated; the latest run of any canary that
//! did not (or was not decided within the deadline) fails `/ready` and sets
//! `aml_triage_canary_failures`. Canaries never open cases and are never QA-sampled.

use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ESCALATED, Review, ReviewServiceError, invalid};
use crate::store::review::CanaryRecord;

/// A canary definition: a name and an alert template (its `alert_id` and `created_at` are
/// replaced at each injection).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CanaryDef {
    /// Stable name.
    pub name: String,
    /// The alert.
    pub alert: Value,
}

/// Where the canaries stand.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryStatus {
    /// No latest run failed.
    pub ok: bool,
    /// Latest run of each canary name.
    pub latest: Vec<CanaryRecord>,
    /// Those that failed: not escalated, or undecided past the deadline.
    pub failing: Vec<CanaryRecord>,
}

/// The built-in canary: a sanctions alert whose customer matches a list entry exactly, with
/// structuring cash deposits. Any working configuration must escalate it.
pub fn default_canaries() -> Vec<CanaryDef> {
    vec![CanaryDef {
        name: "sanctions_exact_match".into(),
        alert: json!({
            "alert_id": "template",
            "alert_type": "SANCTIONS",
            "priority": "HIGH",
            "created_at": "2026-01-01T00:00:00Z",
            "customer": {"customer_id": "CANARY-1", "name": "Ivan Canary Petrov",
                         "entity_type": "INDIVIDUAL", "nationality": "RU"},
            "screening": {"matches": [{"list": "OFAC_SDN", "entry_id": "CANARY-SDN-1",
                "matched_name": "Ivan Canary Petrov", "score": 0.99, "match_type": "NAME"}]},
            "transactions": [
                {"transaction_id": "c1", "timestamp": "2025-12-30T10:00:00Z", "amount": 9900.0,
                 "currency": "USD", "direction": "IN", "type": "CASH",
                 "counterparty": {"name": "cash", "account_id": "", "country": "US", "bank": ""},
                 "description": "deposit"},
                {"transaction_id": "c2", "timestamp": "2025-12-31T10:00:00Z", "amount": 9800.0,
                 "currency": "USD", "direction": "OUT", "type": "WIRE",
                 "counterparty": {"name": "Shell Co", "account_id": "X1", "country": "IR", "bank": "B"},
                 "description": "transfer"}
            ],
            "metadata": {"canary": true}
        }),
    }]
}

/// Reads canary definitions from a JSON Lines file (`{"name": ..., "alert": {...}}` a line).
pub fn load_canaries(text: &str) -> Result<Vec<CanaryDef>, ReviewServiceError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<CanaryDef>(l)
                .map_err(|e| invalid("canaries", format!("line {}: {e}", i + 1)))
        })
        .collect()
}

impl Review {
    /// Injects each canary through `submit` (the engine's normal path: admission, agents,
    /// policy, store), after marking its id in the store; waits for the decisions.
    pub async fn inject_canaries(
        &self,
        submit: &dyn SubmitAlert,
        defs: &[CanaryDef],
    ) -> Result<Vec<CanaryRecord>, ReviewServiceError> {
        let mut out = Vec::new();
        for def in defs {
            let now = Utc::now();
            let alert_id = format!(
                "canary-{}-{}-{}",
                def.name,
                now.format("%Y%m%dT%H%M%S"),
                super::auth::random_hex(3)?
            );
            let mut alert = def.alert.clone();
            alert["alert_id"] = json!(alert_id);
            alert["created_at"] = json!(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            let rec = CanaryRecord {
                alert_id: alert_id.clone(),
                name: def.name.clone(),
                injected_at: now,
                disposition: None,
                checked_at: None,
            };
            self.store.insert_canary(&rec).await?;
            self.audit(
                "canary",
                "canary_inject",
                Some(&alert_id),
                json!({"name": def.name}),
            )
            .await?;
            let disposition = match submit.submit_alert_json(alert.to_string()).await {
                Ok(d) => Some(d.disposition.as_str().to_string()),
                Err(e) => {
                    tracing::error!(canary = %def.name, error = %e, "canary was not decided");
                    None
                }
            };
            if let Some(d) = &disposition {
                self.store.check_canary(&alert_id, d, Utc::now()).await?;
            }
            out.push(CanaryRecord {
                disposition,
                checked_at: Some(Utc::now()),
                ..rec
            });
        }
        self.canary_status().await?;
        Ok(out)
    }

    /// Checks the latest run of every canary; sets `aml_triage_canary_failures`.
    pub async fn canary_status(&self) -> Result<CanaryStatus, ReviewServiceError> {
        let now = Utc::now();
        let mut latest: std::collections::BTreeMap<String, CanaryRecord> = Default::default();
        for c in self.store.canaries().await? {
            latest.insert(c.name.clone(), c);
        }
        let mut failing = Vec::new();
        for c in latest.values_mut() {
            if c.disposition.is_none()
                && let Some(d) = self.store.decision(&c.alert_id).await?
                && let Some(disp) = d["disposition"].as_str()
            {
                self.store.check_canary(&c.alert_id, disp, now).await?;
                c.disposition = Some(disp.to_string());
                c.checked_at = Some(now);
            }
            let failed = match &c.disposition {
                Some(d) => !ESCALATED.contains(&d.as_str()),
                None => now - c.injected_at > Duration::seconds(self.cfg.canary_deadline_seconds),
            };
            if failed {
                failing.push(c.clone());
            }
        }
        self.metrics
            .review()
            .canary_failures
            .set(failing.len() as i64);
        Ok(CanaryStatus {
            ok: failing.is_empty(),
            latest: latest.into_values().collect(),
            failing,
        })
    }
}

/// How canaries reach the engine: through its normal submission path. The engine implements
/// it, so review code needs no engine import.
pub trait SubmitAlert: Send + Sync {
    /// Submits one alert (JSON) and waits for its decision.
    fn submit_alert_json(
        &self,
        json: String,
    ) -> futures_util::future::BoxFuture<'_, Result<crate::Decision, crate::TriageError>>;
}

/// The `/ready` check of the canaries (`None` on a store without review tables).
pub async fn ready_check(
    store: &std::sync::Arc<crate::store::Store>,
    metrics: &crate::metrics::Metrics,
    settings: &crate::Settings,
) -> Option<Value> {
    if !store.supports_review() {
        return None;
    }
    let review = Review::new(
        store.clone(),
        metrics.clone(),
        super::ReviewConfig::from_settings(settings),
    );
    Some(match review.canary_status().await {
        Ok(s) if s.ok => json!({
            "name": "canaries", "ok": true,
            "message": format!("{} canaries, all escalated", s.latest.len()),
        }),
        Ok(s) => {
            let names: Vec<&str> = s.failing.iter().map(|c| c.name.as_str()).collect();
            json!({
                "name": "canaries", "ok": false,
                "message": format!("not escalated: {}", names.join(", ")),
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness: canary check failed");
            json!({"name": "canaries", "ok": false, "message": "canary check failed"})
        }
    })
}

//! Client of the bank's customer-data API (`EXTERNAL_DATA_API_URL`): a customer's past alerts
//! with their dispositions and the account profile. The JSON contract is in
//! `docs/customer-data-api.md`.
//!
//! Each request has a timeout (`EXTERNAL_DATA_TIMEOUT_SECONDS`) and is retried up to
//! `EXTERNAL_DATA_MAX_RETRIES` times on timeouts, transport errors, 429 and 5xx, with
//! exponential backoff and jitter that honours `Retry-After`. The key
//! (`EXTERNAL_DATA_API_KEY`) goes in the `X-API-Key` header and nowhere else: errors carry the
//! status and a short, redacted body, never the key.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::alert::{Alert, Counterparty, Transaction};
use crate::domain::facts::{AccountProfile, CustomerHistory};
use crate::domain::features::{history_values, history_window};
use crate::llm::http::{parse_retry_after, short};
use crate::secret::ApiKey;

/// Header carrying the API key.
pub const API_KEY_HEADER: &str = "X-API-Key";

/// First retry delay; doubled per attempt, with jitter, capped at [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two attempts (also caps `Retry-After`).
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A customer-data request that failed after its retries.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CustomerDataError {
    /// No answer in time.
    #[error("customer-data API timed out")]
    Timeout,
    /// Connection refused, reset, DNS, TLS.
    #[error("customer-data API unreachable: {0}")]
    Transport(String),
    /// A non-success status other than 404.
    #[error("customer-data API answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// Start of the body, redacted.
        body: String,
    },
    /// The body is not the documented JSON.
    #[error("customer-data API answer unreadable: {0}")]
    Malformed(String),
}

impl CustomerDataError {
    fn retryable(&self) -> bool {
        match self {
            Self::Timeout | Self::Transport(_) => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Malformed(_) => false,
        }
    }
}

/// One earlier alert of the customer, as the API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PastAlert {
    /// The alert's id.
    pub alert_id: String,
    /// When it was raised (RFC 3339), if known.
    #[serde(default)]
    pub raised_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Its type, e.g. `TRANSACTION`.
    #[serde(default)]
    pub alert_type: Option<String>,
    /// How it was closed (`AUTO_CLEAR`, `ESCALATE_L2`, `SAR_FILED`, ...); absent while open.
    #[serde(default)]
    pub disposition: Option<String>,
}

/// The API's answer for one customer (`GET /customers/{customer_id}/history`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExternalHistory {
    /// The customer, echoed.
    #[serde(default)]
    pub customer_id: String,
    /// Earlier alerts with their dispositions.
    #[serde(default)]
    pub past_alerts: Vec<PastAlert>,
    /// The account profile.
    #[serde(default)]
    pub account_profile: Option<AccountProfile>,
    /// The customer's recent transactions, each in the alert's transaction shape (unknown
    /// fields ignored; an entry that does not read as a transaction is skipped).
    #[serde(default)]
    pub recent_transactions: Vec<serde_json::Value>,
}

/// A history transaction as the API sends it: the alert's transaction fields, unknown ones
/// ignored.
#[derive(Deserialize)]
struct ApiTransaction {
    transaction_id: String,
    timestamp: chrono::DateTime<chrono::Utc>,
    amount: f64,
    currency: String,
    direction: crate::domain::alert::Direction,
    #[serde(rename = "type")]
    kind: crate::domain::alert::TransactionType,
    #[serde(default)]
    counterparty: Option<ApiCounterparty>,
}

#[derive(Deserialize)]
struct ApiCounterparty {
    #[serde(default)]
    name: String,
    #[serde(default)]
    account_id: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    bank: String,
}

impl ApiTransaction {
    fn into_transaction(self) -> Option<Transaction> {
        (self.amount.is_finite() && self.amount >= 0.0).then(|| Transaction {
            transaction_id: self.transaction_id,
            timestamp: self.timestamp,
            amount: self.amount,
            currency: self.currency,
            direction: self.direction,
            kind: self.kind,
            counterparty: self.counterparty.map(|c| Counterparty {
                name: c.name,
                account_id: c.account_id,
                country: c.country,
                bank: c.bank,
            }),
            description: None,
        })
    }
}

impl ExternalHistory {
    /// The history facts for `alert`: its own entry, if the API already lists it, is
    /// not counted; anything not closed as `AUTO_CLEAR` (including still-open alerts) counts
    /// as an escalation, the cautious reading. The recent transactions are cut to what the
    /// features may see ([`history_window`]).
    pub fn to_facts(&self, alert: &Alert) -> CustomerHistory {
        let alert_id = alert.alert_id.as_str();
        let window = history_window(alert, &self.transactions());
        let prior: Vec<&PastAlert> = self
            .past_alerts
            .iter()
            .filter(|a| a.alert_id != alert_id)
            .collect();
        let escalations = prior
            .iter()
            .filter(|a| a.disposition.as_deref() != Some("AUTO_CLEAR"))
            .count();
        CustomerHistory {
            prior_alerts: prior.len() as u32,
            prior_escalations: escalations as u32,
            source: "external".into(),
            account_profile: self.account_profile.clone(),
            recent_transactions: window.len() as u32,
            features: Some(history_values(alert, &window)),
        }
    }

    /// The `recent_transactions` that read as transactions (the others are skipped).
    pub fn transactions(&self) -> Vec<Transaction> {
        self.recent_transactions
            .iter()
            .filter_map(|v| serde_json::from_value::<ApiTransaction>(v.clone()).ok())
            .filter_map(ApiTransaction::into_transaction)
            .collect()
    }
}

/// The customer-data API client.
pub struct CustomerDataClient {
    http: reqwest::Client,
    base: String,
    key: Option<ApiKey>,
    max_retries: u32,
}

impl std::fmt::Debug for CustomerDataClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerDataClient")
            .field("base", &crate::store::redact_url(&self.base))
            .field("key", &self.key)
            .finish()
    }
}

impl CustomerDataClient {
    /// A client of the API at `base` (without the trailing `/customers`).
    pub fn new(
        base: &str,
        key: Option<ApiKey>,
        timeout: Duration,
        max_retries: u32,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            key: key.filter(|k| !k.is_blank()),
            max_retries,
        })
    }

    /// The client `settings` ask for, or `None` when `EXTERNAL_DATA_API_URL` is unset.
    pub fn from_settings(
        settings: &crate::config::Settings,
    ) -> Result<Option<Self>, crate::config::ConfigError> {
        let Some(url) = settings.external_data_api_url() else {
            return Ok(None);
        };
        Self::new(
            url,
            settings.external_data_api_key.clone(),
            Duration::from_secs_f64(settings.external_data_timeout_seconds),
            settings.external_data_max_retries,
        )
        .map(Some)
        .map_err(|m| crate::config::ConfigError::Invalid {
            key: "EXTERNAL_DATA_API_URL".into(),
            message: m,
        })
    }

    /// The history of `customer_id`, retried per the policy. An unknown customer (404) has
    /// an empty history.
    pub async fn history(&self, customer_id: &str) -> Result<ExternalHistory, CustomerDataError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (result, retry_after) = self.attempt(customer_id).await;
            match result {
                Ok(h) => return Ok(h),
                Err(e) if e.retryable() && attempt <= self.max_retries => {
                    let backoff = crate::backoff::Backoff::new(
                        BASE_BACKOFF,
                        MAX_BACKOFF,
                        crate::backoff::Jitter::Over,
                    );
                    let delay = retry_after
                        .unwrap_or_else(|| backoff.delay(attempt))
                        .min(MAX_BACKOFF);
                    tracing::debug!(attempt, error = %e, delay_ms = delay.as_millis() as u64, "customer-data request failed: retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn attempt(
        &self,
        customer_id: &str,
    ) -> (Result<ExternalHistory, CustomerDataError>, Option<Duration>) {
        let url = format!(
            "{}/customers/{}/history",
            self.base,
            encode_segment(customer_id)
        );
        let mut req = self.http.get(&url).header("Accept", "application/json");
        if let Some(k) = &self.key {
            req = req.header(API_KEY_HEADER, k.expose());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return (Err(CustomerDataError::Timeout), None),
            // reqwest's message names the URL, which may carry credentials: keep the kind only.
            Err(e) => {
                let kind = if e.is_connect() { "connect" } else { "request" };
                return (
                    Err(CustomerDataError::Transport(format!("{kind} error"))),
                    None,
                );
            }
        };
        let status = resp.status().as_u16();
        let retry_after = parse_retry_after(
            resp.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
        );
        let body = match resp.text().await {
            Ok(b) => b,
            Err(e) if e.is_timeout() => return (Err(CustomerDataError::Timeout), None),
            Err(_) => {
                return (
                    Err(CustomerDataError::Transport("body read error".into())),
                    None,
                );
            }
        };
        let redact = |t: &str| match &self.key {
            Some(k) => k.redact(&short(t)),
            None => short(t),
        };
        let result = match status {
            200 => serde_json::from_str::<ExternalHistory>(&body)
                .map_err(|e| CustomerDataError::Malformed(e.to_string())),
            404 => Ok(ExternalHistory {
                customer_id: customer_id.to_string(),
                ..Default::default()
            }),
            _ => Err(CustomerDataError::Status {
                status,
                body: redact(&body),
            }),
        };
        (result, retry_after)
    }
}

/// Percent-encodes a path segment (customer ids are opaque strings).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_facts_skip_the_current_alert_and_count_open_ones_as_escalations() {
        let h: ExternalHistory = serde_json::from_str(
            r#"{"customer_id":"C1","past_alerts":[
                {"alert_id":"A0","disposition":"AUTO_CLEAR"},
                {"alert_id":"A1","disposition":"ESCALATE_L2"},
                {"alert_id":"A2"},
                {"alert_id":"NOW","disposition":"AUTO_CLEAR"}],
              "account_profile":{"kyc_risk_rating":"HIGH"}}"#,
        )
        .unwrap();
        let f = h.to_facts(&now_alert());
        assert_eq!((f.prior_alerts, f.prior_escalations), (3, 2));
        assert_eq!(f.source, "external");
        assert_eq!(
            f.account_profile.unwrap().kyc_risk_rating.as_deref(),
            Some("HIGH")
        );
    }

    fn now_alert() -> Alert {
        Alert::from_json(
            r#"{"alert_id":"NOW","alert_type":"TRANSACTION","priority":"LOW",
            "created_at":"2024-06-01T02:00:00Z",
            "customer":{"customer_id":"C1","name":"N","entity_type":"INDIVIDUAL"},
            "transactions":[{"transaction_id":"T9","timestamp":"2024-05-31T00:00:00Z",
              "amount":5,"currency":"USD","direction":"IN","type":"TRANSFER"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn history_transactions_stop_at_the_alert_and_skip_its_own() {
        let tx = |id: &str, ts: &str| {
            serde_json::json!({"transaction_id": id, "timestamp": ts, "amount": 10.0,
                "currency": "USD", "direction": "OUT", "type": "TRANSFER", "extra": 1,
                "counterparty": {"name": "P", "account_id": "P", "rating": "x"}})
        };
        let h = ExternalHistory {
            recent_transactions: vec![
                tx("T1", "2024-05-01T00:00:00Z"),
                tx("T0", "2023-12-01T00:00:00Z"), // older than the window
                tx("T9", "2024-05-31T00:00:00Z"), // the alert's own
                tx("T10", "2024-05-31T00:00:00Z"), // same time as the alert's last: seen
                tx("T11", "2024-06-01T00:00:00Z"), // after the alert's last transaction
                serde_json::json!({"transaction_id": "bad"}),
            ],
            ..Default::default()
        };
        assert_eq!(h.transactions().len(), 5, "the malformed entry is skipped");
        let a = now_alert();
        let ids: Vec<String> = history_window(&a, &h.transactions())
            .into_iter()
            .map(|t| t.transaction_id)
            .collect();
        assert_eq!(ids, ["T1", "T10"]);
        let f = h.to_facts(&a);
        assert_eq!(f.recent_transactions, 2);
        let v = f.features_for_scoring().expect("history features");
        assert_eq!(v["hist_transactions"], Some(2.0));
        assert_eq!(CustomerHistory::default().features_for_scoring(), None);
        // No counterparty of the history reaches the facts (journal, prompts).
        assert!(!serde_json::to_string(&f).unwrap().contains("\"P\""));
    }

    #[test]
    fn customer_ids_are_encoded_in_the_path() {
        assert_eq!(encode_segment("C 1/x"), "C%201%2Fx");
    }
}

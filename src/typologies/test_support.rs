//! Builders for hand-made test alerts and access to the shared AMLSim data.

use chrono::{TimeDelta, TimeZone, Utc};

use crate::domain::alert::{
    Alert, AlertType, Counterparty, Customer, Direction, EntityType, Priority, Transaction,
    TransactionType,
};

/// Day 0 of hand-built alerts.
fn day(d: i64) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + TimeDelta::days(d)
}

/// A transfer of `amount` USD on day `d` with counterparty account `cp`.
pub(crate) fn tx(id: &str, d: i64, amount: f64, direction: Direction, cp: &str) -> Transaction {
    Transaction {
        transaction_id: id.to_string(),
        timestamp: day(d),
        amount,
        currency: "USD".to_string(),
        direction,
        kind: TransactionType::Transfer,
        counterparty: (!cp.is_empty()).then(|| Counterparty {
            name: format!("Party {cp}"),
            account_id: cp.to_string(),
            country: "US".to_string(),
            bank: "bank_a".to_string(),
        }),
        description: None,
    }
}

/// An incoming transfer.
pub(crate) fn tx_in(id: &str, d: i64, amount: f64, cp: &str) -> Transaction {
    tx(id, d, amount, Direction::In, cp)
}

/// An outgoing transfer.
pub(crate) fn tx_out(id: &str, d: i64, amount: f64, cp: &str) -> Transaction {
    tx(id, d, amount, Direction::Out, cp)
}

/// A cash deposit (no counterparty).
pub(crate) fn cash_in(id: &str, d: i64, amount: f64) -> Transaction {
    let mut t = tx(id, d, amount, Direction::In, "");
    t.kind = TransactionType::Cash;
    t
}

/// A TRANSACTION alert on an individual US customer, created the day after the last
/// transaction.
pub(crate) fn alert(transactions: Vec<Transaction>) -> Alert {
    let last = transactions
        .iter()
        .map(|t| t.timestamp)
        .max()
        .unwrap_or(day(0));
    Alert {
        alert_id: "TEST-1".to_string(),
        alert_type: AlertType::Transaction,
        priority: Priority::Medium,
        created_at: last + TimeDelta::days(1),
        rule_id: Some("TEST_RULE".to_string()),
        customer: Customer {
            customer_id: "C1".to_string(),
            name: "Jane Roe".to_string(),
            aliases: vec![],
            entity_type: EntityType::Individual,
            date_of_birth: None,
            nationality: Some("US".to_string()),
            addresses: vec![],
            industry: None,
            kyc_risk_rating: None,
            account_opened: None,
            expected_monthly_volume: None,
        },
        screening: None,
        transactions,
        regulatory_context: None,
        metadata: Default::default(),
    }
}

/// The shared data folder: `AML_SHARED_DATA` or `/work/shared/data`.
pub(crate) fn shared_data() -> std::path::PathBuf {
    std::env::var("AML_SHARED_DATA")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data").to_string())
        .into()
}

/// Up to `n` lines of the AMLSim dev set (`usize::MAX` for all), or `None` when absent.
pub(crate) fn dev_lines(n: usize) -> Option<Vec<String>> {
    let path = shared_data().join("amlsim-dev.eval.jsonl");
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .take(n)
            .map(str::to_string)
            .collect(),
    )
}

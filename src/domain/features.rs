//! Transaction-alert features for the scorecard ([`super::scorecard`]).
//!
//! Pure functions of the alert: no I/O, no configuration. Every feature describes the *shape*
//! of the flows in the alert relative to the alert itself (its triggering window against the
//! account's earlier transactions in the alert); none encodes time since a data set began (no
//! account age, no absolute dates), so a scorecard fitted on one simulation run can be applied
//! to another.
//!
//! With the customer-data API configured, the `hist_*` features also read the customer's
//! transactions before the alert ([`history_window`]: none after the alert's last
//! transaction, within [`HISTORY_WINDOW_DAYS`]) together with the alert's own earlier ones;
//! without the API they are missing (and a scorecard skips them). They too describe flows
//! relative to the alert (counts, shares, ratios), not dates.
//!
//! The triggering transactions are those listed in `metadata.triggering_transaction_ids`;
//! without that list every transaction counts as triggering and the history is empty.
//! `metadata.rules_fired[].features.cycle_length` / `cycle_span_days` (the cycle features),
//! `linked_subject_distinct_senders_30d` / `_receivers_30d` and `relationship_days` (the
//! linked-party features) are read from the monitoring system's rule features; they are untrusted context, so a scorecard never removes a clearance blocker
//! (the policy floor is applied after scoring, see [`super::policy`]).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::alert::{Alert, Direction, Transaction};

/// The value of one feature.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureValue {
    /// A number.
    Num(f64),
    /// A category (the monitoring rule).
    Cat(String),
    /// Not computable for this alert (no outgoing transaction, no history, ...).
    Missing,
}

/// Feature names, in the order [`compute`] returns them.
pub const FEATURE_NAMES: &[&str] = &[
    "rule",
    "one_off_parties",
    "one_off_party_share",
    "one_off_tx_share",
    "two_way_tx_share",
    "new_party_share_in_trigger",
    "outgoing_parties",
    "incoming_parties",
    "trigger_transactions",
    "history_transactions",
    "min_outgoing_amount",
    "trigger_vs_history_amount",
    "trigger_span_days",
    "days_since_last_transaction",
    "in_out_balance",
    "cycle_length",
    "cycle_span_days",
    "one_off_value_share",
    "linked_subject_parties",
    "relationship_days",
    "hist_transactions",
    "hist_parties",
    "hist_new_party_share_in_trigger",
    "hist_one_off_party_share",
    "hist_two_way_tx_share",
    "hist_trigger_vs_history_amount",
];

/// Days of customer history (from the customer-data API) before the alert that the history
/// features look at.
pub const HISTORY_WINDOW_DAYS: i64 = 90;

/// Most history transactions kept per alert (the latest ones).
pub const HISTORY_MAX_TRANSACTIONS: usize = 500;

/// The customer's history transactions the features may use for `alert`: not in the alert
/// itself, not after the alert's last transaction (nor after its creation), and within
/// [`HISTORY_WINDOW_DAYS`] before that; the latest [`HISTORY_MAX_TRANSACTIONS`], oldest first.
/// Nothing after what the monitoring system saw can leak into a score.
pub fn history_window(alert: &Alert, history: &[Transaction]) -> Vec<Transaction> {
    let cutoff = alert
        .transactions
        .iter()
        .map(|t| t.timestamp)
        .max()
        .map_or(alert.created_at, |last| last.min(alert.created_at));
    let start = cutoff - chrono::Duration::days(HISTORY_WINDOW_DAYS);
    let own: BTreeSet<&str> = alert
        .transactions
        .iter()
        .map(|t| t.transaction_id.as_str())
        .collect();
    let mut kept: Vec<Transaction> = history
        .iter()
        .filter(|t| t.timestamp <= cutoff && t.timestamp >= start)
        .filter(|t| !own.contains(t.transaction_id.as_str()))
        .cloned()
        .collect();
    kept.sort_by(|a, b| {
        a.timestamp
            .cmp(&b.timestamp)
            .then_with(|| a.transaction_id.cmp(&b.transaction_id))
    });
    kept.dedup_by(|a, b| a.transaction_id == b.transaction_id);
    let drop = kept.len().saturating_sub(HISTORY_MAX_TRANSACTIONS);
    kept.drain(..drop);
    kept
}

/// Values of the `hist_*` features by name (`None`: not computable), as the enrichment facts
/// carry them ([`super::facts::CustomerHistory::features`]).
pub type HistoryValues = BTreeMap<String, Option<f64>>;

/// The `hist_*` feature values of `alert` given the customer's history from the customer-data
/// API (already cut by [`history_window`]); an empty history is a customer without earlier
/// transactions.
pub fn history_values(alert: &Alert, api: &[Transaction]) -> HistoryValues {
    let (trig, hist) = split(alert);
    history_features(&trig, &alert.transactions, &hist, api)
        .into_iter()
        .map(|(n, v)| {
            let v = match v {
                FeatureValue::Num(x) => Some(x),
                _ => None,
            };
            (n.to_string(), v)
        })
        .collect()
}

/// The alert's triggering transactions and its other (earlier) ones.
fn split(alert: &Alert) -> (Vec<&Transaction>, Vec<&Transaction>) {
    let trig_ids: Option<BTreeSet<&str>> = match alert.metadata.get("triggering_transaction_ids") {
        Some(Value::Array(ids)) => Some(ids.iter().filter_map(Value::as_str).collect()),
        _ => None,
    };
    alert.transactions.iter().partition(|t| {
        trig_ids
            .as_ref()
            .is_none_or(|s| s.contains(t.transaction_id.as_str()))
    })
}

/// The history features over the alert's earlier transactions and the API's.
fn history_features(
    trig: &[&Transaction],
    alert_txs: &[Transaction],
    alert_hist: &[&Transaction],
    api: &[Transaction],
) -> [(&'static str, FeatureValue); 6] {
    // The customer's known past: the alert's own earlier transactions and the API's.
    let h: Vec<&Transaction> = alert_hist.iter().copied().chain(api).collect();
    let hist_parties: BTreeSet<String> = h.iter().filter_map(|t| party(t)).collect();
    // Over the alert's transactions and the API's history together.
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    let mut dirs: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for t in alert_txs.iter().chain(api) {
        if let Some(p) = party(t) {
            *count.entry(p.clone()).or_default() += 1;
            let d = dirs.entry(p).or_default();
            match t.direction {
                Direction::In => d.0 = true,
                Direction::Out => d.1 = true,
            }
        }
    }
    let trig_parties: BTreeSet<String> = trig.iter().filter_map(|t| party(t)).collect();
    let new_in_trig = trig_parties.difference(&hist_parties).count();
    let one_off = count.values().filter(|&&n| n == 1).count();
    let two_way = h
        .iter()
        .filter(|t| party(t).is_some_and(|p| dirs[&p] == (true, true)))
        .count();
    let mean = |v: &mut dyn Iterator<Item = f64>| {
        let (n, s) = v.fold((0usize, 0.0), |(n, s), a| (n + 1, s + a));
        (n > 0).then(|| s / n as f64)
    };
    let ratio = match (
        mean(&mut trig.iter().map(|t| t.amount)),
        mean(&mut h.iter().map(|t| t.amount)),
    ) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => FeatureValue::Num((a / b).ln()),
        _ => FeatureValue::Missing,
    };
    [
        ("hist_transactions", FeatureValue::Num(h.len() as f64)),
        ("hist_parties", FeatureValue::Num(hist_parties.len() as f64)),
        (
            "hist_new_party_share_in_trigger",
            share(new_in_trig, trig_parties.len()),
        ),
        ("hist_one_off_party_share", share(one_off, count.len())),
        ("hist_two_way_tx_share", share(two_way, h.len())),
        ("hist_trigger_vs_history_amount", ratio),
    ]
}

/// Counterparty identity: account id, else lower-cased name.
fn party(t: &Transaction) -> Option<String> {
    let cp = t.counterparty.as_ref()?;
    let acct = cp.account_id.trim();
    if !acct.is_empty() {
        return Some(format!("acct:{acct}"));
    }
    let name = cp.name.trim().to_lowercase();
    (!name.is_empty()).then(|| format!("name:{name}"))
}

fn share(num: usize, den: usize) -> FeatureValue {
    if den == 0 {
        FeatureValue::Missing
    } else {
        FeatureValue::Num(num as f64 / den as f64)
    }
}

/// The first numeric rule feature named `key` in `metadata.rules_fired`.
fn rule_feature(alert: &Alert, key: &str) -> FeatureValue {
    let Some(Value::Array(rules)) = alert.metadata.get("rules_fired") else {
        return FeatureValue::Missing;
    };
    rules
        .iter()
        .find_map(|r| r.get("features")?.get(key)?.as_f64())
        .filter(|v| v.is_finite())
        .map_or(FeatureValue::Missing, FeatureValue::Num)
}

/// Computes every feature of [`FEATURE_NAMES`], in that order, without customer history
/// (the `hist_*` features are missing).
pub fn compute(alert: &Alert) -> Vec<(&'static str, FeatureValue)> {
    compute_with(alert, None)
}

/// Computes every feature of [`FEATURE_NAMES`], in that order; `history` holds the `hist_*`
/// values ([`history_values`]), `None` when no customer-data API is configured (they are then
/// missing).
pub fn compute_with(
    alert: &Alert,
    history: Option<&HistoryValues>,
) -> Vec<(&'static str, FeatureValue)> {
    let txs = &alert.transactions;
    let (trig, hist) = split(alert);

    // Per counterparty: transactions and directions over the whole alert.
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    let mut dirs: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for t in txs {
        if let Some(p) = party(t) {
            *count.entry(p.clone()).or_default() += 1;
            let d = dirs.entry(p).or_default();
            match t.direction {
                Direction::In => d.0 = true,
                Direction::Out => d.1 = true,
            }
        }
    }
    let one_off_parties = count.values().filter(|&&n| n == 1).count();
    let total_value: f64 = txs.iter().map(|t| t.amount).sum();
    let one_off_value: f64 = txs
        .iter()
        .filter(|t| party(t).is_none_or(|p| count[&p] == 1))
        .map(|t| t.amount)
        .sum();
    let one_off_value_share = if total_value > 0.0 {
        FeatureValue::Num(one_off_value / total_value)
    } else {
        FeatureValue::Missing
    };
    let unidentified = txs.iter().filter(|t| party(t).is_none()).count();
    let one_off_tx = txs
        .iter()
        .filter(|t| party(t).is_none_or(|p| count[&p] == 1))
        .count();
    let two_way_tx = txs
        .iter()
        .filter(|t| party(t).is_some_and(|p| dirs[&p] == (true, true)))
        .count();
    let hist_parties: BTreeSet<String> = hist.iter().filter_map(|t| party(t)).collect();
    let trig_parties: BTreeSet<String> = trig.iter().filter_map(|t| party(t)).collect();
    let new_in_trig = trig_parties.difference(&hist_parties).count();
    let parties_in = |dir: Direction| {
        trig.iter()
            .filter(|t| t.direction == dir)
            .filter_map(|t| party(t))
            .collect::<BTreeSet<_>>()
            .len() as f64
    };
    let min_out = trig
        .iter()
        .filter(|t| t.direction == Direction::Out)
        .map(|t| t.amount)
        .fold(f64::INFINITY, f64::min);
    let mean = |v: &[&Transaction]| {
        (!v.is_empty()).then(|| v.iter().map(|t| t.amount).sum::<f64>() / v.len() as f64)
    };
    let amount_ratio = match (mean(&trig), mean(&hist)) {
        (Some(a), Some(b)) if b > 0.0 && a > 0.0 => FeatureValue::Num((a / b).ln()),
        _ => FeatureValue::Missing,
    };
    let days = |a: chrono::DateTime<chrono::Utc>, b: chrono::DateTime<chrono::Utc>| {
        (a - b).num_seconds() as f64 / 86_400.0
    };
    let span = match (
        trig.iter().map(|t| t.timestamp).min(),
        trig.iter().map(|t| t.timestamp).max(),
    ) {
        (Some(a), Some(b)) => FeatureValue::Num(days(b, a)),
        _ => FeatureValue::Missing,
    };
    let since_last = txs
        .iter()
        .map(|t| t.timestamp)
        .max()
        .map_or(FeatureValue::Missing, |last| {
            FeatureValue::Num(days(alert.created_at, last).max(0.0))
        });
    let (vin, vout) = trig.iter().fold((0.0, 0.0), |(i, o), t| match t.direction {
        Direction::In => (i + t.amount, o),
        Direction::Out => (i, o + t.amount),
    });
    let balance = if vin + vout > 0.0 {
        FeatureValue::Num((vin - vout) / (vin + vout))
    } else {
        FeatureValue::Missing
    };
    let hist_features = FEATURE_NAMES
        .iter()
        .filter(|n| n.starts_with("hist_"))
        .map(|&n| {
            let v = history
                .and_then(|h| h.get(n).copied().flatten())
                .filter(|x| x.is_finite())
                .map_or(FeatureValue::Missing, FeatureValue::Num);
            (n, v)
        });
    let mut out = vec![
        (
            "rule",
            alert
                .rule_id
                .clone()
                .map_or(FeatureValue::Missing, FeatureValue::Cat),
        ),
        (
            "one_off_parties",
            FeatureValue::Num((one_off_parties + unidentified) as f64),
        ),
        ("one_off_party_share", share(one_off_parties, count.len())),
        ("one_off_tx_share", share(one_off_tx, txs.len())),
        ("two_way_tx_share", share(two_way_tx, txs.len())),
        (
            "new_party_share_in_trigger",
            share(new_in_trig, trig_parties.len()),
        ),
        (
            "outgoing_parties",
            FeatureValue::Num(parties_in(Direction::Out)),
        ),
        (
            "incoming_parties",
            FeatureValue::Num(parties_in(Direction::In)),
        ),
        ("trigger_transactions", FeatureValue::Num(trig.len() as f64)),
        ("history_transactions", FeatureValue::Num(hist.len() as f64)),
        (
            "min_outgoing_amount",
            if min_out.is_finite() {
                FeatureValue::Num(min_out)
            } else {
                FeatureValue::Missing
            },
        ),
        ("trigger_vs_history_amount", amount_ratio),
        ("trigger_span_days", span),
        ("days_since_last_transaction", since_last),
        ("in_out_balance", balance),
        ("cycle_length", rule_feature(alert, "cycle_length")),
        ("cycle_span_days", rule_feature(alert, "cycle_span_days")),
        ("one_off_value_share", one_off_value_share),
        (
            "linked_subject_parties",
            match rule_feature(alert, "linked_subject_distinct_senders_30d") {
                FeatureValue::Missing => {
                    rule_feature(alert, "linked_subject_distinct_receivers_30d")
                }
                v => v,
            },
        ),
        (
            "relationship_days",
            rule_feature(alert, "relationship_days"),
        ),
    ];
    out.extend(hist_features);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert_json(txs: &str, meta: &str) -> Alert {
        Alert::from_json(&format!(
            r#"{{"alert_id":"A","alert_type":"TRANSACTION","priority":"LOW","rule_id":"FAN_OUT_30D",
            "created_at":"2024-01-10T00:00:00Z",
            "customer":{{"customer_id":"C","name":"N","entity_type":"INDIVIDUAL"}},
            "transactions":[{txs}],"metadata":{meta}}}"#
        ))
        .unwrap()
    }

    fn tx(id: &str, day: u32, amount: f64, dir: &str, cp: &str) -> String {
        format!(
            r#"{{"transaction_id":"{id}","timestamp":"2024-01-{day:02}T00:00:00Z","amount":{amount},
            "currency":"USD","direction":"{dir}","type":"TRANSFER",
            "counterparty":{{"name":"{cp}","account_id":"{cp}","country":"US","bank":"b"}}}}"#
        )
    }

    fn get(f: &[(&str, FeatureValue)], name: &str) -> FeatureValue {
        f.iter().find(|(n, _)| *n == name).unwrap().1.clone()
    }

    #[test]
    fn shares_counts_and_amounts_follow_the_flows() {
        let txs = [
            tx("H1", 1, 100.0, "IN", "P"),
            tx("H2", 2, 100.0, "OUT", "P"),
            tx("T1", 5, 300.0, "OUT", "X"),
            tx("T2", 6, 200.0, "OUT", "Y"),
            tx("T3", 7, 500.0, "IN", "P"),
        ]
        .join(",");
        let a = alert_json(
            &txs,
            r#"{"triggering_transaction_ids":["T1","T2","T3"],
            "rules_fired":[{"rule_id":"R","features":{"cycle_length":4}}]}"#,
        );
        let f = compute(&a);
        assert_eq!(f.len(), FEATURE_NAMES.len());
        for ((n, _), want) in f.iter().zip(FEATURE_NAMES) {
            assert_eq!(n, want);
        }
        assert_eq!(get(&f, "rule"), FeatureValue::Cat("FAN_OUT_30D".into()));
        // P (3 tx, two-way), X and Y once.
        assert_eq!(get(&f, "one_off_parties"), FeatureValue::Num(2.0));
        assert_eq!(get(&f, "one_off_party_share"), FeatureValue::Num(2.0 / 3.0));
        assert_eq!(get(&f, "one_off_tx_share"), FeatureValue::Num(0.4));
        assert_eq!(get(&f, "two_way_tx_share"), FeatureValue::Num(0.6));
        assert_eq!(
            get(&f, "new_party_share_in_trigger"),
            FeatureValue::Num(2.0 / 3.0)
        );
        assert_eq!(get(&f, "outgoing_parties"), FeatureValue::Num(2.0));
        assert_eq!(get(&f, "incoming_parties"), FeatureValue::Num(1.0));
        assert_eq!(get(&f, "min_outgoing_amount"), FeatureValue::Num(200.0));
        assert_eq!(
            get(&f, "trigger_vs_history_amount"),
            FeatureValue::Num((1000.0f64 / 3.0 / 100.0).ln())
        );
        assert_eq!(get(&f, "trigger_span_days"), FeatureValue::Num(2.0));
        assert_eq!(
            get(&f, "days_since_last_transaction"),
            FeatureValue::Num(3.0)
        );
        assert_eq!(get(&f, "in_out_balance"), FeatureValue::Num(0.0));
        assert_eq!(get(&f, "cycle_length"), FeatureValue::Num(4.0));
        assert_eq!(get(&f, "cycle_span_days"), FeatureValue::Missing);
    }

    fn txn(id: &str, day: u32, amount: f64, dir: &str, cp: &str) -> Transaction {
        serde_json::from_str(&tx(id, day, amount, dir, cp)).unwrap()
    }

    #[test]
    fn history_features_read_the_customer_history_when_given() {
        let txs = [
            tx("T1", 5, 300.0, "OUT", "X"),
            tx("T2", 6, 100.0, "IN", "P"),
        ]
        .join(",");
        let a = alert_json(&txs, r#"{"triggering_transaction_ids":["T1","T2"]}"#);
        let without = compute(&a);
        for n in FEATURE_NAMES.iter().filter(|n| n.starts_with("hist_")) {
            assert_eq!(get(&without, n), FeatureValue::Missing, "{n}");
        }
        // P was seen before (both ways), Q once; X is new. T1 is the alert's own and T9 comes
        // after the alert's last transaction: the window drops both.
        let history = vec![
            txn("H1", 2, 50.0, "OUT", "P"),
            txn("H2", 3, 50.0, "IN", "P"),
            txn("H3", 4, 100.0, "OUT", "Q"),
            txn("T1", 5, 300.0, "OUT", "X"),
            txn("T9", 9, 999.0, "OUT", "Z"),
        ];
        let window = history_window(&a, &history);
        assert_eq!(
            window
                .iter()
                .map(|t| t.transaction_id.as_str())
                .collect::<Vec<_>>(),
            ["H1", "H2", "H3"]
        );
        let values = history_values(&a, &window);
        let with = compute_with(&a, Some(&values));
        assert_eq!(with.len(), FEATURE_NAMES.len());
        assert_eq!(get(&with, "hist_transactions"), FeatureValue::Num(3.0));
        assert_eq!(get(&with, "hist_parties"), FeatureValue::Num(2.0));
        assert_eq!(
            get(&with, "hist_new_party_share_in_trigger"),
            FeatureValue::Num(0.5)
        );
        // Over alert + history: P 3 times, Q once, X once.
        assert_eq!(
            get(&with, "hist_one_off_party_share"),
            FeatureValue::Num(2.0 / 3.0)
        );
        assert_eq!(
            get(&with, "hist_two_way_tx_share"),
            FeatureValue::Num(2.0 / 3.0)
        );
        assert_eq!(
            get(&with, "hist_trigger_vs_history_amount"),
            FeatureValue::Num((200.0f64 / (200.0 / 3.0)).ln())
        );
        // The features from the alert alone do not change with history.
        for ((n, v), (_, w)) in without.iter().zip(&with) {
            if !n.starts_with("hist_") {
                assert_eq!(v, w, "{n}");
            }
        }
        // An empty history (API present, no earlier transactions) is not a missing one.
        let empty = compute_with(&a, Some(&history_values(&a, &[])));
        assert_eq!(get(&empty, "hist_transactions"), FeatureValue::Num(0.0));
        assert_eq!(
            get(&empty, "hist_new_party_share_in_trigger"),
            FeatureValue::Num(1.0)
        );
    }

    #[test]
    fn without_triggering_ids_everything_triggers_and_history_is_missing() {
        let a = alert_json(&tx("T1", 5, 300.0, "IN", "X"), "{}");
        let f = compute(&a);
        assert_eq!(get(&f, "history_transactions"), FeatureValue::Num(0.0));
        assert_eq!(get(&f, "trigger_vs_history_amount"), FeatureValue::Missing);
        assert_eq!(get(&f, "min_outgoing_amount"), FeatureValue::Missing);
        assert_eq!(
            get(&f, "new_party_share_in_trigger"),
            FeatureValue::Num(1.0)
        );
    }
}

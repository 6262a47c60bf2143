//! Cycles: funds that return to the customer through counterparties visible in the alert.
//!
//! From the customer's own transactions only a two-party cycle can be seen directly: money out
//! to a party and back in from the same party. Longer cycles are taken from the monitoring
//! system's own features when present (`metadata.rules_fired[].features.cycle_accounts`), and
//! checked against the counterparties in the alert. That hint is untrusted context, so it can
//! only raise risk: without it the detector sees less, never more.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::domain::alert::{Alert, Direction, Transaction};
use crate::domain::facts::TypologyFinding;

use super::counterparty_profile::{CounterpartyProfile, counterparty_key};
use super::fan_in::FAN_WINDOW_DAYS;
use super::{by_time, finding, money, tx_ref, within_days};

/// Detector name and `typ:` suffix.
pub const NAME: &str = "cycle";

/// Strength of a cycle through habitual relationships only: mutual settlement between regular
/// partners is common, so it is noted but weighs little.
pub const HABITUAL_CYCLE_STRENGTH: f64 = 0.2;

/// The cycle finding: strength 1.0 (a blocker) when a round trip or a reported cycle runs
/// through a counterparty seen only for that trip, or when the monitoring system reports a
/// cycle none of whose members appear in the alert; [`HABITUAL_CYCLE_STRENGTH`] when it runs
/// through habitual relationships only.
pub fn detect(alert: &Alert) -> Option<TypologyFinding> {
    let txs = by_time(alert);
    let profile = CounterpartyProfile::of(alert);
    let mut strength: f64 = 0.0;
    let mut ids: Vec<String> = Vec::new();
    let mut parts: Vec<String> = Vec::new();

    // Visible two-party round trips: out to a party, back from it within the window. One
    // pass groups the legs by party (in time order); each party's trip is then found with a
    // binary search per outgoing leg: O(n log n) in the alert's transactions.
    let mut by_party: BTreeMap<String, Vec<&Transaction>> = BTreeMap::new();
    for t in &txs {
        if let Some(k) = counterparty_key(t) {
            by_party.entry(k).or_default().push(t);
        }
    }
    let (mut new_trips, mut habitual_trips) = (0, 0);
    let mut example: Option<(&Transaction, &Transaction)> = None;
    for legs in by_party.values() {
        let Some((out, back)) = round_trip(legs) else {
            continue;
        };
        // A party seen only for the trip itself has no relationship that explains it.
        if legs.len() <= 2 {
            new_trips += 1;
            ids.extend([tx_ref(out), tx_ref(back)]);
            example.get_or_insert((out, back));
        } else {
            habitual_trips += 1;
        }
    }
    if new_trips > 0 {
        strength = 1.0;
        let (o, b) = example.expect("set with the first new trip");
        parts.push(format!(
            "{new_trips} round trips through parties seen only for the trip (e.g. {} out on {}, {} back on {})",
            money(o.amount),
            o.timestamp.date_naive(),
            money(b.amount),
            b.timestamp.date_naive()
        ));
    }
    if habitual_trips > 0 {
        strength = strength.max(HABITUAL_CYCLE_STRENGTH);
        parts.push(format!(
            "{habitual_trips} habitual counterparties both pay and are paid within {FAN_WINDOW_DAYS} days"
        ));
    }

    // Longer cycles reported by the monitoring system (at most MAX_REPORTED_CYCLES, each one
    // pass over the transactions).
    for members in reported_cycles(alert) {
        let legs: Vec<&Transaction> = txs
            .iter()
            .copied()
            .filter(|t| {
                t.counterparty
                    .as_ref()
                    .is_some_and(|c| !c.account_id.is_empty() && members.contains(&c.account_id))
            })
            .collect();
        if legs.is_empty() {
            strength = 1.0;
            parts.push(format!(
                "the monitoring system reports a {}-account cycle but none of its members appears in the alert",
                members.len()
            ));
            continue;
        }
        let new_legs: Vec<&&Transaction> = legs.iter().filter(|t| profile.is_one_off(t)).collect();
        ids.extend(legs.iter().map(|t| tx_ref(t)));
        if new_legs.is_empty() {
            strength = strength.max(HABITUAL_CYCLE_STRENGTH);
            parts.push(format!(
                "reported {}-account cycle runs through habitual counterparties only ({} transactions)",
                members.len(),
                legs.len()
            ));
        } else {
            strength = 1.0;
            parts.push(format!(
                "reported {}-account cycle runs through {} counterparties seen only once in the alert",
                members.len(),
                new_legs.len()
            ));
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(finding(NAME, strength, ids, parts.join("; ")))
}

/// The first round trip among one party's legs (in time order): the earliest outgoing leg
/// followed, within [`FAN_WINDOW_DAYS`], by an incoming one; with it, the first such incoming
/// leg. The legs are sorted by time, so the first incoming leg strictly after an outgoing one
/// is found by binary search, and if it is outside the window every later one is too.
fn round_trip<'a>(legs: &[&'a Transaction]) -> Option<(&'a Transaction, &'a Transaction)> {
    let ins: Vec<&Transaction> = legs
        .iter()
        .copied()
        .filter(|t| t.direction == Direction::In)
        .collect();
    legs.iter()
        .copied()
        .filter(|t| t.direction == Direction::Out)
        .find_map(|o| {
            let next = ins.partition_point(|i| i.timestamp <= o.timestamp);
            let i = *ins.get(next)?;
            within_days(o.timestamp, i.timestamp, FAN_WINDOW_DAYS).then_some((o, i))
        })
}

/// Reported cycles beyond this many are ignored (each costs one pass over the transactions).
pub const MAX_REPORTED_CYCLES: usize = 32;

/// Account lists of cycles the source system reported in its rule features (the first
/// [`MAX_REPORTED_CYCLES`]); malformed or absent entries are ignored.
fn reported_cycles(alert: &Alert) -> Vec<BTreeSet<String>> {
    let Some(Value::Array(rules)) = alert.metadata.get("rules_fired") else {
        return Vec::new();
    };
    rules
        .iter()
        .filter_map(|r| r.get("features")?.get("cycle_accounts")?.as_array())
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect::<BTreeSet<String>>()
        })
        .filter(|m| m.len() >= 2)
        .take(MAX_REPORTED_CYCLES)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn money_returning_from_a_one_trip_party_is_a_blocking_cycle() {
        let a = alert(vec![
            tx_in("W1", 0, 500.0, "EMPLOYER"),
            tx_in("W2", 30, 500.0, "EMPLOYER"),
            tx_out("O", 3, 900.0, "X"),
            tx_in("B", 9, 870.0, "X"),
        ]);
        let f = detect(&a).unwrap();
        assert_eq!(f.evidence_id, "typ:cycle");
        assert_eq!(f.strength, 1.0);
        assert_eq!(f.transactions, vec!["tx:B", "tx:O"]);
        assert!(f.summary.starts_with("1 round trips"), "{}", f.summary);
    }

    #[test]
    fn reported_cycle_through_new_parties_blocks_and_through_habitual_ones_is_weak() {
        let mut a = alert(vec![tx_in("I", 0, 500.0, "P"), tx_out("O", 2, 480.0, "Q")]);
        a.metadata.insert(
            "rules_fired".into(),
            serde_json::json!([{"rule_id": "ROUND_TRIP_30D",
                "features": {"cycle_accounts": ["SELF", "P", "Q"]}}]),
        );
        let f = detect(&a).unwrap();
        assert_eq!(f.strength, 1.0);
        assert_eq!(f.transactions, vec!["tx:I", "tx:O"]);

        let mut h = alert(vec![
            tx_in("I1", 0, 500.0, "P"),
            tx_in("I2", 7, 500.0, "P"),
            tx_out("O1", 2, 480.0, "Q"),
            tx_out("O2", 9, 480.0, "Q"),
        ]);
        h.metadata = a.metadata.clone();
        assert_eq!(detect(&h).unwrap().strength, HABITUAL_CYCLE_STRENGTH);

        let mut hidden = alert(vec![tx_in("I", 0, 500.0, "P")]);
        hidden.metadata.insert(
            "rules_fired".into(),
            serde_json::json!([{"features": {"cycle_accounts": ["SELF", "M", "N"]}}]),
        );
        assert_eq!(detect(&hidden).unwrap().strength, 1.0);
    }

    #[test]
    fn one_way_flows_and_returns_outside_the_window_are_no_cycle() {
        let a = alert(vec![
            tx_out("O", 0, 900.0, "X"),
            tx_in("B", 45, 870.0, "X"),
            tx_in("C", 1, 100.0, "Y"),
        ]);
        assert!(detect(&a).is_none());
        // Malformed metadata is ignored.
        let mut m = alert(vec![tx_out("O", 0, 900.0, "X")]);
        m.metadata
            .insert("rules_fired".into(), serde_json::json!("not a list"));
        assert!(detect(&m).is_none());
    }
}

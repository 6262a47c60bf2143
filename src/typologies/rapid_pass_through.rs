//! Rapid pass-through: a credit moved on to other parties within days, in a similar amount
//! (the account used as a conduit).

use crate::domain::alert::{Alert, Direction, Transaction};
use crate::domain::facts::TypologyFinding;

use super::counterparty_profile::{CounterpartyProfile, counterparty_key};
use super::{by_time, finding, money, tx_ref, within_days};

/// Detector name and `typ:` suffix.
pub const NAME: &str = "rapid_pass_through";

/// Days within which the money must leave again: a conduit forwards funds at once, and three
/// days covers weekends and batch settlement.
pub const PASS_THROUGH_DAYS: i64 = 3;
/// Share of the credit the debits must add up to: forwarding keeps most of the money moving
/// (a small cut may stay behind), and more than 100% would need other funds.
pub const PASS_THROUGH_RATIO: std::ops::RangeInclusive<f64> = 0.8..=1.0;
/// At most this many debits are combined: a credit split into many pieces is a fan-out.
pub const PASS_THROUGH_MAX_DEBITS: usize = 3;

/// At most this many debits after a credit are considered for it: a credit followed within
/// days by more debits than this is a fan-out or a high-volume account, found by those
/// detectors; the bound keeps this detector linear in the alert's transactions.
pub const PASS_THROUGH_MAX_SCAN: usize = 256;

/// One credit and the debits that passed it on.
struct Hit<'a> {
    credit: &'a Transaction,
    debits: Vec<&'a Transaction>,
}

/// Credits forwarded within [`PASS_THROUGH_DAYS`] to other parties, in debits adding up to
/// [`PASS_THROUGH_RATIO`] of the credit.
///
/// Strength is 1.0 when a leg involves a one-off counterparty, 0.4 when every leg is a
/// habitual relationship (ordinary budgeting: salary in, rent out).
pub fn detect(alert: &Alert) -> Option<TypologyFinding> {
    let txs = by_time(alert);
    let profile = CounterpartyProfile::of(alert);
    // Debits in time order with their counterparty keys, computed once: each credit's window
    // is found by binary search and walked for at most PASS_THROUGH_MAX_SCAN debits, so the
    // cost is O(n log n + credits x PASS_THROUGH_MAX_SCAN), not quadratic.
    let outs: Vec<(&Transaction, Option<String>)> = txs
        .iter()
        .copied()
        .filter(|t| t.direction == Direction::Out)
        .map(|t| (t, counterparty_key(t)))
        .collect();
    let mut hits = Vec::new();
    for credit in txs.iter().filter(|t| t.direction == Direction::In) {
        if credit.amount <= 0.0 {
            continue;
        }
        let sender = counterparty_key(credit);
        let start = outs.partition_point(|(t, _)| t.timestamp < credit.timestamp);
        let debits: Vec<&Transaction> = outs[start..]
            .iter()
            .take_while(|(t, _)| within_days(credit.timestamp, t.timestamp, PASS_THROUGH_DAYS))
            .take(PASS_THROUGH_MAX_SCAN)
            .filter(|(t, key)| {
                t.currency == credit.currency
                    // Paying the sender back is a return, not a pass-through.
                    && (sender.is_none() || *key != sender)
            })
            .map(|(t, _)| *t)
            .collect();
        let in_range = |sum: f64| PASS_THROUGH_RATIO.contains(&(sum / credit.amount));
        // The earliest debits first (the rule's shape), else any single matching debit.
        let mut sum = 0.0;
        let mut found = None;
        for (i, d) in debits.iter().take(PASS_THROUGH_MAX_DEBITS).enumerate() {
            sum += d.amount;
            if in_range(sum) {
                found = Some(debits[..=i].to_vec());
                break;
            }
        }
        if found.is_none() {
            found = debits.iter().find(|d| in_range(d.amount)).map(|d| vec![*d]);
        }
        if let Some(debits) = found {
            hits.push(Hit { credit, debits });
        }
    }
    let first = hits.first()?;
    let any_new = hits
        .iter()
        .any(|h| profile.is_one_off(h.credit) || h.debits.iter().any(|d| profile.is_one_off(d)));
    let out_sum: f64 = first.debits.iter().map(|d| d.amount).sum();
    let last_debit = first.debits[first.debits.len() - 1];
    let summary = format!(
        "{} credits passed on within {PASS_THROUGH_DAYS} days{}; first: {} {} in on {}, {} out in {} debits ({:.0}%) within {} days",
        hits.len(),
        if any_new {
            ", with one-off counterparties"
        } else {
            ", all legs with habitual counterparties"
        },
        money(first.credit.amount),
        first.credit.currency,
        first.credit.timestamp.date_naive(),
        money(out_sum),
        first.debits.len(),
        out_sum / first.credit.amount * 100.0,
        (last_debit.timestamp - first.credit.timestamp).num_days(),
    );
    let txs = hits
        .iter()
        .flat_map(|h| std::iter::once(h.credit).chain(h.debits.iter().copied()))
        .map(tx_ref)
        .collect();
    Some(finding(NAME, if any_new { 1.0 } else { 0.4 }, txs, summary))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn credit_forwarded_in_two_days_is_a_pass_through() {
        let a = alert(vec![
            tx_in("IN", 0, 1000.0, "SRC"),
            tx_out("O1", 1, 500.0, "D1"),
            tx_out("O2", 2, 450.0, "D2"),
        ]);
        let f = detect(&a).unwrap();
        assert_eq!(f.evidence_id, "typ:rapid_pass_through");
        assert_eq!(f.strength, 1.0);
        assert_eq!(f.transactions, vec!["tx:IN", "tx:O1", "tx:O2"]);
        assert!(f.summary.contains("(95%)"), "{}", f.summary);
    }

    #[test]
    fn late_small_or_returned_debits_are_no_pass_through() {
        // Too late.
        let late = alert(vec![
            tx_in("IN", 0, 1000.0, "SRC"),
            tx_out("O", 5, 950.0, "D"),
        ]);
        assert!(detect(&late).is_none());
        // Too small a share.
        let small = alert(vec![
            tx_in("IN", 0, 1000.0, "SRC"),
            tx_out("O", 1, 300.0, "D"),
        ]);
        assert!(detect(&small).is_none());
        // Paid back to the sender.
        let back = alert(vec![
            tx_in("IN", 0, 1000.0, "SRC"),
            tx_out("O", 1, 950.0, "SRC"),
        ]);
        assert!(detect(&back).is_none());
    }

    #[test]
    fn habitual_legs_make_a_weak_pass_through() {
        let mut txs = Vec::new();
        for w in 0..3 {
            txs.push(tx_in(&format!("S{w}"), w * 30, 2000.0, "EMPLOYER"));
            txs.push(tx_out(&format!("R{w}"), w * 30 + 1, 1800.0, "LANDLORD"));
        }
        assert_eq!(detect(&alert(txs)).unwrap().strength, 0.4);
    }
}

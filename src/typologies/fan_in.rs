//! Fan-in: many distinct senders paying the customer within a short window (collection of
//! funds from mules or victims before they are moved on).

use crate::domain::alert::{Alert, Direction};
use crate::domain::facts::TypologyFinding;

use super::counterparty_profile::{CounterpartyProfile, counterparty_key};
use super::{by_time_in, finding, money, tx_ref, within_days};

/// Detector name and `typ:` suffix.
pub const NAME: &str = "fan_in";

/// Distinct parties in one window that make a fan: the common scenario threshold (and the
/// one the AMLSim monitoring rules use), below which a handful of payers is ordinary.
pub const FAN_MIN_PARTIES: usize = 5;
/// Length of the fan window in days: one month, the usual monitoring period.
pub const FAN_WINDOW_DAYS: i64 = 30;

/// Fan-in over incoming transactions; see [`fan`].
pub fn detect(alert: &Alert) -> Option<TypologyFinding> {
    fan(alert, Direction::In, NAME)
}

/// The busiest `FAN_WINDOW_DAYS` window of transactions in `direction`, when it has at least
/// [`FAN_MIN_PARTIES`] distinct parties.
///
/// Strength is `0.25 + 0.75 * share of those parties that are one-off`: a fan over habitual
/// relationships (payroll, regular customers) is weak evidence, a fan of strangers is strong.
pub(crate) fn fan(alert: &Alert, direction: Direction, name: &str) -> Option<TypologyFinding> {
    let txs = by_time_in(alert, direction);
    let profile = CounterpartyProfile::of(alert);
    // Unidentified parties are each distinct: they cannot be shown to be the same one. Keys
    // are interned once, and the window's distinct parties are counted incrementally as it
    // slides: O(n log n) in the transactions, not quadratic.
    let mut ids: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let party: Vec<usize> = txs
        .iter()
        .map(|t| {
            let k =
                counterparty_key(t).unwrap_or_else(|| format!("unidentified:{}", t.transaction_id));
            let next = ids.len();
            *ids.entry(k).or_insert(next)
        })
        .collect();
    let one_off: Vec<bool> = txs.iter().map(|t| profile.is_one_off(t)).collect();
    let mut in_window = vec![0usize; ids.len()];
    let (mut parties, mut new) = (0usize, 0usize);
    let mut best: Option<(usize, usize, usize, usize)> = None; // (parties, new, start, end)
    let mut start = 0;
    for end in 0..txs.len() {
        in_window[party[end]] += 1;
        if in_window[party[end]] == 1 {
            parties += 1;
            new += usize::from(one_off[end]);
        }
        while !within_days(txs[start].timestamp, txs[end].timestamp, FAN_WINDOW_DAYS) {
            in_window[party[start]] -= 1;
            if in_window[party[start]] == 0 {
                parties -= 1;
                new -= usize::from(one_off[start]);
            }
            start += 1;
        }
        let cand = (parties, new, start, end);
        if best.is_none_or(|b| (cand.0, cand.1) > (b.0, b.1)) {
            best = Some(cand);
        }
    }
    let (parties, new, start, end) = best?;
    if parties < FAN_MIN_PARTIES {
        return None;
    }
    let window = &txs[start..=end];
    let total: f64 = window.iter().map(|t| t.amount).sum();
    let role = if direction == Direction::In {
        "senders"
    } else {
        "receivers"
    };
    let summary = format!(
        "{parties} distinct {role} within {FAN_WINDOW_DAYS} days ({} to {}), {new} of them one-off; {} transactions, {} {}",
        window[0].timestamp.date_naive(),
        window[window.len() - 1].timestamp.date_naive(),
        window.len(),
        money(total),
        super::currency_label(alert),
    );
    let new_share = new as f64 / parties as f64;
    Some(finding(
        name,
        0.25 + 0.75 * new_share,
        window.iter().map(|t| tx_ref(t)).collect(),
        summary,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn five_new_senders_in_a_month_is_a_strong_fan_in() {
        let a = alert(
            (0..5)
                .map(|i| tx_in(&format!("T{i}"), i * 3, 400.0, &format!("S{i}")))
                .collect(),
        );
        let f = detect(&a).unwrap();
        assert_eq!(f.evidence_id, "typ:fan_in");
        assert_eq!(f.strength, 1.0);
        assert_eq!(f.transactions.len(), 5);
        assert!(f.summary.starts_with("5 distinct senders"), "{}", f.summary);
    }

    #[test]
    fn habitual_senders_make_a_weak_fan_and_spread_or_few_senders_none() {
        let mut txs = Vec::new();
        for i in 0..5 {
            txs.push(tx_in(&format!("A{i}"), i, 400.0, &format!("S{i}")));
            txs.push(tx_in(&format!("B{i}"), 20 + i, 400.0, &format!("S{i}")));
        }
        assert_eq!(detect(&alert(txs)).unwrap().strength, 0.25);
        // Four senders: below the fan threshold.
        let few = alert(
            (0..4)
                .map(|i| tx_in(&format!("T{i}"), i, 400.0, &format!("S{i}")))
                .collect(),
        );
        assert!(detect(&few).is_none());
        // Five senders spread over five months: never five in one window.
        let spread = alert(
            (0..5)
                .map(|i| tx_in(&format!("T{i}"), i * 31, 400.0, &format!("S{i}")))
                .collect(),
        );
        assert!(detect(&spread).is_none());
        // Outgoing payments do not count.
        let outs = alert(
            (0..6)
                .map(|i| tx_out(&format!("T{i}"), i, 400.0, &format!("S{i}")))
                .collect(),
        );
        assert!(detect(&outs).is_none());
    }
}

//! Round amounts: a run of transactions in exact round figures, typical of cash placement and
//! of funds moved by arrangement rather than for goods or services.

use crate::domain::alert::Alert;
use crate::domain::facts::TypologyFinding;

use super::{finding, tx_ref};

/// Detector name and `typ:` suffix.
pub const NAME: &str = "round_amounts";

/// An amount is round when it is a whole multiple of this: 500 catches 9,000/9,500-style
/// figures while prices and invoices rarely land on it.
pub const ROUND_UNIT: f64 = 500.0;
/// Round transactions needed: one or two round payments (rent, a deposit) are ordinary.
pub const ROUND_MIN_COUNT: usize = 3;
/// Share of the alert's transactions that must be round, so busy accounts with an occasional
/// round payment do not fire.
pub const ROUND_MIN_SHARE: f64 = 0.5;

/// Whether `amount` is a non-zero whole multiple of [`ROUND_UNIT`] (to the cent).
pub fn is_round(amount: f64) -> bool {
    amount >= ROUND_UNIT && (amount - (amount / ROUND_UNIT).round() * ROUND_UNIT).abs() < 0.005
}

/// At least [`ROUND_MIN_COUNT`] round transactions making at least [`ROUND_MIN_SHARE`] of the
/// alert's transactions. Strength is that share.
pub fn detect(alert: &Alert) -> Option<TypologyFinding> {
    let round: Vec<_> = alert
        .transactions
        .iter()
        .filter(|t| is_round(t.amount))
        .collect();
    let share = round.len() as f64 / alert.transactions.len().max(1) as f64;
    if round.len() < ROUND_MIN_COUNT || share < ROUND_MIN_SHARE {
        return None;
    }
    let summary = format!(
        "{} of {} transactions are whole multiples of {ROUND_UNIT:.0} ({:.0}%)",
        round.len(),
        alert.transactions.len(),
        share * 100.0
    );
    Some(finding(
        NAME,
        share,
        round.iter().map(|t| tx_ref(t)).collect(),
        summary,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn mostly_round_transfers_fire() {
        let a = alert(vec![
            tx_in("1", 0, 5000.0, "A"),
            tx_in("2", 1, 9500.0, "B"),
            tx_out("3", 2, 3000.0, "C"),
            tx_out("4", 3, 123.45, "D"),
        ]);
        let f = detect(&a).unwrap();
        assert_eq!(f.evidence_id, "typ:round_amounts");
        assert_eq!(f.strength, 0.75);
        assert_eq!(f.transactions, vec!["tx:1", "tx:2", "tx:3"]);
    }

    #[test]
    fn ordinary_amounts_do_not_fire() {
        assert!(!is_round(500.01));
        assert!(!is_round(0.0));
        assert!(is_round(1000.0));
        let a = alert(vec![
            tx_in("1", 0, 5000.0, "A"),
            tx_in("2", 1, 9500.0, "B"),
            tx_out("3", 2, 3000.0, "C"),
            tx_out("4", 3, 123.45, "D"),
            tx_out("5", 3, 99.0, "D"),
            tx_out("6", 4, 1234.56, "E"),
            tx_out("7", 5, 700.0, "E"),
        ]);
        assert!(detect(&a).is_none(), "3 of 7 is under half");
    }
}

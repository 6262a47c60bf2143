//! Fan-out: the customer paying many distinct receivers within a short window (dispersal of
//! funds to mules or layering accounts).

use crate::domain::alert::{Alert, Direction};
use crate::domain::facts::TypologyFinding;

/// Detector name and `typ:` suffix.
pub const NAME: &str = "fan_out";

/// Fan-out over outgoing transactions, with the same window, threshold and strength as
/// [`super::fan_in`].
pub fn detect(alert: &Alert) -> Option<TypologyFinding> {
    super::fan_in::fan(alert, Direction::Out, NAME)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn six_new_receivers_in_a_week_is_a_fan_out() {
        let mut txs: Vec<_> = (0..6)
            .map(|i| tx_out(&format!("T{i}"), i, 300.0, &format!("R{i}")))
            .collect();
        txs.push(tx_in("IN", 0, 2000.0, "SRC"));
        let f = detect(&alert(txs)).unwrap();
        assert_eq!(f.evidence_id, "typ:fan_out");
        assert_eq!(f.strength, 1.0);
        assert_eq!(f.transactions.len(), 6);
        assert!(!f.transactions.contains(&"tx:IN".to_string()));
        assert!(
            f.summary.starts_with("6 distinct receivers"),
            "{}",
            f.summary
        );
    }

    #[test]
    fn repeated_payments_to_few_receivers_are_no_fan_out() {
        let txs = (0..12)
            .map(|i| tx_out(&format!("T{i}"), i, 300.0, &format!("R{}", i % 3)))
            .collect();
        assert!(detect(&alert(txs)).is_none());
    }
}

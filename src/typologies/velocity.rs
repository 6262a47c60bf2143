//! Velocity: money moving through the account much faster than the customer declared at
//! onboarding (`customer.expected_monthly_volume`).

use crate::domain::alert::{Alert, Direction};
use crate::domain::facts::TypologyFinding;

use super::fan_in::FAN_WINDOW_DAYS;
use super::{by_time_in, finding, money, tx_ref, within_days};

/// Detector name and `typ:` suffix.
pub const NAME: &str = "velocity";

/// Multiple of the declared monthly volume that fires: month-to-month variation of twice the
/// declaration is common, three times is not explained by it.
pub const VELOCITY_MIN_RATIO: f64 = 3.0;

/// The busiest [`FAN_WINDOW_DAYS`]-day inflow or outflow against the declared monthly volume.
/// Nothing when no volume was declared. Strength is `ratio / (2 * VELOCITY_MIN_RATIO)`, capped
/// at 1; a declared volume of zero with flows is strength 1.
pub fn detect(alert: &Alert) -> Option<TypologyFinding> {
    let expected = alert.customer.expected_monthly_volume?;
    let mut best: Option<(f64, Direction, Vec<String>)> = None;
    for direction in [Direction::In, Direction::Out] {
        let txs = by_time_in(alert, direction);
        let mut start = 0;
        let mut sum = 0.0;
        for end in 0..txs.len() {
            sum += txs[end].amount;
            while !within_days(txs[start].timestamp, txs[end].timestamp, FAN_WINDOW_DAYS) {
                sum -= txs[start].amount;
                start += 1;
            }
            if best.as_ref().is_none_or(|b| sum > b.0) {
                let ids = txs[start..=end].iter().map(|t| tx_ref(t)).collect();
                best = Some((sum, direction, ids));
            }
        }
    }
    let (peak, direction, ids) = best?;
    if peak <= 0.0 {
        return None;
    }
    let ratio = if expected > 0.0 {
        peak / expected
    } else {
        f64::INFINITY
    };
    if ratio < VELOCITY_MIN_RATIO {
        return None;
    }
    let flow = if direction == Direction::In {
        "inflow"
    } else {
        "outflow"
    };
    let cur = super::currency_label(alert);
    let summary = if ratio.is_finite() {
        format!(
            "{FAN_WINDOW_DAYS}-day {flow} of {} {cur} is {ratio:.1}x the declared monthly volume of {} {cur}",
            money(peak),
            money(expected)
        )
    } else {
        format!(
            "{FAN_WINDOW_DAYS}-day {flow} of {} {cur} against a declared monthly volume of zero",
            money(peak)
        )
    };
    let strength = (ratio / (2.0 * VELOCITY_MIN_RATIO)).min(1.0);
    Some(finding(NAME, strength, ids, summary))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn five_times_the_declared_volume_fires() {
        let mut a = alert(vec![
            tx_in("1", 0, 3000.0, "A"),
            tx_in("2", 10, 2000.0, "B"),
            tx_in("3", 60, 100.0, "B"),
        ]);
        a.customer.expected_monthly_volume = Some(1000.0);
        let f = detect(&a).unwrap();
        assert_eq!(f.evidence_id, "typ:velocity");
        assert_eq!(f.transactions, vec!["tx:1", "tx:2"]);
        assert!(f.summary.contains("5.0x"), "{}", f.summary);
        assert!((f.strength - 5.0 / 6.0).abs() < 0.01);
    }

    #[test]
    fn within_declared_volume_or_undeclared_is_silent() {
        let mut a = alert(vec![
            tx_in("1", 0, 1500.0, "A"),
            tx_out("2", 40, 1500.0, "B"),
        ]);
        assert!(detect(&a).is_none(), "nothing declared");
        a.customer.expected_monthly_volume = Some(1000.0);
        assert!(detect(&a).is_none(), "1.5x is ordinary variation");
        a.customer.expected_monthly_volume = Some(0.0);
        assert_eq!(detect(&a).unwrap().strength, 1.0);
    }
}

//! Structuring: cash deposits kept just under the currency-transaction-report line and spread
//! across days so that no single day reaches it (31 U.S.C. 5324).

use std::collections::BTreeSet;

use crate::domain::alert::{Alert, Direction, TransactionType};
use crate::domain::facts::TypologyFinding;

use super::fan_in::FAN_WINDOW_DAYS;
use super::{by_time_in, finding, money, tx_ref, within_days};

/// Detector name and `typ:` suffix.
pub const NAME: &str = "structuring";

/// The reporting line: cash over 10,000 in a day must be reported (US CTR; the EU uses the
/// same figure for cash payments).
pub const CTR_THRESHOLD: f64 = 10_000.0;
/// Deposits from this share of the line up to just under it are "just under": 80% (8,000)
/// catches the 9,000-9,900 deposits typical of structuring without ordinary large deposits.
pub const NEAR_THRESHOLD_SHARE: f64 = 0.8;

/// At least two just-under-the-line cash deposits on at least two different days within
/// [`FAN_WINDOW_DAYS`] days whose sum exceeds the line. Strength is `0.6 + 0.1 * deposits`,
/// capped at 1.
pub fn detect(alert: &Alert) -> Option<TypologyFinding> {
    let near: Vec<_> = by_time_in(alert, Direction::In)
        .into_iter()
        .filter(|t| {
            t.kind == TransactionType::Cash
                && t.amount >= CTR_THRESHOLD * NEAR_THRESHOLD_SHARE
                && t.amount < CTR_THRESHOLD
        })
        .collect();
    let mut best: Option<(usize, usize)> = None;
    let mut start = 0;
    for end in 0..near.len() {
        while !within_days(near[start].timestamp, near[end].timestamp, FAN_WINDOW_DAYS) {
            start += 1;
        }
        let window = &near[start..=end];
        let days: BTreeSet<_> = window.iter().map(|t| t.timestamp.date_naive()).collect();
        let sum: f64 = window.iter().map(|t| t.amount).sum();
        if days.len() >= 2 && sum > CTR_THRESHOLD && best.is_none_or(|(s, e)| e - s < end - start) {
            best = Some((start, end));
        }
    }
    let (start, end) = best?;
    let window = &near[start..=end];
    let days: BTreeSet<_> = window.iter().map(|t| t.timestamp.date_naive()).collect();
    let sum: f64 = window.iter().map(|t| t.amount).sum();
    let summary = format!(
        "{} cash deposits between {} and {} (just under the {} reporting line) on {} days within {FAN_WINDOW_DAYS} days, {} {} in total",
        window.len(),
        money(CTR_THRESHOLD * NEAR_THRESHOLD_SHARE),
        money(CTR_THRESHOLD),
        money(CTR_THRESHOLD),
        days.len(),
        money(sum),
        super::currency_label(alert),
    );
    Some(finding(
        NAME,
        (0.6 + 0.1 * window.len() as f64).min(1.0),
        window.iter().map(|t| tx_ref(t)).collect(),
        summary,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn deposits_just_under_the_line_on_several_days_fire() {
        let a = alert(vec![
            cash_in("1", 0, 9500.0),
            cash_in("2", 2, 9800.0),
            cash_in("3", 5, 9000.0),
            cash_in("4", 6, 300.0),
        ]);
        let f = detect(&a).unwrap();
        assert_eq!(f.evidence_id, "typ:structuring");
        assert_eq!(f.transactions, vec!["tx:1", "tx:2", "tx:3"]);
        assert!((f.strength - 0.9).abs() < 1e-9);
        assert!(f.summary.contains("28,300.00"), "{}", f.summary);
    }

    #[test]
    fn single_large_transfers_or_same_day_deposits_do_not_fire() {
        // A deposit over the line is reported anyway; one under it is not a pattern.
        assert!(
            detect(&alert(vec![
                cash_in("1", 0, 12000.0),
                cash_in("2", 3, 9500.0)
            ]))
            .is_none()
        );
        // The same amounts by transfer are not cash.
        let transfers = alert(vec![tx_in("1", 0, 9500.0, "A"), tx_in("2", 2, 9800.0, "B")]);
        assert!(detect(&transfers).is_none());
        // Two months apart.
        assert!(
            detect(&alert(vec![
                cash_in("1", 0, 9500.0),
                cash_in("2", 60, 9800.0)
            ]))
            .is_none()
        );
    }
}

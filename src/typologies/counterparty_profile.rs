//! Counterparty profile: which counterparties are habitual (seen more than once in the alert)
//! and which are one-off.
//!
//! This is the flow-shape feature that separates laundering in AMLSim: laundering legs go to
//! or come from parties the account deals with exactly once, while ordinary activity repeats
//! with the same parties. A transaction whose counterparty cannot be identified (no account id
//! and no name, e.g. cash) cannot be shown to be habitual and counts as one-off.

use std::collections::BTreeMap;

use crate::domain::alert::{Alert, Transaction};
use crate::domain::facts::TypologyFinding;

use super::{finding, money, tx_ref};

/// Detector name and `typ:` suffix.
pub const NAME: &str = "counterparty_profile";

/// Transactions a counterparty needs in the alert to count as a habitual relationship. Two is
/// the least that shows a repeat; AMLSim's laundering legs almost never repeat a pair
/// (8 of 545 laundering transactions in the dev alerts did), while ordinary pairs mostly do.
pub const HABITUAL_MIN_TRANSACTIONS: usize = 2;

/// The alert's transactions grouped by counterparty.
#[derive(Debug, Clone)]
pub struct CounterpartyProfile<'a> {
    by_party: BTreeMap<String, Vec<&'a Transaction>>,
    unidentified: Vec<&'a Transaction>,
}

/// The identity of a transaction's counterparty: its account id, else its normalised name;
/// `None` when neither is given.
pub fn counterparty_key(t: &Transaction) -> Option<String> {
    let cp = t.counterparty.as_ref()?;
    let account = cp.account_id.trim();
    if !account.is_empty() {
        return Some(format!("acct:{account}"));
    }
    let name: Vec<String> = cp
        .name
        .split_whitespace()
        .map(|w| w.to_lowercase())
        .collect();
    (!name.is_empty()).then(|| format!("name:{}", name.join(" ")))
}

impl<'a> CounterpartyProfile<'a> {
    /// Groups the alert's transactions by counterparty.
    pub fn of(alert: &'a Alert) -> Self {
        let mut by_party: BTreeMap<String, Vec<&'a Transaction>> = BTreeMap::new();
        let mut unidentified = Vec::new();
        for t in &alert.transactions {
            match counterparty_key(t) {
                Some(k) => by_party.entry(k).or_default().push(t),
                None => unidentified.push(t),
            }
        }
        Self {
            by_party,
            unidentified,
        }
    }

    /// Transactions in the alert with the same counterparty as `t` (0 when unidentified).
    pub fn count(&self, t: &Transaction) -> usize {
        counterparty_key(t)
            .and_then(|k| self.by_party.get(&k))
            .map_or(0, Vec::len)
    }

    /// Whether `t`'s counterparty is not a habitual relationship (unidentified included).
    pub fn is_one_off(&self, t: &Transaction) -> bool {
        self.count(t) < HABITUAL_MIN_TRANSACTIONS
    }

    /// Transactions with one-off or unidentified counterparties.
    pub fn one_off_transactions(&self) -> Vec<&'a Transaction> {
        let mut out: Vec<&'a Transaction> = self
            .by_party
            .values()
            .filter(|v| v.len() < HABITUAL_MIN_TRANSACTIONS)
            .flatten()
            .copied()
            .collect();
        out.extend(self.unidentified.iter().copied());
        out
    }

    /// Number of identified counterparties.
    pub fn identified_parties(&self) -> usize {
        self.by_party.len()
    }

    /// Number of identified counterparties that are habitual.
    pub fn habitual_parties(&self) -> usize {
        self.by_party
            .values()
            .filter(|v| v.len() >= HABITUAL_MIN_TRANSACTIONS)
            .count()
    }

    /// Number of transactions whose counterparty is unidentified.
    pub fn unidentified_transactions(&self) -> usize {
        self.unidentified.len()
    }
}

/// The counterparty profile finding; `None` only when the alert has no transactions.
///
/// Strength is 0 when every counterparty is habitual, else `0.5 + 0.5 * share`, where share is
/// the fraction of parties (each unidentified transaction counting as one) that are one-off.
pub fn detect(alert: &Alert) -> Option<TypologyFinding> {
    if alert.transactions.is_empty() {
        return None;
    }
    let p = CounterpartyProfile::of(alert);
    let one_off = p.one_off_transactions();
    let habitual = p.habitual_parties();
    let parties = p.identified_parties() + p.unidentified_transactions();
    let total_value: f64 = alert.transactions.iter().map(|t| t.amount).sum();
    let cur = super::currency_label(alert);
    if one_off.is_empty() {
        let summary = format!(
            "all {habitual} counterparties are repeat relationships ({} transactions, {} {cur})",
            alert.transactions.len(),
            money(total_value)
        );
        return Some(finding(NAME, 0.0, vec![], summary));
    }
    let share = (parties - habitual) as f64 / parties as f64;
    let one_off_value: f64 = one_off.iter().map(|t| t.amount).sum();
    let value_share = if total_value > 0.0 {
        one_off_value / total_value
    } else {
        0.0
    };
    let unidentified = p.unidentified_transactions();
    let mut summary = format!(
        "{} of {parties} counterparties appear only once ({} transactions, {} {cur}, {:.0}% of value); {habitual} are repeat relationships",
        parties - habitual,
        one_off.len(),
        money(one_off_value),
        value_share * 100.0
    );
    if unidentified > 0 {
        summary.push_str(&format!(
            "; {unidentified} transactions have no identifiable counterparty"
        ));
    }
    Some(finding(
        NAME,
        0.5 + 0.5 * share,
        one_off.iter().map(|t| tx_ref(t)).collect(),
        summary,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn repeat_relationships_give_zero_strength() {
        let a = alert(vec![
            tx_in("1", 0, 100.0, "A"),
            tx_in("2", 7, 110.0, "A"),
            tx_out("3", 8, 90.0, "B"),
            tx_in("4", 9, 50.0, "B"),
        ]);
        let f = detect(&a).unwrap();
        assert_eq!(f.evidence_id, "typ:counterparty_profile");
        assert_eq!(f.strength, 0.0);
        assert!(f.transactions.is_empty());
        assert!(f.summary.contains("all 2 counterparties"), "{}", f.summary);
    }

    #[test]
    fn one_off_and_unidentified_counterparties_are_flagged() {
        let a = alert(vec![
            tx_in("1", 0, 100.0, "A"),
            tx_in("2", 7, 110.0, "A"),
            tx_out("3", 8, 90.0, "NEW"),
            cash_in("4", 9, 50.0),
        ]);
        let f = detect(&a).unwrap();
        assert_eq!(f.transactions, vec!["tx:3", "tx:4"]);
        // 2 of 3 parties are one-off.
        assert!(
            (f.strength - (0.5 + 0.5 * 2.0 / 3.0)).abs() < 0.01,
            "{}",
            f.strength
        );
        assert!(f.summary.contains("2 of 3 counterparties"), "{}", f.summary);
        assert!(f.summary.contains("no identifiable counterparty"));
    }

    #[test]
    fn name_is_used_when_account_id_is_missing() {
        let mut t1 = tx_in("1", 0, 100.0, "");
        let mut t2 = tx_in("2", 3, 100.0, "");
        for (t, n) in [(&mut t1, "ACME  Ltd"), (&mut t2, "acme ltd")] {
            t.counterparty = Some(crate::domain::alert::Counterparty {
                name: n.into(),
                ..Default::default()
            });
        }
        let a = alert(vec![t1, t2]);
        assert_eq!(detect(&a).unwrap().strength, 0.0);
        assert!(detect(&alert(vec![])).is_none());
    }
}

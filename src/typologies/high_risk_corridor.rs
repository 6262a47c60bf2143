//! High-risk corridors: funds sent to or received from counterparties in FATF-listed or EU
//! high-risk jurisdictions.

use std::collections::BTreeMap;

use crate::domain::alert::Alert;
use crate::domain::facts::TypologyFinding;
use crate::jurisdiction::{FatfStatus, JurisdictionTable};

use super::{finding, money, tx_ref};

/// Detector name and `typ:` suffix.
pub const NAME: &str = "high_risk_corridor";

/// Transactions whose counterparty country is on a list in `juris`. Strength 1.0 when any is a
/// FATF call-for-action country (counter-measures apply: never auto-clear), else 0.5.
pub fn detect(alert: &Alert, juris: &JurisdictionTable) -> Option<TypologyFinding> {
    let mut ids = Vec::new();
    let mut value = 0.0;
    let mut countries: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut call_for_action = false;
    for t in &alert.transactions {
        let Some(cp) = &t.counterparty else { continue };
        let Some(status) = juris.lookup(&cp.country) else {
            continue;
        };
        call_for_action |= status.is_call_for_action();
        let label = match status.fatf {
            Some(FatfStatus::CallForAction) => "FATF call for action",
            Some(FatfStatus::IncreasedMonitoring) => "FATF increased monitoring",
            None => "EU high-risk third country",
        };
        countries.insert(cp.country.to_ascii_uppercase(), label);
        ids.push(tx_ref(t));
        value += t.amount;
    }
    if ids.is_empty() {
        return None;
    }
    let total: f64 = alert.transactions.iter().map(|t| t.amount).sum();
    let list: Vec<String> = countries
        .iter()
        .map(|(c, l)| format!("{c} ({l})"))
        .collect();
    let summary = format!(
        "{} transactions ({} {}, {:.0}% of value) with counterparties in {}",
        ids.len(),
        money(value),
        super::currency_label(alert),
        if total > 0.0 {
            value / total * 100.0
        } else {
            0.0
        },
        list.join(", ")
    );
    Some(finding(
        NAME,
        if call_for_action { 1.0 } else { 0.5 },
        ids,
        summary,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use std::path::Path;

    fn table() -> JurisdictionTable {
        JurisdictionTable::load(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fatf_mini.csv"),
        )
        .unwrap()
    }

    fn abroad(id: &str, country: &str) -> crate::domain::alert::Transaction {
        let mut t = tx_out(id, 0, 1000.0, id);
        t.counterparty.as_mut().unwrap().country = country.into();
        t
    }

    #[test]
    fn call_for_action_counterparty_is_a_full_strength_corridor() {
        let a = alert(vec![
            abroad("1", "IR"),
            abroad("2", "DZ"),
            abroad("3", "US"),
        ]);
        let f = detect(&a, &table()).unwrap();
        assert_eq!(f.evidence_id, "typ:high_risk_corridor");
        assert_eq!(f.strength, 1.0);
        assert_eq!(f.transactions, vec!["tx:1", "tx:2"]);
        assert!(
            f.summary.contains("IR (FATF call for action)"),
            "{}",
            f.summary
        );
        let grey = alert(vec![abroad("1", "PA")]);
        assert_eq!(detect(&grey, &table()).unwrap().strength, 0.5);
    }

    #[test]
    fn unlisted_countries_or_empty_table_give_nothing() {
        let a = alert(vec![abroad("1", "US"), abroad("2", "FR"), abroad("3", "")]);
        assert!(detect(&a, &table()).is_none());
        let b = alert(vec![abroad("1", "IR")]);
        assert!(detect(&b, &JurisdictionTable::empty()).is_none());
    }
}

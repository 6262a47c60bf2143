//! Transaction-typology detectors, the score factors they give, and the reasons that forbid an
//! auto-clear.
//!
//! Every detector is a pure function of the alert (and, for corridors, the jurisdiction table)
//! returning at most one [`TypologyFinding`] with evidence id `typ:{name}` and the transaction
//! evidence ids (`tx:{transaction_id}`) behind it. Nothing here reads labels: the alert type has
//! no label field, and `metadata` is untrusted context that may only *raise* risk (see
//! [`cycle`]); it never lowers a score or removes a blocker.
//!
//! Why the counterparty profile carries the decision: in simulated laundering (AMLSim) amounts
//! are drawn from the normal range, so amount-based rules do not separate. What does is the flow
//! *shape*: laundering legs go to or come from parties the account deals with once, while
//! ordinary activity runs through habitual, repeated relationships. An alert whose every
//! counterparty is a repeat relationship stays below the medium threshold; any one-off
//! counterparty flow reaches it on its own.

pub mod counterparty_profile;
pub mod cycle;
pub mod fan_in;
pub mod fan_out;
pub mod high_risk_corridor;
pub mod rapid_pass_through;
pub mod round_amounts;
pub mod structuring;
pub mod velocity;

#[cfg(test)]
mod eval_tests;
#[cfg(test)]
pub(crate) mod test_support;

use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::alert::{Alert, Direction, Transaction};
use crate::domain::facts::{Factor, TypologyFinding};
use crate::jurisdiction::JurisdictionTable;

/// The default `RISK_SCORE_MEDIUM_THRESHOLD` the points below are calibrated against. The
/// engine decides with the configured threshold; a deployment that moves it should re-run the
/// evaluation (`aml-triage eval`) before trusting the calibration.
pub const CALIBRATION_MEDIUM_THRESHOLD: f64 = 40.0;

/// Points for an alert with at least one one-off counterparty flow. Set above
/// [`CALIBRATION_MEDIUM_THRESHOLD`] with a margin of 5 so that a one-off flow alone forbids an auto-clear
/// even after small mitigating factors from elsewhere (see the module docs for why).
pub const ONE_OFF_BASE_POINTS: f64 = 45.0;
/// Extra points as the share of one-off counterparties grows to 100%.
pub const ONE_OFF_SHARE_POINTS: f64 = 10.0;

/// Maximum points of each typology at strength 1; the factor is `weight * strength`.
///
/// Flow-count typologies (fan-in/out, pass-through, cycles) are scaled by how *new* their
/// counterparties are, so that on an account with only habitual relationships they add at most
/// 5 + 5 + 8 + 6 + 10 (round amounts) = 34 points, staying under the threshold: such activity
/// is what the simulated normal models produce. Structuring and call-for-action corridors are
/// blockers in their own right, and their points reflect that.
pub fn typology_weight(typology: &str) -> f64 {
    match typology {
        "structuring" => 50.0,
        "high_risk_corridor" => 40.0,
        "cycle" => 30.0,
        "velocity" => 25.0,
        "fan_in" | "fan_out" | "rapid_pass_through" => 20.0,
        "round_amounts" => 10.0,
        _ => 0.0,
    }
}

/// Strength at or above which a cycle or corridor finding blocks an auto-clear: detectors give
/// 1.0 to cycles through new relationships or not shown in the alert, and to FATF
/// call-for-action corridors.
pub const BLOCKING_STRENGTH: f64 = 0.9;

/// Monitoring rules whose premise is another account's behaviour (here: a new one-off
/// counterparty of a fan-in/fan-out hub). The hub's pattern is not in the alert, so the alert
/// cannot be assessed from its own transactions and always goes to a human.
pub const RULES_ABOUT_ANOTHER_ACCOUNT: &[&str] = &["LINKED_PARTY_90D"];

/// Runs every detector over the alert's transactions.
pub fn detect(alert: &Alert, juris: &JurisdictionTable) -> Vec<TypologyFinding> {
    let mut out = Vec::new();
    out.extend(counterparty_profile::detect(alert));
    out.extend(structuring::detect(alert));
    out.extend(fan_in::detect(alert));
    out.extend(fan_out::detect(alert));
    out.extend(rapid_pass_through::detect(alert));
    out.extend(round_amounts::detect(alert));
    out.extend(velocity::detect(alert));
    out.extend(high_risk_corridor::detect(alert, juris));
    out.extend(cycle::detect(alert));
    out
}

/// Score contributions (points on the 0-100 scale) of the transaction findings.
///
/// One factor per finding that carries points, plus an informational zero-point
/// `habitual_counterparties` factor when every counterparty is a repeat relationship, so that a
/// rationale for clearing can cite it.
pub fn transaction_factors(alert: &Alert, findings: &[TypologyFinding]) -> Vec<Factor> {
    let _ = alert; // The findings hold everything needed; the alert is kept for symmetry.
    let mut out = Vec::new();
    for f in findings {
        let mut evidence = vec![f.evidence_id.clone()];
        evidence.extend(f.transactions.iter().cloned());
        if f.typology == counterparty_profile::NAME {
            if f.strength > 0.0 {
                // strength = 0.5 + 0.5 * one-off share, see counterparty_profile.
                let share = ((f.strength - 0.5) * 2.0).clamp(0.0, 1.0);
                out.push(Factor {
                    name: "one_off_counterparties".to_string(),
                    points: round2(ONE_OFF_BASE_POINTS + ONE_OFF_SHARE_POINTS * share),
                    evidence,
                    explanation: format!(
                        "Funds moved with counterparties seen only once in the alert, the shape of a laundering leg: {}",
                        f.summary
                    ),
                });
            } else {
                out.push(Factor {
                    name: "habitual_counterparties".to_string(),
                    points: 0.0,
                    evidence,
                    explanation: format!(
                        "Every counterparty is a repeat relationship, the shape of ordinary activity: {}",
                        f.summary
                    ),
                });
            }
            continue;
        }
        let points = round2(typology_weight(&f.typology) * f.strength.clamp(0.0, 1.0));
        if points <= 0.0 {
            continue;
        }
        out.push(Factor {
            name: f.typology.clone(),
            points,
            evidence,
            explanation: f.summary.clone(),
        });
    }
    out
}

/// Reasons this alert must not be auto-cleared whatever its score; empty when there are none.
pub fn clearance_blockers(alert: &Alert, findings: &[TypologyFinding]) -> Vec<String> {
    let mut out = Vec::new();
    if alert.transactions.is_empty() {
        // A transaction-monitoring alert without its transactions cannot be assessed; other
        // alert kinds (screening, KYC review) legitimately carry none.
        if alert.alert_type == crate::domain::alert::AlertType::Transaction {
            out.push(
                "the transaction alert carries no transactions, so its pattern cannot be assessed"
                    .into(),
            );
        }
    } else if !findings
        .iter()
        .any(|f| f.typology == counterparty_profile::NAME)
    {
        // Without the profile the one-off factor is missing and the score would be too low.
        out.push(
            "no counterparty profile among the findings: the transactions were not assessed".into(),
        );
    }
    if let Some(rule) = alert
        .rule_id
        .as_deref()
        .filter(|r| RULES_ABOUT_ANOTHER_ACCOUNT.contains(r))
    {
        out.push(format!(
            "rule {rule} rests on another account's activity, which the alert does not show"
        ));
    }
    let mut currencies: Vec<&str> = alert
        .transactions
        .iter()
        .map(|t| t.currency.as_str())
        .collect();
    currencies.sort_unstable();
    currencies.dedup();
    if currencies.len() > 1 {
        out.push(format!(
            "transactions in several currencies ({}): amounts and thresholds cannot be compared",
            currencies.join(", ")
        ));
    }
    if alert
        .metadata
        .get("triggering_transactions_truncated")
        .and_then(|v| v.as_bool())
        == Some(true)
    {
        out.push(
            "the source truncated the triggering transactions: the alert does not show the whole pattern"
                .into(),
        );
    }
    for f in findings {
        let blocks = match f.typology.as_str() {
            "structuring" => true,
            "cycle" | "high_risk_corridor" => f.strength >= BLOCKING_STRENGTH,
            _ => false,
        };
        if blocks {
            out.push(format!("{}: {}", f.evidence_id, f.summary));
        }
    }
    out
}

/// `tx:{transaction_id}`.
pub(crate) fn tx_ref(t: &Transaction) -> String {
    format!("tx:{}", t.transaction_id)
}

/// Builds a finding with evidence id `typ:{name}`.
pub(crate) fn finding(
    name: &str,
    strength: f64,
    transactions: Vec<String>,
    summary: String,
) -> TypologyFinding {
    let mut transactions = transactions;
    transactions.sort();
    transactions.dedup();
    TypologyFinding {
        evidence_id: format!("typ:{name}"),
        typology: name.to_string(),
        strength: round2(strength.clamp(0.0, 1.0)),
        transactions,
        summary,
    }
}

/// The alert's transactions in time order (stable on ties, so results are deterministic).
pub(crate) fn by_time(alert: &Alert) -> Vec<&Transaction> {
    let mut txs: Vec<&Transaction> = alert.transactions.iter().collect();
    txs.sort_by_key(|t| t.timestamp);
    txs
}

/// The alert's transactions in one direction, in time order.
pub(crate) fn by_time_in(alert: &Alert, direction: Direction) -> Vec<&Transaction> {
    by_time(alert)
        .into_iter()
        .filter(|t| t.direction == direction)
        .collect()
}

/// Whether `later` falls within `days` days after `earlier` (inclusive, never before it).
pub(crate) fn within_days(earlier: DateTime<Utc>, later: DateTime<Utc>, days: i64) -> bool {
    later >= earlier && later - earlier <= TimeDelta::days(days)
}

/// Rounds to two decimals, so points and strengths print and compare cleanly.
pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `1234.5` -> `1,234.50`.
pub(crate) fn money(x: f64) -> String {
    let cents = (x * 100.0).round() as i64;
    let (whole, frac) = (cents.abs() / 100, cents.abs() % 100);
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{grouped}.{frac:02}")
}

/// The currency to print next to sums: the alert's single currency, or `(mixed currencies)`.
pub(crate) fn currency_label(alert: &Alert) -> String {
    let mut it = alert.transactions.iter().map(|t| t.currency.as_str());
    match it.next() {
        Some(first) if it.all(|c| c == first) => first.to_string(),
        Some(_) => "(mixed currencies)".to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn money_groups_thousands() {
        assert_eq!(money(1234.5), "1,234.50");
        assert_eq!(money(999.999), "1,000.00");
        assert_eq!(money(0.0), "0.00");
        assert_eq!(money(12_345_678.9), "12,345,678.90");
    }

    #[test]
    fn habitual_only_alert_scores_below_threshold_and_is_clearable() {
        // Two regular payers and one regular payee, each seen several times.
        let mut txs = Vec::new();
        for week in 0..6 {
            txs.push(tx_in(&format!("A{week}"), week * 7, 500.0, "P1"));
            txs.push(tx_in(&format!("B{week}"), week * 7 + 1, 300.0, "P2"));
            txs.push(tx_out(&format!("C{week}"), week * 7 + 2, 700.0, "R1"));
        }
        let a = alert(txs);
        let f = detect(&a, &JurisdictionTable::empty());
        let factors = transaction_factors(&a, &f);
        let score: f64 = factors.iter().map(|x| x.points).sum();
        assert!(score < CALIBRATION_MEDIUM_THRESHOLD, "{score} {factors:?}");
        assert!(clearance_blockers(&a, &f).is_empty());
        assert!(factors.iter().any(|x| x.name == "habitual_counterparties"));
    }

    #[test]
    fn one_off_flow_reaches_threshold_on_its_own() {
        let mut txs = Vec::new();
        for week in 0..6 {
            txs.push(tx_in(&format!("A{week}"), week * 7, 500.0, "P1"));
        }
        txs.push(tx_out("X", 40, 480.0, "STRANGER"));
        let a = alert(txs);
        let f = detect(&a, &JurisdictionTable::empty());
        let factors = transaction_factors(&a, &f);
        let score: f64 = factors.iter().map(|x| x.points).sum();
        assert!(score >= CALIBRATION_MEDIUM_THRESHOLD + 5.0, "{score}");
        let one_off = factors
            .iter()
            .find(|x| x.name == "one_off_counterparties")
            .unwrap();
        assert!(one_off.evidence.contains(&"tx:X".to_string()));
        assert!(
            one_off
                .evidence
                .contains(&"typ:counterparty_profile".to_string())
        );
    }

    #[test]
    fn blockers_for_empty_mixed_truncated_and_missing_profile() {
        let empty = alert(vec![]);
        assert_eq!(clearance_blockers(&empty, &[]).len(), 1);

        let mut eur = tx_in("E", 1, 100.0, "P1");
        eur.currency = "EUR".into();
        let mixed = alert(vec![tx_in("U", 0, 100.0, "P1"), eur]);
        let f = detect(&mixed, &JurisdictionTable::empty());
        let b = clearance_blockers(&mixed, &f);
        assert!(b.iter().any(|s| s.contains("EUR, USD")), "{b:?}");
        assert!(
            clearance_blockers(&mixed, &[])
                .iter()
                .any(|s| s.contains("no counterparty profile"))
        );

        let mut truncated = alert(vec![tx_in("U", 0, 100.0, "P1"), tx_in("V", 3, 90.0, "P1")]);
        truncated
            .metadata
            .insert("triggering_transactions_truncated".into(), true.into());
        let f = detect(&truncated, &JurisdictionTable::empty());
        assert_eq!(clearance_blockers(&truncated, &f).len(), 1);
    }

    #[test]
    fn linked_party_alerts_are_never_clearable() {
        let mut a = alert(vec![tx_in("1", 0, 100.0, "P"), tx_in("2", 7, 100.0, "P")]);
        let f = detect(&a, &JurisdictionTable::empty());
        assert!(clearance_blockers(&a, &f).is_empty());
        a.rule_id = Some("LINKED_PARTY_90D".into());
        assert_eq!(clearance_blockers(&a, &f).len(), 1);
    }

    #[test]
    fn typologies_ignore_expected_labels() {
        let Some(lines) = dev_lines(40) else {
            eprintln!("skipped: AMLSim dev set not found");
            return;
        };
        let juris = JurisdictionTable::empty();
        for line in lines {
            let wrapped: serde_json::Value = serde_json::from_str(&line).unwrap();
            // The same alert parsed from the wrapper and on its own.
            let bare = Alert::from_value(wrapped["alert"].clone()).unwrap();
            let mut flipped = wrapped.clone();
            let s = flipped["expected"]["suspicious"].as_bool().unwrap();
            flipped["expected"]["suspicious"] = (!s).into();
            let from_wrapper = Alert::from_value(flipped["alert"].clone()).unwrap();
            // Label-like keys planted in metadata, both ways.
            let mut planted = bare.clone();
            for (k, v) in [
                ("suspicious", serde_json::json!(!s)),
                ("is_sar", serde_json::json!(!s)),
                ("typology", serde_json::json!("none")),
                (
                    "expected",
                    serde_json::json!({"suspicious": !s, "typology": "none"}),
                ),
                ("label", serde_json::json!("false_positive")),
                ("prior_sar_count", serde_json::json!(0)),
            ] {
                planted.metadata.insert(k.into(), v);
            }
            let outcome = |a: &Alert| {
                let f = detect(a, &juris);
                let factors = transaction_factors(a, &f);
                (f, factors, clearance_blockers(a, &detect(a, &juris)))
            };
            let base = outcome(&bare);
            assert_eq!(base, outcome(&from_wrapper));
            assert_eq!(base, outcome(&planted));
            // Metadata may only raise risk: without it, score and blockers never grow.
            let mut stripped = bare.clone();
            stripped.metadata.clear();
            let (_, fs, bs) = outcome(&stripped);
            let total = |f: &[Factor]| f.iter().map(|x| x.points).sum::<f64>();
            assert!(total(&fs) <= total(&base.1) + 1e-9);
            assert!(bs.len() <= base.2.len(), "{bs:?} vs {:?}", base.2);
        }
    }
}

#[cfg(test)]
mod bounded_cost_tests {
    use super::test_support::*;
    use super::*;

    /// 10,000 transactions shaped for the pairwise detectors' worst case: every detector
    /// together stays well within a step timeout (linear or bounded, not quadratic).
    #[test]
    fn detectors_are_bounded_on_the_largest_alert() {
        let txs = (0..crate::domain::alert::MAX_TRANSACTIONS)
            .map(|i| {
                let p = format!("P{}", i / 2);
                let mut t = if i % 2 == 0 {
                    tx_out(&format!("T{i}"), 0, 10.0, &p)
                } else {
                    tx_in(&format!("T{i}"), 0, 1000.0, &p)
                };
                t.timestamp += chrono::TimeDelta::seconds(i as i64);
                t
            })
            .collect();
        let a = alert(txs);
        let juris = JurisdictionTable::empty();
        let mut total = std::time::Duration::ZERO;
        type Detector<'a> = (&'a str, Box<dyn Fn() -> usize + 'a>);
        let detectors: Vec<Detector> = vec![
            (
                "profile",
                Box::new(|| counterparty_profile::detect(&a).iter().count()),
            ),
            (
                "structuring",
                Box::new(|| structuring::detect(&a).iter().count()),
            ),
            ("fan_in", Box::new(|| fan_in::detect(&a).iter().count())),
            ("fan_out", Box::new(|| fan_out::detect(&a).iter().count())),
            (
                "pass_through",
                Box::new(|| rapid_pass_through::detect(&a).iter().count()),
            ),
            (
                "round",
                Box::new(|| round_amounts::detect(&a).iter().count()),
            ),
            ("velocity", Box::new(|| velocity::detect(&a).iter().count())),
            (
                "corridor",
                Box::new(|| high_risk_corridor::detect(&a, &juris).iter().count()),
            ),
            ("cycle", Box::new(|| cycle::detect(&a).iter().count())),
        ];
        for (name, d) in &detectors {
            let started = std::time::Instant::now();
            d();
            let took = started.elapsed();
            eprintln!("{name}: {took:?}");
            total += took;
        }
        // Quadratic detectors took ~25 s here (debug build); bounded ones well under 1 s idle.
        assert!(total < std::time::Duration::from_secs(5), "{total:?}");
    }
}

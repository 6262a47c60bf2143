//! Risk scoring and confidence: a 0-100 score as a sum of named factor contributions, each
//! with its evidence, and a confidence derived from the evidence rather than a constant.

use serde::{Deserialize, Serialize};

use crate::domain::alert::{Alert, AlertType, KycRiskRating};
use crate::domain::decision::RiskLevel;
use crate::domain::facts::{EnrichmentFacts, Factor, ListKind, MatchClass};
use crate::domain::policy::Thresholds;
use crate::domain::scorecard::Scorecard;

/// Points for a screening hit by list kind and class. Sanctions confirmed alone reaches the
/// severe band; potential and unverifiable hits land in the medium band so an analyst looks.
fn screening_points(kind: ListKind, class: MatchClass) -> f64 {
    match (kind, class) {
        (ListKind::Sanctions, MatchClass::Confirmed) => 100.0,
        (ListKind::Sanctions, MatchClass::Potential) => 50.0,
        (ListKind::Pep, MatchClass::Confirmed) => 45.0,
        (ListKind::Pep, MatchClass::Potential) => 40.0,
        (_, MatchClass::Unverifiable) => 45.0,
        (_, MatchClass::Discounted) => 0.0,
    }
}

/// Points per jurisdiction status; one country counts once at its worst status.
fn jurisdiction_points(status: &str) -> f64 {
    match status {
        "FATF_CALL_FOR_ACTION" => 30.0,
        "FATF_INCREASED_MONITORING" => 10.0,
        "EU_HIGH_RISK" => 5.0,
        _ => 0.0,
    }
}

/// Cap on the sum of jurisdiction points, so many transactions with one listed country do not
/// swamp the score.
const JURISDICTION_CAP: f64 = 45.0;

/// The RiskScoring agent's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskAssessment {
    /// 0..=100.
    pub score: f64,
    /// Level from the configured thresholds.
    pub level: RiskLevel,
    /// Named contributions, largest first.
    pub factors: Vec<Factor>,
    /// Reasons the alert must not be auto-cleared whatever its score.
    pub clearance_blockers: Vec<String>,
    /// Version of the scorecard that scored the transactions, when one is configured
    /// (`SCORECARD_PATH`); `None` for the rule points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scorecard_version: Option<String>,
    /// The challenger's score beside this one (`SCORECARD_SHADOW_PATH`), journalled with the
    /// step; it never enters the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowScore>,
}

/// A challenger scorecard's score of the same alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowScore {
    /// The challenger's version.
    pub version: String,
    /// Its 0-100 score.
    pub score: f64,
    /// Its level under the same thresholds.
    pub level: RiskLevel,
}

/// Name of the factor that brings the sum of the other factors into 0..=100 when it falls
/// outside: the bounds' contribution, not a finding.
pub const SCORE_BOUND_FACTOR: &str = "score_bound";

/// Scores an alert from its enrichment facts with the rule points (no scorecard).
pub fn assess(alert: &Alert, facts: &EnrichmentFacts, t: &Thresholds) -> RiskAssessment {
    assess_with(alert, facts, t, None)
}

/// Scores an alert; with a scorecard, the transaction findings' rule points are replaced by
/// the scorecard's per-feature contributions (transaction alerts with transactions only).
/// Screening, jurisdiction and KYC points and every clearance blocker stay as they are.
pub fn assess_with(
    alert: &Alert,
    facts: &EnrichmentFacts,
    t: &Thresholds,
    scorecard: Option<&Scorecard>,
) -> RiskAssessment {
    let mut factors = Vec::new();

    // Screening: the strongest hit per list kind counts; weaker ones are listed as evidence.
    for kind in [ListKind::Sanctions, ListKind::Pep] {
        let hits: Vec<_> = facts
            .screening_hits
            .iter()
            .chain(&facts.unverifiable_claims)
            .filter(|h| h.kind == kind)
            .collect();
        let Some(top) = hits
            .iter()
            .max_by(|a, b| {
                screening_points(a.kind, a.class)
                    .total_cmp(&screening_points(b.kind, b.class))
                    .then(a.score.total_cmp(&b.score))
            })
            .copied()
        else {
            continue;
        };
        let name = match (kind, top.class) {
            (ListKind::Sanctions, MatchClass::Discounted) => "sanctions_hits_discounted",
            (ListKind::Pep, MatchClass::Discounted) => "pep_hits_discounted",
            (ListKind::Sanctions, MatchClass::Unverifiable) => "sanctions_hit_unverifiable",
            (ListKind::Pep, MatchClass::Unverifiable) => "pep_hit_unverifiable",
            (ListKind::Sanctions, _) => "sanctions_match",
            (ListKind::Pep, _) => "pep_match",
        };
        factors.push(Factor {
            name: name.to_string(),
            points: screening_points(kind, top.class),
            evidence: hits.iter().map(|h| h.evidence_id.clone()).collect(),
            explanation: format!(
                "{} {:?} hit on {} entry {} ({:.2}); {} candidate(s) reviewed",
                match kind {
                    ListKind::Sanctions => "sanctions",
                    ListKind::Pep => "PEP",
                },
                top.class,
                top.list,
                top.entry_id,
                top.score,
                hits.len()
            ),
        });
    }

    // Jurisdictions: each country once, at its worst status.
    let mut by_country: std::collections::BTreeMap<&str, (f64, Vec<String>, &str)> =
        Default::default();
    for f in &facts.jurisdiction_flags {
        let p = jurisdiction_points(&f.status);
        let e = by_country
            .entry(f.country.as_str())
            .or_insert((0.0, Vec::new(), ""));
        if p > e.0 {
            e.0 = p;
            e.2 = f.status.as_str();
        }
        e.1.push(f.evidence_id.clone());
    }
    let mut juris_total = 0.0;
    for (country, (points, evidence, status)) in by_country {
        let points = points.min(JURISDICTION_CAP - juris_total).max(0.0);
        juris_total += points;
        factors.push(Factor {
            name: "high_risk_jurisdiction".into(),
            points,
            evidence,
            explanation: format!("{country} is on the {status} list"),
        });
    }

    if let Some(rating) = alert.customer.kyc_risk_rating {
        let points = match rating {
            KycRiskRating::High => 15.0,
            KycRiskRating::Medium => 5.0,
            KycRiskRating::Low => 0.0,
        };
        if points > 0.0 {
            factors.push(Factor {
                name: "kyc_risk_rating".into(),
                points,
                evidence: vec!["customer.kyc_risk_rating".into()],
                explanation: format!("customer KYC risk rating is {rating:?}"),
            });
        }
    }

    // Customer history (`facts.history`) is context for the analyst, not a score factor: the
    // engine's own earlier escalations are not findings of suspicion, and counting them would
    // make a decision depend on which alerts happened to be decided first.

    let scorecard = scorecard
        .filter(|_| alert.alert_type == AlertType::Transaction && !alert.transactions.is_empty());
    match scorecard {
        Some(sc) => factors.extend(
            sc.score_with(alert, facts.history.features_for_scoring())
                .factors,
        ),
        None => factors.extend(crate::typologies::transaction_factors(
            alert,
            &facts.typologies,
        )),
    }
    let clearance_blockers = crate::typologies::clearance_blockers(alert, &facts.typologies);

    let raw: f64 = factors.iter().map(|f| f.points).sum();
    let score = raw.clamp(0.0, 100.0);
    // The 0-100 bounds are a contribution of their own, so the factors always sum to the score
    // (to its 0.1 rounding): a decision's reasons never add up to another number.
    if score != raw {
        factors.push(Factor {
            name: SCORE_BOUND_FACTOR.into(),
            points: ((score - raw) * 100.0).round() / 100.0,
            evidence: vec![],
            explanation: format!(
                "the factors sum to {raw:.2}; the score is bounded to 0-100, so {score:.0}"
            ),
        });
    }
    factors.sort_by(|a, b| b.points.total_cmp(&a.points));
    // `+ 0.0` turns the empty sum's -0.0 into 0.0.
    let score = (score * 10.0).round() / 10.0 + 0.0;
    RiskAssessment {
        score,
        level: t.level(score),
        factors,
        clearance_blockers,
        scorecard_version: scorecard.map(|s| s.version.clone()),
        shadow: None,
    }
}

/// Confidence in the disposition the evidence points to, in 0..=1.
///
/// It grows with the margin between the score and the nearest decision threshold (the
/// square root, so a clear margin counts quickly), with data completeness, and with agreement
/// among the screening evidence; any degraded step costs a fixed penalty. An auto-clear needs
/// roughly a third of the medium threshold as margin with complete data.
pub fn confidence(
    assessment: &RiskAssessment,
    facts: &EnrichmentFacts,
    degraded: bool,
    t: &Thresholds,
) -> f64 {
    let s = assessment.score;
    let margin = if s < t.medium_score {
        (t.medium_score - s) / t.medium_score
    } else {
        // Distance to the nearest threshold on either side, in units of 15 points.
        let nearest = [t.medium_score, t.high_score, t.severe_score]
            .into_iter()
            .map(|b| (s - b).abs())
            .fold(f64::INFINITY, f64::min);
        (nearest / 15.0).min(1.0)
    };
    let hard_stop = facts
        .screening_hits
        .iter()
        .any(|h| h.class == MatchClass::Confirmed && h.kind == ListKind::Sanctions);
    let margin = if hard_stop {
        1.0
    } else {
        margin.clamp(0.0, 1.0)
    };
    let ambiguous = facts
        .screening_hits
        .iter()
        .any(|h| h.class == MatchClass::Potential)
        || !facts.unverifiable_claims.is_empty();
    let agreement = if ambiguous { 0.0 } else { 1.0 };
    let completeness = facts.data_completeness.clamp(0.0, 1.0);
    let mut c = 0.55 + 0.30 * margin.sqrt() + 0.10 * completeness + 0.05 * agreement;
    if degraded {
        c -= 0.25;
    }
    (c.clamp(0.05, 0.99) * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::facts::ScreeningHit;
    use crate::domain::scorecard::tests as sc;

    fn alert() -> Alert {
        Alert::from_json(
            r#"{"alert_id":"A","alert_type":"SANCTIONS","priority":"LOW",
            "created_at":"2024-01-01T00:00:00Z",
            "customer":{"customer_id":"C","name":"N","entity_type":"INDIVIDUAL",
            "kyc_risk_rating":"HIGH"}}"#,
        )
        .unwrap()
    }

    fn hit(class: MatchClass, kind: ListKind) -> ScreeningHit {
        ScreeningHit {
            evidence_id: "screen:OFAC_SDN:1".into(),
            list: "OFAC_SDN".into(),
            list_version: None,
            kind,
            entry_id: "1".into(),
            matched_name: "X".into(),
            customer_name: "N".into(),
            name_score: 0.9,
            score: 0.9,
            class,
            claimed_by_source: true,
            explanation: vec![],
            discount_reason: None,
            breakdown: None,
        }
    }

    #[test]
    fn score_is_the_sum_of_named_factors_with_evidence() {
        let facts = EnrichmentFacts {
            screening_hits: vec![hit(MatchClass::Potential, ListKind::Sanctions)],
            data_completeness: 1.0,
            ..Default::default()
        };
        let a = assess(&alert(), &facts, &Thresholds::default());
        assert_eq!(a.score, 65.0);
        assert_eq!(a.level, RiskLevel::Medium);
        assert!(a.factors.iter().all(|f| !f.evidence.is_empty()));
        assert_eq!(a.factors[0].name, "sanctions_match");
    }

    #[test]
    fn confidence_depends_on_margin_completeness_and_degradation() {
        let t = Thresholds::default();
        let facts = EnrichmentFacts {
            data_completeness: 1.0,
            ..Default::default()
        };
        let low = RiskAssessment {
            score: 0.0,
            level: RiskLevel::Low,
            factors: vec![],
            clearance_blockers: vec![],
            scorecard_version: None,
            shadow: None,
        };
        let near = RiskAssessment {
            score: 35.0,
            ..low.clone()
        };
        let c_low = confidence(&low, &facts, false, &t);
        let c_near = confidence(&near, &facts, false, &t);
        assert!(c_low > c_near, "{c_low} <= {c_near}");
        assert!(confidence(&low, &facts, true, &t) < t.auto_clear_confidence);
        let sparse = EnrichmentFacts::default();
        assert!(confidence(&low, &sparse, false, &t) < c_low);
    }

    #[test]
    fn scorecard_contributions_sum_to_the_score() {
        for (i, c1, c2) in [(-2.0, 1.0, 0.5), (0.3, 0.8, -0.2), (1.5, 0.0, 2.0)] {
            let s = sc::sample(i, c1, c2);
            for cp in ["P", "Q"] {
                let scored = s.score(&sc::alert(cp));
                let sum: f64 = scored.factors.iter().map(|f| f.points).sum();
                assert!((sum - scored.raw_score).abs() < 1e-9);
                // The score is the affine image of the log-odds, up to rounding of each factor.
                let want = 24.0 + 8.0 * (scored.logit + 1.0);
                assert!(
                    (scored.raw_score - want).abs() <= 0.005 * scored.factors.len() as f64,
                    "{} vs {want}",
                    scored.raw_score
                );
                assert!(
                    scored
                        .factors
                        .iter()
                        .all(|f| f.evidence.contains(&"scorecard:test-1".to_string()))
                );
            }
        }
        // In the decision: the scorecard's factors, the other factors and, when the sum falls
        // outside 0-100, the bound's own contribution add up to the decision's score; with
        // intercepts that push the sum far below 0 and above 100 as well as inside.
        let t = crate::domain::policy::Thresholds::default();
        let facts = crate::domain::facts::EnrichmentFacts::default();
        let mut bounded = 0;
        for i in [-40.0, -4.0, -1.0, 0.0, 2.0, 9.0, 40.0] {
            let s = sc::sample(i, 1.0, 0.5);
            let a = assess_with(&sc::alert("Q"), &facts, &t, Some(&s));
            let sum: f64 = a.factors.iter().map(|f| f.points).sum();
            assert!((sum - a.score).abs() <= 0.06, "{sum} vs {}", a.score);
            assert!(a.factors.iter().any(|f| f.name == "scorecard_base"));
            bounded += usize::from(a.factors.iter().any(|f| f.name == SCORE_BOUND_FACTOR));
        }
        assert_eq!(bounded, 3, "-40, 9 and 40 push the sum outside 0-100");
        // One-off share 0.5 (P twice? no: P and Q once each = 1.0; P twice = 0/1 = 0.0).
        let s = sc::sample(0.0, 1.0, 1.0);
        assert!(s.score(&sc::alert("Q")).logit > s.score(&sc::alert("P")).logit);
    }
}

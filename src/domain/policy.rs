//! The decision policy: one pure, versioned function from the evidence to a disposition floor.
//!
//! The policy is the safety boundary. Models may raise a disposition above its floor or lower
//! confidence; nothing may lower a disposition below it. The rules, first match wins:
//!
//! | # | condition | disposition |
//! |---|---|---|
//! | 1 | a confirmed sanctions hit | `BLOCK_TRANSACTION` |
//! | 2 | score >= severe threshold | `ESCALATE_SAR` (deadline: detection + 30 days) |
//! | 3 | score >= high threshold | `ESCALATE_L3` |
//! | 4 | a confirmed PEP, a potential or unverifiable screening hit, a clearance blocker, score >= medium threshold, or any degraded step | `ESCALATE_L2` |
//! | 5 | confidence < auto-clear threshold | `ESCALATE_L2` |
//! | 6 | otherwise | `AUTO_CLEAR` |
//!
//! An escalation whose confidence is below `ESCALATE_L2_THRESHOLD` is raised from L2 to L3:
//! the engine is unsure, so a senior investigator looks.

use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};

use super::decision::{Disposition, EscalationPriority, RiskLevel};
use super::facts::{EnrichmentFacts, ListKind, MatchClass};

/// Version of this policy; recorded with every decision and audit entry. `2026.12-1`: screening
/// candidates clear only on a recorded disqualifier, and only a confirmed hit blocks.
pub const POLICY_VERSION: &str = "policy-2026.12-1";

/// Days from detection to the SAR filing deadline.
pub const SAR_FILING_DAYS: u64 = 30;

/// The configured thresholds the policy reads. No other code hard-codes them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// `AUTO_CLEAR_THRESHOLD`: minimum confidence to auto-clear.
    pub auto_clear_confidence: f64,
    /// `ESCALATE_L2_THRESHOLD`: escalations below it go to L3.
    pub escalate_l2_confidence: f64,
    /// `RISK_SCORE_MEDIUM_THRESHOLD`.
    pub medium_score: f64,
    /// `RISK_SCORE_HIGH_THRESHOLD`.
    pub high_score: f64,
    /// `RISK_SCORE_SEVERE_THRESHOLD`.
    pub severe_score: f64,
}

impl Thresholds {
    /// The default thresholds (the configuration's defaults are these).
    pub const DEFAULT: Thresholds = Thresholds {
        auto_clear_confidence: 0.85,
        escalate_l2_confidence: 0.70,
        medium_score: 40.0,
        high_score: 70.0,
        severe_score: 85.0,
    };
}

impl Default for Thresholds {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Thresholds {
    /// Level of a score.
    pub fn level(&self, score: f64) -> RiskLevel {
        if score >= self.severe_score {
            RiskLevel::Severe
        } else if score >= self.high_score {
            RiskLevel::High
        } else if score >= self.medium_score {
            RiskLevel::Medium
        } else {
            RiskLevel::Low
        }
    }
}

/// Screening evidence reduced to what the policy needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreeningSummary {
    /// A sanctions hit classified as confirmed.
    pub confirmed_sanctions: bool,
    /// A PEP hit classified as confirmed.
    pub confirmed_pep: bool,
    /// A hit classified as potential (either kind).
    pub potential: bool,
    /// A claimed hit that could not be verified.
    pub unverifiable: bool,
}

impl ScreeningSummary {
    /// Summarises the enrichment facts.
    pub fn of(facts: &EnrichmentFacts) -> Self {
        let mut s = Self::default();
        for h in facts
            .screening_hits
            .iter()
            .chain(&facts.unverifiable_claims)
        {
            match (h.class, h.kind) {
                (MatchClass::Confirmed, ListKind::Sanctions) => s.confirmed_sanctions = true,
                (MatchClass::Confirmed, ListKind::Pep) => s.confirmed_pep = true,
                (MatchClass::Potential, _) => s.potential = true,
                (MatchClass::Unverifiable, _) => s.unverifiable = true,
                (MatchClass::Discounted, _) => {}
            }
        }
        s
    }
}

/// Everything the policy decides on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyInput {
    /// Risk score 0..=100.
    pub score: f64,
    /// Screening evidence.
    pub screening: ScreeningSummary,
    /// Reasons the alert must not be auto-cleared whatever its score.
    pub clearance_blockers: Vec<String>,
    /// Confidence derived from the evidence.
    pub confidence: f64,
    /// Steps that fell back or failed.
    pub degraded_steps: Vec<String>,
    /// Source priority was HIGH or CRITICAL.
    pub source_priority_high: bool,
    /// Detection date (the alert's creation date), for the SAR deadline.
    pub detected_on: NaiveDate,
}

/// The policy's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyOutcome {
    /// The floor: nothing may decide below it.
    pub disposition: Disposition,
    /// Level of the score.
    pub level: RiskLevel,
    /// Which rule fired, in words.
    pub reasons: Vec<String>,
    /// Whether a human must review.
    pub requires_human_review: bool,
    /// How urgently.
    pub escalation_priority: EscalationPriority,
    /// SAR deadline when a SAR is recommended.
    pub sar_filing_deadline: Option<NaiveDate>,
    /// What to do next.
    pub recommended_actions: Vec<String>,
    /// The policy version.
    pub policy_version: String,
}

/// Whether `confidence` reaches `threshold`. A NaN confidence reaches nothing, so a broken
/// computation can only escalate.
pub fn reaches(confidence: f64, threshold: f64) -> bool {
    confidence >= threshold
}

/// Applies the policy. Pure: the same input always gives the same outcome.
pub fn decide(input: &PolicyInput, t: &Thresholds) -> PolicyOutcome {
    let level = t.level(input.score);
    let mut reasons = Vec::new();
    let s = &input.screening;
    let disposition = if s.confirmed_sanctions {
        reasons.push("confirmed sanctions hit (hard stop)".to_string());
        Disposition::BlockTransaction
    } else if input.score >= t.severe_score {
        reasons.push(format!(
            "risk score {:.1} >= severe threshold {}",
            input.score, t.severe_score
        ));
        Disposition::EscalateSar
    } else if input.score >= t.high_score {
        reasons.push(format!(
            "risk score {:.1} >= high threshold {} (hard stop)",
            input.score, t.high_score
        ));
        Disposition::EscalateL3
    } else {
        if s.confirmed_pep {
            reasons.push("confirmed politically exposed person (hard stop)".to_string());
        }
        if s.potential {
            reasons.push("potential screening match needs an analyst".to_string());
        }
        if s.unverifiable {
            reasons.push("screening hit could not be verified against a loaded list".to_string());
        }
        for b in &input.clearance_blockers {
            reasons.push(format!("clearance blocked: {b}"));
        }
        if input.score >= t.medium_score {
            reasons.push(format!(
                "risk score {:.1} >= medium threshold {}",
                input.score, t.medium_score
            ));
        }
        for step in &input.degraded_steps {
            reasons.push(format!("step {step} degraded: cannot auto-clear"));
        }
        if !reasons.is_empty() {
            Disposition::EscalateL2
        } else if !reaches(input.confidence, t.auto_clear_confidence) {
            reasons.push(format!(
                "confidence {:.2} below auto-clear threshold {}",
                input.confidence, t.auto_clear_confidence
            ));
            Disposition::EscalateL2
        } else {
            reasons.push(format!(
                "risk score {:.1} below medium threshold {} with confidence {:.2}",
                input.score, t.medium_score, input.confidence
            ));
            Disposition::AutoClear
        }
    };
    let disposition = if disposition == Disposition::EscalateL2
        && !reaches(input.confidence, t.escalate_l2_confidence)
    {
        reasons.push(format!(
            "confidence {:.2} below {}: senior review",
            input.confidence, t.escalate_l2_confidence
        ));
        Disposition::EscalateL3
    } else {
        disposition
    };
    let sar_filing_deadline = (disposition == Disposition::EscalateSar)
        .then(|| {
            input
                .detected_on
                .checked_add_days(Days::new(SAR_FILING_DAYS))
        })
        .flatten();
    PolicyOutcome {
        disposition,
        level,
        reasons,
        requires_human_review: disposition != Disposition::AutoClear,
        escalation_priority: escalation_priority(disposition, input.source_priority_high),
        sar_filing_deadline,
        recommended_actions: recommended_actions(disposition, s, sar_filing_deadline),
        policy_version: POLICY_VERSION.to_string(),
    }
}

/// Bounds a proposed disposition by the policy floor: the result is never less severe than
/// the floor, and AUTO_CLEAR survives only when the floor allows it and the proposer agrees
/// with enough confidence.
pub fn bound(
    floor: Disposition,
    proposed: Disposition,
    proposed_confidence: f64,
    t: &Thresholds,
) -> Disposition {
    if floor == Disposition::AutoClear
        && proposed == Disposition::AutoClear
        && !reaches(proposed_confidence, t.auto_clear_confidence)
    {
        return Disposition::EscalateL2;
    }
    floor.max(proposed)
}

/// Escalation priority of a disposition.
pub fn escalation_priority(d: Disposition, source_high: bool) -> EscalationPriority {
    match d {
        Disposition::AutoClear => EscalationPriority::None,
        Disposition::EscalateL2 if source_high => EscalationPriority::High,
        Disposition::EscalateL2 => EscalationPriority::Medium,
        Disposition::EscalateL3 => EscalationPriority::High,
        Disposition::EscalateSar | Disposition::BlockTransaction => EscalationPriority::Urgent,
    }
}

/// Recommended next actions for a disposition.
pub fn recommended_actions(
    d: Disposition,
    s: &ScreeningSummary,
    deadline: Option<NaiveDate>,
) -> Vec<String> {
    let mut a = Vec::new();
    match d {
        Disposition::AutoClear => {
            a.push("Close the alert as a false positive; keep the rationale on file".into())
        }
        Disposition::EscalateL2 => {
            a.push("Analyst review of the cited evidence within the L2 service level".into())
        }
        Disposition::EscalateL3 => {
            a.push("Senior investigator review; consider enhanced due diligence".into())
        }
        Disposition::EscalateSar => {
            a.push("Open a SAR case and gather supporting documentation".into());
            if let Some(date) = deadline {
                a.push(format!("File the SAR no later than {date}"));
            }
        }
        Disposition::BlockTransaction => {
            a.push("Block or reject the transaction and freeze related funds".into());
            a.push("Report the blocked property to the sanctions authority (OFAC: within 10 business days)".into());
        }
    }
    if s.confirmed_pep {
        a.push("Enhanced due diligence: verify source of wealth and source of funds; senior management approval".into());
    }
    if s.potential || s.unverifiable {
        a.push("Verify the screening hit against the official list entry (date of birth, nationality, identifiers)".into());
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(score: f64, confidence: f64) -> PolicyInput {
        PolicyInput {
            score,
            screening: ScreeningSummary::default(),
            clearance_blockers: vec![],
            confidence,
            degraded_steps: vec![],
            source_priority_high: false,
            detected_on: NaiveDate::from_ymd_opt(2026, 1, 10).unwrap(),
        }
    }

    /// The policy table: each row is an input and the disposition it must give.
    #[test]
    fn policy_table() {
        let t = Thresholds::default();
        let sanctions = ScreeningSummary {
            confirmed_sanctions: true,
            ..Default::default()
        };
        let pep = ScreeningSummary {
            confirmed_pep: true,
            ..Default::default()
        };
        let potential = ScreeningSummary {
            potential: true,
            ..Default::default()
        };
        let unverifiable = ScreeningSummary {
            unverifiable: true,
            ..Default::default()
        };
        type Row = (&'static str, PolicyInput, Disposition);
        let rows: Vec<Row> = vec![
            ("clean, confident", input(5.0, 0.95), Disposition::AutoClear),
            ("clean, unsure", input(5.0, 0.80), Disposition::EscalateL2),
            (
                "clean, very unsure",
                input(5.0, 0.50),
                Disposition::EscalateL3,
            ),
            ("medium score", input(40.0, 0.95), Disposition::EscalateL2),
            (
                "just under medium",
                input(39.9, 0.95),
                Disposition::AutoClear,
            ),
            ("high score", input(70.0, 0.99), Disposition::EscalateL3),
            ("severe score", input(85.0, 0.99), Disposition::EscalateSar),
            (
                "sanctions beats score",
                PolicyInput {
                    screening: sanctions,
                    ..input(0.0, 0.99)
                },
                Disposition::BlockTransaction,
            ),
            (
                "pep never clears",
                PolicyInput {
                    screening: pep,
                    ..input(0.0, 0.99)
                },
                Disposition::EscalateL2,
            ),
            (
                "potential hit",
                PolicyInput {
                    screening: potential,
                    ..input(0.0, 0.99)
                },
                Disposition::EscalateL2,
            ),
            (
                "unverifiable hit",
                PolicyInput {
                    screening: unverifiable,
                    ..input(0.0, 0.99)
                },
                Disposition::EscalateL2,
            ),
            (
                "blocker",
                PolicyInput {
                    clearance_blockers: vec!["cycle".into()],
                    ..input(0.0, 0.99)
                },
                Disposition::EscalateL2,
            ),
            (
                "degraded step",
                PolicyInput {
                    degraded_steps: vec!["decision_maker".into()],
                    ..input(0.0, 0.99)
                },
                Disposition::EscalateL2,
            ),
            (
                "NaN confidence",
                input(0.0, f64::NAN),
                Disposition::EscalateL3,
            ),
        ];
        for (name, row, want) in rows {
            let got = decide(&row, &t);
            assert_eq!(got.disposition, want, "row {name:?}: {:?}", got.reasons);
            assert_eq!(
                got.requires_human_review,
                want != Disposition::AutoClear,
                "row {name:?}"
            );
            assert!(!got.reasons.is_empty(), "row {name:?} gives no reason");
        }
    }

    #[test]
    fn sar_deadline_is_thirty_days_from_detection() {
        let got = decide(&input(90.0, 0.9), &Thresholds::default());
        assert_eq!(got.sar_filing_deadline, NaiveDate::from_ymd_opt(2026, 2, 9));
    }

    #[test]
    fn bound_never_lowers_the_floor() {
        let t = Thresholds::default();
        for floor in Disposition::ALL {
            for proposed in Disposition::ALL {
                let got = bound(floor, proposed, 0.99, &t);
                assert!(got >= floor, "{floor} lowered to {got} by {proposed}");
            }
        }
        assert_eq!(
            bound(Disposition::AutoClear, Disposition::AutoClear, 0.5, &t),
            Disposition::EscalateL2
        );
    }

    #[test]
    fn thresholds_come_from_configuration() {
        let t = Thresholds {
            medium_score: 20.0,
            ..Thresholds::default()
        };
        assert_eq!(
            decide(&input(25.0, 0.99), &t).disposition,
            Disposition::EscalateL2
        );
    }
}

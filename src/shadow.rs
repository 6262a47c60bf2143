//! Champion/challenger comparison for `aml-triage eval --shadow FILE`: the engine decides with
//! the champion (the configuration in force); the challenger scorecard only scores the same
//! labelled alerts beside it, through the same deterministic scoring, confidence and policy
//! functions, and the two are compared. The challenger's results are a report, never a
//! disposition: this module reads the champion's decisions and returns numbers.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::alert::{Alert, AlertType};
use crate::domain::decision::Disposition;
use crate::domain::policy::Thresholds;
use crate::domain::scorecard::Scorecard;
use crate::evaluation::{Expected, Labelled, average_precision};
use crate::jurisdiction::JurisdictionTable;
use crate::model::{Row, would_clear};

/// One alert as the champion decided it, with its label.
#[derive(Debug, Clone)]
pub struct ChampionRow {
    /// The alert.
    pub alert: Alert,
    /// The label.
    pub expected: Expected,
    /// The champion's disposition.
    pub disposition: Disposition,
    /// The champion's score.
    pub risk_score: f64,
    /// The customer's history from the customer-data API, when configured (the challenger's
    /// `hist_*` features read it, as the engine's would).
    pub history: Option<Vec<crate::domain::alert::Transaction>>,
}

/// The metrics of one side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    /// What scored: the champion's config version or the challenger's scorecard version.
    pub name: String,
    /// Average precision of the score.
    pub pr_auc: f64,
    /// Positives auto-cleared.
    pub missed_positives: usize,
    /// Share of negatives auto-cleared.
    pub clear_rate: f64,
    /// Share of negatives scoring below the lowest-scoring positive (score alone).
    pub clear_rate_at_0_misses: f64,
    /// Share of negatives below the score that misses at most 1% of positives.
    pub clear_rate_at_1pct_misses: f64,
    /// Per typology: positives and how many were auto-cleared.
    pub per_typology: BTreeMap<String, (usize, usize)>,
}

/// The comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The champion (what decided).
    pub champion: Side,
    /// The challenger (what would have).
    pub challenger: Side,
    /// Alerts whose clear/escalate outcome would differ under the challenger.
    pub outcomes_differing: usize,
}

fn side(name: String, rows: &[ChampionRow], scored: &[(bool, f64)]) -> Side {
    let labelled: Vec<Labelled> = rows
        .iter()
        .zip(scored)
        .map(|(r, &(_, s))| Labelled {
            alert_id: r.alert.alert_id.clone(),
            disposition: Disposition::EscalateL2,
            risk_score: s,
            expected: r.expected.clone(),
        })
        .collect();
    let neg = rows
        .iter()
        .filter(|r| !r.expected.suspicious)
        .count()
        .max(1) as f64;
    let mut pos_scores: Vec<f64> = rows
        .iter()
        .zip(scored)
        .filter(|(r, _)| r.expected.suspicious)
        .map(|(_, s)| s.1)
        .collect();
    pos_scores.sort_by(f64::total_cmp);
    let below = |th: f64| {
        rows.iter()
            .zip(scored)
            .filter(|(r, s)| !r.expected.suspicious && s.1 < th)
            .count() as f64
            / neg
    };
    let th0 = pos_scores.first().copied().unwrap_or(f64::INFINITY);
    let th1 = pos_scores
        .get(pos_scores.len() / 100)
        .copied()
        .unwrap_or(f64::INFINITY);
    let mut per_typology: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (r, s) in rows
        .iter()
        .zip(scored)
        .filter(|(r, _)| r.expected.suspicious)
    {
        let name = r
            .expected
            .typology
            .clone()
            .unwrap_or_else(|| "unknown".into());
        let e = per_typology.entry(name).or_default();
        e.0 += 1;
        e.1 += usize::from(s.0);
    }
    Side {
        name,
        pr_auc: average_precision(&labelled),
        missed_positives: rows
            .iter()
            .zip(scored)
            .filter(|(r, s)| r.expected.suspicious && s.0)
            .count(),
        clear_rate: rows
            .iter()
            .zip(scored)
            .filter(|(r, s)| !r.expected.suspicious && s.0)
            .count() as f64
            / neg,
        clear_rate_at_0_misses: below(th0),
        clear_rate_at_1pct_misses: below(th1),
        per_typology,
    }
}

/// Scores `rows` with the challenger beside the champion's decisions. Transaction alerts are
/// scored by the challenger; other alerts keep the champion's outcome (a scorecard does not
/// score them).
pub fn compare(
    champion_name: &str,
    rows: &[ChampionRow],
    challenger: &Scorecard,
    juris: &JurisdictionTable,
    t: &Thresholds,
) -> Comparison {
    let champion: Vec<(bool, f64)> = rows
        .iter()
        .map(|r| (r.disposition == Disposition::AutoClear, r.risk_score))
        .collect();
    let challenged: Vec<(bool, f64)> = rows
        .iter()
        .zip(&champion)
        .map(|(r, &c)| {
            if r.alert.alert_type == AlertType::Transaction && !r.alert.transactions.is_empty() {
                let row = Row::with_history(
                    r.alert.clone(),
                    r.expected.suspicious,
                    String::new(),
                    juris,
                    r.history.as_deref(),
                );
                would_clear(&row, Some(challenger), t)
            } else {
                c
            }
        })
        .collect();
    let outcomes_differing = champion
        .iter()
        .zip(&challenged)
        .filter(|(a, b)| a.0 != b.0)
        .count();
    Comparison {
        champion: side(champion_name.into(), rows, &champion),
        challenger: side(challenger.version.clone(), rows, &challenged),
        outcomes_differing,
    }
}

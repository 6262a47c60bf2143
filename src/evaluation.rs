//! Evaluation against labelled alerts (`*.eval.jsonl`): how many false positives the engine
//! clears and whether it ever clears a true one. The engine never sees the labels while
//! deciding; they are joined to the decisions afterwards, here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::decision::Disposition;

/// The label of one evaluation line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    /// Whether the alert is a true positive.
    pub suspicious: bool,
    /// Typology name, `none` for negatives.
    #[serde(default)]
    pub typology: Option<String>,
    /// Where the label came from.
    #[serde(default)]
    pub source: Option<String>,
}

/// One decided alert with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    /// The alert id.
    pub alert_id: String,
    /// The engine's disposition.
    pub disposition: Disposition,
    /// The engine's risk score.
    pub risk_score: f64,
    /// The label.
    pub expected: Expected,
}

/// Per-typology recall among positives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypologyRecall {
    /// Positives of this typology.
    pub positives: usize,
    /// Of those, escalated (anything but AUTO_CLEAR).
    pub escalated: usize,
    /// escalated / positives.
    pub recall: f64,
}

/// How many negatives of one typology (a namesake class, say) were cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypologyClearance {
    /// Negatives of this typology.
    pub negatives: usize,
    /// Of those, auto-cleared.
    pub cleared: usize,
    /// cleared / negatives.
    pub clear_rate: f64,
}

/// The evaluation report. Its JSON form is the `--json` output of `aml-triage eval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Alerts evaluated.
    pub alerts: usize,
    /// Suspicious alerts.
    pub positives: usize,
    /// Non-suspicious alerts.
    pub negatives: usize,
    /// Suspicious alerts that were auto-cleared: the number that must be zero.
    pub missed_positives: usize,
    /// Their ids.
    pub missed_positive_ids: Vec<String>,
    /// Share of negatives auto-cleared.
    pub auto_clear_rate_negatives: f64,
    /// Share of positives escalated.
    pub escalation_recall: f64,
    /// Area under the precision-recall curve of the risk score (average precision).
    pub pr_auc: f64,
    /// Dispositions of positives.
    pub positives_by_disposition: BTreeMap<String, usize>,
    /// Dispositions of negatives.
    pub negatives_by_disposition: BTreeMap<String, usize>,
    /// Recall per typology.
    pub per_typology: BTreeMap<String, TypologyRecall>,
    /// Clear rate per typology among negatives (those labelled with a typology other than
    /// `none`).
    #[serde(default)]
    pub negatives_per_typology: BTreeMap<String, TypologyClearance>,
}

/// Builds the report.
pub fn report(rows: &[Labelled]) -> Report {
    let positives: Vec<&Labelled> = rows.iter().filter(|r| r.expected.suspicious).collect();
    let negatives: Vec<&Labelled> = rows.iter().filter(|r| !r.expected.suspicious).collect();
    let missed: Vec<String> = positives
        .iter()
        .filter(|r| r.disposition == Disposition::AutoClear)
        .map(|r| r.alert_id.clone())
        .collect();
    let cleared_negatives = negatives
        .iter()
        .filter(|r| r.disposition == Disposition::AutoClear)
        .count();
    let by = |set: &[&Labelled]| {
        let mut m: BTreeMap<String, usize> = Disposition::ALL
            .iter()
            .map(|d| (d.as_str().to_string(), 0))
            .collect();
        for r in set {
            *m.entry(r.disposition.as_str().to_string()).or_default() += 1;
        }
        m
    };
    let mut per_typology: BTreeMap<String, TypologyRecall> = BTreeMap::new();
    for r in &positives {
        let name = r
            .expected
            .typology
            .clone()
            .unwrap_or_else(|| "unknown".into());
        let e = per_typology.entry(name).or_insert(TypologyRecall {
            positives: 0,
            escalated: 0,
            recall: 0.0,
        });
        e.positives += 1;
        if r.disposition != Disposition::AutoClear {
            e.escalated += 1;
        }
    }
    for e in per_typology.values_mut() {
        e.recall = ratio(e.escalated, e.positives);
    }
    let mut negatives_per_typology: BTreeMap<String, TypologyClearance> = BTreeMap::new();
    for r in &negatives {
        let Some(name) = r.expected.typology.clone().filter(|t| t != "none") else {
            continue;
        };
        let e = negatives_per_typology
            .entry(name)
            .or_insert(TypologyClearance {
                negatives: 0,
                cleared: 0,
                clear_rate: 0.0,
            });
        e.negatives += 1;
        if r.disposition == Disposition::AutoClear {
            e.cleared += 1;
        }
    }
    for e in negatives_per_typology.values_mut() {
        e.clear_rate = ratio(e.cleared, e.negatives);
    }
    Report {
        alerts: rows.len(),
        positives: positives.len(),
        negatives: negatives.len(),
        missed_positives: missed.len(),
        missed_positive_ids: missed,
        auto_clear_rate_negatives: ratio(cleared_negatives, negatives.len()),
        escalation_recall: ratio(positives.len() - per_missing(&positives), positives.len()),
        pr_auc: average_precision(rows),
        positives_by_disposition: by(&positives),
        negatives_by_disposition: by(&negatives),
        per_typology,
        negatives_per_typology,
    }
}

fn per_missing(positives: &[&Labelled]) -> usize {
    positives
        .iter()
        .filter(|r| r.disposition == Disposition::AutoClear)
        .count()
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Average precision of the risk score: the area under the precision-recall curve, with tied
/// scores taken as one threshold (no credit for an arbitrary order among ties).
pub fn average_precision(rows: &[Labelled]) -> f64 {
    let total_pos = rows.iter().filter(|r| r.expected.suspicious).count();
    if total_pos == 0 {
        return 0.0;
    }
    let mut sorted: Vec<&Labelled> = rows.iter().collect();
    sorted.sort_by(|a, b| b.risk_score.total_cmp(&a.risk_score));
    let (mut tp, mut seen, mut ap, mut prev_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < sorted.len() {
        let score = sorted[i].risk_score;
        while i < sorted.len() && sorted[i].risk_score == score {
            seen += 1;
            tp += usize::from(sorted[i].expected.suspicious);
            i += 1;
        }
        let recall = tp as f64 / total_pos as f64;
        let precision = tp as f64 / seen as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    ap
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, d: Disposition, score: f64, suspicious: bool) -> Labelled {
        Labelled {
            alert_id: id.into(),
            disposition: d,
            risk_score: score,
            expected: Expected {
                suspicious,
                typology: Some(if suspicious { "fan_in" } else { "none" }.into()),
                source: None,
            },
        }
    }

    #[test]
    fn counts_missed_positives_and_clear_rate() {
        let rows = vec![
            row("p1", Disposition::EscalateL2, 80.0, true),
            row("p2", Disposition::AutoClear, 10.0, true),
            row("n1", Disposition::AutoClear, 5.0, false),
            row("n2", Disposition::EscalateL2, 50.0, false),
        ];
        let r = report(&rows);
        assert_eq!(r.missed_positives, 1);
        assert_eq!(r.missed_positive_ids, vec!["p2"]);
        assert_eq!(r.auto_clear_rate_negatives, 0.5);
        assert_eq!(r.per_typology["fan_in"].recall, 0.5);
    }

    #[test]
    fn perfect_ranking_has_average_precision_one_and_ties_get_no_credit() {
        let rows = vec![
            row("p", Disposition::EscalateL2, 90.0, true),
            row("n", Disposition::AutoClear, 10.0, false),
        ];
        assert_eq!(average_precision(&rows), 1.0);
        let tied = vec![
            row("p", Disposition::EscalateL2, 50.0, true),
            row("n", Disposition::AutoClear, 50.0, false),
        ];
        assert_eq!(average_precision(&tied), 0.5);
    }
}

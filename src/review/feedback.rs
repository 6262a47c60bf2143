//! Feedback without drift: analyst outcomes read back as labels, and how the engine's
//! decisions compare with them (`aml-triage eval --from-store`). Nothing here changes a
//! threshold or the policy: a change stays a configuration change with its version in every
//! decision.
//!
//! Labels come from two places, and the report says which:
//! * **cases** (every escalated decision): `true_positive_sar`, `true_positive_no_sar` and a
//!   filed SAR are suspicious, `false_positive` is not, `inconclusive` and unfinished cases
//!   give no label;
//! * **QA samples** (a stratified sample of auto-clears, judged blind): `miss` is suspicious,
//!   `ok` is not.
//!
//! Precision of escalation is exact over closed cases. Recall is an estimate: auto-clears are
//! labelled only where QA sampled them, so misses among unsampled clears are not counted
//! (the QA report's Clopper-Pearson bound is the statement about those).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::review::case::{CaseState, Outcome};
use crate::store::Store;
use crate::store::review::CaseFilter;

/// One alert with an analyst label and the engine's decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelledDecision {
    /// The alert.
    pub alert_id: String,
    /// The analyst's label.
    pub suspicious: bool,
    /// `case` or `qa`.
    pub source: &'static str,
    /// The engine's disposition.
    pub disposition: String,
    /// The monitoring rule that raised the alert (`rule_id`), or `none`.
    pub rule: String,
    /// The alert type.
    pub alert_type: String,
    /// The decision's largest score factor (its main typology or finding), or `none`.
    pub typology: String,
}

/// Counts for one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupCounts {
    /// Labelled alerts.
    pub labelled: usize,
    /// Of those, suspicious.
    pub suspicious: usize,
    /// Escalated (anything but AUTO_CLEAR).
    pub escalated: usize,
    /// Escalated and suspicious.
    pub escalated_suspicious: usize,
    /// escalated_suspicious / escalated (None without escalations).
    pub precision: Option<f64>,
    /// escalated_suspicious / suspicious (None without suspicious labels).
    pub recall: Option<f64>,
}

/// The feedback report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FeedbackReport {
    /// Labels from closed cases.
    pub from_cases: usize,
    /// Labels from QA verdicts.
    pub from_qa: usize,
    /// Cases without a label yet (open, in review, inconclusive).
    pub unlabelled_cases: usize,
    /// All labelled alerts.
    pub overall: GroupCounts,
    /// Per monitoring rule.
    pub per_rule: BTreeMap<String, GroupCounts>,
    /// Per main typology (largest factor of the decision).
    pub per_typology: BTreeMap<String, GroupCounts>,
    /// Per alert type.
    pub per_alert_type: BTreeMap<String, GroupCounts>,
}

/// The label a case's state gives, if any.
pub fn case_label(state: &CaseState) -> Option<bool> {
    match state {
        CaseState::Closed { outcome } => match outcome {
            Outcome::TruePositiveSar | Outcome::TruePositiveNoSar => Some(true),
            Outcome::FalsePositive => Some(false),
            Outcome::Inconclusive => None,
        },
        CaseState::SarFiled => Some(true),
        _ => None,
    }
}

/// Builds the report from labelled decisions. Pure.
pub fn report(rows: &[LabelledDecision], unlabelled_cases: usize) -> FeedbackReport {
    fn add(g: &mut GroupCounts, r: &LabelledDecision) {
        let escalated = r.disposition != "AUTO_CLEAR";
        g.labelled += 1;
        g.suspicious += usize::from(r.suspicious);
        g.escalated += usize::from(escalated);
        g.escalated_suspicious += usize::from(escalated && r.suspicious);
    }
    fn finish(g: &mut GroupCounts) {
        g.precision = (g.escalated > 0).then(|| g.escalated_suspicious as f64 / g.escalated as f64);
        g.recall = (g.suspicious > 0).then(|| g.escalated_suspicious as f64 / g.suspicious as f64);
    }
    let mut out = FeedbackReport {
        unlabelled_cases,
        ..FeedbackReport::default()
    };
    for r in rows {
        match r.source {
            "qa" => out.from_qa += 1,
            _ => out.from_cases += 1,
        }
        add(&mut out.overall, r);
        add(out.per_rule.entry(r.rule.clone()).or_default(), r);
        add(out.per_typology.entry(r.typology.clone()).or_default(), r);
        add(
            out.per_alert_type.entry(r.alert_type.clone()).or_default(),
            r,
        );
    }
    finish(&mut out.overall);
    for g in out
        .per_rule
        .values_mut()
        .chain(out.per_typology.values_mut())
        .chain(out.per_alert_type.values_mut())
    {
        finish(g);
    }
    out
}

/// Why the labels could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// This store keeps no review data (the in-memory store).
    #[error("this store keeps no review data: use a PostgreSQL or SQLite DATABASE_URL")]
    NoReview,
}

/// Reads every label from the store and joins each to its decision and alert.
pub async fn collect(store: &Store) -> Result<(Vec<LabelledDecision>, usize), FeedbackError> {
    if !store.supports_review() {
        return Err(FeedbackError::NoReview);
    }
    let mut labels: Vec<(String, bool, &'static str)> = Vec::new();
    let mut unlabelled = 0usize;
    let cases = store
        .cases(&CaseFilter {
            limit: Some(1000),
            ..CaseFilter::default()
        })
        .await?;
    for c in &cases {
        match case_label(&c.state) {
            Some(s) => labels.push((c.alert_id.clone(), s, "case")),
            None => unlabelled += 1,
        }
    }
    for s in store.qa_samples(None).await? {
        if let Some(v) = s.verdict.as_deref() {
            labels.push((s.alert_id.clone(), v == "miss", "qa"));
        }
    }
    let mut rows = Vec::new();
    for (alert_id, suspicious, source) in labels {
        let Some(decision) = store.decision(&alert_id).await? else {
            continue;
        };
        let alert = store.alert(&alert_id).await?;
        let rule = alert
            .as_ref()
            .and_then(|a| serde_json::from_str::<serde_json::Value>(&a.raw_json).ok())
            .and_then(|v| v.get("rule_id")?.as_str().map(str::to_string))
            .unwrap_or_else(|| "none".into());
        let typology = main_factor(&decision);
        rows.push(LabelledDecision {
            alert_id,
            suspicious,
            source,
            disposition: decision["disposition"].as_str().unwrap_or("").to_string(),
            rule,
            alert_type: alert.map(|a| a.alert_type).unwrap_or_default(),
            typology,
        });
    }
    Ok((rows, unlabelled))
}

/// The main typology of a stored decision: its largest positive factor, or `none`.
fn main_factor(decision: &serde_json::Value) -> String {
    decision["factors"]
        .as_array()
        .and_then(|fs| {
            fs.iter()
                .filter(|f| f["points"].as_f64().unwrap_or(0.0) > 0.0)
                .filter(|f| f["name"] != crate::assessment::scoring::SCORE_BOUND_FACTOR)
                .max_by(|a, b| {
                    let p = |x: &serde_json::Value| x["points"].as_f64().unwrap_or(0.0);
                    p(a).total_cmp(&p(b))
                })
                .and_then(|f| f["name"].as_str().map(str::to_string))
        })
        .unwrap_or_else(|| "none".into())
}

/// One analyst outcome usable as a training label: the alert as it was received, joined to
/// the engine's stored decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainingOutcome {
    /// The alert.
    pub alert_id: String,
    /// The alert's JSON as received.
    pub alert_json: String,
    /// `true_positive_*` or a filed SAR: suspicious; `false_positive`: not.
    pub suspicious: bool,
    /// The case outcome (`true_positive_sar`, `true_positive_no_sar`, `false_positive`).
    pub outcome: String,
    /// The decision's main factor (largest positive one), for per-typology figures.
    pub typology: String,
}

/// The analyst outcomes of the transaction alerts' cases, for `model fit --from-store`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrainingOutcomes {
    /// Labelled outcomes joined to their alert and decision, ordered by alert id.
    pub outcomes: Vec<TrainingOutcome>,
    /// Of those, suspicious.
    pub positives: usize,
    /// Of those, not suspicious.
    pub negatives: usize,
    /// Closed cases with the `inconclusive` outcome (no label, left out).
    pub inconclusive: usize,
    /// Labelled cases whose alert or decision is not in the store (left out).
    pub missing: usize,
    /// Whether a case listing hit the store's 1000-row page (some outcomes may be missing).
    pub capped: bool,
}

/// The case list's largest page ([`CaseFilter::limit`]).
const CASE_PAGE: usize = 1000;

/// Reads the closed and SAR-filed cases of transaction alerts (the labelled analyst
/// outcomes), each joined to its stored alert and decision. Open, in-review and reopened
/// cases give no label; `inconclusive` closes are counted and left out. QA verdicts are not
/// used: they judge auto-clears blind, a different population from the escalated alerts the
/// cases hold.
pub async fn training_outcomes(store: &Store) -> Result<TrainingOutcomes, FeedbackError> {
    if !store.supports_review() {
        return Err(FeedbackError::NoReview);
    }
    let mut out = TrainingOutcomes::default();
    let mut cases = Vec::new();
    for state in ["closed", "sar_filed"] {
        let filter = |priority: Option<&str>| CaseFilter {
            state: Some(state.into()),
            alert_type: Some("TRANSACTION".into()),
            priority: priority.map(str::to_string),
            limit: Some(CASE_PAGE as i64),
            ..CaseFilter::default()
        };
        let all = store.cases(&filter(None)).await?;
        if all.len() < CASE_PAGE {
            cases.extend(all);
            continue;
        }
        // A full page: read again per priority, each with a page of its own.
        for p in ["CRITICAL", "HIGH", "MEDIUM", "LOW"] {
            let part = store.cases(&filter(Some(p))).await?;
            out.capped |= part.len() >= CASE_PAGE;
            cases.extend(part);
        }
    }
    cases.sort_by(|a, b| a.alert_id.cmp(&b.alert_id).then(a.case_id.cmp(&b.case_id)));
    cases.dedup_by(|a, b| a.alert_id == b.alert_id);
    for c in cases {
        let outcome = match &c.state {
            CaseState::Closed { outcome } => outcome.as_str().to_string(),
            CaseState::SarFiled => Outcome::TruePositiveSar.as_str().to_string(),
            _ => continue,
        };
        let Some(suspicious) = case_label(&c.state) else {
            out.inconclusive += 1;
            continue;
        };
        let (Some(decision), Some(alert)) = (
            store.decision(&c.alert_id).await?,
            store.alert(&c.alert_id).await?,
        ) else {
            out.missing += 1;
            continue;
        };
        out.positives += usize::from(suspicious);
        out.negatives += usize::from(!suspicious);
        out.outcomes.push(TrainingOutcome {
            alert_id: c.alert_id.clone(),
            alert_json: alert.raw_json,
            suspicious,
            outcome,
            typology: main_factor(&decision),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        disposition: &str,
        suspicious: bool,
        rule: &str,
        source: &'static str,
    ) -> LabelledDecision {
        LabelledDecision {
            alert_id: format!("{rule}-{disposition}-{suspicious}"),
            suspicious,
            source,
            disposition: disposition.into(),
            rule: rule.into(),
            alert_type: "TRANSACTION".into(),
            typology: "fan_in".into(),
        }
    }

    #[test]
    fn outcomes_become_labels_and_inconclusive_stays_unlabelled() {
        use crate::domain::review::case::Outcome as O;
        let closed = |o| CaseState::Closed { outcome: o };
        assert_eq!(case_label(&closed(O::TruePositiveSar)), Some(true));
        assert_eq!(case_label(&closed(O::TruePositiveNoSar)), Some(true));
        assert_eq!(case_label(&closed(O::FalsePositive)), Some(false));
        assert_eq!(case_label(&closed(O::Inconclusive)), None);
        assert_eq!(case_label(&CaseState::SarFiled), Some(true));
        assert_eq!(case_label(&CaseState::Open), None);
    }

    #[test]
    fn precision_and_recall_per_rule() {
        let rows = vec![
            row("ESCALATE_L2", true, "FAN_IN_30D", "case"),
            row("ESCALATE_L2", false, "FAN_IN_30D", "case"),
            row("AUTO_CLEAR", true, "FAN_IN_30D", "qa"),
            row("AUTO_CLEAR", false, "HIGH_VALUE_30D", "qa"),
        ];
        let r = report(&rows, 3);
        assert_eq!((r.from_cases, r.from_qa, r.unlabelled_cases), (2, 2, 3));
        let f = &r.per_rule["FAN_IN_30D"];
        assert_eq!((f.labelled, f.suspicious, f.escalated), (3, 2, 2));
        assert_eq!(f.precision, Some(0.5));
        assert_eq!(f.recall, Some(0.5));
        let h = &r.per_rule["HIGH_VALUE_30D"];
        assert_eq!((h.precision, h.recall), (None, None));
        assert_eq!(r.overall.labelled, 4);
    }
}

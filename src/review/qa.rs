//! QA of auto-clears: drawing the stratified sample, the blind queue, verdicts (a miss
//! reopens the alert as a case), and the per-period report with its statistics.

use std::collections::BTreeSet;

use chrono::Utc;
use serde::Serialize;
use serde_json::{Value, json};

use super::{Review, ReviewServiceError, actor_of, invalid};
use crate::domain::review::four_eyes::require;
use crate::domain::review::{
    CaseState, SamplingPlan, SprtConfig, SprtDecision, SprtState, UserRole, clopper_pearson_upper,
    draw_stratified, period_bounds, sprt,
};
use crate::store::review::{QaSampleRecord, UserRecord};

/// A QA sample as the reviewer sees it. Until the reviewer records a verdict, the engine's
/// verdict (disposition, score, band, its decision) is absent: the review is blind.
#[derive(Debug, Clone, Serialize)]
pub struct QaItemView {
    /// Sample id.
    pub sample_id: String,
    /// Period.
    pub period: String,
    /// The alert id.
    pub alert_id: String,
    /// The alert as received (the input the engine saw, not its output).
    pub alert: Value,
    /// Whether a verdict is recorded.
    pub reviewed: bool,
    /// The QA verdict (`ok` or `miss`), once recorded.
    pub verdict: Option<String>,
    /// Reviewer, once recorded.
    pub reviewer: Option<String>,
    /// Revealed after the verdict: the engine's disposition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_disposition: Option<String>,
    /// Revealed after the verdict: the engine's risk score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_score: Option<f64>,
    /// Revealed after the verdict: the engine's full decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Value>,
}

/// Statistics of one period (or of all periods together).
#[derive(Debug, Clone, Serialize)]
pub struct PeriodReport {
    /// Period label, or `overall`.
    pub period: String,
    /// Samples drawn.
    pub drawn: u64,
    /// Samples reviewed (the sample size of the statistics).
    pub reviewed: u64,
    /// Samples not yet reviewed.
    pub pending: u64,
    /// Misses found.
    pub misses: u64,
    /// `misses / reviewed`.
    pub miss_rate: Option<f64>,
    /// Exact one-sided Clopper-Pearson upper bound on the miss rate.
    pub upper_bound: f64,
    /// Wald SPRT state; `fail` flags the period.
    pub sprt: SprtState,
    /// Reviewed samples per score band.
    pub reviewed_by_band: Vec<u64>,
    /// Who reviewed (the sign-offs).
    pub reviewers: BTreeSet<String>,
    /// The missed alerts.
    pub missed_alerts: Vec<String>,
}

/// The examiner report.
#[derive(Debug, Clone, Serialize)]
pub struct QaReport {
    /// When generated.
    pub generated_at: chrono::DateTime<Utc>,
    /// How samples are drawn and judged, in words.
    pub method: String,
    /// Confidence of the upper bounds.
    pub confidence: f64,
    /// SPRT parameters.
    pub sprt_config: SprtConfig,
    /// One entry per period.
    pub periods: Vec<PeriodReport>,
    /// All periods pooled.
    pub overall: PeriodReport,
}

fn verdict_of(v: &str) -> Result<&'static str, ReviewServiceError> {
    match v {
        "ok" => Ok("ok"),
        "miss" => Ok("miss"),
        other => Err(invalid(
            "verdict",
            format!(
                "unknown verdict {other:?} (ok: the auto-clear was right; miss: it should have been escalated)"
            ),
        )),
    }
}

impl Review {
    /// Draws the period's sample of auto-clears (idempotent per alert and period) with a
    /// reproducible `seed`; returns the samples added.
    pub async fn draw_qa_sample(
        &self,
        by: &str,
        period: &str,
        plan: &SamplingPlan,
        seed: u64,
    ) -> Result<Vec<QaSampleRecord>, ReviewServiceError> {
        let (from, to) = period_bounds(period)?;
        let population: Vec<crate::domain::review::SampleItem> = self
            .store
            .auto_clears(from, to)
            .await?
            .into_iter()
            .map(|(alert_id, risk_score)| crate::domain::review::SampleItem {
                alert_id,
                risk_score,
            })
            .collect();
        let drawn = draw_stratified(plan, &population, &mut fastrand::Rng::with_seed(seed))?;
        let now = Utc::now();
        let mut added = Vec::new();
        for d in drawn {
            let score = population
                .iter()
                .find(|p| p.alert_id == d.alert_id)
                .map_or(0.0, |p| p.risk_score);
            let s = QaSampleRecord {
                sample_id: format!("qa-{period}-{}", super::auth::random_hex(6)?),
                period: period.into(),
                alert_id: d.alert_id,
                band: d.band as i64,
                inclusion: d.inclusion,
                risk_score: score,
                engine_disposition: "AUTO_CLEAR".into(),
                drawn_at: now,
                reviewer: None,
                verdict: None,
                notes: None,
                reviewed_at: None,
            };
            if self.store.insert_qa_sample(&s).await? {
                added.push(s);
            }
        }
        self.audit(
            by,
            "qa_draw",
            None,
            json!({"period": period, "population": population.len(), "drawn": added.len(),
                   "seed": seed, "plan": plan}),
        )
        .await?;
        Ok(added)
    }

    async fn qa_view(&self, s: QaSampleRecord) -> Result<QaItemView, ReviewServiceError> {
        let alert = self
            .store
            .alert(&s.alert_id)
            .await?
            .map(|a| serde_json::from_str(&a.raw_json).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        let reviewed = s.verdict.is_some();
        let decision = if reviewed {
            self.store.decision(&s.alert_id).await?
        } else {
            None
        };
        Ok(QaItemView {
            sample_id: s.sample_id,
            period: s.period,
            alert_id: s.alert_id,
            alert,
            reviewed,
            verdict: s.verdict,
            reviewer: s.reviewer,
            engine_disposition: reviewed.then_some(s.engine_disposition),
            risk_score: reviewed.then_some(s.risk_score),
            decision,
        })
    }

    /// The blind QA queue of a period (needs `qa`).
    pub async fn qa_queue(
        &self,
        user: &UserRecord,
        period: Option<&str>,
    ) -> Result<Vec<QaItemView>, ReviewServiceError> {
        Self::active(user)?;
        require(&user.roles, UserRole::Qa, "qa_queue")?;
        let mut out = Vec::new();
        for s in self.store.qa_samples(period).await? {
            out.push(self.qa_view(s).await?);
        }
        Ok(out)
    }

    /// One QA sample, blind until reviewed (needs `qa`).
    pub async fn qa_item(
        &self,
        user: &UserRecord,
        sample_id: &str,
    ) -> Result<QaItemView, ReviewServiceError> {
        Self::active(user)?;
        require(&user.roles, UserRole::Qa, "qa_item")?;
        let s = self
            .store
            .qa_sample(sample_id)
            .await?
            .ok_or_else(|| ReviewServiceError::NotFound(format!("QA sample `{sample_id}`")))?;
        self.qa_view(s).await
    }

    /// Records the reviewer's own verdict (once), then reveals the engine's. A `miss` reopens
    /// the alert as a case (origin `qa_miss`) and counts in `aml_triage_qa_misses_total`.
    pub async fn qa_record(
        &self,
        user: &UserRecord,
        sample_id: &str,
        verdict: &str,
        notes: &str,
    ) -> Result<QaItemView, ReviewServiceError> {
        Self::active(user)?;
        require(&user.roles, UserRole::Qa, "qa_verdict")?;
        let verdict = verdict_of(verdict)?;
        if verdict == "miss" && notes.trim().is_empty() {
            return Err(invalid(
                "notes",
                "a miss needs notes saying what was missed",
            ));
        }
        let s = self
            .store
            .qa_sample(sample_id)
            .await?
            .ok_or_else(|| ReviewServiceError::NotFound(format!("QA sample `{sample_id}`")))?;
        let now = Utc::now();
        if !self
            .store
            .record_qa_verdict(sample_id, &user.user_id, verdict, notes, now)
            .await?
        {
            return Err(ReviewServiceError::Conflict(format!(
                "QA sample `{sample_id}` already has a verdict"
            )));
        }
        let actor = actor_of(user);
        self.audit(
            &actor,
            "qa_verdict",
            Some(&s.alert_id),
            json!({"sample_id": sample_id, "period": s.period, "verdict": verdict,
                   "notes_sha256": crate::store::audit::sha256_hex(notes)}),
        )
        .await?;
        if verdict == "miss" {
            self.metrics.review().qa_misses.inc();
            let opened = self
                .open_case(
                    &s.alert_id,
                    "qa_miss",
                    &s.engine_disposition,
                    Some(s.risk_score),
                    CaseState::Reopened,
                    &actor,
                )
                .await?;
            if opened.is_none() {
                // The alert already has a case (e.g. it was reopened before): reopen it.
                if let Some(c) = self.store.case_for_alert(&s.alert_id).await?
                    && c.state.is_terminal()
                {
                    let reason = format!("QA miss in sample {sample_id}");
                    self.mutate(&c.case_id, &actor, "reopen", move |c| {
                        c.state = c.state.apply(crate::domain::review::CaseAction::Reopen)?;
                        c.origin = "qa_miss".into();
                        Ok(json!({"reason": reason}))
                    })
                    .await?;
                }
            }
        }
        let s = self
            .store
            .qa_sample(sample_id)
            .await?
            .ok_or_else(|| ReviewServiceError::NotFound(format!("QA sample `{sample_id}`")))?;
        self.qa_view(s).await
    }

    /// The report of one period (or of every period), with bounds and SPRT states.
    pub async fn qa_report(&self, period: Option<&str>) -> Result<QaReport, ReviewServiceError> {
        if let Some(p) = period {
            period_bounds(p)?;
        }
        let samples = self.store.qa_samples(period).await?;
        let periods: BTreeSet<String> = samples.iter().map(|s| s.period.clone()).collect();
        let mut out = Vec::new();
        for p in &periods {
            let of: Vec<&QaSampleRecord> = samples.iter().filter(|s| &s.period == p).collect();
            out.push(self.period_report(p, &of)?);
        }
        let all: Vec<&QaSampleRecord> = samples.iter().collect();
        let overall = self.period_report("overall", &all)?;
        let failed = out
            .iter()
            .filter(|p| p.sprt.decision == SprtDecision::Fail)
            .count();
        self.metrics.review().qa_periods_failed.set(failed as i64);
        Ok(QaReport {
            generated_at: Utc::now(),
            method: format!(
                "Each period, AUTO_CLEAR decisions are drawn at random, stratified by risk-score band \
                 with the band just below the high-risk threshold oversampled. A QA reviewer re-decides \
                 each sampled alert without seeing the engine's verdict; a verdict of `miss` means it \
                 should have been escalated. The miss rate's upper bound is the exact one-sided \
                 Clopper-Pearson bound at {:.0}% over reviewed samples; Wald's SPRT (p0={}, p1={}, \
                 alpha={}, beta={}) flags a period as failed.",
                self.cfg.qa_confidence * 100.0,
                self.cfg.sprt.p0,
                self.cfg.sprt.p1,
                self.cfg.sprt.alpha,
                self.cfg.sprt.beta
            ),
            confidence: self.cfg.qa_confidence,
            sprt_config: self.cfg.sprt,
            periods: out,
            overall,
        })
    }

    fn period_report(
        &self,
        period: &str,
        samples: &[&QaSampleRecord],
    ) -> Result<PeriodReport, ReviewServiceError> {
        let reviewed: Vec<&&QaSampleRecord> =
            samples.iter().filter(|s| s.verdict.is_some()).collect();
        let n = reviewed.len() as u64;
        let missed: Vec<String> = reviewed
            .iter()
            .filter(|s| s.verdict.as_deref() == Some("miss"))
            .map(|s| s.alert_id.clone())
            .collect();
        let misses = missed.len() as u64;
        let bands = reviewed.iter().map(|s| s.band).max().map_or(0, |b| b + 1) as usize;
        let mut by_band = vec![0u64; bands];
        for s in &reviewed {
            by_band[s.band as usize] += 1;
        }
        Ok(PeriodReport {
            period: period.into(),
            drawn: samples.len() as u64,
            reviewed: n,
            pending: samples.len() as u64 - n,
            misses,
            miss_rate: (n > 0).then(|| misses as f64 / n as f64),
            upper_bound: clopper_pearson_upper(misses, n, self.cfg.qa_confidence)?,
            sprt: sprt(&self.cfg.sprt, misses, n)?,
            reviewed_by_band: by_band,
            reviewers: reviewed.iter().filter_map(|s| s.reviewer.clone()).collect(),
            missed_alerts: missed,
        })
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A printable HTML page of the report (no scripts, escaped text).
pub fn report_html(r: &QaReport) -> String {
    let mut rows = String::new();
    for p in r.periods.iter().chain(std::iter::once(&r.overall)) {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.5}</td><td>{:?}</td><td>{}</td></tr>\n",
            esc(&p.period),
            p.drawn,
            p.reviewed,
            p.pending,
            p.misses,
            p.upper_bound,
            p.sprt.decision,
            esc(&p.reviewers.iter().cloned().collect::<Vec<_>>().join(", ")),
        ));
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>QA of auto-clears</title>\n\
         <style>body{{font-family:serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #333;padding:4px 8px}}</style>\n\
         </head><body>\n<h1>QA of auto-clears</h1>\n<p>Generated {}</p>\n<h2>Method</h2>\n<p>{}</p>\n\
         <h2>Results</h2>\n<table><thead><tr><th>Period</th><th>Drawn</th><th>Reviewed</th><th>Pending</th><th>Misses</th>\
         <th>Upper bound ({:.0}%)</th><th>SPRT</th><th>Reviewers (sign-offs)</th></tr></thead><tbody>\n{}</tbody></table>\n\
         </body></html>\n",
        r.generated_at.to_rfc3339(),
        esc(&r.method),
        r.confidence * 100.0,
        rows
    )
}

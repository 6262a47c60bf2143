//! Fitting a scorecard ([`crate::domain::scorecard`]) on labelled transaction alerts:
//! monotone binning, weight-of-evidence encoding, logistic regression by IRLS (Newton) with an
//! L2 penalty, and cross-validation grouped by customer. `aml-triage model fit` runs it; the
//! engine only ever loads a fitted file, nothing refits itself.
//!
//! The fit is pure: the caller reads the training file and passes the parsed alerts and the
//! file digest. [`load_scorecard`] is the one function here that reads a file (the one
//! `SCORECARD_PATH` names).

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::assessment::scoring;
use crate::domain::alert::Alert;
use crate::domain::decision::Disposition;
use crate::domain::facts::EnrichmentFacts;
use crate::domain::features::{self, FEATURE_NAMES, FeatureValue};
use crate::domain::policy::{self, PolicyInput, ScreeningSummary, Thresholds};
use crate::domain::scorecard::{Bin, FORMAT, FeatureSpec, Scorecard, ScorecardError, Training};
use crate::evaluation::{Expected, Labelled, average_precision};
use crate::jurisdiction::JurisdictionTable;

/// Errors of a fit.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// Too few alerts or labels of one class only.
    #[error("training data: {0}")]
    Data(String),
    /// The linear system of a Newton step is singular.
    #[error("logistic regression did not converge: {0}")]
    Numeric(String),
}

/// One labelled training alert.
#[derive(Debug, Clone)]
pub struct Row {
    /// The alert.
    pub alert: Alert,
    /// Its label.
    pub suspicious: bool,
    /// Its typology label (`none` for negatives).
    pub typology: String,
    /// Its features.
    pub features: Vec<(&'static str, FeatureValue)>,
    /// The enrichment facts the deterministic path computes (typologies, completeness).
    pub facts: EnrichmentFacts,
}

impl Row {
    /// A row from an alert and its label; facts are computed as the engine does for a
    /// transaction alert without screening.
    pub fn new(
        alert: Alert,
        suspicious: bool,
        typology: String,
        juris: &JurisdictionTable,
    ) -> Self {
        Self::with_history(alert, suspicious, typology, juris, None)
    }

    /// A row as [`Row::new`], with the customer's history from the customer-data API
    /// (`None`: no API, the `hist_*` features are missing). The history is cut to what the
    /// engine's enrichment keeps ([`features::history_window`]).
    pub fn with_history(
        alert: Alert,
        suspicious: bool,
        typology: String,
        juris: &JurisdictionTable,
        history: Option<&[crate::domain::alert::Transaction]>,
    ) -> Self {
        let mut facts = EnrichmentFacts {
            jurisdiction_flags: juris.flags(&alert),
            typologies: crate::typologies::detect(&alert, juris),
            data_completeness: crate::assessment::enrichment::data_completeness(&alert),
            ..Default::default()
        };
        if let Some(h) = history {
            let window = features::history_window(&alert, h);
            facts.history.source = "external".into();
            facts.history.recent_transactions = window.len() as u32;
            facts.history.features = Some(features::history_values(&alert, &window));
        }
        Self {
            features: features::compute_with(&alert, facts.history.features_for_scoring()),
            alert,
            suspicious,
            typology,
            facts,
        }
    }
}

/// The scorecard shipped with the engine, fitted on the AMLSim dev set
/// (`models/scorecard-amlsim-dev.json`); `SCORECARD_PATH=builtin` selects it.
pub const BUILTIN_SCORECARD: &str = include_str!("../models/scorecard-amlsim-dev.json");

/// Loads the scorecard `SCORECARD_PATH` names: `None`, empty or `off` for none, `builtin`
/// for [`BUILTIN_SCORECARD`], else a file path.
pub fn load_scorecard(path: Option<&str>) -> Result<Option<Scorecard>, ScorecardError> {
    let Some(p) = path.map(str::trim).filter(|p| !p.is_empty() && *p != "off") else {
        return Ok(None);
    };
    let text = if p == "builtin" {
        BUILTIN_SCORECARD.to_string()
    } else {
        std::fs::read_to_string(p)
            .map_err(|e| ScorecardError::Parse(format!("cannot read {p}: {e}")))?
    };
    Scorecard::from_json(&text).map(Some)
}

/// The configuration version with the scorecard's version appended when one is in force, so
/// that every decision and audit entry names the scorecard that scored it.
pub fn config_version_with(config_version: String, scorecard: Option<&Scorecard>) -> String {
    match scorecard {
        Some(s) => format!("{config_version}+{}", s.version),
        None => config_version,
    }
}

/// Parses labelled lines (`{"alert":...,"expected":{"suspicious":...,"typology":...}}`) into
/// rows; alerts other than TRANSACTION ones with transactions are skipped (the scorecard does
/// not score them). Errors name the line and the field.
pub fn rows_from_jsonl(text: &str, juris: &JurisdictionTable) -> Result<Vec<Row>, FitError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |field: &str, m: String| FitError::Data(format!("line {}: {field}: {m}", i + 1));
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad("line", e.to_string()))?;
        let alert =
            Alert::from_value(v["alert"].clone()).map_err(|e| bad("alert", e.to_string()))?;
        let suspicious = v["expected"]["suspicious"]
            .as_bool()
            .ok_or_else(|| bad("expected.suspicious", "missing or not a boolean".into()))?;
        if alert.alert_type != crate::domain::alert::AlertType::Transaction
            || alert.transactions.is_empty()
        {
            continue;
        }
        let typology = v["expected"]["typology"]
            .as_str()
            .unwrap_or("none")
            .to_string();
        rows.push(Row::new(alert, suspicious, typology, juris));
    }
    Ok(rows)
}

/// Rows from labelled alerts given as JSON (analyst outcomes read from the store: the alert
/// as received, its label and the decision's main factor as typology), with the SHA-256 of
/// the training data (each label and alert, one line each, in the order given: the caller
/// orders them, by alert id for the store). Alerts other than TRANSACTION ones with
/// transactions are skipped, as in [`rows_from_jsonl`].
pub fn rows_from_labelled_json<'a>(
    items: impl IntoIterator<Item = (&'a str, bool, &'a str)>,
    juris: &JurisdictionTable,
) -> Result<(Vec<Row>, String), FitError> {
    let mut digest = Sha256::new();
    let mut rows = Vec::new();
    for (json, suspicious, typology) in items {
        digest.update(if suspicious { b"1\t" } else { b"0\t" });
        digest.update(json.as_bytes());
        digest.update(b"\n");
        let alert = Alert::from_json(json)
            .map_err(|e| FitError::Data(format!("stored alert unreadable: {e}")))?;
        if alert.alert_type != crate::domain::alert::AlertType::Transaction
            || alert.transactions.is_empty()
        {
            continue;
        }
        let typology = if suspicious { typology } else { "none" };
        rows.push(Row::new(alert, suspicious, typology.to_string(), juris));
    }
    Ok((rows, hex::encode(digest.finalize())))
}

/// Fewest labelled alerts [`fit`] accepts with options `o`: two classes in every fold's bins.
pub fn min_alerts(o: &FitOptions) -> usize {
    2 * o.folds * o.min_bin
}

/// Fit options.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    /// Cross-validation folds (grouped by customer).
    pub folds: usize,
    /// L2 penalty on the coefficients (not the intercept).
    pub l2: f64,
    /// Most numeric bins per feature before monotone merging.
    pub max_bins: usize,
    /// Fewest alerts per bin.
    pub min_bin: usize,
    /// Points per unit of log-odds.
    pub points_per_logit: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            folds: 5,
            l2: 1.0,
            max_bins: 6,
            min_bin: 25,
            points_per_logit: 15.0,
        }
    }
}

/// Weight of evidence with +0.5 smoothing.
fn woe(pos: usize, neg: usize, total_pos: usize, total_neg: usize) -> f64 {
    ((pos as f64 + 0.5) / (total_pos as f64 + 1.0)).ln()
        - ((neg as f64 + 0.5) / (total_neg as f64 + 1.0)).ln()
}

#[derive(Debug, Clone)]
struct Acc {
    upper: Option<f64>,
    pos: usize,
    n: usize,
}

impl Acc {
    fn rate(&self) -> f64 {
        self.pos as f64 / self.n.max(1) as f64
    }
}

/// Monotone bins of one feature: quantile cuts, then adjacent bins merged until the event
/// rate is monotone in the direction of the correlation and every bin has `min_bin` alerts.
pub fn bin_feature(
    name: &str,
    values: &[&FeatureValue],
    y: &[bool],
    o: &FitOptions,
) -> FeatureSpec {
    let total_pos = y.iter().filter(|&&b| b).count();
    let total_neg = y.len() - total_pos;
    let mut nums: Vec<(f64, bool)> = Vec::new();
    let mut cats: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut miss_pos, mut miss_n) = (0, 0);
    for (v, &l) in values.iter().zip(y) {
        match v {
            FeatureValue::Num(x) => nums.push((*x, l)),
            FeatureValue::Cat(c) => {
                let e = cats.entry(c.clone()).or_default();
                e.0 += usize::from(l);
                e.1 += 1;
            }
            FeatureValue::Missing => {
                miss_pos += usize::from(l);
                miss_n += 1;
            }
        }
    }
    let mut bins = Vec::new();
    if !nums.is_empty() {
        nums.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut cuts: Vec<f64> = (1..o.max_bins)
            .map(|k| nums[k * nums.len() / o.max_bins].0)
            .filter(|&c| c > nums[0].0)
            .collect();
        // A value holding a large mass (zero one-off parties, say) gets a bin of its own.
        let mut i = 0;
        while i < nums.len() {
            let j = nums[i..].partition_point(|p| p.0 <= nums[i].0) + i;
            if j - i >= nums.len() / o.max_bins && j < nums.len() {
                cuts.push(nums[j].0);
                if i > 0 {
                    cuts.push(nums[i].0);
                }
            }
            i = j;
        }
        cuts.sort_by(f64::total_cmp);
        cuts.dedup();
        let mut accs: Vec<Acc> = cuts
            .iter()
            .map(|&c| Acc {
                upper: Some(c),
                pos: 0,
                n: 0,
            })
            .chain(std::iter::once(Acc {
                upper: None,
                pos: 0,
                n: 0,
            }))
            .collect();
        for &(x, l) in &nums {
            let i = accs
                .iter()
                .position(|a| a.upper.is_none_or(|u| x < u))
                .unwrap_or(accs.len() - 1);
            accs[i].pos += usize::from(l);
            accs[i].n += 1;
        }
        accs.retain(|a| a.n > 0 || a.upper.is_none());
        // Direction: the sign of the covariance of x and the label.
        let n = nums.len() as f64;
        let mx = nums.iter().map(|p| p.0).sum::<f64>() / n;
        let my = nums.iter().filter(|p| p.1).count() as f64 / n;
        let cov: f64 = nums
            .iter()
            .map(|p| (p.0 - mx) * (f64::from(u8::from(p.1)) - my))
            .sum();
        let increasing = cov >= 0.0;
        loop {
            let bad = accs.windows(2).position(|w| {
                w[0].n < o.min_bin
                    || w[1].n < o.min_bin
                    || if increasing {
                        w[0].rate() > w[1].rate()
                    } else {
                        w[0].rate() < w[1].rate()
                    }
            });
            let Some(i) = bad else { break };
            let next = accs.remove(i + 1);
            accs[i].pos += next.pos;
            accs[i].n += next.n;
            accs[i].upper = next.upper;
        }
        for a in accs {
            bins.push(Bin {
                upper: a.upper,
                category: None,
                missing: false,
                woe: woe(a.pos, a.n - a.pos, total_pos, total_neg),
                count: a.n,
                event_rate: a.rate(),
            });
        }
    }
    for (c, (pos, n)) in cats {
        if n >= o.min_bin {
            bins.push(Bin {
                upper: None,
                category: Some(c),
                missing: false,
                woe: woe(pos, n - pos, total_pos, total_neg),
                count: n,
                event_rate: pos as f64 / n as f64,
            });
        }
    }
    if miss_n > 0 {
        bins.push(Bin {
            upper: None,
            category: None,
            missing: true,
            woe: if miss_n >= o.min_bin {
                woe(miss_pos, miss_n - miss_pos, total_pos, total_neg)
            } else {
                0.0
            },
            count: miss_n,
            event_rate: miss_pos as f64 / miss_n as f64,
        });
    }
    FeatureSpec {
        name: name.to_string(),
        coefficient: 1.0,
        bins,
    }
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Result<Vec<f64>, FitError> {
    let n = b.len();
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap_or(c);
        if a[p][c].abs() < 1e-12 {
            return Err(FitError::Numeric(format!("singular matrix at column {c}")));
        }
        a.swap(c, p);
        b.swap(c, p);
        let (top, rest) = a.split_at_mut(c + 1);
        let pivot = &top[c];
        for (i, row) in rest.iter_mut().enumerate() {
            let f = row[c] / pivot[c];
            for (x, p) in row[c..].iter_mut().zip(&pivot[c..]) {
                *x -= f * p;
            }
            b[c + 1 + i] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for c in (0..n).rev() {
        let s: f64 = (c + 1..n).map(|k| a[c][k] * x[k]).sum();
        x[c] = (b[c] - s) / a[c][c];
    }
    Ok(x)
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// L2-penalised logistic regression by Newton's method (IRLS). Returns the intercept and the
/// coefficients of the columns of `x`.
pub fn logistic_irls(x: &[Vec<f64>], y: &[bool], l2: f64) -> Result<(f64, Vec<f64>), FitError> {
    let p = x.first().map_or(0, Vec::len) + 1;
    let mut beta = vec![0.0; p];
    for _ in 0..50 {
        let mut h = vec![vec![0.0; p]; p];
        let mut g = vec![0.0; p];
        for (row, &label) in x.iter().zip(y) {
            let z: f64 = beta[0] + row.iter().zip(&beta[1..]).map(|(a, b)| a * b).sum::<f64>();
            let mu = sigmoid(z);
            let w = (mu * (1.0 - mu)).max(1e-9);
            let r = f64::from(u8::from(label)) - mu;
            let xi: Vec<f64> = std::iter::once(1.0).chain(row.iter().copied()).collect();
            for ((gj, hj), &xj) in g.iter_mut().zip(h.iter_mut()).zip(&xi) {
                *gj += xj * r;
                for (hjk, &xk) in hj.iter_mut().zip(&xi) {
                    *hjk += w * xj * xk;
                }
            }
        }
        for j in 1..p {
            g[j] -= l2 * beta[j];
            h[j][j] += l2;
        }
        let step = solve(h, g)?;
        let mut change: f64 = 0.0;
        for j in 0..p {
            beta[j] += step[j];
            change = change.max(step[j].abs());
        }
        if change < 1e-8 {
            break;
        }
    }
    if beta.iter().any(|b| !b.is_finite()) {
        return Err(FitError::Numeric("non-finite coefficient".into()));
    }
    Ok((beta[0], beta[1..].to_vec()))
}

/// Fits bins and coefficients on `rows` (threshold not set).
fn fit_once(rows: &[&Row], o: &FitOptions) -> Result<Scorecard, FitError> {
    let y: Vec<bool> = rows.iter().map(|r| r.suspicious).collect();
    // The `hist_*` features are missing on every row without customer history: they are
    // then left out of the scorecard (the others are always kept, so a fit without history
    // is the same as before they existed).
    let used: Vec<usize> = (0..FEATURE_NAMES.len())
        .filter(|&j| {
            !FEATURE_NAMES[j].starts_with("hist_")
                || rows
                    .iter()
                    .any(|r| r.features[j].1 != FeatureValue::Missing)
        })
        .collect();
    let mut specs: Vec<FeatureSpec> = used
        .iter()
        .map(|&j| {
            let vals: Vec<&FeatureValue> = rows.iter().map(|r| &r.features[j].1).collect();
            bin_feature(FEATURE_NAMES[j], &vals, &y, o)
        })
        .collect();
    let x: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| {
            specs
                .iter()
                .zip(&used)
                .map(|(s, &j)| s.bin(&r.features[j].1).map_or(0.0, |b| b.woe))
                .collect()
        })
        .collect();
    let (intercept, coef) = logistic_irls(&x, &y, o.l2)?;
    for (s, c) in specs.iter_mut().zip(coef) {
        s.coefficient = c;
    }
    Ok(Scorecard {
        format: FORMAT.into(),
        version: String::new(),
        training: Training {
            source: String::new(),
            sha256: String::new(),
            alerts: rows.len(),
            positives: y.iter().filter(|&&b| b).count(),
        },
        intercept,
        points_per_logit: o.points_per_logit,
        threshold_logit: 0.0,
        threshold_score: crate::typologies::CALIBRATION_MEDIUM_THRESHOLD,
        features: specs,
        metrics: serde_json::Value::Null,
    })
}

/// The fold of a customer: a hash, so a customer's alerts share a fold.
pub fn fold_of(customer_id: &str, folds: usize) -> usize {
    let h = Sha256::digest(customer_id.as_bytes());
    (u64::from_be_bytes(h[..8].try_into().unwrap_or([0; 8])) % folds.max(1) as u64) as usize
}

/// Out-of-fold log-odds of every row.
pub fn out_of_fold(rows: &[Row], o: &FitOptions) -> Result<Vec<f64>, FitError> {
    let fold: Vec<usize> = rows
        .iter()
        .map(|r| fold_of(&r.alert.customer.customer_id, o.folds))
        .collect();
    let mut logit = vec![f64::NAN; rows.len()];
    for k in 0..o.folds {
        let train: Vec<&Row> = rows
            .iter()
            .zip(&fold)
            .filter(|(_, f)| **f != k)
            .map(|(r, _)| r)
            .collect();
        let sc = fit_once(&train, o)?;
        for (i, r) in rows.iter().enumerate() {
            if fold[i] == k {
                logit[i] = sc.logit_of(&r.features);
            }
        }
    }
    Ok(logit)
}

/// Whether the deterministic policy would auto-clear the row with this scorecard (or with
/// the rule points when `None`): the engine's own scoring, confidence and policy functions.
pub fn would_clear(r: &Row, sc: Option<&Scorecard>, t: &Thresholds) -> (bool, f64) {
    let a = scoring::assess_with(&r.alert, &r.facts, t, sc);
    let confidence = scoring::confidence(&a, &r.facts, false, t);
    let out = policy::decide(
        &PolicyInput {
            score: a.score,
            screening: ScreeningSummary::of(&r.facts),
            clearance_blockers: a.clearance_blockers.clone(),
            confidence,
            degraded_steps: vec![],
            source_priority_high: false,
            detected_on: r.alert.created_at.date_naive(),
        },
        t,
    );
    (out.disposition == Disposition::AutoClear, a.score)
}

/// Metrics of one way of scoring, over labelled rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// Average precision of the score.
    pub pr_auc: f64,
    /// Positives auto-cleared by the engine's policy.
    pub missed_positives: usize,
    /// Share of negatives auto-cleared by the engine's policy.
    pub clear_rate: f64,
    /// Per typology: (positives, auto-cleared).
    pub per_typology: BTreeMap<String, (usize, usize)>,
}

/// Metrics of `scores` and `cleared` flags against the labels.
pub fn metrics(rows: &[Row], scores: &[f64], cleared: &[bool]) -> Metrics {
    let labelled: Vec<Labelled> = rows
        .iter()
        .zip(scores)
        .map(|(r, &s)| Labelled {
            alert_id: r.alert.alert_id.clone(),
            disposition: Disposition::EscalateL2,
            risk_score: s,
            expected: Expected {
                suspicious: r.suspicious,
                typology: None,
                source: None,
            },
        })
        .collect();
    let neg = rows.iter().filter(|r| !r.suspicious).count();
    let mut per_typology: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (r, &c) in rows.iter().zip(cleared).filter(|(r, _)| r.suspicious) {
        let e = per_typology.entry(r.typology.clone()).or_default();
        e.0 += 1;
        e.1 += usize::from(c);
    }
    Metrics {
        pr_auc: average_precision(&labelled),
        missed_positives: rows
            .iter()
            .zip(cleared)
            .filter(|(r, c)| r.suspicious && **c)
            .count(),
        clear_rate: rows
            .iter()
            .zip(cleared)
            .filter(|(r, c)| !r.suspicious && **c)
            .count() as f64
            / neg.max(1) as f64,
        per_typology,
    }
}

/// The result of `model fit`.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    /// Out-of-fold metrics of the scorecard (each fold's threshold from the others' positives).
    pub out_of_fold: Metrics,
    /// Out-of-fold threshold (log-odds) that gave 0 missed positives.
    pub threshold_logit: f64,
    /// Out-of-fold clear rate at <= 1% missed positives (threshold on the log-odds only).
    pub clear_rate_at_1pct_misses: f64,
    /// The final scorecard on the training data (in-sample).
    pub in_sample: Metrics,
    /// The current rule-point score on the same data.
    pub rule_points: Metrics,
}

/// Threshold just below the lowest log-odds of a clearable positive (one without a clearance
/// blocker): alerts strictly below it may be cleared.
/// At the threshold itself the score equals the medium threshold, which escalates.
fn zero_miss_threshold(rows: &[Row], logits: &[f64]) -> f64 {
    rows.iter()
        .zip(logits)
        .filter(|(r, _)| {
            r.suspicious
                && crate::typologies::clearance_blockers(&r.alert, &r.facts.typologies).is_empty()
        })
        .map(|(_, &l)| l)
        .fold(f64::INFINITY, f64::min)
        .min(1e6)
}

/// Fits a scorecard on `rows` with grouped cross-validation and returns it with its report.
/// `source` and `sha256` identify the training file.
pub fn fit(
    rows: &[Row],
    source: &str,
    sha256: &str,
    o: &FitOptions,
    t: &Thresholds,
) -> Result<(Scorecard, FitReport), FitError> {
    let pos = rows.iter().filter(|r| r.suspicious).count();
    if pos == 0 || pos == rows.len() || rows.len() < min_alerts(o) || o.folds < 2 {
        return Err(FitError::Data(format!(
            "{} alerts, {pos} suspicious, {} not: need both classes, at least {} alerts and at \
             least 2 folds",
            rows.len(),
            rows.len() - pos,
            min_alerts(o)
        )));
    }
    let oof = out_of_fold(rows, o)?;
    let threshold = zero_miss_threshold(rows, &oof);
    // Out of fold through the engine's policy: a scorecard whose log-odds are the OOF ones.
    let scaled = |logit: f64, th: f64| {
        crate::typologies::CALIBRATION_MEDIUM_THRESHOLD + o.points_per_logit * (logit - th)
    };
    let mut oof_scores = Vec::new();
    let mut oof_cleared = Vec::new();
    for (r, &l) in rows.iter().zip(&oof) {
        let probe = Scorecard {
            format: FORMAT.into(),
            version: "oof".into(),
            training: Training {
                source: String::new(),
                sha256: String::new(),
                alerts: 0,
                positives: 0,
            },
            intercept: l,
            points_per_logit: o.points_per_logit,
            threshold_logit: threshold,
            threshold_score: crate::typologies::CALIBRATION_MEDIUM_THRESHOLD,
            features: vec![],
            metrics: serde_json::Value::Null,
        };
        let (c, _) = would_clear(r, Some(&probe), t);
        oof_scores.push(scaled(l, threshold));
        oof_cleared.push(c);
    }
    let out_of_fold = metrics(rows, &oof_scores, &oof_cleared);
    // <= 1% misses on the log-odds alone.
    let mut pos_logits: Vec<f64> = rows
        .iter()
        .zip(&oof)
        .filter(|(r, _)| r.suspicious)
        .map(|(_, &l)| l)
        .collect();
    pos_logits.sort_by(f64::total_cmp);
    let allowed = pos / 100;
    let th1 = pos_logits[allowed.min(pos_logits.len() - 1)];
    let neg = rows.len() - pos;
    let clear_1 = rows
        .iter()
        .zip(&oof)
        .filter(|(r, l)| !r.suspicious && **l < th1)
        .count() as f64
        / neg as f64;

    let all: Vec<&Row> = rows.iter().collect();
    let mut sc = fit_once(&all, o)?;
    sc.threshold_logit = threshold;
    sc.training.source = source.into();
    sc.training.sha256 = sha256.into();
    // The version names the data and the fitted content, so two fits differ in version
    // whenever they differ in what they score.
    let content = serde_json::json!([
        sc.intercept,
        sc.points_per_logit,
        sc.threshold_logit,
        sc.threshold_score,
        sc.features
    ]);
    let model_digest = hex::encode(Sha256::digest(content.to_string().as_bytes()));
    // `FILE+history`: fitted with the customer-data API's history (`hist_*` features).
    let (stem, history) = source
        .strip_suffix("+history")
        .map_or((source, ""), |s| (s, "-history"));
    sc.version = format!(
        "scorecard-{}{history}-{}-{}",
        stem.trim_end_matches(".jsonl").trim_end_matches(".eval"),
        &sha256[..sha256.len().min(8)],
        &model_digest[..8]
    );
    let mut ins_scores = Vec::new();
    let mut ins_cleared = Vec::new();
    let mut rule_scores = Vec::new();
    let mut rule_cleared = Vec::new();
    for r in rows {
        let (c, _) = would_clear(r, Some(&sc), t);
        // The log-odds: the same order as the score, without ties from clamping.
        ins_scores.push(sc.logit_of(&r.features));
        ins_cleared.push(c);
        let (c, s) = would_clear(r, None, t);
        rule_scores.push(s);
        rule_cleared.push(c);
    }
    let report = FitReport {
        out_of_fold,
        threshold_logit: threshold,
        clear_rate_at_1pct_misses: clear_1,
        in_sample: metrics(rows, &ins_scores, &ins_cleared),
        rule_points: metrics(rows, &rule_scores, &rule_cleared),
    };
    sc.metrics = serde_json::to_value(&report).unwrap_or_default();
    Ok((sc, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irls_recovers_a_known_logistic_model() {
        // Deterministic grid with labels drawn from a known model by a fixed hash.
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..4000u32 {
            let a = f64::from(i % 40) / 10.0 - 2.0;
            let b = f64::from((i / 40) % 20) / 5.0 - 2.0;
            let p = sigmoid(-0.5 + 1.5 * a - 1.0 * b);
            let h = Sha256::digest(i.to_be_bytes());
            let u = f64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]])) / f64::from(u32::MAX);
            x.push(vec![a, b]);
            y.push(u < p);
        }
        let (b0, b) = logistic_irls(&x, &y, 0.0).unwrap();
        assert!((b0 + 0.5).abs() < 0.2, "{b0}");
        assert!((b[0] - 1.5).abs() < 0.2, "{b:?}");
        assert!((b[1] + 1.0).abs() < 0.2, "{b:?}");
        // The penalty shrinks.
        let (_, s) = logistic_irls(&x, &y, 1e4).unwrap();
        assert!(s[0].abs() < b[0].abs() && s[1].abs() < b[1].abs());
    }

    #[test]
    fn bins_are_monotone_and_large_enough() {
        let vals: Vec<FeatureValue> = (0..600)
            .map(|i| {
                if i % 50 == 0 {
                    FeatureValue::Missing
                } else {
                    FeatureValue::Num(f64::from(i % 100))
                }
            })
            .collect();
        // Rate rises with x, with a dip in the middle that merging removes.
        let y: Vec<bool> = (0..600)
            .map(|i| {
                let x = i % 100;
                (x > 70 && i % 3 != 0) || (x > 40 && x < 50) || i % 17 == 0
            })
            .collect();
        let refs: Vec<&FeatureValue> = vals.iter().collect();
        let s = bin_feature("f", &refs, &y, &FitOptions::default());
        let numeric: Vec<&Bin> = s.bins.iter().filter(|b| !b.missing).collect();
        assert!(numeric.len() >= 2);
        assert!(
            numeric
                .windows(2)
                .all(|w| w[0].event_rate <= w[1].event_rate)
        );
        assert!(numeric.iter().all(|b| b.count >= 25));
        assert!(s.bins.iter().any(|b| b.missing));
        assert_eq!(numeric.last().unwrap().upper, None);
    }

    #[test]
    fn scorecard_is_activated_only_by_configuration() {
        for off in [None, Some(""), Some("off"), Some("  ")] {
            assert!(load_scorecard(off).unwrap().is_none());
        }
        let sc = load_scorecard(Some("builtin")).unwrap().unwrap();
        assert!(sc.version.starts_with("scorecard-amlsim-dev-"));
        let data = &sc.training.sha256[..8];
        assert!(sc.version.contains(&format!("-{data}-")), "{}", sc.version);
        assert!(sc.threshold_logit.is_finite() && !sc.features.is_empty());
        let e = load_scorecard(Some("/nonexistent/x.json")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.json"), "{e}");
        // The key is read from the environment like every other one.
        let env: std::collections::HashMap<String, String> = [
            ("SCORECARD_PATH".to_string(), "builtin".to_string()),
            ("SCORECARD_SHADOW_PATH".to_string(), "x.json".to_string()),
        ]
        .into();
        let s = crate::config::Settings::load_from(None, &env).unwrap();
        assert_eq!(s.scorecard_path.as_deref(), Some("builtin"));
        assert_eq!(s.scorecard_shadow_path.as_deref(), Some("x.json"));
        assert_eq!(
            crate::config::Settings::default().scorecard_path,
            None,
            "no scorecard unless configured"
        );
        assert_eq!(
            config_version_with("cfg-1".into(), Some(&sc)),
            format!("cfg-1+{}", sc.version)
        );
        assert_eq!(config_version_with("cfg-1".into(), None), "cfg-1");
    }

    #[test]
    fn solve_handles_pivoting_and_refuses_singular() {
        let x = solve(vec![vec![0.0, 1.0], vec![2.0, 0.0]], vec![3.0, 4.0]).unwrap();
        assert_eq!(x, vec![2.0, 3.0]);
        assert!(solve(vec![vec![1.0, 2.0], vec![2.0, 4.0]], vec![1.0, 2.0]).is_err());
    }
}

#[cfg(test)]
pub(crate) mod dev_tests {
    use super::*;
    use crate::typologies::test_support::{dev_lines, shared_data};

    /// Rows of the AMLSim dev set; fails when the shared data is missing.
    pub(crate) fn dev_rows() -> (Vec<Row>, String) {
        let path = shared_data().join("amlsim-dev.eval.jsonl");
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("{} not readable: {e}", path.display()));
        let sha = hex::encode(Sha256::digest(&bytes));
        let lines = dev_lines(usize::MAX).expect("amlsim-dev.eval.jsonl");
        let juris = JurisdictionTable::empty();
        let rows = lines
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let alert = Alert::from_value(v["alert"].clone()).unwrap();
                Row::new(
                    alert,
                    v["expected"]["suspicious"].as_bool().unwrap(),
                    v["expected"]["typology"].as_str().unwrap_or("?").into(),
                    &juris,
                )
            })
            .collect();
        (rows, sha)
    }

    #[test]
    #[ignore = "option grid; run with --ignored --nocapture"]
    fn amlsim_dev_option_grid() {
        let (rows, sha) = dev_rows();
        for l2 in [0.3, 1.0, 3.0, 10.0] {
            for max_bins in [4, 6, 8, 10] {
                for min_bin in [15, 25, 40] {
                    let o = FitOptions {
                        l2,
                        max_bins,
                        min_bin,
                        ..Default::default()
                    };
                    let (_, r) = fit(&rows, "x", &sha, &o, &Thresholds::default()).unwrap();
                    println!(
                        "l2 {l2} bins {max_bins} min {min_bin}: oof pr {:.3} miss {} clear {:.3} | 1% {:.3} | in pr {:.3} clear {:.3}",
                        r.out_of_fold.pr_auc,
                        r.out_of_fold.missed_positives,
                        r.out_of_fold.clear_rate,
                        r.clear_rate_at_1pct_misses,
                        r.in_sample.pr_auc,
                        r.in_sample.clear_rate
                    );
                }
            }
        }
    }

    #[test]
    #[ignore = "points-per-logit scan; run with --ignored --nocapture"]
    fn amlsim_dev_points_scan() {
        let (rows, sha) = dev_rows();
        for k in [6.0, 8.0, 10.0, 12.0, 15.0, 20.0] {
            let o = FitOptions {
                points_per_logit: k,
                ..Default::default()
            };
            let (sc, r) = fit(&rows, "x", &sha, &o, &Thresholds::default()).unwrap();
            let scores: Vec<f64> = rows
                .iter()
                .map(|r| would_clear(r, Some(&sc), &Thresholds::default()).1)
                .collect();
            let at_cap = scores.iter().filter(|&&s| s >= 100.0).count();
            let m = metrics(&rows, &scores, &vec![false; rows.len()]);
            println!(
                "k {k}: oof clear {:.3} miss {} | in-sample 0-100 score PR-AUC {:.3}, {at_cap} at 100",
                r.out_of_fold.clear_rate, r.out_of_fold.missed_positives, m.pr_auc
            );
        }
    }

    #[test]
    fn amlsim_dev_scorecard_out_of_fold_meets_the_targets() {
        let (rows, sha) = dev_rows();
        let (sc, r) = fit(
            &rows,
            "amlsim-dev.eval.jsonl",
            &sha,
            &FitOptions::default(),
            &Thresholds::default(),
        )
        .unwrap();
        println!("{}", serde_json::to_string_pretty(&r).unwrap());
        for f in &sc.features {
            println!(
                "{} {:.3} {:?}",
                f.name,
                f.coefficient,
                f.bins
                    .iter()
                    .map(|b| (
                        b.upper,
                        b.category.clone(),
                        b.missing,
                        (b.woe * 100.0).round() / 100.0,
                        b.count
                    ))
                    .collect::<Vec<_>>()
            );
        }
        assert_eq!(r.out_of_fold.missed_positives, 0);
        assert!(r.out_of_fold.pr_auc >= 0.5, "{}", r.out_of_fold.pr_auc);
        assert!(
            r.out_of_fold.clear_rate >= 0.35,
            "{}",
            r.out_of_fold.clear_rate
        );
    }
}

#[cfg(test)]
mod floor_tests {
    use super::dev_tests::dev_rows;
    use super::*;
    use crate::domain::facts::{ListKind, MatchClass, ScreeningHit};
    use crate::typologies::test_support::{alert, tx_in, tx_out};

    /// A small deterministic generator (64-bit LCG), so the property test needs no crate.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn range(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * self.next()
        }
    }

    fn random_scorecard(g: &mut Lcg, i: usize) -> Scorecard {
        let chosen: Vec<&str> = FEATURE_NAMES
            .iter()
            .copied()
            .filter(|_| g.next() < 0.7)
            .collect();
        let features = chosen
            .into_iter()
            .map(|name| {
                let mut bins: Vec<Bin> = Vec::new();
                let mut upper = g.range(-1.0, 5.0);
                for _ in 0..(g.next() * 5.0) as usize {
                    bins.push(Bin {
                        upper: Some(upper),
                        category: None,
                        missing: false,
                        woe: g.range(-20.0, 20.0),
                        count: 1,
                        event_rate: 0.5,
                    });
                    upper += g.range(0.01, 50.0);
                }
                for (upper, category, missing) in [
                    (None, None, false),
                    (None, None, true),
                    (None, Some("LINKED_PARTY_90D".to_string()), false),
                    (None, Some("TEST_RULE".to_string()), false),
                ] {
                    bins.push(Bin {
                        upper,
                        category,
                        missing,
                        woe: g.range(-20.0, 20.0),
                        count: 1,
                        event_rate: 0.5,
                    });
                }
                FeatureSpec {
                    name: name.to_string(),
                    coefficient: g.range(-5.0, 5.0),
                    bins,
                }
            })
            .collect();
        Scorecard {
            format: FORMAT.into(),
            version: format!("random-{i}"),
            training: Training {
                source: String::new(),
                sha256: String::new(),
                alerts: 0,
                positives: 0,
            },
            intercept: g.range(-60.0, 60.0),
            points_per_logit: g.range(0.5, 60.0),
            threshold_logit: g.range(-10.0, 10.0),
            threshold_score: g.range(0.0, 100.0),
            features,
            metrics: serde_json::Value::Null,
        }
    }

    fn disposition(a: &Alert, facts: &EnrichmentFacts, sc: Option<&Scorecard>) -> Disposition {
        let t = Thresholds::default();
        let assessment = scoring::assess_with(a, facts, &t, sc);
        let confidence = scoring::confidence(&assessment, facts, false, &t);
        policy::decide(
            &PolicyInput {
                score: assessment.score,
                screening: ScreeningSummary::of(facts),
                clearance_blockers: assessment.clearance_blockers.clone(),
                confidence,
                degraded_steps: vec![],
                source_priority_high: false,
                detected_on: a.created_at.date_naive(),
            },
            &t,
        )
        .disposition
    }

    fn confirmed_sanctions() -> EnrichmentFacts {
        EnrichmentFacts {
            screening_hits: vec![ScreeningHit {
                evidence_id: "screen:OFAC_SDN:1".into(),
                list: "OFAC_SDN".into(),
                list_version: None,
                kind: ListKind::Sanctions,
                entry_id: "1".into(),
                matched_name: "X".into(),
                customer_name: "X".into(),
                name_score: 1.0,
                score: 1.0,
                class: MatchClass::Confirmed,
                claimed_by_source: true,
                explanation: vec![],
                discount_reason: None,
                breakdown: None,
            }],
            data_completeness: 1.0,
            ..Default::default()
        }
    }

    #[test]
    fn policy_floor_holds_under_any_scorecard() {
        let juris = JurisdictionTable::empty();
        let facts_of = |a: &Alert| Row::new(a.clone(), false, String::new(), &juris).facts;
        // Table: alerts whose clearance a rule forbids, whatever the score.
        let mut blocked: Vec<Alert> = dev_rows()
            .0
            .into_iter()
            .filter(|r| {
                !crate::typologies::clearance_blockers(&r.alert, &r.facts.typologies).is_empty()
            })
            .map(|r| r.alert)
            .take(150)
            .collect();
        assert!(blocked.len() >= 100, "the dev set holds blocked alerts");
        let mut linked = alert(vec![tx_in("a", 0, 100.0, "P"), tx_in("b", 1, 100.0, "P")]);
        linked.rule_id = Some("LINKED_PARTY_90D".into());
        blocked.push(linked);
        let mut mixed = alert(vec![tx_in("a", 0, 100.0, "P"), tx_out("b", 1, 90.0, "P")]);
        mixed.transactions[1].currency = "EUR".into();
        blocked.push(mixed);
        let mut truncated = alert(vec![tx_in("a", 0, 100.0, "P"), tx_out("b", 1, 90.0, "P")]);
        truncated
            .metadata
            .insert("triggering_transactions_truncated".into(), true.into());
        blocked.push(truncated);
        blocked.push(alert(vec![]));
        let blocked: Vec<(Alert, EnrichmentFacts)> = blocked
            .into_iter()
            .map(|a| {
                let f = facts_of(&a);
                (a, f)
            })
            .collect();
        for (a, f) in &blocked {
            assert!(
                !crate::typologies::clearance_blockers(a, &f.typologies).is_empty(),
                "{} should be blocked",
                a.alert_id
            );
        }
        // The same alerts with customer history from the API: the `hist_*` features (which
        // the random scorecards use) take part too.
        let history = vec![
            tx_in("H1", -20, 40.0, "P"),
            tx_out("H2", -10, 900.0, "Q"),
            tx_in("H3", -5, 5.0, "R"),
        ];
        let with_history: Vec<(Alert, EnrichmentFacts)> = blocked
            .iter()
            .map(|(a, f)| {
                let mut f = f.clone();
                f.history.source = "external".into();
                f.history.recent_transactions = history.len() as u32;
                f.history.features = Some(features::history_values(a, &history));
                (a.clone(), f)
            })
            .collect();
        let blocked: Vec<(Alert, EnrichmentFacts)> =
            blocked.into_iter().chain(with_history).collect();
        let habitual = alert(vec![tx_in("a", 0, 100.0, "P"), tx_in("b", 9, 100.0, "P")]);
        let mut screening = habitual.clone();
        screening.alert_type = crate::domain::alert::AlertType::KycOngoing;
        let screening_facts = facts_of(&screening);

        let mut g = Lcg(20);
        let mut cleared_somewhere = 0;
        for i in 0..300 {
            let sc = random_scorecard(&mut g, i);
            for (a, f) in &blocked {
                assert_ne!(
                    disposition(a, f, Some(&sc)),
                    Disposition::AutoClear,
                    "{} auto-cleared under scorecard {i}",
                    a.alert_id
                );
            }
            // The hard stop: a confirmed sanctions hit blocks whatever the scorecard says.
            assert_eq!(
                disposition(&habitual, &confirmed_sanctions(), Some(&sc)),
                Disposition::BlockTransaction
            );
            // Alerts that are not transaction alerts are scored as before.
            assert_eq!(
                scoring::assess_with(
                    &screening,
                    &screening_facts,
                    &Thresholds::default(),
                    Some(&sc)
                ),
                scoring::assess(&screening, &screening_facts, &Thresholds::default())
            );
            let hf = facts_of(&habitual);
            cleared_somewhere +=
                usize::from(disposition(&habitual, &hf, Some(&sc)) == Disposition::AutoClear);
        }
        // The random scorecards do move scores: a clean alert is cleared under some of them
        // and not under others, so the assertions above were not vacuous.
        assert!(
            cleared_somewhere > 0 && cleared_somewhere < 300,
            "{cleared_somewhere}"
        );
    }
}

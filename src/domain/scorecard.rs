//! An explainable additive scorecard for transaction alerts: logistic regression on binned
//! features (each bin's weight of evidence times the feature's coefficient), rescaled to
//! points so that every feature's contribution is a named [`Factor`] and the contributions
//! plus a base sum to the score.
//!
//! Scale: `score = threshold_score + points_per_logit * (logit - threshold_logit)`, so the
//! out-of-fold threshold that gave 0 missed positives (`threshold_logit`) lands on
//! `threshold_score`, below which an alert may be cleared. The policy floor and every
//! clearance blocker are applied as before; a scorecard only changes the score.
//!
//! Fitting lives in [`crate::model`]; a scorecard never refits itself.

use serde::{Deserialize, Serialize};

use super::alert::Alert;
use super::facts::Factor;
use super::features::{self, FeatureValue};

/// The file format this code reads and writes.
pub const FORMAT: &str = "aml-triage-scorecard/1";

/// Errors reading a scorecard.
#[derive(Debug, thiserror::Error)]
pub enum ScorecardError {
    /// Not valid JSON or not the expected shape.
    #[error("scorecard: {0}")]
    Parse(String),
    /// A field has a value the scorecard cannot use.
    #[error("scorecard field `{field}`: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// One bin of a feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    /// Exclusive upper bound of a numeric bin; `None` for the last numeric bin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
    /// The category of a categorical bin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The bin of missing values.
    #[serde(default)]
    pub missing: bool,
    /// Weight of evidence: ln(share of positives / share of negatives) in training.
    pub woe: f64,
    /// Training alerts in the bin.
    #[serde(default)]
    pub count: usize,
    /// Share of positives among them.
    #[serde(default)]
    pub event_rate: f64,
}

/// One feature of the scorecard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Name from [`features::FEATURE_NAMES`].
    pub name: String,
    /// Coefficient on the bin's weight of evidence.
    pub coefficient: f64,
    /// Numeric bins in increasing order, then categorical bins, then the missing bin.
    pub bins: Vec<Bin>,
}

impl FeatureSpec {
    /// The bin a value falls in; `None` when no bin fits (an unseen category, a missing value
    /// without a missing bin): such a value contributes nothing.
    pub fn bin(&self, v: &FeatureValue) -> Option<&Bin> {
        match v {
            FeatureValue::Missing => self.bins.iter().find(|b| b.missing),
            FeatureValue::Cat(c) => self
                .bins
                .iter()
                .find(|b| b.category.as_deref() == Some(c.as_str())),
            FeatureValue::Num(x) => self
                .bins
                .iter()
                .filter(|b| !b.missing && b.category.is_none())
                .find(|b| b.upper.is_none_or(|u| *x < u)),
        }
    }
}

/// Where the scorecard was fitted: the data digest and size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Training {
    /// File name of the training data.
    pub source: String,
    /// SHA-256 of the training file.
    pub sha256: String,
    /// Alerts used.
    pub alerts: usize,
    /// Of which suspicious.
    pub positives: usize,
}

/// A fitted scorecard, as stored in a scorecard file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scorecard {
    /// [`FORMAT`].
    pub format: String,
    /// Version recorded in every decision scored with it.
    pub version: String,
    /// Training data.
    pub training: Training,
    /// Intercept of the logistic model.
    pub intercept: f64,
    /// Points per unit of log-odds.
    pub points_per_logit: f64,
    /// Log-odds of the out-of-fold threshold that gave 0 missed positives.
    pub threshold_logit: f64,
    /// Score at that threshold.
    pub threshold_score: f64,
    /// The features.
    pub features: Vec<FeatureSpec>,
    /// Out-of-fold and in-sample metrics written by the fit (free-form).
    #[serde(default)]
    pub metrics: serde_json::Value,
}

/// The result of scoring one alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Log-odds of the model.
    pub logit: f64,
    /// The score before clamping: the exact sum of the factors' points.
    pub raw_score: f64,
    /// One factor per feature with a non-zero contribution, plus the base factor.
    pub factors: Vec<Factor>,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0 + 0.0
}

impl Scorecard {
    /// Parses and checks a scorecard file's text.
    pub fn from_json(text: &str) -> Result<Self, ScorecardError> {
        let s: Scorecard =
            serde_json::from_str(text).map_err(|e| ScorecardError::Parse(e.to_string()))?;
        let invalid = |field: &str, message: &str| ScorecardError::Invalid {
            field: field.into(),
            message: message.into(),
        };
        if s.format != FORMAT {
            return Err(invalid("format", &format!("expected {FORMAT}")));
        }
        if s.version.trim().is_empty() {
            return Err(invalid("version", "empty"));
        }
        for (name, v) in [
            ("intercept", s.intercept),
            ("points_per_logit", s.points_per_logit),
            ("threshold_logit", s.threshold_logit),
            ("threshold_score", s.threshold_score),
        ] {
            if !v.is_finite() {
                return Err(invalid(name, "not a finite number"));
            }
        }
        if s.points_per_logit <= 0.0 {
            return Err(invalid("points_per_logit", "must be positive"));
        }
        for f in &s.features {
            if !features::FEATURE_NAMES.contains(&f.name.as_str()) {
                return Err(invalid(
                    "features.name",
                    &format!("unknown feature {}", f.name),
                ));
            }
            if !f.coefficient.is_finite() || f.bins.iter().any(|b| !b.woe.is_finite()) {
                return Err(invalid(
                    &format!("features.{}", f.name),
                    "coefficient and woe must be finite",
                ));
            }
        }
        Ok(s)
    }

    /// The model's log-odds for precomputed features.
    pub fn logit_of(&self, values: &[(&'static str, FeatureValue)]) -> f64 {
        self.intercept
            + self
                .features
                .iter()
                .map(|f| {
                    values
                        .iter()
                        .find(|(n, _)| *n == f.name)
                        .and_then(|(_, v)| f.bin(v))
                        .map_or(0.0, |b| f.coefficient * b.woe)
                })
                .sum::<f64>()
    }

    /// Scores an alert without customer history: the log-odds and the factors whose points
    /// sum to the score.
    pub fn score(&self, alert: &Alert) -> Scored {
        self.score_with(alert, None)
    }

    /// Scores an alert with the customer's history from the customer-data API (`None`
    /// without one: the `hist_*` features then contribute nothing): the log-odds and the
    /// factors whose points sum to the score.
    pub fn score_with(&self, alert: &Alert, history: Option<&features::HistoryValues>) -> Scored {
        let values = features::compute_with(alert, history);
        let k = self.points_per_logit;
        let base = round2(self.threshold_score + k * (self.intercept - self.threshold_logit));
        let mut factors = vec![Factor {
            name: "scorecard_base".into(),
            points: base,
            evidence: vec![format!("scorecard:{}", self.version)],
            explanation: format!(
                "scorecard {} base points (intercept); score {} marks its 0-miss threshold",
                self.version, self.threshold_score
            ),
        }];
        let mut logit = self.intercept;
        for f in &self.features {
            // Without the customer-data API a history feature has no value at all (not even
            // "missing"): it contributes nothing.
            if history.is_none() && f.name.starts_with("hist_") {
                continue;
            }
            let Some((_, v)) = values.iter().find(|(n, _)| *n == f.name) else {
                continue;
            };
            let Some(bin) = f.bin(v) else { continue };
            logit += f.coefficient * bin.woe;
            let points = round2(k * f.coefficient * bin.woe);
            if points == 0.0 {
                continue;
            }
            let shown = match v {
                FeatureValue::Num(x) => format!("{x:.3}"),
                FeatureValue::Cat(c) => c.clone(),
                FeatureValue::Missing => "missing".into(),
            };
            factors.push(Factor {
                name: format!("scorecard:{}", f.name),
                points,
                evidence: vec![format!("scorecard:{}", self.version), "alert".into()],
                explanation: format!(
                    "{} = {shown}: bin with {:.0}% suspicious in training ({} alerts), {:+.2} points",
                    f.name,
                    bin.event_rate * 100.0,
                    bin.count,
                    points
                ),
            });
        }
        let raw_score = round2(factors.iter().map(|f| f.points).sum());
        Scored {
            logit,
            raw_score,
            factors,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small hand-made scorecard on two features.
    pub(crate) fn sample(intercept: f64, c1: f64, c2: f64) -> Scorecard {
        Scorecard {
            format: FORMAT.into(),
            version: "test-1".into(),
            training: Training {
                source: "t".into(),
                sha256: "0".into(),
                alerts: 0,
                positives: 0,
            },
            intercept,
            points_per_logit: 8.0,
            threshold_logit: -1.0,
            threshold_score: 24.0,
            features: vec![
                FeatureSpec {
                    name: "one_off_party_share".into(),
                    coefficient: c1,
                    bins: vec![
                        Bin {
                            upper: Some(0.5),
                            category: None,
                            missing: false,
                            woe: -1.2,
                            count: 10,
                            event_rate: 0.1,
                        },
                        Bin {
                            upper: None,
                            category: None,
                            missing: false,
                            woe: 1.5,
                            count: 10,
                            event_rate: 0.6,
                        },
                        Bin {
                            upper: None,
                            category: None,
                            missing: true,
                            woe: 0.3,
                            count: 3,
                            event_rate: 0.3,
                        },
                    ],
                },
                FeatureSpec {
                    name: "rule".into(),
                    coefficient: c2,
                    bins: vec![Bin {
                        upper: None,
                        category: Some("FAN_OUT_30D".into()),
                        missing: false,
                        woe: 0.7,
                        count: 5,
                        event_rate: 0.4,
                    }],
                },
            ],
            metrics: serde_json::Value::Null,
        }
    }

    pub(crate) fn alert(cp2: &str) -> Alert {
        Alert::from_json(&format!(
            r#"{{"alert_id":"A","alert_type":"TRANSACTION","priority":"LOW","rule_id":"FAN_OUT_30D",
            "created_at":"2024-01-10T00:00:00Z",
            "customer":{{"customer_id":"C","name":"N","entity_type":"INDIVIDUAL"}},
            "transactions":[
             {{"transaction_id":"1","timestamp":"2024-01-02T00:00:00Z","amount":10,"currency":"USD",
               "direction":"OUT","type":"TRANSFER","counterparty":{{"name":"P","account_id":"P","country":"US","bank":"b"}}}},
             {{"transaction_id":"2","timestamp":"2024-01-03T00:00:00Z","amount":10,"currency":"USD",
               "direction":"OUT","type":"TRANSFER","counterparty":{{"name":"{cp2}","account_id":"{cp2}","country":"US","bank":"b"}}}}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn bad_files_are_refused_naming_the_field() {
        let mut s = sample(0.0, 1.0, 1.0);
        s.points_per_logit = 0.0;
        let e = Scorecard::from_json(&serde_json::to_string(&s).unwrap()).unwrap_err();
        assert!(e.to_string().contains("points_per_logit"), "{e}");
        let mut s = sample(0.0, 1.0, 1.0);
        s.features[0].name = "account_age".into();
        let e = Scorecard::from_json(&serde_json::to_string(&s).unwrap()).unwrap_err();
        assert!(e.to_string().contains("features.name"), "{e}");
        let ok = sample(0.0, 1.0, 1.0);
        assert_eq!(
            Scorecard::from_json(&serde_json::to_string(&ok).unwrap()).unwrap(),
            ok
        );
    }
}

//! QA statistics: the exact one-sided Clopper-Pearson upper bound on a miss rate, and Wald's
//! sequential probability ratio test. Formulas in `docs/review.md`.

use serde::{Deserialize, Serialize};

use super::ReviewError;

/// ln P(X <= k) for X ~ Binomial(n, p), summed in log space (no underflow for large n).
fn ln_binom_cdf(k: u64, n: u64, p: f64) -> f64 {
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return if k >= n { 0.0 } else { f64::NEG_INFINITY };
    }
    let (lp, lq) = (p.ln(), (-p).ln_1p());
    // ln of term i = ln C(n,i) + i ln p + (n-i) ln q, built up from term 0.
    let mut ln_term = n as f64 * lq;
    let mut terms = Vec::with_capacity(k.min(n) as usize + 1);
    terms.push(ln_term);
    for i in 0..k.min(n) {
        ln_term += ((n - i) as f64).ln() - ((i + 1) as f64).ln() + lp - lq;
        terms.push(ln_term);
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
}

/// The exact one-sided Clopper-Pearson upper confidence bound on a proportion after `misses`
/// in `n` trials, at confidence `confidence` (e.g. 0.95): the `p` solving
/// `P(X <= misses; n, p) = 1 - confidence`, i.e. the `confidence` quantile of
/// `Beta(misses + 1, n - misses)`. Found by bisection on the binomial CDF, which is monotone
/// decreasing in `p`, to 1e-12. With no misses it is `1 - (1 - confidence)^(1/n)`.
pub fn clopper_pearson_upper(misses: u64, n: u64, confidence: f64) -> Result<f64, ReviewError> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(ReviewError::Invalid {
            field: "confidence",
            message: format!("{confidence} is not in (0, 1)"),
        });
    }
    if misses > n {
        return Err(ReviewError::Invalid {
            field: "misses",
            message: format!("{misses} misses exceed the sample size {n}"),
        });
    }
    if n == 0 || misses == n {
        return Ok(1.0);
    }
    let target = (1.0 - confidence).ln();
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while hi - lo > 1e-12 {
        let mid = 0.5 * (lo + hi);
        if ln_binom_cdf(misses, n, mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(hi)
}

/// Parameters of Wald's SPRT on the miss rate: H0 `p = p0` (acceptable) against H1 `p = p1`
/// (unacceptable), with error rates `alpha` (false fail) and `beta` (false pass).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SprtConfig {
    /// Acceptable miss rate.
    pub p0: f64,
    /// Unacceptable miss rate (`> p0`).
    pub p1: f64,
    /// Probability of failing a period whose rate is `p0`.
    pub alpha: f64,
    /// Probability of passing a period whose rate is `p1`.
    pub beta: f64,
}

impl Default for SprtConfig {
    fn default() -> Self {
        Self {
            p0: 0.005,
            p1: 0.02,
            alpha: 0.05,
            beta: 0.10,
        }
    }
}

impl SprtConfig {
    /// Checks `0 < p0 < p1 < 1` and `0 < alpha, beta < 0.5`; errors name the field.
    pub fn validate(&self) -> Result<(), ReviewError> {
        let bad = |field, message: &str| ReviewError::Invalid {
            field,
            message: message.into(),
        };
        if !(self.p0 > 0.0 && self.p0 < self.p1) {
            return Err(bad("p0", "must be in (0, p1)"));
        }
        if self.p1 >= 1.0 {
            return Err(bad("p1", "must be below 1"));
        }
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return Err(bad("alpha", "must be in (0, 0.5)"));
        }
        if !(self.beta > 0.0 && self.beta < 0.5) {
            return Err(bad("beta", "must be in (0, 0.5)"));
        }
        Ok(())
    }
}

/// Where the test stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SprtDecision {
    /// Not enough evidence yet.
    Continue,
    /// H0 accepted: the miss rate is acceptable.
    Pass,
    /// H1 accepted: the period fails.
    Fail,
}

/// The test after some observations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SprtState {
    /// Log-likelihood ratio `ln L1/L0`.
    pub llr: f64,
    /// `ln(beta / (1 - alpha))`: at or below it, pass.
    pub lower: f64,
    /// `ln((1 - beta) / alpha)`: at or above it, fail.
    pub upper: f64,
    /// The decision.
    pub decision: SprtDecision,
}

/// Wald's SPRT after `misses` in `n` reviewed samples:
/// `llr = misses ln(p1/p0) + (n - misses) ln((1-p1)/(1-p0))`.
pub fn sprt(cfg: &SprtConfig, misses: u64, n: u64) -> Result<SprtState, ReviewError> {
    cfg.validate()?;
    if misses > n {
        return Err(ReviewError::Invalid {
            field: "misses",
            message: format!("{misses} misses exceed the sample size {n}"),
        });
    }
    let llr = misses as f64 * (cfg.p1 / cfg.p0).ln()
        + (n - misses) as f64 * ((1.0 - cfg.p1) / (1.0 - cfg.p0)).ln();
    let lower = (cfg.beta / (1.0 - cfg.alpha)).ln();
    let upper = ((1.0 - cfg.beta) / cfg.alpha).ln();
    let decision = if llr >= upper {
        SprtDecision::Fail
    } else if llr <= lower {
        SprtDecision::Pass
    } else {
        SprtDecision::Continue
    };
    Ok(SprtState {
        llr,
        lower,
        upper,
        decision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn clopper_pearson_bound() {
        // One-sided 95% upper bounds. Published: 0/299 -> 0.00997 (the "< 1%" sample size),
        // 0/59 -> 0.0495, 1/100 -> 0.0466. The 7-digit values are beta.ppf(0.95, x + 1, n - x),
        // computed independently by bisection on exact integer binomial sums.
        let cases = [
            (0, 299, 0.0099691),
            (0, 59, 0.0495076),
            (1, 100, 0.0465598),
            (0, 10, 0.2588656),
            (2, 50, 0.1206142),
            (5, 1000, 0.0104841),
            (0, 3000, 0.0009981),
        ];
        for (x, n, want) in cases {
            let got = clopper_pearson_upper(x, n, 0.95).unwrap();
            assert!(close(got, want, 1e-6), "{x}/{n}: got {got}, want {want}");
        }
        // 0 of 299 is the textbook "< 1% at 95%" sample size; 0 of 298 is not enough.
        assert!(clopper_pearson_upper(0, 299, 0.95).unwrap() < 0.01);
        assert!(clopper_pearson_upper(0, 298, 0.95).unwrap() > 0.01);
        // Closed form with no misses.
        let n = 1234u64;
        let want = 1.0 - 0.05f64.powf(1.0 / n as f64);
        assert!(close(
            clopper_pearson_upper(0, n, 0.95).unwrap(),
            want,
            1e-10
        ));
        // Degenerate and invalid input.
        assert_eq!(clopper_pearson_upper(3, 3, 0.95).unwrap(), 1.0);
        assert_eq!(clopper_pearson_upper(0, 0, 0.95).unwrap(), 1.0);
        assert!(clopper_pearson_upper(4, 3, 0.95).is_err());
        assert!(clopper_pearson_upper(0, 3, 1.0).is_err());
    }

    #[test]
    fn sprt_passes_clean_periods_and_fails_bad_ones() {
        let cfg = SprtConfig::default();
        assert_eq!(sprt(&cfg, 0, 10).unwrap().decision, SprtDecision::Continue);
        // ln(0.1/0.95) / ln(0.98/0.995) ~ 148.2: 149 clean samples pass, 148 do not yet.
        assert_eq!(sprt(&cfg, 0, 149).unwrap().decision, SprtDecision::Pass);
        assert_eq!(sprt(&cfg, 0, 148).unwrap().decision, SprtDecision::Continue);
        assert_eq!(sprt(&cfg, 3, 20).unwrap().decision, SprtDecision::Fail);
        let s = sprt(&cfg, 1, 100).unwrap();
        assert!(close(s.upper, (0.9f64 / 0.05).ln(), 1e-12));
        let bad = SprtConfig { p1: 0.001, ..cfg };
        assert!(sprt(&bad, 0, 1).unwrap_err().to_string().starts_with("p0"));
    }
}

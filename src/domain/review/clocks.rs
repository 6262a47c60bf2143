//! SAR filing clocks and queue SLAs: date arithmetic only.

use crate::domain::alert::Priority;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// SAR deadlines, in calendar days (defaults follow 31 CFR 1020.320: 30 days after the
/// determination of suspicion, up to 60 when no suspect is identified; continuing activity is
/// reviewed 90 days after a filing, with 30 more days to file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SarClockConfig {
    /// Days from determination to the filing deadline.
    pub file_days: i64,
    /// Days from determination when no suspect is identified.
    pub file_days_no_suspect: i64,
    /// Days after a filing until the continuing-activity review.
    pub continuing_review_days: i64,
    /// Days after that review to file the continuing SAR.
    pub continuing_file_days: i64,
    /// Days before a deadline when it is shown as due soon.
    pub warn_days: i64,
}

impl Default for SarClockConfig {
    fn default() -> Self {
        Self {
            file_days: 30,
            file_days_no_suspect: 60,
            continuing_review_days: 90,
            continuing_file_days: 30,
            warn_days: 5,
        }
    }
}

/// The SAR dates of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SarClocks {
    /// When suspicion was determined (the clock start).
    pub determined_at: DateTime<Utc>,
    /// The filing deadline.
    pub file_due: DateTime<Utc>,
    /// After a filing: when continuing activity is to be reviewed.
    pub continuing_review_due: Option<DateTime<Utc>>,
    /// After a filing: the deadline of the continuing SAR.
    pub continuing_file_due: Option<DateTime<Utc>>,
}

impl SarClockConfig {
    /// Dates for a case whose suspicion was determined at `determined_at`, with or without an
    /// identified suspect, and filed at `filed_at` if it was.
    pub fn clocks(
        &self,
        determined_at: DateTime<Utc>,
        suspect_identified: bool,
        filed_at: Option<DateTime<Utc>>,
    ) -> SarClocks {
        let days = if suspect_identified {
            self.file_days
        } else {
            self.file_days_no_suspect
        };
        let review = filed_at.map(|f| f + Duration::days(self.continuing_review_days));
        SarClocks {
            determined_at,
            file_due: determined_at + Duration::days(days),
            continuing_review_due: review,
            continuing_file_due: review.map(|r| r + Duration::days(self.continuing_file_days)),
        }
    }

    /// The status of a deadline at `now`.
    pub fn status(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> SlaStatus {
        if now >= due {
            SlaStatus::Breach
        } else if now >= due - Duration::days(self.warn_days) {
            SlaStatus::Warn
        } else {
            SlaStatus::Ok
        }
    }
}

/// Where a clock stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaStatus {
    /// In time.
    Ok,
    /// Past the warn time.
    Warn,
    /// Past the breach time (overdue).
    Breach,
}

impl SlaStatus {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SlaStatus::Ok => "ok",
            SlaStatus::Warn => "warn",
            SlaStatus::Breach => "breach",
        }
    }
}

/// The service level of each priority (`REVIEW_SLA_HOURS`: `PRIORITY=WARN/BREACH,...`, e.g.
/// `CRITICAL=4/24,HIGH=24/72,MEDIUM=72/168,LOW=168/336`, the default). A priority it does not
/// name gets the `LOW` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaTable {
    entries: Vec<(String, Sla)>,
}

impl Default for SlaTable {
    fn default() -> Self {
        SlaTable {
            entries: Priority::ALL
                .into_iter()
                .map(|p| (p.as_str().to_string(), Sla::for_priority(p.as_str())))
                .collect(),
        }
    }
}

impl SlaTable {
    /// Parses `PRIORITY=WARN/BREACH,...`; every priority named must have 0 < warn <= breach,
    /// and `LOW` must be present. The error says what is wrong.
    pub fn parse(text: &str) -> Result<SlaTable, String> {
        let mut entries: Vec<(String, Sla)> = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (priority, hours) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}` is not PRIORITY=WARN/BREACH"))?;
            let priority = priority.trim().to_ascii_uppercase();
            if !Priority::ALL.iter().any(|p| p.as_str() == priority) {
                return Err(format!("unknown priority `{priority}`"));
            }
            let (warn, breach) = hours
                .split_once('/')
                .ok_or_else(|| format!("`{item}` is not PRIORITY=WARN/BREACH"))?;
            let num = |v: &str| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("`{}` in `{item}` is not a number of hours", v.trim()))
            };
            let (warn_hours, breach_hours) = (num(warn)?, num(breach)?);
            if !(0 < warn_hours && warn_hours <= breach_hours && breach_hours <= 24 * 366) {
                return Err(format!("`{item}`: need 0 < WARN <= BREACH <= 8784 hours"));
            }
            if entries.iter().any(|(p, _)| *p == priority) {
                return Err(format!("`{priority}` is given twice"));
            }
            entries.push((
                priority,
                Sla {
                    warn_hours,
                    breach_hours,
                },
            ));
        }
        if !entries.iter().any(|(p, _)| p == "LOW") {
            return Err("`LOW` is required (priorities not named use it)".into());
        }
        Ok(SlaTable { entries })
    }

    /// The SLA of a priority.
    pub fn for_priority(&self, priority: &str) -> Sla {
        self.entries
            .iter()
            .find(|(p, _)| p == priority)
            .or_else(|| self.entries.iter().find(|(p, _)| p == "LOW"))
            .map(|(_, s)| *s)
            .unwrap_or_else(|| Sla::for_priority(priority))
    }
}

/// A queue's service level: how long a case may stay unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sla {
    /// Hours after opening when the case is shown as at risk.
    pub warn_hours: i64,
    /// Hours after opening when the case is in breach.
    pub breach_hours: i64,
}

impl Sla {
    /// Default SLA of a priority (`LOW`, `MEDIUM`, `HIGH`, `CRITICAL`).
    pub fn for_priority(priority: &str) -> Sla {
        let (warn_hours, breach_hours) = match priority {
            "CRITICAL" => (4, 24),
            "HIGH" => (24, 72),
            "MEDIUM" => (72, 168),
            _ => (168, 336),
        };
        Sla {
            warn_hours,
            breach_hours,
        }
    }

    /// `(warn_at, breach_at)` of a case opened at `opened_at`.
    pub fn times(&self, opened_at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            opened_at + Duration::hours(self.warn_hours),
            opened_at + Duration::hours(self.breach_hours),
        )
    }

    /// Status at `now` of a case opened at `opened_at`.
    pub fn status(&self, opened_at: DateTime<Utc>, now: DateTime<Utc>) -> SlaStatus {
        let (warn, breach) = self.times(opened_at);
        if now >= breach {
            SlaStatus::Breach
        } else if now >= warn {
            SlaStatus::Warn
        } else {
            SlaStatus::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn sar_due_dates() {
        let c = SarClockConfig::default();
        let det = t("2026-01-10T09:00:00Z");
        let k = c.clocks(det, true, None);
        assert_eq!(k.file_due, t("2026-02-09T09:00:00Z"));
        assert_eq!(k.continuing_review_due, None);
        let k = c.clocks(det, false, None);
        assert_eq!(k.file_due, t("2026-03-11T09:00:00Z"));
        // Filed on 2026-02-01: continuing review 90 days later, +30 to file.
        let k = c.clocks(det, true, Some(t("2026-02-01T00:00:00Z")));
        assert_eq!(k.continuing_review_due, Some(t("2026-05-02T00:00:00Z")));
        assert_eq!(k.continuing_file_due, Some(t("2026-06-01T00:00:00Z")));
        // Configurable.
        let short = SarClockConfig { file_days: 10, ..c };
        assert_eq!(
            short.clocks(det, true, None).file_due,
            t("2026-01-20T09:00:00Z")
        );
        // Status around the deadline.
        let due = k.file_due;
        assert_eq!(c.status(due, due - Duration::days(6)), SlaStatus::Ok);
        assert_eq!(c.status(due, due - Duration::days(5)), SlaStatus::Warn);
        assert_eq!(c.status(due, due), SlaStatus::Breach);
    }

    #[test]
    fn sla_warns_then_breaches() {
        let s = Sla::for_priority("CRITICAL");
        let o = t("2026-01-01T00:00:00Z");
        assert_eq!(s.status(o, o + Duration::hours(3)), SlaStatus::Ok);
        assert_eq!(s.status(o, o + Duration::hours(4)), SlaStatus::Warn);
        assert_eq!(s.status(o, o + Duration::hours(24)), SlaStatus::Breach);
        assert!(Sla::for_priority("LOW").breach_hours > s.breach_hours);
    }

    #[test]
    fn sla_table_parses_and_refuses_naming_the_problem() {
        let t = SlaTable::parse("critical=2/8, LOW=100/200").unwrap();
        assert_eq!(t.for_priority("CRITICAL").breach_hours, 8);
        assert_eq!(t.for_priority("HIGH").warn_hours, 100, "unnamed: LOW's");
        assert_eq!(
            SlaTable::default().for_priority("HIGH"),
            Sla::for_priority("HIGH")
        );
        for (bad, says) in [
            ("HIGH=1/2", "LOW"),
            ("LOW=5/2", "WARN <= BREACH"),
            ("LOW=x/2", "not a number"),
            ("URGENT=1/2,LOW=1/2", "unknown priority"),
            ("LOW=1/2,LOW=1/3", "twice"),
            ("LOW", "PRIORITY=WARN/BREACH"),
        ] {
            let e = SlaTable::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}

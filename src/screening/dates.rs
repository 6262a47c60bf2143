//! Dates of birth as lists give them: exact, year-month, year, circa, or a span of years,
//! and how a customer's date of birth compares with them.

use chrono::{Datelike, NaiveDate};

/// A date of birth from a list entry, as precise as the list gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BirthDate {
    /// A full date.
    Exact(NaiveDate),
    /// Year and month only.
    YearMonth {
        /// Year.
        year: i32,
        /// Month, 1..=12.
        month: u32,
    },
    /// Year only.
    Year(i32),
    /// "circa" / "approximately" a year.
    Circa(i32),
    /// Somewhere between two years, inclusive ("1970 to 1972", UN `FROM_YEAR`/`TO_YEAR`).
    Range {
        /// First possible year.
        from: i32,
        /// Last possible year.
        to: i32,
    },
}

/// How a customer's date of birth relates to an entry's dates of birth (the best of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DobRelation {
    /// Years differ beyond any tolerance: a contradiction.
    Conflict,
    /// Same year but a different day or month, or one year off a year-only date: too close
    /// to contradict (a typo or an approximation), too far to corroborate.
    Near,
    /// Nothing to compare: one side has no date of birth.
    Unknown,
    /// Compatible at the precision the list gives (same year for a year-only date, within
    /// the span or one year of a circa date).
    Compatible,
    /// The same full date.
    Exact,
}

impl BirthDate {
    /// The earliest and latest year this date allows.
    pub fn year_span(&self) -> (i32, i32) {
        match *self {
            BirthDate::Exact(d) => (d.year(), d.year()),
            BirthDate::YearMonth { year, .. } | BirthDate::Year(year) => (year, year),
            BirthDate::Circa(y) => (y - 1, y + 1),
            BirthDate::Range { from, to } => (from.min(to), from.max(to)),
        }
    }

    /// Compares a customer's date of birth with this one.
    pub fn relate(&self, dob: NaiveDate) -> DobRelation {
        let relation = self.relate_exactly(dob);
        if relation == DobRelation::Conflict && !matches!(self, BirthDate::Exact(_)) {
            // Two adjacent digits of the year swapped (1969 typed as 1996) is the commonest
            // slip; a year the list allows once the slip is undone is a near miss, not a
            // contradiction. (Full dates have their own, stricter rule.)
            let (lo, hi) = self.year_span();
            if transposed_years(dob.year()).any(|t| (lo..=hi).contains(&t)) {
                return DobRelation::Near;
            }
        }
        relation
    }

    fn relate_exactly(&self, dob: NaiveDate) -> DobRelation {
        let y = dob.year();
        match *self {
            BirthDate::Exact(d) => {
                if d == dob {
                    DobRelation::Exact
                } else if d.year() == y
                    || (d.month() == dob.day() && d.day() == dob.month())
                    || (d.month() == dob.month()
                        && d.day() == dob.day()
                        && strsim::osa_distance(&d.year().to_string(), &y.to_string()) <= 1)
                {
                    // Same year, swapped day/month, or one mistyped or transposed digit in
                    // the year of an otherwise identical date (1967 / 1976 / 1961).
                    DobRelation::Near
                } else {
                    DobRelation::Conflict
                }
            }
            BirthDate::YearMonth { year, month } => {
                if year == y && month == dob.month() {
                    DobRelation::Compatible
                } else if (year - y).abs() <= 1 {
                    DobRelation::Near
                } else {
                    DobRelation::Conflict
                }
            }
            BirthDate::Year(year) => match (year - y).abs() {
                0 => DobRelation::Compatible,
                1 => DobRelation::Near,
                _ => DobRelation::Conflict,
            },
            BirthDate::Circa(_) | BirthDate::Range { .. } => {
                let (lo, hi) = self.year_span();
                if (lo..=hi).contains(&y) {
                    DobRelation::Compatible
                } else if y >= lo - 2 && y <= hi + 2 {
                    DobRelation::Near
                } else {
                    DobRelation::Conflict
                }
            }
        }
    }
}

/// The years made by swapping two adjacent digits of `year` (1969: 9169, 1699, 1996).
fn transposed_years(year: i32) -> impl Iterator<Item = i32> {
    let digits: Vec<u8> = year.to_string().into_bytes();
    (0..digits.len().saturating_sub(1)).filter_map(move |i| {
        let mut d = digits.clone();
        d.swap(i, i + 1);
        (d != digits)
            .then(|| std::str::from_utf8(&d).ok()?.parse::<i32>().ok())
            .flatten()
    })
}

impl std::fmt::Display for BirthDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BirthDate::Exact(d) => write!(f, "{d}"),
            BirthDate::YearMonth { year, month } => write!(f, "{year}-{month:02}"),
            BirthDate::Year(y) => write!(f, "{y}"),
            BirthDate::Circa(y) => write!(f, "circa {y}"),
            BirthDate::Range { from, to } => write!(f, "{from} to {to}"),
        }
    }
}

/// The best relation between a customer's date of birth and any of an entry's dates.
pub fn best_relation(
    entry: &[BirthDate],
    dob: Option<NaiveDate>,
) -> (DobRelation, Option<BirthDate>) {
    let Some(dob) = dob else {
        return (DobRelation::Unknown, None);
    };
    entry
        .iter()
        .map(|b| (b.relate(dob), Some(*b)))
        .max_by_key(|(r, _)| *r)
        .unwrap_or((DobRelation::Unknown, None))
}

fn month_of(word: &str) -> Option<u32> {
    let w = word.get(..3)?.to_ascii_lowercase();
    let m = match w.as_str() {
        "jan" => 1,
        "feb" => 2,
        "mar" => 3,
        "apr" => 4,
        "may" => 5,
        "jun" => 6,
        "jul" => 7,
        "aug" => 8,
        "sep" => 9,
        "oct" => 10,
        "nov" => 11,
        "dec" => 12,
        _ => return None,
    };
    Some(m)
}

fn plausible_year(y: i32) -> bool {
    (1850..=2100).contains(&y)
}

/// One OFAC-style date: `12 Jan 1960`, `Jan 1960`, `1960`, or ISO `1960-01-12`/`1960-01`.
fn parse_one(text: &str) -> Option<BirthDate> {
    let t = text.trim().trim_end_matches('.').trim();
    if let Some(b) = parse_iso(t) {
        return Some(b);
    }
    let parts: Vec<&str> = t.split_whitespace().collect();
    match parts.as_slice() {
        [y] => y
            .parse()
            .ok()
            .filter(|y| plausible_year(*y))
            .map(BirthDate::Year),
        [m, y] => {
            let year: i32 = y.parse().ok().filter(|y| plausible_year(*y))?;
            Some(BirthDate::YearMonth {
                year,
                month: month_of(m)?,
            })
        }
        [d, m, y] => {
            let year: i32 = y.parse().ok().filter(|y| plausible_year(*y))?;
            let day: u32 = d.parse().ok()?;
            NaiveDate::from_ymd_opt(year, month_of(m)?, day).map(BirthDate::Exact)
        }
        _ => None,
    }
}

/// ISO forms: `1960`, `1960-01`, `1960-01-12` (OpenSanctions and UN).
pub fn parse_iso(text: &str) -> Option<BirthDate> {
    let t = text.trim();
    let parts: Vec<&str> = t.split('-').collect();
    let num = |s: &str| -> Option<i64> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    match parts.as_slice() {
        [y] if y.len() == 4 => {
            let y = num(y)? as i32;
            plausible_year(y).then_some(BirthDate::Year(y))
        }
        [y, m] if y.len() == 4 => {
            let year = num(y)? as i32;
            let month = num(m)? as u32;
            (plausible_year(year) && (1..=12).contains(&month))
                .then_some(BirthDate::YearMonth { year, month })
        }
        [y, m, d] if y.len() == 4 => {
            // "1960-01-12T00:00:00" is cut to the date.
            let d = d.get(..2).unwrap_or(d);
            let year = num(y)? as i32;
            if !plausible_year(year) {
                return None;
            }
            NaiveDate::from_ymd_opt(year, num(m)? as u32, num(d)? as u32).map(BirthDate::Exact)
        }
        _ => None,
    }
}

/// Parses the text after `DOB` in OFAC remarks: `12 Jan 1960`, `1960`, `Jan 1960`,
/// `circa 1960`, `1970 to 1972`, `01 Jan 1979 to 31 Dec 1979`, `circa 1960-1962`.
pub fn parse_ofac_dob(text: &str) -> Option<BirthDate> {
    let t = text.trim().trim_end_matches('.').trim();
    let (circa, t) = match t
        .strip_prefix("circa ")
        .or_else(|| t.strip_prefix("Circa "))
        .or_else(|| t.strip_prefix("approximately "))
    {
        Some(rest) => (true, rest.trim()),
        None => (false, t),
    };
    let range = t.split_once(" to ").or_else(|| {
        // "1960-1962", but not an ISO date.
        t.split_once('-')
            .filter(|(a, b)| a.trim().len() == 4 && b.trim().len() == 4)
    });
    if let Some((a, b)) = range {
        let (a, b) = (parse_one(a)?, parse_one(b)?);
        let (from, _) = a.year_span();
        let (_, to) = b.year_span();
        return Some(if from == to {
            if circa {
                BirthDate::Circa(from)
            } else {
                BirthDate::Year(from)
            }
        } else {
            BirthDate::Range { from, to }
        });
    }
    let one = parse_one(t)?;
    Some(match (circa, one) {
        (true, b) => BirthDate::Circa(b.year_span().0),
        (false, b) => b,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn ofac_dob_forms_parse() {
        assert_eq!(
            parse_ofac_dob("12 Jan 1960"),
            Some(BirthDate::Exact(d("1960-01-12")))
        );
        assert_eq!(parse_ofac_dob("1962"), Some(BirthDate::Year(1962)));
        assert_eq!(
            parse_ofac_dob("Jan 1960"),
            Some(BirthDate::YearMonth {
                year: 1960,
                month: 1
            })
        );
        assert_eq!(parse_ofac_dob("circa 1976"), Some(BirthDate::Circa(1976)));
        assert_eq!(
            parse_ofac_dob("1970 to 1972"),
            Some(BirthDate::Range {
                from: 1970,
                to: 1972
            })
        );
        assert_eq!(
            parse_ofac_dob("01 Jan 1979 to 31 Dec 1979"),
            Some(BirthDate::Year(1979))
        );
        assert_eq!(
            parse_ofac_dob("circa 1960-1962"),
            Some(BirthDate::Range {
                from: 1960,
                to: 1962
            })
        );
        assert_eq!(
            parse_ofac_dob("07 Nov 1966."),
            Some(BirthDate::Exact(d("1966-11-07")))
        );
        assert_eq!(parse_iso("1947"), Some(BirthDate::Year(1947)));
        assert_eq!(parse_ofac_dob("unknown"), None);
    }

    #[test]
    fn relations() {
        let e = BirthDate::Exact(d("1960-01-12"));
        assert_eq!(e.relate(d("1960-01-12")), DobRelation::Exact);
        assert_eq!(e.relate(d("1960-03-12")), DobRelation::Near);
        assert_eq!(e.relate(d("1960-12-01")), DobRelation::Near);
        assert_eq!(e.relate(d("1975-01-12")), DobRelation::Conflict);
        // One mistyped or transposed year digit of an otherwise identical date.
        assert_eq!(e.relate(d("1906-01-12")), DobRelation::Near);
        assert_eq!(e.relate(d("1961-01-12")), DobRelation::Near);
        assert_eq!(e.relate(d("1906-02-12")), DobRelation::Conflict);
        // A year-only date: a transposed year is a near miss, another year a conflict.
        assert_eq!(
            BirthDate::Year(1969).relate(d("1996-02-02")),
            DobRelation::Near
        );
        assert_eq!(
            BirthDate::Year(1969).relate(d("1979-02-02")),
            DobRelation::Conflict
        );
        assert_eq!(
            BirthDate::Circa(1963).relate(d("1936-02-02")),
            DobRelation::Near
        );
        assert_eq!(
            BirthDate::Year(1958).relate(d("1958-10-29")),
            DobRelation::Compatible
        );
        assert_eq!(
            BirthDate::Year(1958).relate(d("1957-10-29")),
            DobRelation::Near
        );
        assert_eq!(
            BirthDate::Year(1963).relate(d("1997-05-23")),
            DobRelation::Conflict
        );
        assert_eq!(
            BirthDate::Circa(1976).relate(d("1975-01-15")),
            DobRelation::Compatible
        );
        let (r, _) = best_relation(
            &[BirthDate::Year(1940), BirthDate::Year(1942)],
            Some(d("1942-02-02")),
        );
        assert_eq!(r, DobRelation::Compatible);
        assert_eq!(
            best_relation(&[], Some(d("1942-02-02"))).0,
            DobRelation::Unknown
        );
    }
}

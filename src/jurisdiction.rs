//! Jurisdiction risk lists: FATF "call for action" and "increased monitoring" and the EU list of
//! high-risk third countries, loaded from a small CSV (`iso2,country,fatf_status,
//! eu_high_risk_third_country`), and the flags they raise on an alert.
//!
//! Loading is the only I/O in this module; [`JurisdictionTable::flags`] is pure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::domain::alert::Alert;
use crate::domain::facts::JurisdictionFlag;

/// Status string for the FATF "high-risk jurisdictions subject to a call for action" list.
pub const FATF_CALL_FOR_ACTION: &str = "FATF_CALL_FOR_ACTION";
/// Status string for the FATF "jurisdictions under increased monitoring" list.
pub const FATF_INCREASED_MONITORING: &str = "FATF_INCREASED_MONITORING";
/// Status string for the EU list of high-risk third countries.
pub const EU_HIGH_RISK: &str = "EU_HIGH_RISK";

/// Hex digits of the file's SHA-256 kept as its version: enough to tell list releases apart.
const VERSION_HEX_CHARS: usize = 16;

/// Why a jurisdiction file could not be loaded. Messages name `file:line`.
#[derive(Debug, thiserror::Error)]
pub enum JurisdictionError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// A FATF public-statement list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FatfStatus {
    /// High-risk jurisdiction subject to a call for action ("black list").
    CallForAction,
    /// Jurisdiction under increased monitoring ("grey list").
    IncreasedMonitoring,
}

/// The list memberships of one country.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JurisdictionStatus {
    /// FATF list, if any.
    pub fatf: Option<FatfStatus>,
    /// On the EU list of high-risk third countries.
    pub eu_high_risk: bool,
}

impl JurisdictionStatus {
    /// Whether the country is on the FATF call-for-action list.
    pub fn is_call_for_action(&self) -> bool {
        self.fatf == Some(FatfStatus::CallForAction)
    }

    /// The status strings of every list the country is on, most severe first.
    pub fn statuses(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        match self.fatf {
            Some(FatfStatus::CallForAction) => out.push(FATF_CALL_FOR_ACTION),
            Some(FatfStatus::IncreasedMonitoring) => out.push(FATF_INCREASED_MONITORING),
            None => {}
        }
        if self.eu_high_risk {
            out.push(EU_HIGH_RISK);
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    status: JurisdictionStatus,
}

/// The loaded jurisdiction lists, keyed by ISO 3166-1 alpha-2 code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JurisdictionTable {
    entries: BTreeMap<String, Entry>,
    version: String,
}

impl JurisdictionTable {
    /// A table with no listed country (version `empty`): every lookup misses.
    pub fn empty() -> Self {
        Self {
            entries: BTreeMap::new(),
            version: "empty".to_string(),
        }
    }

    /// Loads `iso2,country,fatf_status,eu_high_risk_third_country` from `path`.
    ///
    /// `fatf_status` is `call_for_action`, `increased_monitoring` or blank; the EU column is
    /// `yes`, `no` or blank. Rows on no list are accepted and ignored. Duplicate codes, unknown
    /// statuses and malformed codes are errors, because a silently skipped row would be a
    /// silently missed high-risk country.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, JurisdictionError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| JurisdictionError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&bytes, path)
    }

    /// Parses CSV bytes; `origin` names the source in error messages.
    pub fn parse(bytes: &[u8], origin: &Path) -> Result<Self, JurisdictionError> {
        let err = |line: u64, message: String| JurisdictionError::Parse {
            path: origin.to_path_buf(),
            line,
            message,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let headers = reader
            .headers()
            .map_err(|e| err(1, format!("bad header: {e}")))?
            .clone();
        let expected = [
            "iso2",
            "country",
            "fatf_status",
            "eu_high_risk_third_country",
        ];
        let found: Vec<String> = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
        if found.len() < expected.len() || found[..expected.len()] != expected {
            return Err(err(
                1,
                format!("header must start with {}", expected.join(",")),
            ));
        }
        let mut entries = BTreeMap::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                err(line, e.to_string())
            })?;
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            if record.iter().all(str::is_empty) {
                continue;
            }
            let field = |i: usize| record.get(i).unwrap_or("");
            let code = field(0);
            if !(code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase())) {
                return Err(err(
                    line,
                    format!("iso2 must be two capital letters, got {code:?}"),
                ));
            }
            let fatf = match field(2).to_ascii_lowercase().as_str() {
                "" => None,
                "call_for_action" => Some(FatfStatus::CallForAction),
                "increased_monitoring" => Some(FatfStatus::IncreasedMonitoring),
                other => {
                    return Err(err(
                        line,
                        format!(
                            "fatf_status must be call_for_action, increased_monitoring or blank, got {other:?}"
                        ),
                    ));
                }
            };
            let eu_high_risk = match field(3).to_ascii_lowercase().as_str() {
                "yes" => true,
                "" | "no" => false,
                other => {
                    return Err(err(
                        line,
                        format!(
                            "eu_high_risk_third_country must be yes, no or blank, got {other:?}"
                        ),
                    ));
                }
            };
            if entries.contains_key(code) {
                return Err(err(line, format!("duplicate country {code}")));
            }
            // Rows on no list are kept until the end so that their duplicates are caught too.
            entries.insert(
                code.to_string(),
                Entry {
                    name: field(1).to_string(),
                    status: JurisdictionStatus { fatf, eu_high_risk },
                },
            );
        }
        entries.retain(|_, e| e.status.fatf.is_some() || e.status.eu_high_risk);
        let digest = hex::encode(Sha256::digest(bytes));
        Ok(Self {
            entries,
            version: digest[..VERSION_HEX_CHARS].to_string(),
        })
    }

    /// The list memberships of `alpha2`, or `None` when it is on no list.
    pub fn lookup(&self, alpha2: &str) -> Option<JurisdictionStatus> {
        self.entries
            .get(&alpha2.trim().to_ascii_uppercase())
            .map(|e| e.status)
    }

    /// The country name the file gives for `alpha2`, when listed.
    pub fn name(&self, alpha2: &str) -> Option<&str> {
        self.entries
            .get(&alpha2.trim().to_ascii_uppercase())
            .map(|e| e.name.as_str())
    }

    /// Number of listed countries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no country is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first hex digits of the file's SHA-256, or `empty`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// One flag per list membership of every country the alert mentions: the customer's
    /// nationality and addresses and every counterparty country.
    ///
    /// A country on two lists (e.g. FATF grey list and EU list) gives two flags at the same
    /// location; they share the evidence id `juris:{CC}:{location}`, so group by it when
    /// scoring to avoid counting one mention twice.
    pub fn flags(&self, alert: &Alert) -> Vec<JurisdictionFlag> {
        let mut out = Vec::new();
        for (location, code) in alert.countries() {
            let Some(status) = self.lookup(code) else {
                continue;
            };
            let code = code.to_ascii_uppercase();
            for s in status.statuses() {
                out.push(JurisdictionFlag {
                    evidence_id: format!("juris:{code}:{location}"),
                    country: code.clone(),
                    location: location.clone(),
                    status: s.to_string(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fatf_mini.csv")
    }

    #[test]
    fn loads_fixture_and_looks_up_statuses() {
        let t = JurisdictionTable::load(fixture()).unwrap();
        assert_eq!(t.len(), 4, "the row on no list is not kept");
        let ir = t.lookup("IR").unwrap();
        assert!(ir.is_call_for_action());
        assert!(ir.eu_high_risk);
        assert_eq!(ir.statuses(), vec![FATF_CALL_FOR_ACTION, EU_HIGH_RISK]);
        let kp = t.lookup("kp").unwrap();
        assert!(kp.is_call_for_action());
        assert_eq!(t.name("KP"), Some("Korea, North"));
        let dz = t.lookup("DZ").unwrap();
        assert_eq!(dz.fatf, Some(FatfStatus::IncreasedMonitoring));
        assert!(!dz.eu_high_risk);
        let pa = t.lookup("PA").unwrap();
        assert_eq!(pa.fatf, None);
        assert!(pa.eu_high_risk);
        assert_eq!(t.lookup("US"), None);
        assert_eq!(t.lookup("FR"), None);
        assert_eq!(t.version().len(), VERSION_HEX_CHARS);
        assert!(t.version().bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn empty_table_flags_nothing() {
        let t = JurisdictionTable::empty();
        assert!(t.is_empty());
        assert_eq!(t.version(), "empty");
        assert_eq!(t.lookup("IR"), None);
    }

    #[test]
    fn errors_name_file_and_line() {
        let p = Path::new("lists.csv");
        let bad = b"iso2,country,fatf_status,eu_high_risk_third_country\nIR,Iran,call_for_action,yes\nXX,Nowhere,grey,\n";
        let e = JurisdictionTable::parse(bad, p).unwrap_err().to_string();
        assert!(e.starts_with("lists.csv:3: fatf_status"), "{e}");
        let dup = b"iso2,country,fatf_status,eu_high_risk_third_country\nIR,Iran,call_for_action,yes\nIR,Iran,,yes\n";
        let e = JurisdictionTable::parse(dup, p).unwrap_err().to_string();
        assert_eq!(e, "lists.csv:3: duplicate country IR");
        let code =
            b"iso2,country,fatf_status,eu_high_risk_third_country\nIran,Iran,call_for_action,yes\n";
        let e = JurisdictionTable::parse(code, p).unwrap_err().to_string();
        assert!(e.starts_with("lists.csv:2: iso2"), "{e}");
        let header = b"code,name\nIR,Iran\n";
        let e = JurisdictionTable::parse(header, p).unwrap_err().to_string();
        assert!(e.starts_with("lists.csv:1: header"), "{e}");
        let e = JurisdictionTable::load("/nonexistent/fatf.csv").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/fatf.csv: cannot read"),
            "{e}"
        );
    }

    #[test]
    fn flags_cover_nationality_addresses_and_counterparties() {
        let t = JurisdictionTable::load(fixture()).unwrap();
        let alert = Alert::from_value(serde_json::json!({
            "alert_id": "J1", "alert_type": "TRANSACTION", "priority": "LOW",
            "created_at": "2024-01-02T00:00:00Z",
            "customer": {"customer_id": "C1", "name": "A B", "entity_type": "INDIVIDUAL",
                "nationality": "DZ",
                "addresses": [{"country": "US"}, {"country": "PA"}]},
            "transactions": [
                {"transaction_id": "T1", "timestamp": "2024-01-01T00:00:00Z", "amount": 10.0,
                 "currency": "USD", "direction": "OUT", "type": "WIRE",
                 "counterparty": {"name": "X", "country": "IR"}},
                {"transaction_id": "T2", "timestamp": "2024-01-01T00:00:00Z", "amount": 10.0,
                 "currency": "USD", "direction": "OUT", "type": "WIRE",
                 "counterparty": {"name": "Y", "country": "US"}}
            ]
        }))
        .unwrap();
        let flags = t.flags(&alert);
        let ids: Vec<(&str, &str)> = flags
            .iter()
            .map(|f| (f.evidence_id.as_str(), f.status.as_str()))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("juris:DZ:customer.nationality", FATF_INCREASED_MONITORING),
                ("juris:PA:customer.addresses[1].country", EU_HIGH_RISK),
                ("juris:IR:tx:T1", FATF_CALL_FOR_ACTION),
                ("juris:IR:tx:T1", EU_HIGH_RISK),
            ]
        );
        assert!(JurisdictionTable::empty().flags(&alert).is_empty());
    }

    #[test]
    fn shipped_list_loads_when_present() {
        let dir = std::env::var("AML_SHARED_DATA")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data").into());
        let path = Path::new(&dir).join("jurisdiction/fatf_lists.csv");
        if !path.exists() {
            eprintln!("skipped: {} not found", path.display());
            return;
        }
        let t = JurisdictionTable::load(&path).unwrap();
        for cc in ["IR", "KP", "MM"] {
            assert!(t.lookup(cc).unwrap().is_call_for_action(), "{cc}");
        }
        assert_eq!(t.lookup("US"), None);
    }
}

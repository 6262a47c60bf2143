//! The input alert: its serde model and its validation.
//!
//! Parsing is strict: unknown fields, unknown enum values, bad dates and non-finite or negative
//! amounts are rejected with an [`AlertError`] that names the field path
//! (`transactions[3].amount: must be finite and >= 0`). Extra information belongs in
//! `metadata`, which is kept as given.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Largest accepted alert, in bytes of JSON, unless configured otherwise.
pub const DEFAULT_MAX_ALERT_BYTES: usize = 1024 * 1024;
/// Largest accepted number of transactions in one alert.
pub const MAX_TRANSACTIONS: usize = 10_000;
/// Largest accepted number of screening matches in one alert.
pub const MAX_SCREENING_MATCHES: usize = 1_000;
/// Largest accepted length of any single string field, in bytes.
pub const MAX_STRING_BYTES: usize = 16 * 1024;
/// Longest accepted identifier (`alert_id`, `customer.customer_id`,
/// `transactions[].transaction_id`), in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Largest accepted amount (`transactions[].amount`, `customer.expected_monthly_volume`):
/// above any real payment, and far below where an `f64` stops holding whole cents.
pub const MAX_AMOUNT: f64 = 1e15;

/// Whether `c` may appear in an identifier: ASCII letters, digits and `.` `_` `:` `-`. No `/`,
/// space, `%` or `?`, so an id is its own URL path segment, needs no escaping anywhere and
/// every backend stores it byte for byte.
pub fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

/// Checks an identifier: 1 to [`MAX_ID_CHARS`] characters, each one [`is_id_char`].
pub fn check_id(field: &str, v: &str) -> Result<(), AlertError> {
    if v.is_empty() || v.len() > MAX_ID_CHARS {
        return Err(AlertError::new(
            field,
            format!(
                "must be 1 to {MAX_ID_CHARS} characters long, got {}",
                v.chars().count()
            ),
        ));
    }
    if let Some(c) = v.chars().find(|c| !is_id_char(*c)) {
        return Err(AlertError::new(
            field,
            format!(
                "character {:?} is not allowed: ids use only A-Z a-z 0-9 . _ : -",
                c.escape_debug().to_string()
            ),
        ));
    }
    Ok(())
}

/// A rejected alert: the field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct AlertError {
    /// Dotted path of the offending field, e.g. `transactions[3].amount`; `$` for the document.
    pub field: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl AlertError {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Kind of alert raised by the monitoring or screening system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertType {
    /// A sanctions-list screening hit.
    Sanctions,
    /// A politically-exposed-person screening hit.
    Pep,
    /// An adverse-media hit.
    AdverseMedia,
    /// A transaction-monitoring scenario fired.
    Transaction,
    /// Ongoing KYC review.
    KycOngoing,
}

/// Priority the source system gave the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Priority {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Priority {
    /// Every priority, most urgent first.
    pub const ALL: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Medium,
        Priority::Low,
    ];

    /// The name alerts carry (`CRITICAL`, `HIGH`, `MEDIUM`, `LOW`).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "CRITICAL",
            Priority::High => "HIGH",
            Priority::Medium => "MEDIUM",
            Priority::Low => "LOW",
        }
    }
}

/// Whether the customer is a person or an organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntityType {
    /// A natural person.
    Individual,
    /// A company or other legal entity.
    Business,
}

/// KYC risk rating held for the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KycRiskRating {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

/// Direction of funds relative to the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Direction {
    /// Funds received by the customer.
    In,
    /// Funds sent by the customer.
    Out,
}

/// Payment instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransactionType {
    /// Wire transfer.
    Wire,
    /// Cash deposit or withdrawal.
    Cash,
    /// ACH transfer.
    Ach,
    /// Card payment.
    Card,
    /// Cheque.
    Check,
    /// Book or account-to-account transfer.
    Transfer,
    /// Crypto-asset transfer.
    Crypto,
}

/// One alert as received from the monitoring or screening system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// The idempotency key.
    pub alert_id: String,
    /// Kind of alert.
    pub alert_type: AlertType,
    /// Source priority.
    pub priority: Priority,
    /// When the source raised it (normalised to UTC).
    pub created_at: DateTime<Utc>,
    /// The monitoring scenario that fired, e.g. `FAN_IN_30D`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    /// The subject of the alert.
    pub customer: Customer,
    /// Screening matches claimed by the source system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screening: Option<Screening>,
    /// Transactions the alert covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transactions: Vec<Transaction>,
    /// Jurisdiction and regulations that apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regulatory_context: Option<RegulatoryContext>,
    /// Anything else the source system sent; kept as given.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// The customer the alert is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    /// Customer identifier in the bank's systems.
    pub customer_id: String,
    /// Full name.
    pub name: String,
    /// Other names the customer is known by.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Person or organisation.
    pub entity_type: EntityType,
    /// Date of birth (individuals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<NaiveDate>,
    /// ISO 3166-1 alpha-2 nationality or country of incorporation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nationality: Option<String>,
    /// Known addresses.
    #[serde(default)]
    pub addresses: Vec<Address>,
    /// Line of business.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<String>,
    /// KYC risk rating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kyc_risk_rating: Option<KycRiskRating>,
    /// Date the relationship began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_opened: Option<NaiveDate>,
    /// Volume the customer declared at onboarding, in the account currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_monthly_volume: Option<f64>,
}

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    /// Street line.
    #[serde(default)]
    pub street: String,
    /// City.
    #[serde(default)]
    pub city: String,
    /// State or region.
    #[serde(default)]
    pub state: String,
    /// Postal code.
    #[serde(default)]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country; empty when unknown.
    #[serde(default)]
    pub country: String,
}

/// Screening section of an alert.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Screening {
    /// Candidate list entries the source matched.
    #[serde(default)]
    pub matches: Vec<ScreeningMatch>,
}

/// One list entry the source system matched against the customer: a claim to verify.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreeningMatch {
    /// List identifier, e.g. `OFAC_SDN`, `UN_CONSOLIDATED`, `OPENSANCTIONS_PEP`.
    pub list: String,
    /// Entry identifier within that list.
    pub entry_id: String,
    /// Name on the list that matched.
    pub matched_name: String,
    /// Source matcher's score in 0..=1.
    pub score: f64,
    /// How it matched: `NAME`, `ALIAS`, `WEAK_ALIAS`, ...
    pub match_type: String,
}

/// One transaction in the alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    /// Identifier, unique within the alert.
    pub transaction_id: String,
    /// Booking time (normalised to UTC).
    pub timestamp: DateTime<Utc>,
    /// Amount in `currency`, finite and non-negative.
    pub amount: f64,
    /// ISO 4217 currency code.
    pub currency: String,
    /// Direction relative to the customer.
    pub direction: Direction,
    /// Instrument.
    #[serde(rename = "type")]
    pub kind: TransactionType,
    /// The other party.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty: Option<Counterparty>,
    /// Free text from the payment: untrusted data, never instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The other party of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counterparty {
    /// Name as given in the payment.
    #[serde(default)]
    pub name: String,
    /// Account identifier.
    #[serde(default)]
    pub account_id: String,
    /// ISO 3166-1 alpha-2 country; empty when unknown.
    #[serde(default)]
    pub country: String,
    /// Bank name or identifier.
    #[serde(default)]
    pub bank: String,
}

/// Regulatory context of the alert.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegulatoryContext {
    /// Jurisdiction whose rules apply, alpha-2.
    #[serde(default)]
    pub jurisdiction: String,
    /// Regulations that apply, e.g. `BSA`.
    #[serde(default)]
    pub applicable_regulations: Vec<String>,
}

impl Alert {
    /// Parses and validates one alert from JSON text, with the default size limit.
    pub fn from_json(text: &str) -> Result<Self, AlertError> {
        Self::from_json_limited(text, DEFAULT_MAX_ALERT_BYTES)
    }

    /// Parses and validates one alert from JSON text no larger than `max_bytes`.
    pub fn from_json_limited(text: &str, max_bytes: usize) -> Result<Self, AlertError> {
        if text.len() > max_bytes {
            return Err(AlertError::new(
                "$",
                format!(
                    "alert is {} bytes, over the {max_bytes}-byte limit",
                    text.len()
                ),
            ));
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let alert: Alert = serde_path_to_error::deserialize(&mut de).map_err(path_error)?;
        de.end().map_err(|e| AlertError::new("$", e.to_string()))?;
        alert.validate()?;
        Ok(alert)
    }

    /// Converts and validates an already parsed JSON value.
    pub fn from_value(value: Value) -> Result<Self, AlertError> {
        let alert: Alert = serde_path_to_error::deserialize(value).map_err(path_error)?;
        alert.validate()?;
        Ok(alert)
    }

    /// Checks what serde cannot: non-empty ids, finite amounts, country and currency codes,
    /// sizes.
    pub fn validate(&self) -> Result<(), AlertError> {
        check_id("alert_id", &self.alert_id)?;
        if let Some(rule) = &self.rule_id {
            bounded("rule_id", rule, 256)?;
        }
        let c = &self.customer;
        check_id("customer.customer_id", &c.customer_id)?;
        non_empty("customer.name", &c.name)?;
        bounded("customer.name", &c.name, 1024)?;
        for (i, alias) in c.aliases.iter().enumerate() {
            bounded(&format!("customer.aliases[{i}]"), alias, 1024)?;
        }
        if let Some(n) = &c.nationality {
            country("customer.nationality", n, false)?;
        }
        for (i, a) in c.addresses.iter().enumerate() {
            country(
                &format!("customer.addresses[{i}].country"),
                &a.country,
                true,
            )?;
            for (name, v) in [
                ("street", &a.street),
                ("city", &a.city),
                ("state", &a.state),
                ("postal_code", &a.postal_code),
            ] {
                bounded(&format!("customer.addresses[{i}].{name}"), v, 1024)?;
            }
        }
        if let Some(v) = c.expected_monthly_volume
            && !(v.is_finite() && (0.0..=MAX_AMOUNT).contains(&v))
        {
            return Err(AlertError::new(
                "customer.expected_monthly_volume",
                format!("must be finite, >= 0 and <= {MAX_AMOUNT:e}"),
            ));
        }
        if let Some(s) = &self.screening {
            if s.matches.len() > MAX_SCREENING_MATCHES {
                return Err(AlertError::new(
                    "screening.matches",
                    format!("at most {MAX_SCREENING_MATCHES} matches"),
                ));
            }
            for (i, m) in s.matches.iter().enumerate() {
                let p = format!("screening.matches[{i}]");
                non_empty(&format!("{p}.list"), &m.list)?;
                non_empty(&format!("{p}.entry_id"), &m.entry_id)?;
                non_empty(&format!("{p}.matched_name"), &m.matched_name)?;
                non_empty(&format!("{p}.match_type"), &m.match_type)?;
                bounded(&format!("{p}.matched_name"), &m.matched_name, 1024)?;
                if !(m.score.is_finite() && (0.0..=1.0).contains(&m.score)) {
                    return Err(AlertError::new(
                        format!("{p}.score"),
                        "must be a number between 0 and 1",
                    ));
                }
            }
        }
        if self.transactions.len() > MAX_TRANSACTIONS {
            return Err(AlertError::new(
                "transactions",
                format!("at most {MAX_TRANSACTIONS} transactions"),
            ));
        }
        for (i, t) in self.transactions.iter().enumerate() {
            let p = format!("transactions[{i}]");
            check_id(&format!("{p}.transaction_id"), &t.transaction_id)?;
            if !(t.amount.is_finite() && t.amount >= 0.0) {
                return Err(AlertError::new(
                    format!("{p}.amount"),
                    "must be finite and >= 0",
                ));
            }
            if t.amount > MAX_AMOUNT {
                return Err(AlertError::new(
                    format!("{p}.amount"),
                    format!("must be at most {MAX_AMOUNT:e}"),
                ));
            }
            if !(t.currency.len() == 3 && t.currency.bytes().all(|b| b.is_ascii_uppercase())) {
                return Err(AlertError::new(
                    format!("{p}.currency"),
                    "must be an ISO 4217 code of three capital letters",
                ));
            }
            if let Some(cp) = &t.counterparty {
                country(&format!("{p}.counterparty.country"), &cp.country, true)?;
                bounded(&format!("{p}.counterparty.name"), &cp.name, 1024)?;
                bounded(&format!("{p}.counterparty.account_id"), &cp.account_id, 256)?;
                bounded(&format!("{p}.counterparty.bank"), &cp.bank, 1024)?;
            }
            if let Some(d) = &t.description {
                bounded(&format!("{p}.description"), d, MAX_STRING_BYTES)?;
            }
        }
        if let Some(rc) = &self.regulatory_context {
            country("regulatory_context.jurisdiction", &rc.jurisdiction, true)?;
        }
        self.check_storable_text()
    }

    /// Refuses text that a backend cannot store as given: a NUL character (`\u0000`)
    /// anywhere, in any field, `metadata` keys and values included. PostgreSQL's `text`
    /// rejects NUL while SQLite keeps it, so it is refused here, for every backend alike.
    /// (Lone UTF-16 surrogates never get this far: the JSON parser refuses them, naming the
    /// field.)
    fn check_storable_text(&self) -> Result<(), AlertError> {
        let value = serde_json::to_value(self)
            .map_err(|e| AlertError::new("$", format!("cannot be represented: {e}")))?;
        let mut path = Vec::new();
        match find_nul(&value, &mut path) {
            false => Ok(()),
            true => Err(AlertError::new(
                render_path(&path),
                "contains a NUL character (\\u0000), which cannot be stored",
            )),
        }
    }

    /// Every country code the alert mentions, with where it appears.
    pub fn countries(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        if let Some(n) = &self.customer.nationality {
            out.push(("customer.nationality".to_string(), n.as_str()));
        }
        for (i, a) in self.customer.addresses.iter().enumerate() {
            if !a.country.is_empty() {
                out.push((
                    format!("customer.addresses[{i}].country"),
                    a.country.as_str(),
                ));
            }
        }
        for t in &self.transactions {
            if let Some(cp) = &t.counterparty
                && !cp.country.is_empty()
            {
                out.push((format!("tx:{}", t.transaction_id), cp.country.as_str()));
            }
        }
        out
    }

    /// The screening matches the source claimed (empty when there is no screening section).
    pub fn screening_matches(&self) -> &[ScreeningMatch] {
        self.screening
            .as_ref()
            .map(|s| s.matches.as_slice())
            .unwrap_or(&[])
    }
}

/// One step of a path into a JSON document.
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Whether a string (or object key) holds a NUL; if so, its path is left in `path`.
fn find_nul<'a>(v: &'a Value, path: &mut Vec<Seg<'a>>) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
            path.push(Seg::Index(i));
            let found = find_nul(item, path);
            if !found {
                path.pop();
            }
            found
        }),
        Value::Object(map) => map.iter().any(|(k, item)| {
            path.push(Seg::Key(k));
            let found = k.contains('\0') || find_nul(item, path);
            if !found {
                path.pop();
            }
            found
        }),
        _ => false,
    }
}

fn render_path(path: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&k.escape_debug().to_string());
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() { "$".into() } else { out }
}

fn path_error(e: serde_path_to_error::Error<serde_json::Error>) -> AlertError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let field = if path.is_empty() || path == "." || path == "?" {
        "$".to_string()
    } else {
        path
    };
    // serde's messages carry "at line L column C": keep it, it helps with large bodies.
    AlertError::new(field, inner.to_string())
}

fn non_empty(field: &str, v: &str) -> Result<(), AlertError> {
    if v.trim().is_empty() {
        Err(AlertError::new(field, "must not be empty"))
    } else {
        Ok(())
    }
}

fn bounded(field: &str, v: &str, max: usize) -> Result<(), AlertError> {
    if v.len() > max {
        Err(AlertError::new(
            field,
            format!("is {} bytes, over the {max}-byte limit", v.len()),
        ))
    } else {
        Ok(())
    }
}

fn country(field: &str, v: &str, may_be_empty: bool) -> Result<(), AlertError> {
    if v.is_empty() && may_be_empty {
        return Ok(());
    }
    if v.len() == 2 && v.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(AlertError::new(
            field,
            format!("must be an ISO 3166-1 alpha-2 code of two capital letters, got {v:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"alert_id":"A1","alert_type":"TRANSACTION","priority":"LOW",
        "created_at":"2024-01-02T03:04:05+01:00",
        "customer":{"customer_id":"C1","name":"Jane Roe","entity_type":"INDIVIDUAL"}}"#;

    #[test]
    fn minimal_alert_parses_and_normalises_time_to_utc() {
        let a = Alert::from_json(MINIMAL).unwrap();
        assert_eq!(a.created_at.to_rfc3339(), "2024-01-02T02:04:05+00:00");
        assert!(a.transactions.is_empty());
    }

    fn with(patch: &str, value: Value) -> Result<Alert, AlertError> {
        let mut v: Value = serde_json::from_str(MINIMAL).unwrap();
        let ptr = v.pointer_mut(patch).map(|p| *p = value.clone());
        if ptr.is_none() {
            let (parent, key) = patch.rsplit_once('/').unwrap();
            v.pointer_mut(parent)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .insert(key.to_string(), value);
        }
        Alert::from_json(&v.to_string())
    }

    #[test]
    fn unknown_enum_names_the_field() {
        let e = with("/priority", "URGENT".into()).unwrap_err();
        assert_eq!(e.field, "priority");
    }

    #[test]
    fn negative_amount_names_the_transaction() {
        let tx = serde_json::json!([{"transaction_id":"T1","timestamp":"2024-01-01T00:00:00Z",
            "amount":5.0,"currency":"USD","direction":"IN","type":"CASH"},
            {"transaction_id":"T2","timestamp":"2024-01-01T00:00:00Z",
            "amount":-1.0,"currency":"USD","direction":"IN","type":"CASH"}]);
        let e = with("/transactions", tx).unwrap_err();
        assert_eq!(
            e.to_string(),
            "transactions[1].amount: must be finite and >= 0"
        );
    }

    #[test]
    fn bad_date_and_unknown_field_are_rejected() {
        let e = with("/customer/date_of_birth", "1990-13-40".into()).unwrap_err();
        assert_eq!(e.field, "customer.date_of_birth");
        let e = with("/customer/shoe_size", 42.into()).unwrap_err();
        assert_eq!(e.field, "customer.shoe_size");
    }

    #[test]
    fn empty_id_and_oversize_are_rejected() {
        let e = with("/alert_id", " ".into()).unwrap_err();
        assert_eq!(e.field, "alert_id");
        let e = Alert::from_json_limited(MINIMAL, 10).unwrap_err();
        assert_eq!(e.field, "$");
    }

    #[test]
    fn nul_anywhere_is_refused_naming_the_field() {
        let e = with("/customer/name", "Jane\u{0}Roe".into()).unwrap_err();
        assert_eq!(e.field, "customer.name");
        assert!(e.message.contains("NUL"), "{e}");
        let e = with("/metadata", serde_json::json!({"a": ["ok", "b\u{0}"]})).unwrap_err();
        assert_eq!(e.field, "metadata.a[1]");
        let e = with("/metadata", serde_json::json!({"k\u{0}": 1})).unwrap_err();
        assert!(e.field.starts_with("metadata.k"), "{e}");
        let e = with("/customer/customer_id", "C\u{0}1".into()).unwrap_err();
        assert_eq!(e.field, "customer.customer_id");
    }

    #[test]
    fn lone_surrogate_is_refused_naming_the_field() {
        let text = MINIMAL.replace("Jane Roe", r"Jane \ud800 Roe");
        let e = Alert::from_json(&text).unwrap_err();
        assert_eq!(e.field, "customer.name", "{e}");
    }

    #[test]
    fn ids_keep_to_their_character_set_and_length() {
        for bad in ["a/b", "../x", "a b", "a%2Fb", "é", ""] {
            let e = with("/alert_id", bad.into()).unwrap_err();
            assert_eq!(e.field, "alert_id", "{bad:?}");
        }
        let e = with("/alert_id", "x".repeat(MAX_ID_CHARS + 1).into()).unwrap_err();
        assert_eq!(e.field, "alert_id");
        with("/alert_id", "x".repeat(MAX_ID_CHARS).into()).unwrap();
        with("/alert_id", "ALRT-2026:01_a.b".into()).unwrap();
    }

    #[test]
    fn amount_above_the_maximum_is_refused() {
        let tx = serde_json::json!([{"transaction_id":"T1","timestamp":"2024-01-01T00:00:00Z",
            "amount":1e308,"currency":"USD","direction":"IN","type":"CASH"}]);
        let e = with("/transactions", tx).unwrap_err();
        assert_eq!(e.field, "transactions[0].amount");
        let e = with("/customer/expected_monthly_volume", 1e16.into()).unwrap_err();
        assert_eq!(e.field, "customer.expected_monthly_volume");
    }
}

//! Enrichment facts: what the engine established about an alert before scoring it.
//!
//! Every fact carries an evidence id (`tx:T11`, `screen:OFAC_SDN:20138`, `juris:IR`,
//! `typ:fan_in`, ...). Scores, rationales and model outputs may only cite ids that exist here.

use serde::{Deserialize, Serialize};

/// A named contribution to the risk score, with the evidence that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    /// Stable factor name, e.g. `sanctions_match`, `fan_in`, `kyc_rating`.
    pub name: String,
    /// Points added to the 0-100 score (may be negative for mitigating factors).
    pub points: f64,
    /// Evidence ids this factor rests on.
    pub evidence: Vec<String>,
    /// One sentence saying why.
    pub explanation: String,
}

/// How strongly a screening candidate matches the customer after verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MatchClass {
    /// Names disagree, or date of birth / nationality / identifiers contradict the list entry.
    Discounted,
    /// Name similarity without enough corroboration either way.
    Potential,
    /// The claimed entry cannot be checked: its list is not loaded or the entry is unknown.
    Unverifiable,
    /// Name agrees and the secondary identifiers agree or are absent on both sides; treated
    /// as the same party.
    Confirmed,
}

/// Kind of list a screening hit comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ListKind {
    /// A sanctions list (OFAC, UN, ...).
    Sanctions,
    /// A politically-exposed-persons list.
    Pep,
}

/// One verified screening hit: the customer (or an alias) against one list entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScreeningHit {
    /// Evidence id, `screen:{list}:{entry_id}`.
    pub evidence_id: String,
    /// List identifier, e.g. `OFAC_SDN`.
    pub list: String,
    /// Version of the list that was used (publication date or file hash).
    pub list_version: Option<String>,
    /// Sanctions or PEP.
    pub kind: ListKind,
    /// Entry identifier within the list.
    pub entry_id: String,
    /// The list name that matched best.
    pub matched_name: String,
    /// The customer name or alias that matched it.
    pub customer_name: String,
    /// Name similarity in 0..=1 after normalisation.
    pub name_score: f64,
    /// Overall score in 0..=1 after date of birth, country and identifier adjustments.
    pub score: f64,
    /// Classification after verification.
    pub class: MatchClass,
    /// Whether the source system claimed this entry in the alert.
    pub claimed_by_source: bool,
    /// What agreed and what conflicted, in words (tokens, DOB, nationality, identifiers).
    pub explanation: Vec<String>,
    /// For a `Discounted` hit, the checkable reason it was discounted; `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_reason: Option<Disqualifier>,
    /// The per-field comparison behind the class, as screening reviewers read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<HitBreakdown>,
}

/// A recorded, checkable reason to discount a screening candidate. Nothing else may discount
/// one: spelling, transliteration and typos never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disqualifier {
    /// A person against an organisation, vessel or aircraft, or the reverse.
    EntityTypeDiffers,
    /// The customer's date of birth contradicts every date the list gives, beyond the
    /// list's precision.
    DateOfBirthContradicts,
    /// The customer's nationality contradicts the entry's stated nationality or
    /// citizenship (organisations: no country in common), and the full date of birth does
    /// not match.
    NationalityContradicts,
    /// No name word of one name relates to any of the other by the documented relations
    /// (exact, initial, sound-alike, typo within the edit budget, glued or split), and the
    /// names written without spaces are further apart than the edit budget.
    NamesUnrelated,
    /// A person's name and the list name each keep a name word that relates to no word of
    /// the other by the same relations, and the given names (the first name word of each, in
    /// reading order) are among them: a shared surname with another given name. Never used
    /// when the date of birth agrees.
    NamesDiffer,
}

impl Disqualifier {
    /// Stable snake-case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Disqualifier::EntityTypeDiffers => "entity_type_differs",
            Disqualifier::DateOfBirthContradicts => "date_of_birth_contradicts",
            Disqualifier::NationalityContradicts => "nationality_contradicts",
            Disqualifier::NamesUnrelated => "names_unrelated",
            Disqualifier::NamesDiffer => "names_differ",
        }
    }
}

/// One customer name word paired with one list name word.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamePair {
    /// The customer's word (normalised).
    pub customer: String,
    /// The list's word (normalised).
    pub list: String,
    /// `exact`, `initial`, `sound_alike`, `typo`, `sound_alike_typo` or `glued_or_split`.
    pub relation: String,
    /// Edit distance between the two words (optimal string alignment).
    pub edits: u32,
    /// Similarity in 0..=1.
    pub similarity: f64,
}

/// How one field of the customer compares with the entry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FieldCheck {
    /// The verdict: `exact`, `compatible`, `near`, `conflict`, `agree`, `agree_weak`,
    /// `conflict_weak`, `same`, `differs`, `unknown` or `not_comparable`.
    pub relation: String,
    /// The customer's value, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// The list's values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub list: Vec<String>,
}

/// The per-candidate score breakdown: each name word pair, date of birth, country, entity
/// type and identifiers, and every disqualifier found.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HitBreakdown {
    /// Paired name words.
    pub name_pairs: Vec<NamePair>,
    /// Customer name words without a partner.
    pub customer_only: Vec<String>,
    /// List name words without a partner.
    pub list_only: Vec<String>,
    /// `strong`, `partial`, `differs` or `unrelated`.
    pub name_level: String,
    /// Date of birth.
    pub date_of_birth: FieldCheck,
    /// Nationality (persons) or countries (organisations).
    pub country: FieldCheck,
    /// Entity type.
    pub entity_type: FieldCheck,
    /// Identifiers (document numbers).
    pub identifiers: FieldCheck,
    /// Every disqualifier that holds (the discount reason is the first).
    pub disqualifiers: Vec<Disqualifier>,
}

/// A country mentioned by the alert that appears on a jurisdiction-risk list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JurisdictionFlag {
    /// Evidence id, `juris:{country}:{where}`.
    pub evidence_id: String,
    /// Alpha-2 code.
    pub country: String,
    /// Where the alert mentions it: `customer.nationality`, `tx:T11`, ...
    pub location: String,
    /// Which list: `FATF_CALL_FOR_ACTION`, `FATF_INCREASED_MONITORING`, `EU_HIGH_RISK`.
    pub status: String,
}

/// A transaction typology detected in the alert's transactions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypologyFinding {
    /// Evidence id, `typ:{name}`.
    pub evidence_id: String,
    /// Detector name: `structuring`, `fan_in`, `fan_out`, `rapid_pass_through`,
    /// `round_amounts`, `velocity`, `high_risk_corridor`, `cycle`, ...
    pub typology: String,
    /// Strength in 0..=1.
    pub strength: f64,
    /// The transaction evidence ids (`tx:{transaction_id}`) behind it.
    pub transactions: Vec<String>,
    /// Human-readable summary with the measured figures.
    pub summary: String,
}

/// What is known of the customer's past with this institution.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerHistory {
    /// Earlier alerts for the same customer.
    pub prior_alerts: u32,
    /// Of those, how many were escalated or reported.
    pub prior_escalations: u32,
    /// Where the history came from: `alert`, `store`, `external`.
    pub source: String,
    /// The account profile, when an external customer-data source gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_profile: Option<AccountProfile>,
    /// How many of the customer's transactions from the customer-data API came before the
    /// alert ([`super::features::history_window`]); 0 without the API.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recent_transactions: u32,
    /// The scorecard's `hist_*` feature values computed from them with the alert
    /// ([`super::features::history_values`]; `null`: not computable), present only when the
    /// customer-data API gave the history. The transactions themselves are not kept in the
    /// facts: no counterparty names from another system reach the journal or a model prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<super::features::HistoryValues>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl CustomerHistory {
    /// The `hist_*` feature values the scorecard reads: `Some` only when the customer-data
    /// API gave the history.
    pub fn features_for_scoring(&self) -> Option<&super::features::HistoryValues> {
        self.features.as_ref().filter(|_| self.source == "external")
    }
}

/// A customer's account profile as the bank's customer-data system holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountProfile {
    /// When the account was opened (`YYYY-MM-DD`).
    #[serde(default)]
    pub account_opened: Option<String>,
    /// The bank's KYC risk rating (`LOW`, `MEDIUM`, `HIGH`).
    #[serde(default)]
    pub kyc_risk_rating: Option<String>,
    /// Customer segment (`retail`, `private_banking`, `corporate`, ...).
    #[serde(default)]
    pub segment: Option<String>,
    /// Expected monthly volume in the account currency.
    #[serde(default)]
    pub expected_monthly_volume: Option<f64>,
    /// Products held (`current_account`, `wire_transfers`, ...).
    #[serde(default)]
    pub products: Vec<String>,
}

/// Everything the DataEnrichment agent established about an alert.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnrichmentFacts {
    /// Verified screening hits, strongest first.
    pub screening_hits: Vec<ScreeningHit>,
    /// Claims the source made that could not be verified (list not loaded, unknown entry).
    pub unverifiable_claims: Vec<ScreeningHit>,
    /// Jurisdiction-risk flags.
    pub jurisdiction_flags: Vec<JurisdictionFlag>,
    /// Transaction typologies detected.
    pub typologies: Vec<TypologyFinding>,
    /// Customer history.
    pub history: CustomerHistory,
    /// Versions of the reference lists used (`OFAC_SDN@2019-01-15`, `FATF@...`).
    pub list_versions: Vec<String>,
    /// Fraction (0..=1) of the optional customer and transaction fields that were present.
    pub data_completeness: f64,
    /// Notes on anything that could not be done (a list missing, a source down).
    pub gaps: Vec<String>,
}

impl EnrichmentFacts {
    /// Every evidence id these facts define, for validating citations.
    pub fn evidence_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        ids.extend(self.screening_hits.iter().map(|h| h.evidence_id.clone()));
        ids.extend(
            self.unverifiable_claims
                .iter()
                .map(|h| h.evidence_id.clone()),
        );
        ids.extend(
            self.jurisdiction_flags
                .iter()
                .map(|f| f.evidence_id.clone()),
        );
        for t in &self.typologies {
            ids.push(t.evidence_id.clone());
            ids.extend(t.transactions.iter().cloned());
        }
        ids.sort();
        ids.dedup();
        ids
    }
}

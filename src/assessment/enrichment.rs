//! Pure enrichment: from an alert and the reference data to [`EnrichmentFacts`].

use std::sync::Arc;

use crate::domain::alert::{Alert, EntityType, ScreeningMatch};
use crate::domain::facts::{CustomerHistory, EnrichmentFacts, ListKind, MatchClass, ScreeningHit};
use crate::jurisdiction::JurisdictionTable;
use crate::screening::ScreeningLists;

/// The reference data enrichment reads: screening lists and jurisdiction risk. Loaded once at
/// start and shared read-only.
#[derive(Clone)]
pub struct ReferenceData {
    /// Sanctions and PEP lists, indexed.
    pub lists: Arc<ScreeningLists>,
    /// FATF and EU jurisdiction lists.
    pub jurisdictions: Arc<JurisdictionTable>,
}

impl Default for ReferenceData {
    fn default() -> Self {
        Self {
            lists: Arc::new(ScreeningLists::empty()),
            jurisdictions: Arc::new(JurisdictionTable::empty()),
        }
    }
}

impl ReferenceData {
    /// Versions of every list in use, for the audit record.
    pub fn versions(&self) -> Vec<String> {
        let mut v = self.lists.versions();
        if !self.jurisdictions.is_empty() {
            v.push(format!("FATF@{}", self.jurisdictions.version()));
        }
        v
    }
}

/// Establishes the facts about `alert`. `history` comes from the store or an external source.
pub fn enrich(alert: &Alert, refs: &ReferenceData, history: CustomerHistory) -> EnrichmentFacts {
    enrich_screened(alert, refs, history, refs.lists.screen(alert))
}

/// [`enrich`] with the screening already done (`outcome` is `refs.lists.screen(alert)`,
/// possibly from a cache).
pub fn enrich_screened(
    alert: &Alert,
    refs: &ReferenceData,
    history: CustomerHistory,
    outcome: crate::screening::ScreeningOutcome,
) -> EnrichmentFacts {
    let mut gaps = Vec::new();
    let mut unverifiable = outcome.unverifiable;
    // A claim on a list kind the engine has not loaded is unverifiable: say so, never clear it.
    for m in alert.screening_matches() {
        let id = format!("screen:{}:{}", m.list, m.entry_id);
        let known = outcome.hits.iter().any(|h| h.evidence_id == id)
            || unverifiable.iter().any(|h| h.evidence_id == id);
        if !known {
            unverifiable.push(unverifiable_claim(
                alert,
                m,
                format!(
                    "list {} is not loaded or has no entry {}: the claim cannot be verified",
                    m.list, m.entry_id
                ),
            ));
        }
    }
    if !unverifiable.is_empty() {
        gaps.push(format!(
            "{} screening claim(s) could not be verified against a loaded list",
            unverifiable.len()
        ));
    }
    let typologies = crate::typologies::detect(alert, &refs.jurisdictions);
    EnrichmentFacts {
        screening_hits: outcome.hits,
        unverifiable_claims: unverifiable,
        jurisdiction_flags: refs.jurisdictions.flags(alert),
        typologies,
        history,
        list_versions: refs.versions(),
        data_completeness: data_completeness(alert),
        gaps,
    }
}

/// A claimed screening match the engine could not verify, with why.
pub fn unverifiable_claim(alert: &Alert, m: &ScreeningMatch, why: String) -> ScreeningHit {
    ScreeningHit {
        evidence_id: format!("screen:{}:{}", m.list, m.entry_id),
        list: m.list.clone(),
        list_version: None,
        kind: claimed_kind(&m.list, alert),
        entry_id: m.entry_id.clone(),
        matched_name: m.matched_name.clone(),
        customer_name: alert.customer.name.clone(),
        name_score: m.score,
        score: m.score,
        class: MatchClass::Unverifiable,
        claimed_by_source: true,
        explanation: vec![why],
        discount_reason: None,
        breakdown: None,
    }
}

fn claimed_kind(list: &str, alert: &Alert) -> ListKind {
    if list.to_ascii_uppercase().contains("PEP")
        || alert.alert_type == crate::domain::alert::AlertType::Pep
    {
        ListKind::Pep
    } else {
        ListKind::Sanctions
    }
}

/// Fraction of the optional customer fields that are present, plus whether transactions name
/// their counterparties. Missing data lowers confidence, never raises it.
pub fn data_completeness(alert: &Alert) -> f64 {
    let c = &alert.customer;
    let mut present = 0u32;
    let mut total = 0u32;
    let mut check = |ok: bool| {
        total += 1;
        present += u32::from(ok);
    };
    if c.entity_type == EntityType::Individual {
        check(c.date_of_birth.is_some());
    }
    check(c.nationality.is_some());
    check(c.addresses.iter().any(|a| !a.country.is_empty()));
    check(c.kyc_risk_rating.is_some());
    check(c.account_opened.is_some());
    check(c.expected_monthly_volume.is_some());
    if !alert.transactions.is_empty() {
        let named = alert
            .transactions
            .iter()
            .filter(|t| {
                t.counterparty
                    .as_ref()
                    .is_some_and(|cp| !cp.account_id.is_empty() || !cp.name.is_empty())
            })
            .count();
        check(named * 10 >= alert.transactions.len() * 9);
    }
    f64::from(present) / f64::from(total.max(1))
}

impl ReferenceData {
    /// Loads the screening lists at `list_paths` and the jurisdiction table at
    /// `jurisdiction_path` (without one, a table inside the list folders is used).
    /// `ReferenceData::load` (in [`crate::reference`]) reads both from the settings.
    pub fn load_paths(
        list_paths: &[std::path::PathBuf],
        jurisdiction_path: Option<std::path::PathBuf>,
    ) -> Result<Self, String> {
        let lists = if list_paths.is_empty() {
            ScreeningLists::empty()
        } else {
            ScreeningLists::load_paths(list_paths).map_err(|e| e.to_string())?
        };
        let path = jurisdiction_path.or_else(|| find_jurisdiction_table(list_paths));
        let jurisdictions = match &path {
            Some(p) => JurisdictionTable::load(p).map_err(|e| e.to_string())?,
            None => JurisdictionTable::empty(),
        };
        Ok(Self {
            lists: Arc::new(lists),
            jurisdictions: Arc::new(jurisdictions),
        })
    }
}

/// Header that identifies a jurisdiction table.
const JURISDICTION_HEADER: &str = "iso2,country,fatf_status";

/// The first CSV file under `paths` (searched two folders deep, in name order) whose header is
/// a jurisdiction table's.
fn find_jurisdiction_table(paths: &[std::path::PathBuf]) -> Option<std::path::PathBuf> {
    fn is_table(p: &std::path::Path) -> bool {
        p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"))
            && std::fs::read_to_string(p).ok().is_some_and(|t| {
                t.trim_start_matches('\u{feff}')
                    .starts_with(JURISDICTION_HEADER)
            })
    }
    fn search(dir: &std::path::Path, depth: u32) -> Option<std::path::PathBuf> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        entries
            .iter()
            .find(|p| p.is_file() && is_table(p))
            .cloned()
            .or_else(|| {
                (depth > 0)
                    .then(|| {
                        entries
                            .iter()
                            .filter(|p| p.is_dir())
                            .find_map(|d| search(d, depth - 1))
                    })
                    .flatten()
            })
    }
    paths
        .iter()
        .find_map(|p| if p.is_dir() { search(p, 2) } else { None })
}

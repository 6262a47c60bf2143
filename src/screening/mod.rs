//! Sanctions and PEP screening: list loaders, name normalisation and the matcher.
//!
//! ```text
//! ScreeningLists::load_paths(&[shared/data])   OFAC CSV, UN XML, OpenSanctions JSON
//!        |  normalise every name, index tokens and phonetic keys
//!        v
//! lists.screen(&alert) -> ScreeningOutcome { hits, unverifiable }
//! ```
//!
//! `screen` re-screens the customer's name and aliases against every loaded list and
//! verifies each match the source system claimed; the claims are never taken as facts.
//! Each hit is classified ([`MatchClass`]) with an explanation naming the tokens that matched
//! and the fields that agreed or conflicted. See [`matcher`] for the rules and the floor.
//!
//! **Several versions of one list.** Loading `sdn.csv` and `sdn-2024.csv` together gives two
//! versions of `OFAC_SDN`. Both are kept: re-screening searches both, and a claim is checked
//! against every loaded version that has the entry. The hit reported for an entry is the
//! strongest over the versions, and names the version it came from, so an entry delisted
//! in the newer file but present in the older one is still seen (the conservative choice).

#![warn(missing_docs)]

pub mod countries;
pub mod dates;
pub mod lists;
pub mod matcher;
pub mod normalize;
pub mod phonetic;
pub mod robustness;
pub mod similarity;

use std::path::PathBuf;

/// Version of the matching rules ([`matcher`], [`similarity`]): part of every cached screening
/// outcome's key, so outcomes of older rules are never reused.
pub const MATCHER_VERSION: &str = "matcher-2026.12-1";

pub use crate::domain::facts::{ListKind, MatchClass, ScreeningHit};
pub use dates::{BirthDate, DobRelation};
pub use lists::{ListError, LoadedList};

use crate::domain::alert::Alert;

/// What kind of party a list entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    /// A natural person.
    Person,
    /// A company, organisation, group or other legal entity.
    Entity,
    /// A ship.
    Vessel,
    /// An aircraft.
    Aircraft,
    /// Not stated by the list.
    Unknown,
}

/// How much weight a list puts on an alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AliasQuality {
    /// A name the party is reliably known by (OFAC `aka` in alt.csv, UN quality "Good").
    Strong,
    /// A nickname or broad alias (OFAC remarks `a.k.a.`, UN quality "Low"): a match on it
    /// alone is never `Confirmed`.
    Weak,
}

/// One alias of a list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The alias as the list writes it.
    pub name: String,
    /// Strong or weak.
    pub quality: AliasQuality,
}

/// A document or registration number from a list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier {
    /// Type as the list words it: `Passport`, `Cedula No.`, `NIT #`, `National ID No.`.
    pub kind: String,
    /// The number.
    pub value: String,
    /// Issuing country, alpha-2, when stated.
    pub country: Option<String>,
}

/// One entry of one list, in a common shape for every format.
#[derive(Debug, Clone, PartialEq)]
pub struct ListEntry {
    /// List id: `OFAC_SDN`, `OFAC_CONSOLIDATED`, `UN_CONSOLIDATED`, `OPENSANCTIONS_PEP`,
    /// `OPENSANCTIONS_SANCTIONS`.
    pub list_id: String,
    /// Sanctions or PEP.
    pub list_kind: ListKind,
    /// Version of the list this entry was read from.
    pub list_version: String,
    /// Entry id within the list (OFAC `ent_num`, UN reference number, OpenSanctions id).
    pub entry_id: String,
    /// Other ids a claim may use for the same entry (UN `DATAID`).
    pub alt_ids: Vec<String>,
    /// Person, entity, vessel, aircraft.
    pub kind: EntityKind,
    /// Primary name as the list writes it.
    pub name: String,
    /// Aliases.
    pub aliases: Vec<Alias>,
    /// Dates of birth, possibly partial.
    pub birth_dates: Vec<BirthDate>,
    /// Nationalities and citizenships, alpha-2.
    pub nationalities: Vec<String>,
    /// Countries of birth, alpha-2.
    pub birth_countries: Vec<String>,
    /// Other countries: addresses, registration, flag, alpha-2.
    pub countries: Vec<String>,
    /// Passports, national ids, registration numbers.
    pub identifiers: Vec<Identifier>,
    /// Sanctions programmes (`SDGT`, `IRAN`, UN list type).
    pub programs: Vec<String>,
    /// Free-text remarks as the list gives them.
    pub remarks: String,
}

/// The result of screening one alert.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScreeningOutcome {
    /// Verified hits above the floor (and every claimed entry that exists), strongest first,
    /// one per list entry.
    pub hits: Vec<ScreeningHit>,
    /// Claims whose list is not loaded or whose entry is unknown, class
    /// [`MatchClass::Unverifiable`].
    pub unverifiable: Vec<ScreeningHit>,
}

impl ScreeningOutcome {
    /// True when nothing stands in the way of clearing: every hit is `Discounted` and no claim
    /// is unverifiable.
    pub fn all_discounted(&self) -> bool {
        self.unverifiable.is_empty() && self.hits.iter().all(|h| h.class == MatchClass::Discounted)
    }
}

/// Versions of one entry (same list and entry id, say `sdn.csv` with its address file and a
/// newer `sdn-2024.csv` without one) describe one party: each version gets the union of
/// their dates of birth, nationalities, places of birth, countries and identifiers. Names
/// stay per version. The union only widens what agrees, so it can never make a
/// contradiction out of one version's silence.
fn share_identifying_facts(entries: &mut [ListEntry]) {
    use std::collections::HashMap;
    let mut groups: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        groups
            .entry((e.list_id.clone(), e.entry_id.clone()))
            .or_default()
            .push(i);
    }
    fn add<T: PartialEq + Clone>(into: &mut Vec<T>, from: &[T]) {
        for x in from {
            if !into.contains(x) {
                into.push(x.clone());
            }
        }
    }
    for idx in groups.into_values().filter(|v| v.len() > 1) {
        let mut merged = entries[idx[0]].clone();
        for &i in &idx[1..] {
            let e = &entries[i];
            add(&mut merged.birth_dates, &e.birth_dates);
            add(&mut merged.nationalities, &e.nationalities);
            add(&mut merged.birth_countries, &e.birth_countries);
            add(&mut merged.countries, &e.countries);
            add(&mut merged.identifiers, &e.identifiers);
            if merged.kind == EntityKind::Unknown {
                merged.kind = e.kind;
            }
        }
        for &i in &idx {
            let e = &mut entries[i];
            e.birth_dates = merged.birth_dates.clone();
            e.nationalities = merged.nationalities.clone();
            e.birth_countries = merged.birth_countries.clone();
            e.countries = merged.countries.clone();
            e.identifiers = merged.identifiers.clone();
            if e.kind == EntityKind::Unknown {
                e.kind = merged.kind;
            }
        }
    }
}

/// The loaded lists, indexed for screening.
#[derive(Debug, Default)]
pub struct ScreeningLists {
    lists: Vec<LoadedList>,
    entries: Vec<ListEntry>,
    index: matcher::Index,
    warnings: Vec<String>,
}

impl ScreeningLists {
    /// No lists: every claim is unverifiable and re-screening finds nothing.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Loads every list found under `paths`: files, or folders searched recursively. See
    /// [`lists`] for the formats, the companion files and the error policy.
    pub fn load_paths(paths: &[PathBuf]) -> Result<Self, ListError> {
        let loaded = lists::load_all(paths)?;
        Ok(Self::from_parts(
            loaded.lists,
            loaded.entries,
            loaded.warnings,
        ))
    }

    /// Builds screening lists from entries made elsewhere (tests, other loaders). Each
    /// entry's `list_id` and `list_version` should match one of `lists`.
    pub fn from_parts(
        lists: Vec<LoadedList>,
        mut entries: Vec<ListEntry>,
        warnings: Vec<String>,
    ) -> Self {
        share_identifying_facts(&mut entries);
        let index = matcher::Index::build(&entries);
        Self {
            lists,
            entries,
            index,
            warnings,
        }
    }

    /// Screens one alert: re-screens the customer's name and aliases against all lists and
    /// verifies the source's claims.
    pub fn screen(&self, alert: &Alert) -> ScreeningOutcome {
        matcher::screen(self, alert)
    }

    /// `LIST@version` for every loaded list, e.g. `OFAC_SDN@2024`, `UN_CONSOLIDATED@2026-02-27`.
    pub fn versions(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .lists
            .iter()
            .map(|l| format!("{}@{}", l.list_id, l.version))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Whether a list with this id is loaded.
    pub fn has_list(&self, list_id: &str) -> bool {
        self.lists.iter().any(|l| l.list_id == list_id)
    }

    /// Number of entries over all lists and versions.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// The loaded lists with their versions and sources.
    pub fn lists(&self) -> &[LoadedList] {
        &self.lists
    }

    /// All entries.
    pub fn entries(&self) -> &[ListEntry] {
        &self.entries
    }

    /// Rows skipped while loading, each naming file and line.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

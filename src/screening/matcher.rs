//! The matcher: candidate search, name comparison, and verification against date of birth,
//! nationality, entity type and identifiers.
//!
//! **Candidates.** Every list name (primary and aliases) is normalised once and indexed by
//! its name tokens and their phonetic keys. A customer name pulls the list names sharing a
//! token or key with it; with two or more name words it needs two of them to hit (one when
//! the list name has a single word). A very common token (over [`COMMON_TOKEN`] postings)
//! is not used for the search when a rarer one is available. Claimed entries are always
//! compared in full, whatever the index says.
//!
//! **Names.** Tokens are paired greedily, best first, by the documented relations of
//! [`super::similarity`]: exact, initial, sound-alike (a coarse cross-language key: `v`/`b`,
//! `ll`/`y`, `j`/`kh`/`h`, `ph`/`f`, `ou`/`u`, `dj`/`j`/`dzh`, `sch`/`sh`, doubled letters),
//! typo (transposition, doubled, dropped, inserted or substituted letters within an edit
//! budget that grows with the word's length), or two adjacent tokens against one
//! (`AL QUBAYSI`/`ALQUBAYSI`). Jaro-Winkler only ranks the pairings and weighs the score.
//! Then the name level:
//! * **unrelated** when no name word relates to any of the other name's and the names
//!   written without spaces (in order, sorted, and with legal forms and titles kept) are
//!   further apart than the edit budget;
//! * **differs** when words relate but each side keeps a name word the other lacks (a shared
//!   surname with different given names);
//! * **strong** for a person when two or more name words match and the leftovers are on one
//!   side only (a dropped middle name or second surname); for an organisation when every
//!   name word matches on both sides (legal forms are already gone);
//! * **partial** otherwise (one word in common and nothing against it, an organisation
//!   with extra words).
//!
//! The name score weighs matched words by similarity; unmatched words on the customer side
//! cost more than on the list side, where extra names are common.
//!
//! **Classes** ([`MatchClass`]). A candidate is `Discounted` only for a recorded
//! [`Disqualifier`]: the entity type differs (person vs organisation); the date of birth
//! contradicts every date of the entry beyond the list's precision; the nationality
//! contradicts the entry's stated nationality or citizenship (organisations: no country in
//! common) while the full date of birth does not match; or the names are **unrelated**.
//! A name that merely *differs* or agrees partly is never a reason. An exact date of birth
//! with an agreeing nationality is never discounted by anything about spelling.
//! * `Confirmed` (the only class that blocks): strong name on a primary name or strong alias
//!   (a weak alias only with the exact full date of birth), no near miss, and corroborated:
//!   for a person by a date of birth that agrees or a stated nationality that agrees; for an
//!   organisation by a shared country with a name score of at least [`ORG_CONFIRM_NAME`].
//! * `Potential` (escalated): everything else.
//!
//! Every hit carries a [`HitBreakdown`]: each name word pair with its relation, edits and
//! similarity, the date of birth, country, entity type and identifier comparisons, and every
//! disqualifier found.
//!
//! **Floor.** Unclaimed hits are kept when their name score reaches [`HIT_FLOOR`] (at most
//! [`MAX_UNCLAIMED_HITS`] of them); a claimed entry that exists is always reported, whatever
//! its score, so every claim gets an answer.
//!
//! Identifiers: the alert's customer record carries no document numbers, so list
//! identifiers are quoted in the explanation but cannot agree or conflict.

use std::collections::HashMap;

use strsim::{jaro_winkler, osa_distance};

use super::dates::{DobRelation, best_relation};
use super::normalize::{NameKind, NormalizedName, Token, TokenRole, normalize_name};
use super::similarity::{TokenMatch, TokenRelation, edit_budget, relate, relate_words};
use super::{AliasQuality, EntityKind, ListEntry, ScreeningLists, ScreeningOutcome};
use crate::domain::alert::{Alert, Customer, EntityType, ScreeningMatch};
use crate::domain::facts::{
    Disqualifier, FieldCheck, HitBreakdown, ListKind, MatchClass, NamePair, ScreeningHit,
};

/// Similarity at which two tokens count as the same word.
pub const TOKEN_MATCH: f64 = 0.85;
/// Lowest name score for an unclaimed hit to be reported.
pub const HIT_FLOOR: f64 = 0.75;
/// Most unclaimed hits reported per alert.
pub const MAX_UNCLAIMED_HITS: usize = 20;
/// Posting-list length above which a token is too common to search by.
pub const COMMON_TOKEN: usize = 1500;
/// Name score an organisation needs to be confirmed by a shared country (organisations have
/// no date of birth to corroborate them).
pub const ORG_CONFIRM_NAME: f64 = 0.95;
/// Lowest name score for a strong name; below it the name is partial.
pub const STRONG_NAME: f64 = 0.75;

/// One indexed list name.
#[derive(Debug, Clone)]
struct IndexedName {
    entry: u32,
    /// `None` for the primary name, else the alias position.
    alias: Option<usize>,
    weak: bool,
    name: NormalizedName,
}

/// Token and phonetic-key index over every list name, and entry lookup by id.
#[derive(Debug, Default)]
pub struct Index {
    names: Vec<IndexedName>,
    postings: HashMap<String, Vec<u32>>,
    by_id: HashMap<(String, String), Vec<u32>>,
    names_of_entry: Vec<Vec<u32>>,
}

fn name_kind(kind: EntityKind) -> NameKind {
    match kind {
        EntityKind::Person => NameKind::Person,
        EntityKind::Entity | EntityKind::Vessel | EntityKind::Aircraft => NameKind::Organisation,
        EntityKind::Unknown => NameKind::Unknown,
    }
}

fn keys_of(t: &Token) -> [Option<String>; 2] {
    [
        Some(format!("t{}", t.text)),
        (t.key.len() >= 2).then(|| format!("k{}", t.key)),
    ]
}

impl Index {
    /// Normalises and indexes every name of every entry.
    pub fn build(entries: &[ListEntry]) -> Self {
        let mut ix = Index::default();
        for (ei, e) in entries.iter().enumerate() {
            let ei = ei as u32;
            for id in std::iter::once(&e.entry_id).chain(e.alt_ids.iter()) {
                ix.by_id
                    .entry((e.list_id.clone(), id.clone()))
                    .or_default()
                    .push(ei);
            }
            let kind = name_kind(e.kind);
            let mut mine = Vec::new();
            let all = std::iter::once((None, e.name.as_str(), false)).chain(
                e.aliases
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (Some(i), a.name.as_str(), a.quality == AliasQuality::Weak)),
            );
            for (alias, raw, weak) in all {
                let name = normalize_name(raw, kind);
                if name.is_empty() {
                    continue;
                }
                let ni = ix.names.len() as u32;
                let mut seen: Vec<String> = Vec::new();
                for t in name.tokens.iter().filter(|t| t.role == TokenRole::Name) {
                    for k in keys_of(t).into_iter().flatten() {
                        if !seen.contains(&k) {
                            ix.postings.entry(k.clone()).or_default().push(ni);
                            seen.push(k);
                        }
                    }
                }
                mine.push(ni);
                ix.names.push(IndexedName {
                    entry: ei,
                    alias,
                    weak,
                    name,
                });
            }
            ix.names_of_entry.push(mine);
        }
        ix
    }

    /// List names sharing enough tokens or keys with `q` to be worth comparing.
    fn candidates(&self, q: &NormalizedName) -> Vec<u32> {
        let toks: Vec<&Token> = q
            .tokens
            .iter()
            .filter(|t| t.role == TokenRole::Name)
            .collect();
        if toks.is_empty() {
            return Vec::new();
        }
        let lists: Vec<Vec<&Vec<u32>>> = toks
            .iter()
            .map(|t| {
                keys_of(t)
                    .into_iter()
                    .flatten()
                    .filter_map(|k| self.postings.get(&k))
                    .collect()
            })
            .collect();
        let sizes: Vec<usize> = lists
            .iter()
            .map(|l| l.iter().map(|p| p.len()).sum())
            .collect();
        let rare_exists = sizes.iter().any(|&s| s > 0 && s <= COMMON_TOKEN);
        let used: Vec<usize> = (0..toks.len())
            .filter(|&i| !(rare_exists && sizes[i] > COMMON_TOKEN))
            .collect();
        let mut counts: HashMap<u32, (u8, usize)> = HashMap::new();
        for &ti in &used {
            for p in &lists[ti] {
                for &n in p.iter() {
                    let c = counts.entry(n).or_insert((0, usize::MAX));
                    if c.1 != ti {
                        c.0 = c.0.saturating_add(1);
                        c.1 = ti;
                    }
                }
            }
        }
        let required = used.len().clamp(1, 2) as u8;
        counts
            .into_iter()
            .filter(|(n, (c, _))| {
                let single = self.names[*n as usize].name.name_token_count() <= 1;
                *c >= if single { 1 } else { required }
            })
            .map(|(n, _)| n)
            .collect()
    }
}

/// How well two names agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NameLevel {
    /// Unrelated by the documented measure ([`super::similarity`]): no name word relates to
    /// any of the other name's, and the names without spaces are beyond the edit budget. The
    /// only name verdict that may discount a candidate.
    Unrelated,
    /// Related, but each side keeps a name word the other lacks (a shared surname with
    /// different given names). Not a reason to discount: only a disqualifier is.
    Differs,
    /// Plausible: some agreement, nothing against it, not enough for strong.
    Partial,
    /// The same name up to spelling, order, dropped middle names and legal forms.
    Strong,
}

impl NameLevel {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            NameLevel::Unrelated => "unrelated",
            NameLevel::Differs => "differs",
            NameLevel::Partial => "partial",
            NameLevel::Strong => "strong",
        }
    }
}

/// One pairing of a customer token with a list token.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedToken {
    /// Customer token.
    pub customer: String,
    /// List token.
    pub list: String,
    /// How they relate.
    pub relation: TokenRelation,
    /// Edit distance.
    pub edits: usize,
    /// Similarity in 0..=1.
    pub similarity: f64,
}

/// The comparison of a customer name with a list name.
#[derive(Debug, Clone)]
pub struct NameComparison {
    /// Similarity in 0..=1.
    pub score: f64,
    /// Level.
    pub level: NameLevel,
    /// Matched tokens.
    pub pairs: Vec<PairedToken>,
    /// Unmatched customer name words.
    pub extra_customer: Vec<String>,
    /// Unmatched list name words.
    pub extra_list: Vec<String>,
    /// Why the level is what it is.
    pub reason: String,
    /// Whether the names written without spaces are within the edit budget of each other.
    pub compact_related: bool,
    /// Whether the first name word of each name (the given name, in reading order) relates
    /// to no word of the other name.
    pub first_words_unrelated: bool,
}

fn weight(role: TokenRole) -> f64 {
    match role {
        TokenRole::Name => 1.0,
        TokenRole::Particle | TokenRole::Initial => 0.3,
    }
}

/// Compares a customer name with a list name. `organisation` selects the stricter rule for
/// company names (every word must match on both sides to be strong).
pub fn compare_names(q: &NormalizedName, c: &NormalizedName, organisation: bool) -> NameComparison {
    let (n, m) = (q.tokens.len(), c.tokens.len());
    let mut cand: Vec<(TokenMatch, usize, usize)> = Vec::with_capacity(n * m);
    // Whether each token relates to any token of the other name (for the given-name check).
    let mut q_relates = vec![false; n];
    let mut c_relates = vec![false; m];
    for (i, a) in q.tokens.iter().enumerate() {
        for (j, b) in c.tokens.iter().enumerate() {
            let t = relate(a, b);
            if t.relation.is_related() {
                q_relates[i] = true;
                c_relates[j] = true;
            }
            if t.relation.is_related() || t.similarity >= TOKEN_MATCH {
                cand.push((t, i, j));
            }
        }
    }
    // Best pairs first; on ties prefer real words over initials and particles.
    cand.sort_by(|x, y| {
        y.0.similarity.total_cmp(&x.0.similarity).then_with(|| {
            let wx = weight(q.tokens[x.1].role) + weight(c.tokens[x.2].role);
            let wy = weight(q.tokens[y.1].role) + weight(c.tokens[y.2].role);
            wy.total_cmp(&wx)
        })
    });
    let mut qm: Vec<Option<f64>> = vec![None; n];
    let mut cm: Vec<Option<f64>> = vec![None; m];
    let mut pairs: Vec<(usize, usize, TokenMatch)> = Vec::new();
    for (t, i, j) in cand {
        if qm[i].is_none() && cm[j].is_none() {
            qm[i] = Some(t.similarity);
            cm[j] = Some(t.similarity);
            pairs.push((i, j, t));
        }
    }
    // Words glued on one side and split on the other: "ALQUBAYSI" vs "AL QUBAYSI", with
    // typos allowed within the budget of the joined word.
    let glue = |one: &[Token],
                om: &mut [Option<f64>],
                two: &[Token],
                tm: &mut [Option<f64>],
                flip: bool,
                pairs: &mut Vec<(usize, usize, TokenMatch)>| {
        for i in 0..one.len() {
            if om[i].is_some() {
                continue;
            }
            for j in 0..two.len().saturating_sub(1) {
                if tm[j].is_some() || tm[j + 1].is_some() {
                    continue;
                }
                let joined = format!("{}{}", two[j].text, two[j + 1].text);
                let t = relate_words(&one[i].text, &joined);
                if t.relation.is_related() && one[i].text.len() >= 4 {
                    let t = TokenMatch {
                        relation: TokenRelation::GluedOrSplit,
                        ..t
                    };
                    om[i] = Some(t.similarity);
                    tm[j] = Some(t.similarity);
                    tm[j + 1] = Some(t.similarity);
                    if flip {
                        pairs.push((j, i, t));
                        pairs.push((j + 1, i, t));
                    } else {
                        pairs.push((i, j, t));
                        pairs.push((i, j + 1, t));
                    }
                    break;
                }
            }
        }
    };
    glue(&q.tokens, &mut qm, &c.tokens, &mut cm, false, &mut pairs);
    glue(&c.tokens, &mut cm, &q.tokens, &mut qm, true, &mut pairs);

    let mut num = 0.0;
    let mut den = 0.0;
    let mut matched_words = 0usize;
    let mut related_words = 0usize;
    let mut seen_q = vec![false; n];
    for &(i, j, t) in &pairs {
        let w = weight(q.tokens[i].role).max(weight(c.tokens[j].role));
        num += t.similarity * w;
        den += w;
        if q.tokens[i].role == TokenRole::Name && c.tokens[j].role == TokenRole::Name && !seen_q[i]
        {
            matched_words += 1;
            seen_q[i] = true;
            if t.relation.is_related() {
                related_words += 1;
            }
        }
    }
    let (qf, cf) = if organisation {
        (1.0, 1.0)
    } else {
        (0.7, 0.35)
    };
    let mut extra_customer = Vec::new();
    let mut extra_list = Vec::new();
    for (i, t) in q.tokens.iter().enumerate() {
        if qm[i].is_none() {
            den += qf * weight(t.role);
            if t.role == TokenRole::Name {
                extra_customer.push(t.text.clone());
            }
        }
    }
    for (j, t) in c.tokens.iter().enumerate() {
        if cm[j].is_none() {
            den += cf * weight(t.role);
            if t.role == TokenRole::Name {
                extra_list.push(t.text.clone());
            }
        }
    }
    let mut score = if den > 0.0 { num / den } else { 0.0 };
    // The names written without spaces, in reading order and sorted: a typo that split or
    // glued words, or spelled across them, still leaves them within the budget.
    let (qc, cc) = (q.compact(), c.compact());
    let (qs, cs) = (
        q.sorted_text().replace(' ', ""),
        c.sorted_text().replace(' ', ""),
    );
    let compact_edits = osa_distance(&qc, &cc)
        .min(osa_distance(&qs, &cs))
        .min(osa_distance(&q.full_compact, &c.full_compact));
    let compact_related = compact_edits
        <= edit_budget(
            qc.len()
                .max(cc.len())
                .max(q.full_compact.len().min(c.full_compact.len())),
        );
    let (mut level, mut reason) = if related_words == 0 && !compact_related {
        (
            NameLevel::Unrelated,
            format!(
                "no name word relates (exact, initial, sound-alike, typo within budget, glued) and the names are {compact_edits} edits apart without spaces"
            ),
        )
    } else if matched_words == 0 {
        (
            NameLevel::Differs,
            "no name word pairs up, but the names without spaces are within the edit budget"
                .to_string(),
        )
    } else if !extra_customer.is_empty() && !extra_list.is_empty() {
        (
            NameLevel::Differs,
            format!(
                "different name words on both sides ({} vs {})",
                extra_customer.join(" "),
                extra_list.join(" ")
            ),
        )
    } else if organisation {
        if extra_customer.is_empty() && extra_list.is_empty() {
            (NameLevel::Strong, "every name word matches".to_string())
        } else {
            let extra = if extra_customer.is_empty() {
                &extra_list
            } else {
                &extra_customer
            };
            (
                NameLevel::Partial,
                format!("organisation names differ by {}", extra.join(" ")),
            )
        }
    } else if matched_words >= 2 || (q.name_token_count() <= 1 && c.name_token_count() <= 1) {
        (
            NameLevel::Strong,
            "name words match, leftovers on one side only".to_string(),
        )
    } else {
        (
            NameLevel::Partial,
            "only one name word in common".to_string(),
        )
    };
    // Glued or spaced differently beyond what the token glue caught.
    let compact = jaro_winkler(&qc, &cc).max(jaro_winkler(&qs, &cs));
    if level < NameLevel::Strong && qc.len() >= 6 && (compact >= 0.95 || compact_edits <= 1) {
        level = NameLevel::Strong;
        score = score.max(compact);
        reason = "names agree once spaces are ignored".to_string();
    }
    if level == NameLevel::Strong && score < STRONG_NAME {
        level = NameLevel::Partial;
        reason = format!("{reason}, but the score {score:.2} is low");
    }
    let first_name = |n: &NormalizedName| n.tokens.iter().position(|t| t.role == TokenRole::Name);
    let first_words_unrelated = match (first_name(q), first_name(c)) {
        (Some(i), Some(j)) => !q_relates[i] && !c_relates[j],
        _ => false,
    };
    let pairs = pairs
        .into_iter()
        .map(|(i, j, t)| PairedToken {
            customer: q.tokens[i].text.clone(),
            list: c.tokens[j].text.clone(),
            relation: t.relation,
            edits: t.edits,
            similarity: t.similarity,
        })
        .collect();
    NameComparison {
        score: score.clamp(0.0, 1.0),
        level,
        pairs,
        extra_customer,
        extra_list,
        reason,
        compact_related,
        first_words_unrelated,
    }
}

/// How the customer's country relates to the entry's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CountryRelation {
    /// Contradiction: a stated nationality (or, for organisations, every country) differs.
    Conflict,
    /// Differs from the place of birth or document country only.
    ConflictWeak,
    /// Nothing to compare.
    Unknown,
    /// Agrees with a place of birth, document or address country.
    AgreeWeak,
    /// Agrees with a stated nationality (organisations: a country of the entry).
    Agree,
}

fn country_relation(c: &Customer, e: &ListEntry, organisation: bool) -> (CountryRelation, String) {
    let id_countries: Vec<String> = e
        .identifiers
        .iter()
        .filter_map(|i| i.country.clone())
        .collect();
    if organisation {
        let mut mine: Vec<&str> = c.nationality.iter().map(String::as_str).collect();
        mine.extend(
            c.addresses
                .iter()
                .map(|a| a.country.as_str())
                .filter(|s| !s.is_empty()),
        );
        let theirs: Vec<&str> = e
            .countries
            .iter()
            .chain(&e.nationalities)
            .chain(&id_countries)
            .map(String::as_str)
            .collect();
        if mine.is_empty() || theirs.is_empty() {
            return (
                CountryRelation::Unknown,
                "country: nothing to compare".into(),
            );
        }
        let shared: Vec<&str> = mine
            .iter()
            .copied()
            .filter(|m| theirs.contains(m))
            .collect();
        return if shared.is_empty() {
            (
                CountryRelation::Conflict,
                format!(
                    "country: customer {} vs list {} (conflict)",
                    mine.join("/"),
                    dedup_join(&theirs)
                ),
            )
        } else {
            (
                CountryRelation::Agree,
                format!("country: {} on both sides (agrees)", shared[0]),
            )
        };
    }
    let Some(nat) = c.nationality.as_deref() else {
        return (
            CountryRelation::Unknown,
            "nationality: none on the customer record".into(),
        );
    };
    let weak: Vec<&str> = e
        .birth_countries
        .iter()
        .chain(&id_countries)
        .map(String::as_str)
        .collect();
    if !e.nationalities.is_empty() {
        let list = e.nationalities.join("/");
        if e.nationalities.iter().any(|n| n == nat) {
            (
                CountryRelation::Agree,
                format!("nationality: {nat} agrees with list {list}"),
            )
        } else if weak.contains(&nat) {
            (
                CountryRelation::ConflictWeak,
                format!(
                    "nationality: customer {nat} vs list {list}, but the entry was born in or holds a document of {nat}"
                ),
            )
        } else {
            (
                CountryRelation::Conflict,
                format!("nationality: customer {nat} vs list {list} (conflict)"),
            )
        }
    } else if !weak.is_empty() {
        if weak.contains(&nat) {
            (
                CountryRelation::AgreeWeak,
                format!(
                    "nationality: {nat} agrees with the entry's place of birth or document country"
                ),
            )
        } else {
            (
                CountryRelation::ConflictWeak,
                format!(
                    "nationality: customer {nat}; the list states no nationality, place of birth or document country is {}",
                    dedup_join(&weak)
                ),
            )
        }
    } else if e.countries.iter().any(|x| x == nat) {
        (
            CountryRelation::AgreeWeak,
            format!("nationality: {nat} is an address country of the entry"),
        )
    } else {
        (
            CountryRelation::Unknown,
            "nationality: the list states none".into(),
        )
    }
}

fn dedup_join(v: &[&str]) -> String {
    let mut u: Vec<&str> = Vec::new();
    for x in v {
        if !u.contains(x) {
            u.push(x);
        }
    }
    u.join("/")
}

/// The best pairing of a customer name with a name of one entry.
struct Best {
    cmp: NameComparison,
    customer_name: String,
    list_name: String,
    name_desc: &'static str,
    weak: bool,
}

fn better(a: &NameComparison, a_weak: bool, b: &Best) -> bool {
    (a.level, !a_weak, a.score) > (b.cmp.level, !b.weak, b.cmp.score)
}

fn customer_names(c: &Customer) -> Vec<NormalizedName> {
    let kind = match c.entity_type {
        EntityType::Individual => NameKind::Person,
        EntityType::Business => NameKind::Organisation,
    };
    let mut out: Vec<NormalizedName> = Vec::new();
    for raw in std::iter::once(&c.name).chain(c.aliases.iter()) {
        let n = normalize_name(raw, kind);
        if !n.is_empty() && !out.iter().any(|o| o.tokens == n.tokens) {
            out.push(n);
        }
    }
    out
}

fn entry_is_org(e: &ListEntry, customer_business: bool) -> bool {
    match e.kind {
        EntityKind::Person => false,
        EntityKind::Entity | EntityKind::Vessel | EntityKind::Aircraft => true,
        EntityKind::Unknown => customer_business,
    }
}

fn best_for_entry(
    lists: &ScreeningLists,
    entry: u32,
    cnames: &[NormalizedName],
    only: Option<&[u32]>,
    org: bool,
) -> Option<Best> {
    let ix = &lists.index;
    let mut best: Option<Best> = None;
    let names: &[u32] = only.unwrap_or(&ix.names_of_entry[entry as usize]);
    for &ni in names {
        let iname = &ix.names[ni as usize];
        for q in cnames {
            let cmp = compare_names(q, &iname.name, org);
            if best.as_ref().is_none_or(|b| better(&cmp, iname.weak, b)) {
                best = Some(Best {
                    cmp,
                    customer_name: q.original.clone(),
                    list_name: iname.name.original.clone(),
                    name_desc: match (iname.alias, iname.weak) {
                        (None, _) => "primary name",
                        (Some(_), false) => "strong alias",
                        (Some(_), true) => "weak alias",
                    },
                    weak: iname.weak,
                });
            }
        }
    }
    best
}

/// Classifies one entry against the customer.
fn evaluate(
    lists: &ScreeningLists,
    alert: &Alert,
    entry_idx: u32,
    best: Best,
    claims: &[&ScreeningMatch],
) -> ScreeningHit {
    let e = &lists.entries[entry_idx as usize];
    let c = &alert.customer;
    let business = c.entity_type == EntityType::Business;
    let org = entry_is_org(e, business);
    let mut expl: Vec<String> = Vec::new();
    let cmp = &best.cmp;
    let pairs: Vec<String> = cmp
        .pairs
        .iter()
        .map(|p| {
            if p.customer == p.list {
                p.customer.clone()
            } else {
                format!(
                    "{}~{} ({}, {} edit{}, {:.2})",
                    p.customer,
                    p.list,
                    relation_name(p.relation),
                    p.edits,
                    if p.edits == 1 { "" } else { "s" },
                    p.similarity
                )
            }
        })
        .collect();
    expl.push(format!(
        "name: customer {:?} vs list {} {:?}: score {:.2}; matched {}{}{}",
        best.customer_name,
        best.name_desc,
        best.list_name,
        cmp.score,
        if pairs.is_empty() {
            "nothing".to_string()
        } else {
            pairs.join(", ")
        },
        if cmp.extra_customer.is_empty() {
            String::new()
        } else {
            format!("; customer only: {}", cmp.extra_customer.join(" "))
        },
        if cmp.extra_list.is_empty() {
            String::new()
        } else {
            format!("; list only: {}", cmp.extra_list.join(" "))
        },
    ));
    expl.push(format!(
        "name level: {} ({})",
        cmp.level.as_str(),
        cmp.reason
    ));
    // Entity type.
    let kind_mismatch = matches!(
        (c.entity_type, e.kind),
        (
            EntityType::Individual,
            EntityKind::Entity | EntityKind::Vessel | EntityKind::Aircraft
        ) | (EntityType::Business, EntityKind::Person)
    );
    if kind_mismatch {
        expl.push(format!(
            "entity type: customer {:?} vs list {:?} (mismatch)",
            c.entity_type, e.kind
        ));
    }
    // Date of birth (persons only).
    let (dob, dob_with) = if org {
        (DobRelation::Unknown, None)
    } else {
        best_relation(&e.birth_dates, c.date_of_birth)
    };
    if !org {
        let list_dobs: Vec<String> = e.birth_dates.iter().map(ToString::to_string).collect();
        let line = match (c.date_of_birth, list_dobs.is_empty()) {
            (None, true) => "date of birth: none on either side".to_string(),
            (None, false) => format!(
                "date of birth: none on the customer record; list has {}",
                list_dobs.join(", ")
            ),
            (Some(d), true) => format!("date of birth: customer {d}; the list states none"),
            (Some(d), false) => {
                let closest = dob_with.map(|b| b.to_string()).unwrap_or_default();
                let verdict = match dob {
                    DobRelation::Exact => "exact match",
                    DobRelation::Compatible => "agrees at the list's precision",
                    DobRelation::Near => {
                        "near miss (same year or one year off; neither agrees nor contradicts)"
                    }
                    DobRelation::Conflict => "conflict",
                    DobRelation::Unknown => "nothing to compare",
                };
                format!(
                    "date of birth: customer {d} vs list {} (closest {closest}): {verdict}",
                    list_dobs.join(", ")
                )
            }
        };
        expl.push(line);
    }
    let (country, country_line) = country_relation(c, e, org);
    expl.push(country_line);
    if e.identifiers.is_empty() {
        expl.push("identifiers: none on either side".to_string());
    } else {
        let ids: Vec<String> = e
            .identifiers
            .iter()
            .take(3)
            .map(|i| format!("{} {}", i.kind, i.value))
            .collect();
        expl.push(format!(
            "identifiers: list has {}; the customer record carries none to compare",
            ids.join(", ")
        ));
    }
    // Claims.
    for m in claims {
        let names_of_entry: Vec<String> = std::iter::once(&e.name)
            .chain(e.aliases.iter().map(|a| &a.name))
            .map(|n| n.to_uppercase())
            .collect();
        let known = names_of_entry.contains(&m.matched_name.to_uppercase());
        expl.push(format!(
            "claimed by the source as {:?} ({}, score {:.3}){}",
            m.matched_name,
            m.match_type,
            m.score,
            if known {
                ""
            } else {
                "; that name is not a name of this entry"
            }
        ));
    }
    // Classification. Only a disqualifier discounts; exact date of birth with an agreeing
    // nationality is never outweighed by anything spelling-related.
    // Corroboration is an identifier-level agreement: date of birth, or a stated
    // nationality; an organisation's shared country only with a near-exact name.
    let corroborated = if org {
        country == CountryRelation::Agree && cmp.score >= ORG_CONFIRM_NAME
    } else {
        matches!(dob, DobRelation::Exact | DobRelation::Compatible)
            || country == CountryRelation::Agree
    };
    let near_miss = dob == DobRelation::Near || country == CountryRelation::ConflictWeak;
    let identity_agrees = dob == DobRelation::Exact && country == CountryRelation::Agree;
    let mut disqualifiers: Vec<Disqualifier> = Vec::new();
    if kind_mismatch {
        disqualifiers.push(Disqualifier::EntityTypeDiffers);
    }
    if dob == DobRelation::Conflict {
        disqualifiers.push(Disqualifier::DateOfBirthContradicts);
    }
    if country == CountryRelation::Conflict && dob != DobRelation::Exact {
        disqualifiers.push(Disqualifier::NationalityContradicts);
    }
    if cmp.level == NameLevel::Unrelated {
        disqualifiers.push(Disqualifier::NamesUnrelated);
    }
    // A person whose given name relates to nothing in the list name, and the reverse (a
    // shared surname, another given name), is another person, unless the date of birth
    // agrees. Extra middle or family names on both sides are not enough: name chains vary.
    if !org
        && cmp.level == NameLevel::Differs
        && cmp.first_words_unrelated
        && !cmp.compact_related
        && !matches!(dob, DobRelation::Exact | DobRelation::Compatible)
    {
        disqualifiers.push(Disqualifier::NamesDiffer);
    }
    let (class, why) = if identity_agrees && !kind_mismatch && cmp.level < NameLevel::Strong {
        (
            MatchClass::Potential,
            "the full date of birth and the nationality agree; spelling cannot discount it"
                .to_string(),
        )
    } else if let Some(d) = disqualifiers.first() {
        (
            MatchClass::Discounted,
            format!("disqualified: {}", disqualifier_words(*d)),
        )
    } else if cmp.level == NameLevel::Strong
        && (!best.weak || dob == DobRelation::Exact)
        && !near_miss
        && corroborated
    {
        // A weak alias (nickname) confirms only with the full date of birth behind it.
        (
            MatchClass::Confirmed,
            "strong name, corroborated by date of birth or nationality, no conflict".to_string(),
        )
    } else {
        let mut why = Vec::new();
        if cmp.level != NameLevel::Strong {
            why.push("the name agrees only partly");
        }
        if best.weak && dob != DobRelation::Exact {
            why.push("it matches a weak alias without a full date of birth");
        }
        if near_miss {
            why.push("a near miss on date of birth or country");
        }
        if country == CountryRelation::Conflict {
            why.push("the country conflicts but the full date of birth matches");
        }
        if !corroborated {
            why.push("no date of birth or nationality corroborates it");
        }
        (
            MatchClass::Potential,
            format!("not disqualified, not confirmed: {}", why.join(", ")),
        )
    };
    let discount_reason = (class == MatchClass::Discounted)
        .then(|| disqualifiers.first().copied())
        .flatten();
    let breakdown = HitBreakdown {
        name_pairs: cmp
            .pairs
            .iter()
            .map(|p| NamePair {
                customer: p.customer.clone(),
                list: p.list.clone(),
                relation: relation_name(p.relation).to_string(),
                edits: p.edits as u32,
                similarity: round3(p.similarity),
            })
            .collect(),
        customer_only: cmp.extra_customer.clone(),
        list_only: cmp.extra_list.clone(),
        name_level: cmp.level.as_str().to_string(),
        date_of_birth: FieldCheck {
            relation: if org {
                "not_comparable".into()
            } else {
                dob_name(dob).into()
            },
            customer: c.date_of_birth.map(|d| d.to_string()),
            list: e.birth_dates.iter().map(ToString::to_string).collect(),
        },
        country: FieldCheck {
            relation: country_name(country).into(),
            customer: if org {
                let mut v: Vec<String> = c.nationality.iter().cloned().collect();
                v.extend(
                    c.addresses
                        .iter()
                        .filter(|a| !a.country.is_empty())
                        .map(|a| a.country.clone()),
                );
                (!v.is_empty()).then(|| v.join("/"))
            } else {
                c.nationality.clone()
            },
            list: e
                .nationalities
                .iter()
                .chain(if org {
                    &e.countries
                } else {
                    &e.birth_countries
                })
                .cloned()
                .collect(),
        },
        entity_type: FieldCheck {
            relation: if kind_mismatch {
                "differs"
            } else if e.kind == EntityKind::Unknown {
                "unknown"
            } else {
                "same"
            }
            .into(),
            customer: Some(
                match c.entity_type {
                    EntityType::Individual => "INDIVIDUAL",
                    EntityType::Business => "BUSINESS",
                }
                .into(),
            ),
            list: vec![format!("{:?}", e.kind).to_uppercase()],
        },
        identifiers: FieldCheck {
            relation: if e.identifiers.is_empty() {
                "unknown".into()
            } else {
                "not_comparable".into()
            },
            customer: None,
            list: e
                .identifiers
                .iter()
                .take(5)
                .map(|i| format!("{} {}", i.kind, i.value))
                .collect(),
        },
        disqualifiers: disqualifiers.clone(),
    };
    let mut score = cmp.score;
    score += match dob {
        DobRelation::Exact => 0.05,
        DobRelation::Compatible => 0.03,
        DobRelation::Near => -0.05,
        DobRelation::Conflict => -0.3,
        DobRelation::Unknown => 0.0,
    };
    score += match country {
        CountryRelation::Agree => 0.03,
        CountryRelation::AgreeWeak => 0.01,
        CountryRelation::Unknown => 0.0,
        CountryRelation::ConflictWeak => -0.05,
        CountryRelation::Conflict => -0.2,
    };
    if kind_mismatch {
        score -= 0.3;
    }
    let class_word = match class {
        MatchClass::Confirmed => "CONFIRMED",
        MatchClass::Potential => "POTENTIAL",
        MatchClass::Discounted => "DISCOUNTED",
        MatchClass::Unverifiable => "UNVERIFIABLE",
    };
    expl.push(format!("class: {class_word}: {why}"));
    ScreeningHit {
        evidence_id: format!("screen:{}:{}", e.list_id, e.entry_id),
        list: e.list_id.clone(),
        list_version: Some(e.list_version.clone()),
        kind: e.list_kind,
        entry_id: e.entry_id.clone(),
        matched_name: best.list_name.clone(),
        customer_name: best.customer_name.clone(),
        name_score: round3(cmp.score),
        score: round3(score.clamp(0.0, 1.0)),
        class,
        claimed_by_source: !claims.is_empty(),
        explanation: expl,
        discount_reason,
        breakdown: Some(breakdown),
    }
}

fn relation_name(r: TokenRelation) -> &'static str {
    match r {
        TokenRelation::Exact => "exact",
        TokenRelation::Initial => "initial",
        TokenRelation::SoundAlike => "sound_alike",
        TokenRelation::Typo => "typo",
        TokenRelation::SoundAlikeTypo => "sound_alike_typo",
        TokenRelation::GluedOrSplit => "glued_or_split",
        TokenRelation::Unrelated => "unrelated",
    }
}

fn dob_name(d: DobRelation) -> &'static str {
    match d {
        DobRelation::Exact => "exact",
        DobRelation::Compatible => "compatible",
        DobRelation::Near => "near",
        DobRelation::Conflict => "conflict",
        DobRelation::Unknown => "unknown",
    }
}

fn country_name(c: CountryRelation) -> &'static str {
    match c {
        CountryRelation::Agree => "agree",
        CountryRelation::AgreeWeak => "agree_weak",
        CountryRelation::Unknown => "unknown",
        CountryRelation::ConflictWeak => "conflict_weak",
        CountryRelation::Conflict => "conflict",
    }
}

fn disqualifier_words(d: Disqualifier) -> &'static str {
    match d {
        Disqualifier::EntityTypeDiffers => "the entity type differs",
        Disqualifier::DateOfBirthContradicts => "the date of birth contradicts the list",
        Disqualifier::NationalityContradicts => "the nationality or country contradicts the list",
        Disqualifier::NamesUnrelated => "the names are unrelated (no word relates)",
        Disqualifier::NamesDiffer => {
            "each name keeps a word that relates to nothing in the other (other given names)"
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn list_kind_of(list_id: &str) -> ListKind {
    if list_id.to_ascii_uppercase().contains("PEP") {
        ListKind::Pep
    } else {
        ListKind::Sanctions
    }
}

fn unverifiable(lists: &ScreeningLists, alert: &Alert, m: &ScreeningMatch) -> ScreeningHit {
    let kind = match alert.customer.entity_type {
        EntityType::Individual => NameKind::Person,
        EntityType::Business => NameKind::Organisation,
    };
    let claimed = normalize_name(&m.matched_name, NameKind::Unknown);
    let sim = customer_names(&alert.customer)
        .iter()
        .map(|q| compare_names(q, &claimed, kind == NameKind::Organisation).score)
        .fold(0.0, f64::max);
    let why = if lists.has_list(&m.list) {
        format!(
            "list {} is loaded ({}) but has no entry {}",
            m.list,
            versions_of(lists, &m.list),
            m.entry_id
        )
    } else {
        format!("list {} is not loaded; the claim cannot be checked", m.list)
    };
    ScreeningHit {
        evidence_id: format!("screen:{}:{}", m.list, m.entry_id),
        list: m.list.clone(),
        list_version: None,
        kind: list_kind_of(&m.list),
        entry_id: m.entry_id.clone(),
        matched_name: m.matched_name.clone(),
        customer_name: alert.customer.name.clone(),
        name_score: round3(sim),
        score: round3(sim),
        class: MatchClass::Unverifiable,
        claimed_by_source: true,
        explanation: vec![
            format!(
                "claimed by the source as {:?} ({}, score {:.3})",
                m.matched_name, m.match_type, m.score
            ),
            why,
            format!(
                "name similarity of the customer to the claimed name: {sim:.2} (not verified against a list entry)"
            ),
            "class: UNVERIFIABLE: cannot be cleared without the list".to_string(),
        ],
        discount_reason: None,
        breakdown: None,
    }
}

fn versions_of(lists: &ScreeningLists, list_id: &str) -> String {
    lists
        .lists()
        .iter()
        .filter(|l| l.list_id == list_id)
        .map(|l| l.version.clone())
        .collect::<Vec<_>>()
        .join(", ")
}

fn stronger(a: &ScreeningHit, b: &ScreeningHit) -> bool {
    (a.class, a.score) > (b.class, b.score)
}

/// Screens one alert. See the module documentation for the rules.
pub fn screen(lists: &ScreeningLists, alert: &Alert) -> ScreeningOutcome {
    let mut out = ScreeningOutcome::default();
    let cnames = customer_names(&alert.customer);
    let business = alert.customer.entity_type == EntityType::Business;
    let ix = &lists.index;

    // Claims, grouped per (list, entry id).
    let mut claims: Vec<((String, String), Vec<&ScreeningMatch>)> = Vec::new();
    for m in alert.screening_matches() {
        let key = (m.list.clone(), m.entry_id.clone());
        match claims.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(m),
            None => claims.push((key, vec![m])),
        }
    }
    // Best hit per (list, entry id) over all versions.
    let mut best_hits: HashMap<(String, String), ScreeningHit> = HashMap::new();
    let keep = |hit: ScreeningHit, best_hits: &mut HashMap<(String, String), ScreeningHit>| {
        let key = (hit.list.clone(), hit.entry_id.clone());
        match best_hits.get(&key) {
            Some(old) if !stronger(&hit, old) => {}
            _ => {
                best_hits.insert(key, hit);
            }
        }
    };
    let mut claimed_entries: Vec<u32> = Vec::new();
    for (key, ms) in &claims {
        match ix.by_id.get(key) {
            Some(entries) => {
                for &ei in entries {
                    claimed_entries.push(ei);
                    let org = entry_is_org(&lists.entries[ei as usize], business);
                    if let Some(best) = best_for_entry(lists, ei, &cnames, None, org) {
                        let mut hit = evaluate(lists, alert, ei, best, ms);
                        if entries.len() > 1 {
                            hit.explanation.push(format!(
                                "checked against {} loaded versions of {}; this is the strongest",
                                entries.len(),
                                key.0
                            ));
                        }
                        keep(hit, &mut best_hits);
                    }
                }
            }
            None => out.unverifiable.push(unverifiable(lists, alert, ms[0])),
        }
    }

    // Re-screening: candidates from the index, best name pairing per entry.
    let mut per_entry: HashMap<u32, Vec<u32>> = HashMap::new();
    for q in &cnames {
        for ni in ix.candidates(q) {
            let ei = ix.names[ni as usize].entry;
            if !claimed_entries.contains(&ei) {
                per_entry.entry(ei).or_default().push(ni);
            }
        }
    }
    let mut unclaimed: Vec<ScreeningHit> = Vec::new();
    for (ei, mut names) in per_entry {
        names.sort_unstable();
        names.dedup();
        let org = entry_is_org(&lists.entries[ei as usize], business);
        let Some(best) = best_for_entry(lists, ei, &cnames, Some(&names), org) else {
            continue;
        };
        if best.cmp.score < HIT_FLOOR {
            continue;
        }
        unclaimed.push(evaluate(lists, alert, ei, best, &[]));
    }
    for hit in unclaimed {
        keep(hit, &mut best_hits);
    }
    let mut hits: Vec<ScreeningHit> = best_hits.into_values().collect();
    // Strongest first; ties broken by claim, then id, so the order is deterministic.
    hits.sort_by(|a, b| {
        b.class
            .cmp(&a.class)
            .then(b.score.total_cmp(&a.score))
            .then(b.claimed_by_source.cmp(&a.claimed_by_source))
            .then(a.evidence_id.cmp(&b.evidence_id))
    });
    // Unclaimed hits beyond the cap are dropped (the weakest ones); claims never are.
    let mut unclaimed_seen = 0;
    hits.retain(|h| {
        if h.claimed_by_source {
            true
        } else {
            unclaimed_seen += 1;
            unclaimed_seen <= MAX_UNCLAIMED_HITS
        }
    });
    out.hits = hits;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::screening::lists::LoadedList;
    use crate::screening::{Alias, BirthDate, Identifier};
    use chrono::NaiveDate;

    fn entry(list: &str, id: &str, kind: EntityKind, name: &str) -> ListEntry {
        ListEntry {
            list_id: list.into(),
            list_kind: if list.contains("PEP") {
                ListKind::Pep
            } else {
                ListKind::Sanctions
            },
            list_version: "2019-01".into(),
            entry_id: id.into(),
            alt_ids: vec![],
            kind,
            name: name.into(),
            aliases: vec![],
            birth_dates: vec![],
            nationalities: vec![],
            birth_countries: vec![],
            countries: vec![],
            identifiers: vec![],
            programs: vec![],
            remarks: String::new(),
        }
    }

    fn lists(entries: Vec<ListEntry>) -> ScreeningLists {
        let mut ls: Vec<LoadedList> = Vec::new();
        for e in &entries {
            if !ls
                .iter()
                .any(|l| l.list_id == e.list_id && l.version == e.list_version)
            {
                ls.push(LoadedList {
                    list_id: e.list_id.clone(),
                    kind: e.list_kind,
                    version: e.list_version.clone(),
                    source: "test".into(),
                    entries: 0,
                    skipped: 0,
                    ignored: 0,
                });
            }
        }
        ScreeningLists::from_parts(ls, entries, vec![])
    }

    fn alert(
        name: &str,
        business: bool,
        dob: Option<&str>,
        nat: Option<&str>,
        claims: &[(&str, &str, &str)],
    ) -> Alert {
        let matches: Vec<serde_json::Value> = claims
            .iter()
            .map(|(l, id, n)| serde_json::json!({"list": l, "entry_id": id, "matched_name": n, "score": 0.9, "match_type": "NAME"}))
            .collect();
        let mut customer = serde_json::json!({
            "customer_id": "C1", "name": name,
            "entity_type": if business { "BUSINESS" } else { "INDIVIDUAL" },
        });
        if let Some(d) = dob {
            customer["date_of_birth"] = d.into();
        }
        if let Some(n) = nat {
            customer["nationality"] = n.into();
        }
        let v = serde_json::json!({
            "alert_id": "A1", "alert_type": "SANCTIONS", "priority": "HIGH",
            "created_at": "2024-01-01T00:00:00Z", "customer": customer,
            "screening": {"matches": matches},
        });
        Alert::from_value(v).expect("test alert is valid")
    }

    fn munir() -> ListEntry {
        let mut e = entry("OFAC_SDN", "100", EntityKind::Person, "AL-QUBAYSI, Munir");
        e.birth_dates = vec![BirthDate::Exact(
            NaiveDate::from_ymd_opt(1966, 1, 12).unwrap(),
        )];
        e.nationalities = vec!["IQ".into()];
        e.aliases = vec![
            Alias {
                name: "AL-KUBAISI, Muneer".into(),
                quality: AliasQuality::Strong,
            },
            Alias {
                name: "ABU MUNIR".into(),
                quality: AliasQuality::Weak,
            },
        ];
        e.identifiers = vec![Identifier {
            kind: "Passport".into(),
            value: "A1".into(),
            country: Some("IQ".into()),
        }];
        e
    }

    fn class_of(out: &ScreeningOutcome, evidence: &str) -> Option<MatchClass> {
        out.hits
            .iter()
            .find(|h| h.evidence_id == evidence)
            .map(|h| h.class)
    }

    #[test]
    fn shared_surname_with_different_dob_is_discounted() {
        let l = lists(vec![munir()]);
        let claim = [("OFAC_SDN", "100", "AL-QUBAYSI, Munir")];
        // Same surname, other given name, other DOB.
        let out = l.screen(&alert(
            "Ahmed Al-Qubaysi",
            false,
            Some("1990-05-05"),
            Some("IQ"),
            &claim,
        ));
        assert_eq!(
            class_of(&out, "screen:OFAC_SDN:100"),
            Some(MatchClass::Discounted)
        );
        // Even the full name with a birth date decades away does not count.
        let out = l.screen(&alert(
            "Munir Al-Qubaysi",
            false,
            Some("1990-05-05"),
            Some("IQ"),
            &claim,
        ));
        let hit = &out.hits[0];
        assert_eq!(hit.class, MatchClass::Discounted);
        assert!(
            hit.explanation
                .iter()
                .any(|x| x.contains("date of birth") && x.contains("conflict")),
            "{:?}",
            hit.explanation
        );
        // A shared surname, no DOB on the customer: another given name is a disqualifier
        // of its own (names differ), and says so.
        let out = l.screen(&alert("Charles Al-Qubaysi", false, None, None, &claim));
        assert_eq!(out.hits[0].class, MatchClass::Discounted);
        assert_eq!(out.hits[0].discount_reason, Some(Disqualifier::NamesDiffer));
        // The same given name with other middle names on both sides is not: name chains
        // vary, so an analyst looks.
        let mut long = munir();
        long.name = "AL-QUBAYSI, Munir Abdul Karim".into();
        let l2 = lists(vec![long]);
        let out = l2.screen(&alert("Munir Hassan Al-Qubaysi", false, None, None, &claim));
        assert_eq!(
            out.hits[0].class,
            MatchClass::Potential,
            "{:?}",
            out.hits[0].explanation
        );
        assert!(!out.all_discounted());
    }

    #[test]
    fn exact_dob_and_nationality_outweigh_spelling() {
        let l = lists(vec![munir()]);
        let claim = [("OFAC_SDN", "100", "AL-QUBAYSI, Munir")];
        // Respelled, other given name, or a name that shares nothing: with the list's exact
        // date of birth and nationality, never discounted.
        for name in [
            "Munir Al-Kubeisi",
            "Moneer Alqubaisi",
            "Ahmed Al-Qubaysi",
            "Muñir Jubaysi",
            "Laura Nelson",
        ] {
            let out = l.screen(&alert(name, false, Some("1966-01-12"), Some("IQ"), &claim));
            let hit = &out.hits[0];
            assert_ne!(
                hit.class,
                MatchClass::Discounted,
                "{name}: {:?}",
                hit.explanation
            );
            assert!(hit.discount_reason.is_none());
        }
    }

    #[test]
    fn discount_names_its_disqualifier() {
        let l = lists(vec![munir()]);
        let claim = [("OFAC_SDN", "100", "AL-QUBAYSI, Munir")];
        let cases = [
            (
                alert(
                    "Munir Al-Qubaysi",
                    false,
                    Some("1990-05-05"),
                    Some("IQ"),
                    &claim,
                ),
                Disqualifier::DateOfBirthContradicts,
            ),
            (
                alert("Munir Al-Qubaysi", false, None, Some("FR"), &claim),
                Disqualifier::NationalityContradicts,
            ),
            (
                alert("Munir Al-Qubaysi", true, None, None, &claim),
                Disqualifier::EntityTypeDiffers,
            ),
            (
                alert("Laura Nelson", false, None, None, &claim),
                Disqualifier::NamesUnrelated,
            ),
        ];
        for (a, want) in cases {
            let out = l.screen(&a);
            let hit = &out.hits[0];
            assert_eq!(hit.class, MatchClass::Discounted, "{:?}", hit.explanation);
            assert_eq!(hit.discount_reason, Some(want), "{:?}", hit.explanation);
            let b = hit.breakdown.as_ref().expect("breakdown");
            assert_eq!(b.disqualifiers.first(), Some(&want));
            assert!(
                hit.explanation
                    .iter()
                    .any(|x| x.starts_with("class: DISCOUNTED: disqualified: ")),
                "{:?}",
                hit.explanation
            );
        }
        // Nothing discounted carries a reason; the breakdown names each token pair.
        let out = l.screen(&alert("Munir Al Qubaisy", false, None, None, &claim));
        let hit = &out.hits[0];
        assert_ne!(hit.class, MatchClass::Discounted);
        assert!(hit.discount_reason.is_none());
        let b = hit.breakdown.as_ref().expect("breakdown");
        assert!(
            b.name_pairs
                .iter()
                .any(|p| p.customer == "QUBAISY" && p.list == "QUBAYSI" && p.relation != "exact"),
            "{b:?}"
        );
        assert_eq!(b.date_of_birth.relation, "unknown");
        assert_eq!(b.date_of_birth.list, vec!["1966-01-12".to_string()]);
    }

    #[test]
    fn one_typo_organisations_are_never_discounted_by_name() {
        let mut e = entry(
            "OFAC_SDN",
            "300",
            EntityKind::Entity,
            "KALA NAFT TRADING LIMITED",
        );
        e.countries = vec!["IR".into()];
        let l = lists(vec![e]);
        let claim = [("OFAC_SDN", "300", "KALA NAFT TRADING LIMITED")];
        for name in [
            "KALA NAFT TARDING LTD",
            "KALLA NAFT TRADING LIMITED",
            "KAL NAFT TRADING",
            "KALA NAFTT TRADDING LIMTED",
            "KALANAFT TRADING",
            "KA1A NAFT TRADING",
            "QALA NAFT TRADING",
        ] {
            let mut a = alert(name, true, None, None, &claim);
            a.customer.addresses = vec![];
            let out = l.screen(&a);
            assert_ne!(
                out.hits[0].class,
                MatchClass::Discounted,
                "{name}: {:?}",
                out.hits[0].explanation
            );
        }
    }

    #[test]
    fn true_match_with_agreeing_dob_and_nationality_is_confirmed() {
        let l = lists(vec![munir()]);
        let claim = [("OFAC_SDN", "100", "AL-QUBAYSI, Munir")];
        for name in [
            "Munir Al-Qubaysi",
            "AL QUBAYSI, MUNIR",
            "Mr. Muneer Alkubaisi",
            "Munir Al Qubaisy",
        ] {
            let out = l.screen(&alert(name, false, Some("1966-01-12"), Some("IQ"), &claim));
            let hit = &out.hits[0];
            assert_eq!(
                hit.class,
                MatchClass::Confirmed,
                "{name}: {:?}",
                hit.explanation
            );
            assert_eq!(hit.evidence_id, "screen:OFAC_SDN:100");
            assert_eq!(hit.list_version.as_deref(), Some("2019-01"));
            assert_eq!(hit.kind, ListKind::Sanctions);
            assert!(hit.claimed_by_source);
            assert!(hit.name_score > 0.8 && hit.score > 0.8);
            assert!(hit.explanation.iter().any(|x| x.starts_with("name: ")));
        }
        // Nationality contradicts and the DOB is missing: discounted.
        let out = l.screen(&alert("Munir Al-Qubaysi", false, None, Some("FR"), &claim));
        assert_eq!(out.hits[0].class, MatchClass::Discounted);
        // Nothing on the customer record to compare: even an exact name is only potential
        // (blocking needs corroboration), and so is a partial one (surname only).
        let out = l.screen(&alert("Munir Al-Qubaysi", false, None, None, &claim));
        assert_eq!(out.hits[0].class, MatchClass::Potential);
        let out = l.screen(&alert("Al-Qubaysi", false, None, None, &claim));
        assert_eq!(
            out.hits[0].class,
            MatchClass::Potential,
            "{:?}",
            out.hits[0].explanation
        );
        // A weak alias alone is potential; with the exact DOB it confirms.
        let out = l.screen(&alert(
            "Abu Munir",
            false,
            Some("1966-01-13"),
            Some("IQ"),
            &[],
        ));
        assert_eq!(
            out.hits[0].class,
            MatchClass::Potential,
            "{:?}",
            out.hits[0].explanation
        );
        let out = l.screen(&alert(
            "Abu Munir",
            false,
            Some("1966-01-12"),
            Some("IQ"),
            &[],
        ));
        assert_eq!(out.hits[0].class, MatchClass::Confirmed);
    }

    #[test]
    fn claim_against_unloaded_list_is_unverifiable() {
        let l = lists(vec![munir()]);
        let out = l.screen(&alert(
            "Munir Al-Qubaysi",
            false,
            None,
            None,
            &[
                ("EU_FSF", "EU.1.2", "Munir AL-QUBAYSI"),
                ("OFAC_SDN", "999", "Someone"),
            ],
        ));
        assert_eq!(out.unverifiable.len(), 2);
        let eu = &out.unverifiable[0];
        assert_eq!(eu.class, MatchClass::Unverifiable);
        assert_eq!(eu.evidence_id, "screen:EU_FSF:EU.1.2");
        assert!(eu.list_version.is_none());
        assert!(eu.explanation.iter().any(|x| x.contains("not loaded")));
        assert!(
            out.unverifiable[1]
                .explanation
                .iter()
                .any(|x| x.contains("has no entry 999"))
        );
        assert!(!out.all_discounted());
        // The empty lists make every claim unverifiable.
        let out = ScreeningLists::empty().screen(&alert(
            "X Y",
            false,
            None,
            None,
            &[("OFAC_SDN", "1", "X Y")],
        ));
        assert_eq!(out.unverifiable.len(), 1);
        assert!(out.hits.is_empty());
    }

    #[test]
    fn rescreening_finds_unclaimed_entries_and_pep() {
        let mut pep = entry(
            "OPENSANCTIONS_PEP",
            "Q1",
            EntityKind::Person,
            "Jerrold Nadler",
        );
        pep.birth_dates = vec![BirthDate::Year(1947)];
        pep.nationalities = vec!["US".into()];
        let l = lists(vec![munir(), pep]);
        let out = l.screen(&alert(
            "Nadler, Jerrold",
            false,
            Some("1947-06-13"),
            Some("US"),
            &[],
        ));
        assert_eq!(out.hits.len(), 1);
        assert_eq!(out.hits[0].kind, ListKind::Pep);
        assert_eq!(out.hits[0].class, MatchClass::Confirmed);
        assert!(!out.hits[0].claimed_by_source);
        let out = l.screen(&alert(
            "Jerrold Nadler",
            false,
            Some("1987-06-13"),
            Some("US"),
            &[],
        ));
        assert_eq!(
            out.hits[0].class,
            MatchClass::Discounted,
            "namesake born 40 years later"
        );
        let out = l.screen(&alert("Jane Smith", false, None, None, &[]));
        assert!(out.hits.is_empty());
    }

    #[test]
    fn organisations_entity_types_and_versions() {
        let mut acme = entry("OFAC_SDN", "200", EntityKind::Entity, "BRECO SERVICES LTD");
        acme.countries = vec!["GB".into()];
        let mut acme_new = acme.clone();
        acme_new.list_version = "2024".into();
        let l = lists(vec![acme, acme_new, munir()]);
        let claim = [("OFAC_SDN", "200", "BRECO SERVICES LTD")];
        // Legal-form change, same country: confirmed, one hit over both versions.
        let mut a = alert("Breco Services Limited", true, None, Some("GB"), &claim);
        a.customer.addresses = vec![];
        let out = l.screen(&a);
        assert_eq!(out.hits.len(), 1);
        assert_eq!(
            out.hits[0].class,
            MatchClass::Confirmed,
            "{:?}",
            out.hits[0].explanation
        );
        assert!(
            out.hits[0]
                .explanation
                .iter()
                .any(|x| x.contains("2 loaded versions"))
        );
        // Similar business name in another country: discounted.
        let out = l.screen(&alert(
            "Breco Consulting Corp",
            true,
            None,
            Some("US"),
            &claim,
        ));
        assert_eq!(out.hits[0].class, MatchClass::Discounted);
        // A person named like a company (or the reverse) does not match.
        let out = l.screen(&alert("Breco Services", false, None, Some("GB"), &claim));
        assert_eq!(out.hits[0].class, MatchClass::Discounted);
        let out = l.screen(&alert(
            "Munir Al-Qubaysi",
            true,
            None,
            Some("IQ"),
            &[("OFAC_SDN", "100", "x")],
        ));
        assert_eq!(out.hits[0].class, MatchClass::Discounted);
        assert_eq!(l.versions(), vec!["OFAC_SDN@2019-01", "OFAC_SDN@2024"]);
        assert!(l.has_list("OFAC_SDN") && !l.has_list("UN_CONSOLIDATED"));
        assert_eq!(l.entry_count(), 3);
    }

    #[test]
    fn name_comparison_handles_variants() {
        let p = |s: &str| normalize_name(s, NameKind::Person);
        let lvl = |a: &str, b: &str| compare_names(&p(a), &p(b), false).level;
        assert_eq!(
            lvl("Muhammad Hussein", "HUSEIN, Mohamed"),
            NameLevel::Strong
        );
        assert_eq!(
            lvl("Christopher Mushohve", "MUSHOHWE, Christopher Chindoti"),
            NameLevel::Strong
        );
        assert_eq!(lvl("Dragon Basevic", "BASEVIC, Dragan"), NameLevel::Strong);
        assert_eq!(
            lvl("Aleksandr Zaldastanov", "ZALDOSTANOV, Aleksandr"),
            NameLevel::Strong
        );
        assert_eq!(
            lvl("Vyacheslav Ponomaryoff", "PONOMARYOV, Vyacheslav"),
            NameLevel::Strong
        );
        assert_eq!(lvl("Se Bong Paek", "PAEK, Se-Bong"), NameLevel::Strong);
        assert_eq!(lvl("Sebong Paek", "PAEK, Se-Bong"), NameLevel::Strong);
        assert_eq!(
            lvl(
                "Jonathan Traslavina Benavides",
                "TRASLAVINA BENAVIDES, Erasmo"
            ),
            NameLevel::Differs
        );
        assert_eq!(lvl("Laura Nelson", "ZULKARNAEN"), NameLevel::Unrelated);
        assert_eq!(lvl("Katrangi", "KATRANGI, Mohamad"), NameLevel::Partial);
        let o = |s: &str| normalize_name(s, NameKind::Organisation);
        let cmp = compare_names(&o("Grajales Consulting Corp"), &o("GRAJALES S.A."), true);
        assert_eq!(cmp.level, NameLevel::Partial);
        let cmp = compare_names(
            &o("Cpmiec Shanghai Pudogn Co."),
            &o("CPMIEC SHANGHAI PUDONG COMPANY"),
            true,
        );
        assert_eq!(cmp.level, NameLevel::Strong);
    }
}

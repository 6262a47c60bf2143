//! A robustness set for screening: labelled alerts built from loaded list entries by
//! systematic, named perturbations of their names, so that a matcher is judged on inputs its
//! authors did not write by hand.
//!
//! For each perturbation class, entries are drawn (deterministically from a seed) and their
//! name is changed by one to three edits of that class (a structural change such as word
//! order is made once, the further edits are typos). A word takes at most one typo per three
//! letters (one in words of up to five letters): a person mistyping a name does not retype
//! every letter of a short word. Each true hit claims its entry, as a
//! screening system would, and carries the entry's date of birth and nationality in one of
//! four ways: both, date of birth only, nationality only, or neither. Namesake negatives take
//! the same perturbed names but carry a real disqualifier: a date of birth decades away, a
//! nationality the entry does not have, or the other entity type. A matcher that is safe
//! clears no true hit (`expected.suspicious = true`) and may clear the namesakes.
//!
//! Each line is `{"alert": {...}, "expected": {"suspicious", "typology", "source"}}` with the
//! class in `expected.typology` and in `alert.metadata.perturbation`, so `aml-triage eval`
//! reports recall per class.

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::dates::BirthDate;
use super::normalize::{NameKind, normalize_name};
use super::{EntityKind, ListEntry, ScreeningLists};

/// One named way of changing a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Perturbation {
    /// Two adjacent letters swapped (`TRADING` → `TARDING`).
    Transposition,
    /// A letter doubled (`TRADING` → `TRADDING`).
    DoubledLetter,
    /// A letter dropped (`TRADING` → `TRDING`).
    DroppedLetter,
    /// A letter inserted (`TRADING` → `TRAIDING`).
    InsertedLetter,
    /// A letter replaced by a keyboard neighbour (`TRADING` → `TRAFING`).
    KeyboardSubstitution,
    /// A letter replaced by a look-alike (`O`→`0`, `I`→`1`, `M`→`RN`, `W`→`VV`, `D`→`CL`).
    LookAlike,
    /// A respelling as another language writes the sound (`ll`/`y`, `v`/`b`, `j`/`h`/`kh`,
    /// `ph`/`f`, `ou`/`u`, `dj`/`j`/`dzh`, `sch`/`sh`, `sh`/`ch`, `z`/`s`, doubled letters).
    SoundAlike,
    /// An organisation's legal form misspelt or changed (`LIMITED` → `LIMTED`, `L.L.C`).
    LegalForm,
    /// Two adjacent words written as one.
    GluedTokens,
    /// One word split in two.
    SplitToken,
    /// A given name reduced to its initial.
    Initials,
    /// Words reordered (`SURNAME, Given` or reversed).
    WordOrder,
    /// A middle name dropped.
    DroppedMiddleName,
    /// The name in the list's own original script (Arabic, Cyrillic).
    OriginalScript,
    /// Typos of several kinds mixed.
    Mixed,
}

impl Perturbation {
    /// The letter-level typo classes, which `Mixed` draws from.
    pub const TYPOS: [Perturbation; 7] = [
        Perturbation::Transposition,
        Perturbation::DoubledLetter,
        Perturbation::DroppedLetter,
        Perturbation::InsertedLetter,
        Perturbation::KeyboardSubstitution,
        Perturbation::LookAlike,
        Perturbation::SoundAlike,
    ];

    /// Every class, in report order.
    pub const ALL: [Perturbation; 15] = [
        Perturbation::Transposition,
        Perturbation::DoubledLetter,
        Perturbation::DroppedLetter,
        Perturbation::InsertedLetter,
        Perturbation::KeyboardSubstitution,
        Perturbation::LookAlike,
        Perturbation::SoundAlike,
        Perturbation::LegalForm,
        Perturbation::GluedTokens,
        Perturbation::SplitToken,
        Perturbation::Initials,
        Perturbation::WordOrder,
        Perturbation::DroppedMiddleName,
        Perturbation::OriginalScript,
        Perturbation::Mixed,
    ];

    /// Stable snake-case name, used as the typology in the labels.
    pub fn name(self) -> &'static str {
        match self {
            Perturbation::Transposition => "transposition",
            Perturbation::DoubledLetter => "doubled_letter",
            Perturbation::DroppedLetter => "dropped_letter",
            Perturbation::InsertedLetter => "inserted_letter",
            Perturbation::KeyboardSubstitution => "keyboard_substitution",
            Perturbation::LookAlike => "look_alike",
            Perturbation::SoundAlike => "sound_alike",
            Perturbation::LegalForm => "legal_form",
            Perturbation::GluedTokens => "glued_tokens",
            Perturbation::SplitToken => "split_token",
            Perturbation::Initials => "initials",
            Perturbation::WordOrder => "word_order",
            Perturbation::DroppedMiddleName => "dropped_middle_name",
            Perturbation::OriginalScript => "original_script",
            Perturbation::Mixed => "mixed",
        }
    }

    /// Whether the class applies to entry `e`, whose name has `words` words.
    fn applies(self, e: &ListEntry, words: usize) -> bool {
        let org = e.kind != EntityKind::Person;
        match self {
            Perturbation::LegalForm => org,
            Perturbation::Initials | Perturbation::DroppedMiddleName => !org && words >= 3,
            Perturbation::GluedTokens | Perturbation::WordOrder => words >= 2,
            Perturbation::OriginalScript => original_script_name(e).is_some(),
            _ => true,
        }
    }
}

/// Options of [`build`].
#[derive(Debug, Clone)]
pub struct SetOptions {
    /// True hits per class (fewer when too few entries fit the class).
    pub per_class: usize,
    /// Namesake negatives per class.
    pub negatives_per_class: usize,
    /// Seed of the deterministic generator.
    pub seed: u64,
    /// `(list, entry id)` pairs not to use (entries a development set already uses).
    pub exclude: Vec<(String, String)>,
    /// Only entries of these lists (all lists when empty).
    pub lists: Vec<String>,
}

impl Default for SetOptions {
    fn default() -> Self {
        Self {
            per_class: 150,
            negatives_per_class: 40,
            seed: 20_261_205,
            exclude: Vec::new(),
            lists: Vec::new(),
        }
    }
}

/// Counts of what [`build`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetSummary {
    /// True hits per class, in [`Perturbation::ALL`] order.
    pub true_hits: Vec<(&'static str, usize)>,
    /// Namesake negatives per disqualifier.
    pub negatives: Vec<(&'static str, usize)>,
}

/// Builds the labelled lines. Deterministic for a given list set and options.
pub fn build(lists: &ScreeningLists, opts: &SetOptions) -> (Vec<Value>, SetSummary) {
    let mut rng = fastrand::Rng::with_seed(opts.seed);
    // Each usable entry with its name's word count, normalised once.
    let usable: Vec<(&ListEntry, usize)> = lists
        .entries()
        .iter()
        .filter(|e| {
            matches!(e.kind, EntityKind::Person | EntityKind::Entity)
                && (opts.lists.is_empty() || opts.lists.contains(&e.list_id))
                && !opts
                    .exclude
                    .iter()
                    .any(|(l, id)| *l == e.list_id && *id == e.entry_id)
        })
        .filter_map(|e| {
            let words = base_words(e);
            words
                .iter()
                .any(|w| w.len() >= 4)
                .then_some((e, words.len()))
        })
        .collect();
    let mut lines = Vec::new();
    let mut summary = SetSummary::default();
    let mut neg_counts: Vec<(&'static str, usize)> = vec![
        ("namesake_dob", 0),
        ("namesake_nationality", 0),
        ("namesake_entity_type", 0),
    ];
    let mut serial = 0usize;
    for class in Perturbation::ALL {
        let mut fit: Vec<&ListEntry> = usable
            .iter()
            .filter(|(e, words)| class.applies(e, *words))
            .map(|(e, _)| *e)
            .collect();
        rng.shuffle(&mut fit);
        let mut made = 0usize;
        let mut negs = 0usize;
        for e in fit {
            if made >= opts.per_class && negs >= opts.negatives_per_class {
                break;
            }
            let edits = 1 + rng.usize(0..3);
            let Some(name) = perturb(e, class, edits, &mut rng) else {
                continue;
            };
            if made < opts.per_class {
                serial += 1;
                let identity = Identity::draw(e, &mut rng);
                lines.push(line(e, &name, class, edits, identity, None, serial));
                made += 1;
            } else if negs < opts.negatives_per_class {
                let Some((dq, identity)) = disqualifying_identity(e, &mut rng) else {
                    continue;
                };
                serial += 1;
                lines.push(line(e, &name, class, edits, identity, Some(dq), serial));
                if let Some(c) = neg_counts.iter_mut().find(|(n, _)| *n == dq) {
                    c.1 += 1;
                }
                negs += 1;
            }
        }
        summary.true_hits.push((class.name(), made));
    }
    summary.negatives = neg_counts;
    (lines, summary)
}

/// What the customer record says besides the name.
#[derive(Debug, Clone, Default)]
struct Identity {
    dob: Option<NaiveDate>,
    nationality: Option<String>,
    country: Option<String>,
    business: bool,
    variant: &'static str,
}

impl Identity {
    /// A true hit's identity: the entry's own facts, all, some or none of them.
    fn draw(e: &ListEntry, rng: &mut fastrand::Rng) -> Identity {
        let org = e.kind != EntityKind::Person;
        let dob = e.birth_dates.first().map(|b| agreeing_date(b, rng));
        let nat = e.nationalities.first().cloned();
        let country = e.countries.first().cloned();
        let (with_dob, with_nat, variant) = match rng.usize(0..5) {
            0 => (true, true, "dob_and_nationality"),
            1 => (true, false, "dob_only"),
            2 => (false, true, "nationality_only"),
            3 => (true, true, "dob_typo_and_nationality"),
            _ => (false, false, "name_only"),
        };
        let dob = if variant == "dob_typo_and_nationality" {
            dob.map(|d| mistype_date(d, rng))
        } else {
            dob
        };
        Identity {
            dob: if with_dob && !org { dob } else { None },
            nationality: if with_nat && !org { nat } else { None },
            country: if with_nat && org { country } else { None },
            business: org,
            variant,
        }
    }
}

/// A namesake's identity: one real disqualifier against the entry.
fn disqualifying_identity(
    e: &ListEntry,
    rng: &mut fastrand::Rng,
) -> Option<(&'static str, Identity)> {
    let org = e.kind != EntityKind::Person;
    let mut options: Vec<&'static str> = Vec::new();
    if !org && !e.birth_dates.is_empty() {
        options.push("namesake_dob");
    }
    if !org && !e.nationalities.is_empty() {
        options.push("namesake_nationality");
    }
    // The other entity type only where nothing else can disqualify, or now and then.
    if options.is_empty() || rng.usize(0..4) == 0 {
        options.push("namesake_entity_type");
    }
    let pick = options[rng.usize(0..options.len())];
    let identity = match pick {
        "namesake_dob" => {
            let (lo, hi) = e
                .birth_dates
                .iter()
                .map(BirthDate::year_span)
                .fold((i32::MAX, i32::MIN), |a, b| (a.0.min(b.0), a.1.max(b.1)));
            let year = if hi + 25 < 2005 { hi + 25 } else { lo - 25 };
            Identity {
                dob: NaiveDate::from_ymd_opt(year, 1 + rng.u32(0..12), 1 + rng.u32(0..28)),
                nationality: e.nationalities.first().cloned(),
                variant: "dob_contradicts",
                ..Identity::default()
            }
        }
        "namesake_nationality" => {
            let other = ["SE", "NO", "IS", "NZ", "UY", "CR", "FI", "EE"]
                .into_iter()
                .find(|c| {
                    !e.nationalities.iter().any(|n| n == c)
                        && !e.birth_countries.iter().any(|n| n == c)
                        && !e
                            .identifiers
                            .iter()
                            .any(|i| i.country.as_deref() == Some(c))
                })?;
            Identity {
                nationality: Some(other.to_string()),
                variant: "nationality_contradicts",
                ..Identity::default()
            }
        }
        _ => Identity {
            business: !org,
            variant: "entity_type_differs",
            ..Identity::default()
        },
    };
    Some((pick, identity))
}

/// A date typed with one slip: day and month swapped, or two year digits transposed.
fn mistype_date(d: NaiveDate, rng: &mut fastrand::Rng) -> NaiveDate {
    use chrono::Datelike;
    let swapped = NaiveDate::from_ymd_opt(d.year(), d.day(), d.month());
    let year = d.year().to_string();
    let b = year.as_bytes();
    let transposed = (b.len() == 4 && b[2] != b[3])
        .then(|| format!("{}{}{}", &year[..2], b[3] as char, b[2] as char))
        .and_then(|y| y.parse::<i32>().ok())
        .and_then(|y| NaiveDate::from_ymd_opt(y, d.month(), d.day()));
    match (rng.bool(), swapped, transposed) {
        (true, Some(s), _) if s != d => s,
        (_, _, Some(t)) => t,
        (_, Some(s), None) => s,
        _ => d,
    }
}

/// A full date that agrees with a list date at its precision.
fn agreeing_date(b: &BirthDate, rng: &mut fastrand::Rng) -> NaiveDate {
    let day = |y: i32, m: u32, rng: &mut fastrand::Rng| {
        NaiveDate::from_ymd_opt(y, m, 1 + rng.u32(0..28)).unwrap_or_default()
    };
    match *b {
        BirthDate::Exact(d) => d,
        BirthDate::YearMonth { year, month } => day(year, month, rng),
        BirthDate::Year(y) | BirthDate::Circa(y) => day(y, 1 + rng.u32(0..12), rng),
        BirthDate::Range { from, to } => {
            let y = from.min(to) + rng.i32(0..=(to - from).abs());
            day(y, 1 + rng.u32(0..12), rng)
        }
    }
}

fn line(
    e: &ListEntry,
    name: &str,
    class: Perturbation,
    edits: usize,
    id: Identity,
    negative: Option<&'static str>,
    serial: usize,
) -> Value {
    let alert_id = format!("ROB-{serial:05}");
    let mut customer = json!({
        "customer_id": format!("ROB-C{serial:05}"),
        "name": name,
        "aliases": [],
        "entity_type": if id.business { "BUSINESS" } else { "INDIVIDUAL" },
    });
    if let Some(d) = id.dob {
        customer["date_of_birth"] = json!(d.format("%Y-%m-%d").to_string());
    }
    if let Some(n) = &id.nationality {
        customer["nationality"] = json!(n);
    }
    if let Some(c) = &id.country {
        customer["addresses"] =
            json!([{"street": "1 Main Street", "city": "Capital", "country": c}]);
    }
    let created = NaiveDate::from_ymd_opt(2026, 1, 1)
        .unwrap_or_default()
        .and_hms_opt(9, 0, 0)
        .unwrap_or_default()
        .and_utc()
        + chrono::Duration::minutes(serial as i64);
    let suspicious = negative.is_none();
    json!({
        "alert": {
            "alert_id": alert_id,
            "alert_type": "SANCTIONS",
            "priority": "MEDIUM",
            "created_at": created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "rule_id": "SANCTIONS_NAME_SCREENING",
            "customer": customer,
            "screening": {"matches": [{
                "list": e.list_id,
                "entry_id": e.entry_id,
                "matched_name": e.name,
                "score": 0.8,
                "match_type": "NAME",
            }]},
            "regulatory_context": {"jurisdiction": "US", "applicable_regulations": ["OFAC", "BSA"]},
            "metadata": {
                "generator": "aml-triage lists robustness",
                "perturbation": class.name(),
                "edits": edits,
                "identity": id.variant,
                "list_name": e.name,
                "list_version": e.list_version,
                "birth_year": e.birth_dates.first().map(|b| b.year_span().0),
            },
        },
        "expected": {
            "suspicious": suspicious,
            "typology": negative.unwrap_or(class.name()),
            "source": format!("robustness:{}@{}", e.list_id, e.list_version),
        },
    })
}

/// The entry's name as a customer would write it: given names first for persons, the list's
/// own form (legal form included) for organisations, as words.
fn base_words(e: &ListEntry) -> Vec<String> {
    if e.kind == EntityKind::Person {
        normalize_name(&e.name, NameKind::Person)
            .tokens
            .into_iter()
            .map(|t| t.text)
            .collect()
    } else {
        e.name
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
            .map(|w| deunicode::deunicode(w).to_uppercase())
            .collect()
    }
}

fn original_script_name(e: &ListEntry) -> Option<&str> {
    e.aliases
        .iter()
        .map(|a| a.name.as_str())
        .find(|n| n.chars().any(|c| !c.is_ascii() && c.is_alphabetic()))
}

/// Applies `edits` operations of `class` to the entry's name; `None` when the class cannot
/// change this name.
pub fn perturb(
    e: &ListEntry,
    class: Perturbation,
    edits: usize,
    rng: &mut fastrand::Rng,
) -> Option<String> {
    if class == Perturbation::OriginalScript {
        return original_script_name(e).map(str::to_string);
    }
    let mut words = base_words(e);
    if words.is_empty() {
        return None;
    }
    let before = words.join(" ");
    let mut typos = vec![0usize; words.len()];
    let mut applied = 0;
    for _ in 0..edits {
        let op = if class == Perturbation::Mixed {
            Perturbation::TYPOS[rng.usize(0..Perturbation::TYPOS.len())]
        } else {
            class
        };
        if apply(
            &mut words,
            &mut typos,
            op,
            e.kind != EntityKind::Person,
            rng,
        ) {
            applied += 1;
        }
        if matches!(
            class,
            Perturbation::WordOrder
                | Perturbation::GluedTokens
                | Perturbation::Initials
                | Perturbation::DroppedMiddleName
                | Perturbation::LegalForm
        ) && applied > 0
        {
            // Structural changes are made once; the further edits are typos.
            for _ in 1..edits {
                let typo = [
                    Perturbation::Transposition,
                    Perturbation::DroppedLetter,
                    Perturbation::KeyboardSubstitution,
                ][rng.usize(0..3)];
                apply(
                    &mut words,
                    &mut typos,
                    typo,
                    e.kind != EntityKind::Person,
                    rng,
                );
            }
            break;
        }
    }
    let after = words.join(" ");
    (applied > 0 && after != before && !after.trim().is_empty()).then_some(after)
}

/// Index of a word of at least `min` letters that can take another typo: a person mistypes
/// at most one letter in three of a word (one in a word of up to five letters), so a short
/// word is never typed beyond recognition. `typos[i]` counts the typos already in word `i`.
fn pick_word(
    words: &[String],
    typos: &[usize],
    min: usize,
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    let fit: Vec<usize> = (0..words.len())
        .filter(|&i| {
            let letters = words[i].chars().filter(char::is_ascii_alphabetic).count();
            let made = typos.get(i).copied().unwrap_or(0);
            // Look-alike pairs (`VV` for `W`) lengthen a word: judge by its first length.
            letters >= min && made < (letters.saturating_sub(made) / 3).max(1)
        })
        .collect();
    (!fit.is_empty()).then(|| fit[rng.usize(0..fit.len())])
}

const KEYBOARD: [&str; 3] = ["QWERTYUIOP", "ASDFGHJKL", "ZXCVBNM"];

fn keyboard_neighbour(c: char, rng: &mut fastrand::Rng) -> Option<char> {
    for (r, row) in KEYBOARD.iter().enumerate() {
        if let Some(i) = row.find(c) {
            let mut n: Vec<char> = Vec::new();
            let b = row.as_bytes();
            if i > 0 {
                n.push(b[i - 1] as char);
            }
            if i + 1 < b.len() {
                n.push(b[i + 1] as char);
            }
            for other in [r.wrapping_sub(1), r + 1] {
                if let Some(o) = KEYBOARD.get(other)
                    && let Some(&x) = o.as_bytes().get(i)
                {
                    n.push(x as char);
                }
            }
            return (!n.is_empty()).then(|| n[rng.usize(0..n.len())]);
        }
    }
    None
}

/// Respellings: (from, to). Applied at the first place `from` occurs.
const RESPELLINGS: &[(&str, &str)] = &[
    ("LL", "Y"),
    ("Y", "LL"),
    ("V", "B"),
    ("B", "V"),
    ("KH", "J"),
    ("J", "KH"),
    ("H", "J"),
    ("PH", "F"),
    ("F", "PH"),
    ("OU", "U"),
    ("U", "OU"),
    ("DJ", "J"),
    ("DZH", "J"),
    ("J", "DJ"),
    ("SCH", "SH"),
    ("SH", "CH"),
    ("CH", "SH"),
    ("Z", "S"),
    ("QU", "K"),
    ("Q", "K"),
    ("K", "C"),
    ("C", "K"),
    ("W", "V"),
    ("EE", "I"),
    ("OO", "U"),
    ("SS", "S"),
    ("TT", "T"),
    ("MM", "M"),
    ("NN", "N"),
    ("LL", "L"),
    ("S", "SS"),
    ("I", "Y"),
    ("Y", "I"),
    ("X", "KS"),
    ("TH", "T"),
    ("GH", "G"),
];

const LOOK_ALIKES: &[(&str, &str)] = &[
    ("O", "0"),
    ("I", "1"),
    ("L", "1"),
    ("M", "RN"),
    ("W", "VV"),
    ("D", "CL"),
    ("E", "3"),
    ("S", "5"),
    ("B", "8"),
    ("RN", "M"),
];

const LEGAL_FORMS: &[(&str, &[&str])] = &[
    ("LIMITED", &["LIMTED", "LIMITTED", "LMITED", "LTD."]),
    ("LTD", &["LTD.", "L.T.D.", "LDT", "LIMTED"]),
    ("LLC", &["L.L.C", "LCC", "L.L.C."]),
    ("COMPANY", &["COMAPNY", "CO.", "COMPNAY"]),
    ("CORPORATION", &["CORPORATON", "CORP.", "CORPRATION"]),
    ("CO.", &["COMPANY", "C0."]),
    ("INC", &["INC.", "INCORPORATED", "ICN"]),
    ("GMBH", &["GMHB", "G.M.B.H."]),
    ("S.A.", &["SA", "S.A", "S A"]),
];

fn apply(
    words: &mut Vec<String>,
    typos: &mut Vec<usize>,
    op: Perturbation,
    org: bool,
    rng: &mut fastrand::Rng,
) -> bool {
    let before = words.len();
    let changed = apply_op(words, typos, op, org, rng);
    if words.len() != before {
        // A structural change: the words are new, so are their counts.
        *typos = vec![0; words.len()];
    }
    changed
}

fn apply_op(
    words: &mut Vec<String>,
    typos: &mut [usize],
    op: Perturbation,
    org: bool,
    rng: &mut fastrand::Rng,
) -> bool {
    match op {
        Perturbation::Transposition => edit_letters(words, typos, 4, rng, |b, rng| {
            let spots: Vec<usize> = (0..b.len() - 1).filter(|&i| b[i] != b[i + 1]).collect();
            if spots.is_empty() {
                return false;
            }
            let i = spots[rng.usize(0..spots.len())];
            b.swap(i, i + 1);
            true
        }),
        Perturbation::DoubledLetter => edit_letters(words, typos, 3, rng, |b, rng| {
            let i = rng.usize(0..b.len());
            b.insert(i, b[i]);
            true
        }),
        Perturbation::DroppedLetter => edit_letters(words, typos, 4, rng, |b, rng| {
            b.remove(rng.usize(1..b.len()));
            true
        }),
        Perturbation::InsertedLetter => edit_letters(words, typos, 3, rng, |b, rng| {
            b.insert(rng.usize(1..=b.len()), rng.uppercase());
            true
        }),
        Perturbation::KeyboardSubstitution => edit_letters(words, typos, 3, rng, |b, rng| {
            let i = rng.usize(0..b.len());
            match keyboard_neighbour(b[i], rng) {
                Some(n) => {
                    b[i] = n;
                    true
                }
                None => false,
            }
        }),
        Perturbation::LookAlike => replace_one(words, typos, LOOK_ALIKES, rng),
        Perturbation::SoundAlike => replace_one(words, typos, RESPELLINGS, rng),
        Perturbation::LegalForm => {
            if !org {
                return false;
            }
            for (form, variants) in LEGAL_FORMS {
                if let Some(i) = words.iter().position(|w| w == form) {
                    words[i] = variants[rng.usize(0..variants.len())].to_string();
                    return true;
                }
            }
            let added = ["LIMTED", "L.L.C", "CORPORATON", "COMAPNY", "GMHB"];
            words.push(added[rng.usize(0..added.len())].to_string());
            true
        }
        Perturbation::GluedTokens => {
            if words.len() < 2 {
                return false;
            }
            let i = rng.usize(0..words.len() - 1);
            let next = words.remove(i + 1);
            words[i].push_str(&next);
            true
        }
        Perturbation::SplitToken => {
            let Some(w) = pick_word(words, typos, 6, rng) else {
                return false;
            };
            let word = words[w].clone();
            let cut = word.len() / 2;
            if !word.is_char_boundary(cut) {
                return false;
            }
            words[w] = word[..cut].to_string();
            words.insert(w + 1, word[cut..].to_string());
            true
        }
        Perturbation::Initials => {
            // A given name (not the last word, the surname) becomes its initial.
            if words.len() < 3 {
                return false;
            }
            let i = rng.usize(0..words.len() - 2);
            let Some(first) = words[i].chars().next() else {
                return false;
            };
            words[i] = format!("{first}.");
            true
        }
        Perturbation::WordOrder => {
            if words.len() < 2 {
                return false;
            }
            if org || rng.bool() {
                words.reverse();
            } else {
                // "SURNAME, Given Middle".
                let last = words.pop().unwrap_or_default();
                words.insert(0, format!("{last},"));
            }
            true
        }
        Perturbation::DroppedMiddleName => {
            if words.len() < 3 {
                return false;
            }
            words.remove(1 + rng.usize(0..words.len() - 2));
            true
        }
        Perturbation::OriginalScript | Perturbation::Mixed => false,
    }
}

/// Picks a word of at least `min` letters that can take another typo and lets `edit` change
/// its letters; counts the typo when it did.
fn edit_letters(
    words: &mut [String],
    typos: &mut [usize],
    min: usize,
    rng: &mut fastrand::Rng,
    edit: impl FnOnce(&mut Vec<char>, &mut fastrand::Rng) -> bool,
) -> bool {
    let Some(w) = pick_word(words, typos, min, rng) else {
        return false;
    };
    let mut letters: Vec<char> = words[w].chars().collect();
    if !edit(&mut letters, rng) {
        return false;
    }
    words[w] = letters.into_iter().collect();
    typos[w] += 1;
    true
}

fn replace_one(
    words: &mut [String],
    typos: &mut [usize],
    table: &[(&str, &str)],
    rng: &mut fastrand::Rng,
) -> bool {
    let mut options: Vec<(usize, usize, &str, &str)> = Vec::new();
    for (wi, w) in words.iter().enumerate() {
        if w.len() < 3 || typos[wi] >= (w.len().saturating_sub(typos[wi]) / 3).max(1) {
            continue;
        }
        for (from, to) in table {
            if let Some(pos) = w.find(from) {
                options.push((wi, pos, from, to));
            }
        }
    }
    if options.is_empty() {
        return false;
    }
    let (wi, pos, from, to) = options[rng.usize(0..options.len())];
    let w = &words[wi];
    words[wi] = format!("{}{}{}", &w[..pos], to, &w[pos + from.len()..]);
    typos[wi] += 1;
    true
}

/// The `(list, entry id)` pairs an evaluation file claims, to keep a robustness set apart
/// from a development set.
pub fn claimed_entries(eval_text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in eval_text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let Some(ms) = v["alert"]["screening"]["matches"].as_array() {
            for m in ms {
                if let (Some(l), Some(id)) = (m["list"].as_str(), m["entry_id"].as_str()) {
                    out.push((l.to_string(), id.to_string()));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::facts::ListKind;
    use crate::screening::{Alias, AliasQuality};

    fn person(id: &str, name: &str) -> ListEntry {
        ListEntry {
            list_id: "TEST".into(),
            list_kind: ListKind::Sanctions,
            list_version: "1".into(),
            entry_id: id.into(),
            alt_ids: vec![],
            kind: EntityKind::Person,
            name: name.into(),
            aliases: vec![Alias {
                name: "Мунир Кубайси".into(),
                quality: AliasQuality::Strong,
            }],
            birth_dates: vec![BirthDate::Exact(
                NaiveDate::from_ymd_opt(1961, 2, 3).expect("date"),
            )],
            nationalities: vec!["SY".into()],
            birth_countries: vec![],
            countries: vec![],
            identifiers: vec![],
            programs: vec![],
            remarks: String::new(),
        }
    }

    #[test]
    fn every_class_changes_a_name_it_applies_to() {
        let e = person("1", "AL-QUBAYSI, Munir Abdul Karim");
        let mut org = person("2", "BRECO GLOBAL SERVICES LIMITED");
        org.kind = EntityKind::Entity;
        let mut rng = fastrand::Rng::with_seed(7);
        for class in Perturbation::ALL {
            let target = if class == Perturbation::LegalForm {
                &org
            } else {
                &e
            };
            assert!(class.applies(target, base_words(target).len()), "{class:?}");
            let out = perturb(target, class, 1, &mut rng);
            assert!(out.is_some(), "{class:?} made no change");
        }
    }

    #[test]
    fn the_set_is_deterministic_and_labelled() {
        let lists = ScreeningLists::from_parts(
            vec![],
            vec![
                person("1", "AL-QUBAYSI, Munir Abdul Karim"),
                person("2", "PETROV, Ivan Sergeyevich"),
            ],
            vec![],
        );
        let opts = SetOptions {
            per_class: 1,
            negatives_per_class: 1,
            ..SetOptions::default()
        };
        let (a, sa) = build(&lists, &opts);
        let (b, _) = build(&lists, &opts);
        assert_eq!(a, b);
        assert!(sa.true_hits.iter().filter(|(_, n)| *n > 0).count() >= 10);
        for l in &a {
            assert!(l["expected"]["suspicious"].is_boolean());
            assert!(l["alert"]["metadata"]["perturbation"].is_string());
            crate::domain::alert::Alert::from_value(l["alert"].clone()).expect("valid alert");
        }
    }
}

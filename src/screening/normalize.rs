//! Name normalisation: the same person or company written by two systems should give the
//! same tokens.
//!
//! Steps, in order: transliteration to ASCII (deunicode: `Müller`→`Muller`, `Хусейн`→
//! `Khusein`); `SURNAME, Given` reordered to `Given SURNAME` for persons; nickname quotes,
//! apostrophes (`'ABD-AL-SAMAD`, `O'Brien`) and dotted abbreviations (`S.A.`→`SA`) folded;
//! other punctuation split into words; upper case; honorifics and titles dropped from person
//! names (`Mr`, `Dr`, `Sheikh`, `Haji`, ...); legal forms dropped from organisation names
//! (`LLC`, `Ltd`, `GmbH`, `S.A. de C.V.`, `OOO`, ...). Each remaining token gets a role
//! (name, particle such as `AL`/`BIN`/`DE`, or initial) and a [`phonetic_key`].
//!
//! Order-insensitive comparison is available through [`NormalizedName::sorted_text`]; the
//! matcher aligns tokens itself, so word order never matters there either.

use super::phonetic::phonetic_key;
use super::similarity::sound_keys;

/// What kind of party a name belongs to; it decides which words are noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameKind {
    /// A natural person: honorifics are dropped and `SURNAME, Given` is reordered.
    Person,
    /// A company, vessel, aircraft or other organisation: legal forms are dropped.
    Organisation,
    /// Not known: treated as an organisation when it carries a legal form, else as a person.
    Unknown,
}

/// The part a token plays in a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenRole {
    /// A real name word: counts for coverage and conflicts.
    Name,
    /// A connecting particle (`AL`, `BIN`, `DE`, `VAN`, `OF`, ...): may match, never counts.
    Particle,
    /// A single letter, e.g. a middle initial: may match a word with that first letter.
    Initial,
}

/// One normalised token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Upper-case ASCII letters and digits.
    pub text: String,
    /// [`phonetic_key`] of `text`.
    pub key: String,
    /// [`sound_keys`] of `text`: the coarse cross-language keys behind the `sound_alike`
    /// relation.
    pub sound: [String; 2],
    /// Role in the name.
    pub role: TokenRole,
}

/// A name after normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedName {
    /// The name as given.
    pub original: String,
    /// Tokens in reading order (given names first for persons).
    pub tokens: Vec<Token>,
    /// Whether it was read as an organisation name.
    pub organisation: bool,
    /// Every word glued together before legal forms and honorifics were dropped: a legal
    /// form glued to the name (`TIMPANILTD`) or split by a typo (`LIM ITED`) still compares.
    pub full_compact: String,
}

impl NormalizedName {
    /// Token texts joined by spaces, in reading order.
    pub fn text(&self) -> String {
        self.tokens
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Token texts sorted and joined by spaces: equal for reordered names.
    pub fn sorted_text(&self) -> String {
        let mut v: Vec<&str> = self.tokens.iter().map(|t| t.text.as_str()).collect();
        v.sort_unstable();
        v.join(" ")
    }

    /// All tokens glued together, in reading order (`AL QUBAYSI` and `ALQUBAYSI` agree).
    pub fn compact(&self) -> String {
        self.tokens.iter().map(|t| t.text.as_str()).collect()
    }

    /// Number of tokens with role [`TokenRole::Name`].
    pub fn name_token_count(&self) -> usize {
        self.tokens
            .iter()
            .filter(|t| t.role == TokenRole::Name)
            .count()
    }

    /// True when nothing is left after normalisation.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Titles and honorifics dropped from person names.
const HONORIFICS: &[&str] = &[
    "MR",
    "MRS",
    "MS",
    "MISS",
    "MX",
    "DR",
    "DOCTOR",
    "PROF",
    "PROFESSOR",
    "SIR",
    "DAME",
    "LORD",
    "LADY",
    "SHEIKH",
    "SHAIKH",
    "SHEIK",
    "SHAYKH",
    "SHEYKH",
    "CHEIKH",
    "HAJI",
    "HAJJI",
    "HAJ",
    "HADJI",
    "HAJJ",
    "ALHAJI",
    "ALHAJ",
    "ALHAJJ",
    "MULLAH",
    "MULLA",
    "MAULAWI",
    "MAWLAWI",
    "MAULVI",
    "MAWLAVI",
    "MOULAVI",
    "MAULANA",
    "QARI",
    "USTAD",
    "USTADZ",
    "USTAZ",
    "USTADH",
    "IMAM",
    "HON",
    "HONORABLE",
    "HONOURABLE",
    "REV",
    "REVEREND",
    "GEN",
    "GENERAL",
    "COL",
    "COLONEL",
    "MAJ",
    "MAJOR",
    "CAPT",
    "CAPTAIN",
    "LT",
    "LIEUTENANT",
    "SGT",
    "SERGEANT",
    "ADM",
    "ADMIRAL",
    "BRIG",
    "BRIGADIER",
    "ENG",
    "ENGR",
    "ENGINEER",
    "JR",
    "SR",
    "II",
    "III",
    "IV",
    "PHD",
    "ESQ",
    "SENATOR",
    "CONGRESSMAN",
    "CONGRESSWOMAN",
    "PRINCE",
    "PRINCESS",
    "EMIR",
];

/// Legal forms dropped from organisation names (after dots are removed: `S.A.`→`SA`).
const LEGAL_FORMS: &[&str] = &[
    "LLC",
    "LC",
    "LTD",
    "LTDA",
    "LIMITED",
    "INC",
    "INCORPORATED",
    "CORP",
    "CORPORATION",
    "CO",
    "COMPANY",
    "CIA",
    "COMPANIA",
    "COMPAGNIE",
    "GMBH",
    "MBH",
    "AG",
    "KG",
    "KGAA",
    "OHG",
    "SA",
    "SAS",
    "SARL",
    "SRL",
    "SPA",
    "SPRL",
    "SL",
    "SLU",
    "NV",
    "BV",
    "PLC",
    "LP",
    "LLP",
    "LLLP",
    "PLLC",
    "OOO",
    "OAO",
    "ZAO",
    "PAO",
    "AO",
    "TOO",
    "JSC",
    "PJSC",
    "CJSC",
    "OJSC",
    "FZE",
    "FZCO",
    "FZC",
    "FZ",
    "DMCC",
    "EST",
    "WLL",
    "SAL",
    "SAOG",
    "BSC",
    "QSC",
    "KSC",
    "KSCC",
    "PTE",
    "PTY",
    "PVT",
    "BHD",
    "SDN",
    "TBK",
    "PT",
    "CV",
    "RL",
    "EIRL",
    "SAC",
    "AB",
    "OY",
    "OYJ",
    "ASA",
    "APS",
    "KFT",
    "ZRT",
    "DOO",
    "EOOD",
    "OOD",
    "SRO",
    "SPZOO",
    "ZOO",
    "SP",
    "SCS",
    "SCA",
    "SNC",
    "GIE",
    "BVBA",
    "CVBA",
    "SPOLKA",
    "YC",
];

/// Connecting words in person and organisation names.
const PARTICLES: &[&str] = &[
    "AL", "EL", "AS", "AD", "AR", "ASH", "AZ", "UL", "UD", "DE", "DEL", "DELA", "DA", "DI", "DO",
    "DOS", "DAS", "DU", "LA", "LE", "LOS", "LAS", "LES", "DES", "VAN", "VON", "DER", "DEN", "TER",
    "Y", "E", "BIN", "BEN", "IBN", "BINT", "OF", "THE", "AND", "ET", "UND", "FOR",
];

/// One edit (restricted Damerau-Levenshtein) from a legal form of five letters or more.
fn is_misspelt_legal_form(w: &str) -> bool {
    w.len() >= 5
        && LEGAL_FORMS
            .iter()
            .any(|f| f.len() >= 5 && strsim::osa_distance(f, w) <= 1)
}

fn is_in(list: &[&str], t: &str) -> bool {
    list.contains(&t)
}

/// Transliterates to ASCII and splits into raw upper-case words, folding apostrophes,
/// nickname quotes and dotted abbreviations. Commas are kept as separate `","` words so the
/// caller can reorder `SURNAME, Given`.
fn raw_words(raw: &str) -> Vec<String> {
    let ascii = deunicode::deunicode(raw);
    let mut words = Vec::new();
    for chunk in ascii.split_whitespace() {
        // Dotted abbreviations (S.A., C.V., P.L.M.) become one word; other dots split.
        let letters_and_dots = chunk
            .trim_end_matches([',', ';'])
            .split('.')
            .filter(|p| !p.is_empty())
            .all(|p| p.chars().count() == 1 && p.chars().all(|c| c.is_ascii_alphabetic()));
        let mut cur = String::new();
        let flush = |cur: &mut String, words: &mut Vec<String>| {
            if !cur.is_empty() {
                words.push(std::mem::take(cur));
            }
        };
        for c in chunk.chars() {
            match c {
                '\'' | '`' | '"' | '\u{2019}' => {
                    // Apostrophes join (O'Brien, 'Adil); quotes around nicknames vanish.
                }
                '.' if letters_and_dots => {}
                ',' => {
                    flush(&mut cur, &mut words);
                    words.push(",".to_string());
                }
                c if c.is_ascii_alphanumeric() => cur.push(c.to_ascii_uppercase()),
                _ => flush(&mut cur, &mut words),
            }
        }
        flush(&mut cur, &mut words);
    }
    for w in &mut words {
        fold_look_alike_digits(w);
    }
    words
}

/// A word that mixes letters and digits (`R0SNEFT`, `8ANK`) had its digits typed for the
/// letters they look like; all-digit words (`2000`) are kept.
fn fold_look_alike_digits(w: &mut String) {
    let letters = w.bytes().any(|b| b.is_ascii_alphabetic());
    let digits = w.bytes().any(|b| b.is_ascii_digit());
    if letters && digits {
        *w = w
            .chars()
            .map(|c| match c {
                '0' => 'O',
                '1' => 'I',
                '3' => 'E',
                '4' => 'A',
                '5' => 'S',
                '6' => 'G',
                '7' => 'T',
                '8' => 'B',
                other => other,
            })
            .collect();
    }
}

/// Normalises one name. See the module documentation for the steps.
pub fn normalize_name(raw: &str, kind: NameKind) -> NormalizedName {
    let words = raw_words(raw);
    let has_legal = words.iter().any(|w| is_in(LEGAL_FORMS, w) && w.len() > 1);
    let organisation = match kind {
        NameKind::Organisation => true,
        NameKind::Person => false,
        NameKind::Unknown => has_legal && words.len() > 1,
    };
    // Person: "SURNAME, Given" -> "Given SURNAME" (only the first comma counts; OFAC writes
    // suffixes after a second one).
    let ordered: Vec<String> = if !organisation {
        match words.iter().position(|w| w == ",") {
            Some(p) if p > 0 && p + 1 < words.len() => {
                let (surname, rest) = words.split_at(p);
                rest[1..]
                    .iter()
                    .chain(surname.iter())
                    .filter(|w| *w != ",")
                    .cloned()
                    .collect()
            }
            _ => words.into_iter().filter(|w| w != ",").collect(),
        }
    } else {
        words.into_iter().filter(|w| w != ",").collect()
    };
    let full_compact: String = ordered.concat();
    let mut kept: Vec<String> = ordered
        .iter()
        .filter(|w| {
            if organisation {
                !is_in(LEGAL_FORMS, w)
            } else {
                !is_in(HONORIFICS, w)
            }
        })
        .cloned()
        .collect();
    if kept.is_empty() {
        // A name made only of noise words ("CO LTD") keeps them rather than vanish.
        kept = ordered;
    }
    if organisation {
        // A misspelt long legal form at the end ("LIMTED", "CORPORATON", "COMAPNY") is still
        // a legal form: one edit from a form of five or more letters.
        while kept.len() > 1 && is_misspelt_legal_form(&kept[kept.len() - 1]) {
            kept.pop();
        }
        // "GRUPO X, S. DE R.L." leaves a dangling "S DE": drop trailing particles/letters.
        while kept.len() > 1 {
            let last = kept[kept.len() - 1].as_str();
            if is_in(PARTICLES, last) || last.len() == 1 {
                kept.pop();
            } else {
                break;
            }
        }
    }
    let mut tokens: Vec<Token> = kept
        .into_iter()
        .map(|w| {
            let role = if is_in(PARTICLES, &w) {
                TokenRole::Particle
            } else if w.len() == 1 {
                TokenRole::Initial
            } else {
                TokenRole::Name
            };
            Token {
                key: phonetic_key(&w),
                sound: sound_keys(&w),
                text: w,
                role,
            }
        })
        .collect();
    if !tokens.is_empty() && tokens.iter().all(|t| t.role != TokenRole::Name) {
        // "P L M" or "AL" alone: the letters are the name.
        for t in &mut tokens {
            t.role = TokenRole::Name;
        }
    }
    NormalizedName {
        original: raw.to_string(),
        tokens,
        organisation,
        full_compact,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        normalize_name(s, NameKind::Person).text()
    }
    fn o(s: &str) -> String {
        normalize_name(s, NameKind::Organisation).text()
    }

    #[test]
    fn surname_comma_given_is_reordered() {
        assert_eq!(p("AL-QUBAYSI, Munir"), "MUNIR AL QUBAYSI");
        assert_eq!(p("Nadler, Jerrold"), "JERROLD NADLER");
        assert_eq!(p("ALVAREZ CASTRO, Santiago"), "SANTIAGO ALVAREZ CASTRO");
        assert_eq!(p("Jerrold Nadler"), "JERROLD NADLER");
    }

    #[test]
    fn honorifics_are_dropped_from_persons_only() {
        assert_eq!(p("Dr. Dragan Basevic"), "DRAGAN BASEVIC");
        assert_eq!(p("Mr. SAIFY AMMARI"), "SAIFY AMMARI");
        assert_eq!(p("BARAKZAI, Haji Abdul Sattar"), "ABDUL SATTAR BARAKZAI");
        assert_eq!(p("Sheikh Ahmed"), "AHMED");
        // A name made only of a title keeps it.
        assert_eq!(p("Sheikh"), "SHEIKH");
    }

    #[test]
    fn legal_suffixes_are_dropped_from_organisations() {
        assert_eq!(o("BRECO SERVICES LTD"), "BRECO SERVICES");
        assert_eq!(o("Breco Services Limited"), "BRECO SERVICES");
        assert_eq!(o("GRUPO FRACSA, S.A. DE C.V."), "GRUPO FRACSA");
        assert_eq!(o("MI FEL, S. DE R.L. DE C.V."), "MI FEL");
        assert_eq!(
            o("MYTISHCHINSKI MASHINOSTROITELNY ZAVOD, OAO"),
            "MYTISHCHINSKI MASHINOSTROITELNY ZAVOD"
        );
        assert_eq!(o("Siemens GmbH"), "SIEMENS");
        // Misspelt long legal forms at the end are legal forms too.
        assert_eq!(o("BRECO SERVICES LIMTED"), "BRECO SERVICES");
        assert_eq!(o("ACME TRADING CORPORATON"), "ACME TRADING");
        assert_eq!(o("ACME COMAPNY"), "ACME");
        assert_eq!(
            o("CPMIEC SHANGHAI PUDONG COMPANY"),
            "CPMIEC SHANGHAI PUDONG"
        );
        // Unknown kind: a legal form makes it an organisation.
        let n = normalize_name("ACME TRADING LLC", NameKind::Unknown);
        assert!(n.organisation);
        assert_eq!(n.text(), "ACME TRADING");
    }

    #[test]
    fn transliteration_and_punctuation_fold() {
        assert_eq!(p("Müller, Jürgen"), "JURGEN MULLER");
        assert_eq!(p("MIRKAN, Anas 'Adil"), "ANAS ADIL MIRKAN");
        assert_eq!(p("O'Brien, Seán"), "SEAN OBRIEN");
        assert_eq!(p("Howard P. \"Buck\" McKeon"), "HOWARD P BUCK MCKEON");
        assert_eq!(p("PAEK, Se-Bong"), "SE BONG PAEK");
        let n = normalize_name("Хусейн Мухаммед", NameKind::Person);
        assert_eq!(n.text(), "KHUSEIN MUKHAMMED");
    }

    #[test]
    fn roles_and_sorting() {
        let n = normalize_name("AL-BAZZAZ, Hikmet A.", NameKind::Person);
        let roles: Vec<TokenRole> = n.tokens.iter().map(|t| t.role).collect();
        assert_eq!(
            roles,
            vec![
                TokenRole::Name,
                TokenRole::Initial,
                TokenRole::Particle,
                TokenRole::Name
            ]
        );
        assert_eq!(n.name_token_count(), 2);
        assert_eq!(
            normalize_name("Gwen Moore", NameKind::Person).sorted_text(),
            normalize_name("MOORE, Gwen", NameKind::Person).sorted_text()
        );
        assert_eq!(
            normalize_name("Al Qubaysi", NameKind::Person).compact(),
            "ALQUBAYSI"
        );
    }
}

//! How two name words relate: the documented measure behind every name verdict.
//!
//! Two tokens (already normalised: upper-case ASCII, see [`super::normalize`]) are related
//! when one of these holds, checked in this order:
//!
//! | relation | rule |
//! |---|---|
//! | `exact` | the same text |
//! | `initial` | one side is a single letter, the first letter of the other |
//! | `sound_alike` | the same [`sound_key`] (at least two letters long) |
//! | `typo` | an optimal-string-alignment (restricted Damerau-Levenshtein) distance within [`edit_budget`] of the longer word: a transposition, a doubled, dropped or inserted letter and a substituted letter (keyboard neighbour, look-alike) each cost one edit |
//! | `sound_alike_typo` | sound keys of four or more letters one edit apart: a respelling plus a typo |
//!
//! Otherwise they are `unrelated`. Nothing here is a similarity cut: each relation is a
//! yes/no rule a reviewer can check by hand. Jaro-Winkler similarity is still computed, but
//! only to rank pairings and to weigh the name score, never to decide that names differ.

use serde::{Deserialize, Serialize};
use strsim::{jaro_winkler, osa_distance};

use super::normalize::{Token, TokenRole};

/// How two name words relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRelation {
    /// Same text.
    Exact,
    /// One side is an initial of the other.
    Initial,
    /// Same sound key: a transliteration or respelling.
    SoundAlike,
    /// Within the edit budget.
    Typo,
    /// Sound keys one edit apart.
    SoundAlikeTypo,
    /// Two adjacent words on one side written as one on the other (`AL QUBAYSI`/`ALQUBAYSI`).
    GluedOrSplit,
    /// None of the above.
    Unrelated,
}

impl TokenRelation {
    /// Whether the words are related at all.
    pub fn is_related(self) -> bool {
        self != TokenRelation::Unrelated
    }

    /// The lowest similarity a related pair is credited with: a typo of a long word is as
    /// good a match as Jaro-Winkler would give a near-identical one.
    fn floor(self, edits: usize) -> f64 {
        match self {
            TokenRelation::Exact => 1.0,
            TokenRelation::SoundAlike | TokenRelation::GluedOrSplit => 0.92,
            TokenRelation::Typo => match edits {
                0 | 1 => 0.9,
                2 => 0.87,
                _ => 0.85,
            },
            TokenRelation::Initial | TokenRelation::SoundAlikeTypo => 0.85,
            TokenRelation::Unrelated => 0.0,
        }
    }
}

/// The relation of two tokens, with the edits counted and a similarity in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenMatch {
    /// The relation.
    pub relation: TokenRelation,
    /// Edit distance of the texts (optimal string alignment).
    pub edits: usize,
    /// Similarity used to rank pairings and weigh the name score.
    pub similarity: f64,
}

/// Most edits one word may differ by and still be the same word written with typos: one for
/// words of up to four letters, two up to seven, three from eight. Words of two letters or
/// fewer get no budget (only exact, initial or sound-alike).
pub fn edit_budget(len: usize) -> usize {
    match len {
        0..=2 => 0,
        3..=4 => 1,
        5..=7 => 2,
        _ => 3,
    }
}

/// Relates two tokens. See the module documentation for the rules.
pub fn relate(a: &Token, b: &Token) -> TokenMatch {
    let (x, y) = (a.text.as_str(), b.text.as_str());
    if x == y {
        return TokenMatch {
            relation: TokenRelation::Exact,
            edits: 0,
            similarity: 1.0,
        };
    }
    if a.role == TokenRole::Initial || b.role == TokenRole::Initial || x.len() == 1 || y.len() == 1
    {
        let related = x.as_bytes().first() == y.as_bytes().first();
        return TokenMatch {
            relation: if related {
                TokenRelation::Initial
            } else {
                TokenRelation::Unrelated
            },
            edits: osa_distance(x, y),
            similarity: if related { 0.85 } else { 0.0 },
        };
    }
    relate_keyed(x, &a.sound, y, &b.sound)
}

/// Relates two words given as text (upper-case ASCII).
pub fn relate_words(x: &str, y: &str) -> TokenMatch {
    relate_keyed(x, &sound_keys(x), y, &sound_keys(y))
}

fn relate_keyed(x: &str, kx: &[String; 2], y: &str, ky: &[String; 2]) -> TokenMatch {
    let edits = osa_distance(x, y);
    let jw = jaro_winkler(x, y);
    let same_key = kx.iter().any(|k| k.len() >= 2 && ky.contains(k));
    let near_key = || {
        kx.iter().any(|a| {
            ky.iter()
                .any(|b| a.len().min(b.len()) >= 4 && osa_distance(a, b) <= 1)
        })
    };
    let relation = if x == y {
        TokenRelation::Exact
    } else if same_key || look_alike_equal(x, y) {
        TokenRelation::SoundAlike
    } else if edits <= edit_budget(x.len().max(y.len())) || look_alike_typo(x, y) {
        TokenRelation::Typo
    } else if near_key() {
        TokenRelation::SoundAlikeTypo
    } else {
        TokenRelation::Unrelated
    };
    TokenMatch {
        relation,
        edits,
        similarity: if relation.is_related() {
            jw.max(relation.floor(edits))
        } else {
            jw
        },
    }
}

/// Letter pairs typed or read for one letter: `VV` for `W`, `RN` for `M`, `CL` for `D`.
const LOOK_ALIKE_PAIRS: [(&str, &str); 3] = [("VV", "W"), ("RN", "M"), ("CL", "D")];

fn fold_look_alikes(x: &str) -> Option<String> {
    LOOK_ALIKE_PAIRS
        .iter()
        .any(|(pair, _)| x.contains(pair))
        .then(|| {
            LOOK_ALIKE_PAIRS
                .iter()
                .fold(x.to_string(), |s, (pair, one)| s.replace(pair, one))
        })
}

/// Equal once look-alike letter pairs are read as the letter they imitate.
fn look_alike_equal(x: &str, y: &str) -> bool {
    let (fx, fy) = (fold_look_alikes(x), fold_look_alikes(y));
    (fx.is_some() || fy.is_some()) && fx.as_deref().unwrap_or(x) == fy.as_deref().unwrap_or(y)
}

/// Within the edit budget once look-alike letter pairs are read as one letter.
fn look_alike_typo(x: &str, y: &str) -> bool {
    let (fx, fy) = (fold_look_alikes(x), fold_look_alikes(y));
    if fx.is_none() && fy.is_none() {
        return false;
    }
    let (a, b) = (fx.as_deref().unwrap_or(x), fy.as_deref().unwrap_or(y));
    osa_distance(a, b) <= edit_budget(a.len().max(b.len()))
}

/// The two sound keys of a word: `J` read as a glide or a Spanish `KH` (dropped), and `J`
/// read as in English (`J`, with `DJ`, `DZH` and `ZH`). Two words sound alike when they share
/// a key.
pub fn sound_keys(word: &str) -> [String; 2] {
    [sound_key_with(word, false), sound_key_with(word, true)]
}

/// A deliberately coarse, cross-language sound key of one word: the letters that
/// transliterators and respellings disagree on fold together, so the same name written the
/// way English, Spanish, French, German or Slavic speakers would write it gives one key.
///
/// * digraphs first: `DZH`/`DJ`/`ZH` → `J`; `SCH`/`TCH`/`TSH`/`SH`/`CH` → `X`; `KH`/`GH`
///   (as `H`), `PH` → `F`, `TH` → `T`, `DH` → `D`, `LL` → `Y`, `QU` → `K`, `CK` → `K`,
///   `GU` before `E`/`I` → `G`;
/// * in the first key `J` (and `DJ`, `DZH`, `ZH`), `H` and `Y` are dropped with the vowels (Spanish `J`/`Jalil` = `KH`/`Khalil` =
///   `H`/`Halil`, silent `H`, `LL`/`Y`), except a leading vowel, kept as `A`;
/// * classes: `B P F V W` → `B`; `C K Q G` (hard) → `K`; `S Z` and soft `C` → `S`;
///   `X` → `KS`; `D T` → `T`;
/// * repeated letters collapse.
///
/// With `affricate`, `J`, `DJ`, `DZH` and `ZH` are kept as `J` instead.
fn sound_key_with(word: &str, affricate: bool) -> String {
    let j = if affricate { b'J' } else { b'*' };
    let s: Vec<u8> = word
        .bytes()
        .filter(u8::is_ascii_alphabetic)
        .map(|b| b.to_ascii_uppercase())
        .collect();
    let at = |i: usize| -> u8 { s.get(i).copied().unwrap_or(0) };
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let (c, n, n2) = (s[i], at(i + 1), at(i + 2));
        let (code, step): (u8, usize) = match (c, n, n2) {
            (b'D', b'Z', b'H') | (b'T', b'C', b'H') | (b'T', b'S', b'H') | (b'S', b'C', b'H') => {
                (if c == b'D' { j } else { b'X' }, 3)
            }
            (b'D', b'J', _) | (b'Z', b'H', _) => (j, 2),
            (b'S', b'H', _) | (b'C', b'H', _) => (b'X', 2),
            (b'K', b'H', _) | (b'G', b'H', _) => (b'*', 2),
            (b'P', b'H', _) => (b'B', 2),
            (b'T', b'H', _) => (b'T', 2),
            (b'D', b'H', _) => (b'T', 2),
            (b'L', b'L', _) => (b'*', 2),
            (b'Q', b'U', _) => (b'K', 2),
            (b'C', b'K', _) => (b'K', 2),
            (b'G', b'U', b'E' | b'I') => (b'K', 2),
            (b'C', b'E' | b'I' | b'Y', _) => (b'S', 1),
            (b'A' | b'E' | b'I' | b'O' | b'U' | b'Y' | b'H', _, _) => (b'*', 1),
            // J: Spanish and Arabic J sounds like KH/H; a leading J or Y is a glide.
            (b'J', _, _) => (j, 1),
            (b'B' | b'P' | b'F' | b'V' | b'W', _, _) => (b'B', 1),
            (b'C' | b'K' | b'Q' | b'G', _, _) => (b'K', 1),
            (b'S' | b'Z', _, _) => (b'S', 1),
            (b'X', _, _) => {
                out.push(b'K');
                (b'S', 1)
            }
            (b'D' | b'T', _, _) => (b'T', 1),
            (other, _, _) => (other, 1),
        };
        out.push(code);
        i += step;
    }
    super::phonetic::collapse(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: &str, b: &str) -> TokenRelation {
        relate_words(a, b).relation
    }

    #[test]
    fn respellings_share_a_sound_key() {
        for (a, b) in [
            ("KHALIL", "JALIL"),
            ("HUSSEIN", "JUSEIN"),
            ("HUSSEIN", "USEIN"),
            ("GUILLERMO", "GUIYERMO"),
            ("VLADIMIR", "BLADIMIR"),
            ("PHILIP", "FILIP"),
            ("YUSUF", "JUSUF"),
            ("YOUSSEF", "YUSEF"),
            ("SHEVCHENKO", "CHEVCHENKO"),
            ("DJAMEL", "JAMEL"),
            ("DZHAMAL", "JAMAL"),
            ("SCHMIDT", "SHMIDT"),
            ("MOHAMMED", "MUHAMAD"),
            ("QADHAFI", "GADAFI"),
            ("WALID", "BALID"),
            ("ZAPATA", "SAPATA"),
            ("KASIM", "QASIM"),
        ] {
            assert!(
                sound_keys(a).iter().any(|k| sound_keys(b).contains(k)),
                "{a} / {b}"
            );
            assert!(rel(a, b).is_related(), "{a} / {b}");
        }
    }

    #[test]
    fn single_typos_are_related_whatever_the_similarity() {
        for (a, b) in [
            ("TRADING", "TARDING"),  // transposition
            ("TRADING", "TRADDING"), // doubled
            ("TRADING", "TRDING"),   // dropped
            ("TRADING", "TRAIDING"), // inserted
            ("TRADING", "TRAFING"),  // keyboard neighbour
            ("ROSNEFT", "R0SNEFT"),  // look-alike digit
            ("BANK", "BNAK"),
            ("ABC", "ABD"),
            ("OMAR", "OMRA"),
            ("WAKED", "VVAKECL"), // two look-alike pairs
            ("HATUM", "HATURN"),
        ] {
            assert!(rel(a, b).is_related(), "{a} / {b}");
        }
    }

    #[test]
    fn different_words_are_unrelated() {
        for (a, b) in [
            ("JONES", "YATSENKO"),
            ("VICTOR", "SANTIAGO"),
            ("SMITH", "KOWALSKI"),
            ("ALI", "OMAR"),
            ("AL", "BU"),
        ] {
            assert_eq!(rel(a, b), TokenRelation::Unrelated, "{a} / {b}");
        }
    }

    #[test]
    fn budget_grows_with_length() {
        assert_eq!(edit_budget(2), 0);
        assert_eq!(edit_budget(4), 1);
        assert_eq!(edit_budget(7), 2);
        assert_eq!(edit_budget(12), 3);
        assert!(rel("ABDULRAHMAN", "ABDLURAMHAN").is_related());
    }
}

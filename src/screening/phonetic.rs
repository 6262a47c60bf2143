//! A transliteration-tolerant phonetic key for one name token.
//!
//! Not Double Metaphone: a simpler key tuned for the spelling variants that dominate
//! sanctions lists, where one Arabic, Persian or Cyrillic name reaches us in several Latin
//! spellings. It keeps the consonant skeleton and folds the letters transliterators disagree
//! on:
//!
//! * vowels are dropped after the first letter, and a leading vowel becomes `A`
//!   (Ibrahim / Ebrahim, Osama / Usama);
//! * `KH`→`H`, `GH`→`G`, `PH`→`F`, `TH`→`T`, `DH`→`D`, `SH`/`SCH`/`CH`/`TCH`→`X`,
//!   `ZH`/`DJ`/`DZH`→`J`, `Q`/`CK`/`C` (hard)→`K`, soft `C`→`S`, `Z`→`S`, `X`→`KS`;
//! * `V`, `W` and `F` share one class (Petrov / Petroff / Petrow);
//! * a leading `Y` or `J` is `J` (Yusuf / Jusuf); `Y` elsewhere is a vowel;
//! * doubled letters collapse (Mohammed / Muhamad), and a silent `H` after a vowel and
//!   before a consonant or at the end is dropped (Ahmad / Amad, Allah / Alla).
//!
//! So Mohammed, Muhammad, Mohamed and Mukhammed all give `MHMD`.

/// The phonetic key of one token (letters only; other characters are ignored).
///
/// Returns an empty string for a token without letters.
pub fn phonetic_key(token: &str) -> String {
    let s: Vec<u8> = token
        .bytes()
        .filter(u8::is_ascii_alphabetic)
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if s.is_empty() {
        return String::new();
    }
    let is_vowel = |c: u8| matches!(c, b'A' | b'E' | b'I' | b'O' | b'U' | b'Y');
    let at = |i: usize| -> u8 { s.get(i).copied().unwrap_or(0) };
    // First pass: map letters and digraphs to classes; vowels become '*'.
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let n = at(i + 1);
        let (code, step): (u8, usize) = match c {
            b'A' | b'E' | b'I' | b'O' | b'U' => (b'*', 1),
            b'Y' | b'J' if i == 0 => (b'J', 1),
            b'Y' => (b'*', 1),
            b'K' if n == b'H' => (b'H', 2),
            b'G' if n == b'H' => (b'G', 2),
            b'P' if n == b'H' => (b'F', 2),
            b'T' if n == b'H' => (b'T', 2),
            b'D' if n == b'H' => (b'D', 2),
            b'Z' if n == b'H' => (b'J', 2),
            b'D' if n == b'J' => (b'J', 2),
            b'D' if n == b'Z' && at(i + 2) == b'H' => (b'J', 3),
            b'S' if n == b'H' => (b'X', 2),
            b'S' if n == b'C' && at(i + 2) == b'H' => (b'X', 3),
            b'T' if n == b'C' && at(i + 2) == b'H' => (b'X', 3),
            b'T' if n == b'S' && at(i + 2) == b'H' => (b'X', 3),
            b'C' if n == b'H' => (b'X', 2),
            b'C' if n == b'K' => (b'K', 2),
            b'C' if matches!(n, b'E' | b'I' | b'Y') => (b'S', 1),
            b'C' | b'Q' | b'K' => (b'K', 1),
            b'Z' => (b'S', 1),
            b'X' => {
                out.push(b'K');
                (b'S', 1)
            }
            b'V' | b'W' | b'F' => (b'F', 1),
            b'H' => {
                // Silent H: between vowels' skeleton it carries nothing, and at the end
                // (Allah / Alla) neither.
                let prev_vowel = i > 0 && is_vowel(s[i - 1]);
                if i > 0 && (n == 0 || (prev_vowel && !is_vowel(n))) {
                    (0, 1)
                } else {
                    (b'H', 1)
                }
            }
            other => (other, 1),
        };
        if code != 0 {
            out.push(code);
        }
        i += step;
    }
    collapse(&out)
}

/// Second pass of a key: the class codes of a word (`*` for a vowel) to its key. A leading
/// vowel becomes `A`, other vowels are dropped, repeated codes collapse; a vowel between two
/// equal codes keeps both ("Baba" keeps both Bs).
pub(crate) fn collapse(codes: &[u8]) -> String {
    let mut key = String::with_capacity(codes.len());
    let mut last: u8 = 0;
    for (idx, &c) in codes.iter().enumerate() {
        if c == b'*' {
            if idx == 0 {
                key.push('A');
            }
            last = b'*';
            continue;
        }
        if c != last {
            key.push(c as char);
            last = c;
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::phonetic_key as k;

    #[test]
    fn common_transliteration_variants_share_a_key() {
        assert_eq!(k("Mohammed"), k("Muhammad"));
        assert_eq!(k("Mohamed"), k("Muhammad"));
        assert_eq!(k("Mukhammed"), k("Mohammed"));
        assert_eq!(k("Petrov"), k("Petroff"));
        assert_eq!(k("Ivanov"), k("Ivanow"));
        assert_eq!(k("Khaled"), k("Haled"));
        assert_eq!(k("Yusuf"), k("Jusuf"));
        assert_eq!(k("Yousef"), k("Yusuf"));
        assert_eq!(k("Ibrahim"), k("Ebrahim"));
        assert_eq!(k("Usama"), k("Osama"));
        assert_eq!(k("Qadhafi"), k("Kadafi"));
        assert_eq!(k("Hussein"), k("Husein"));
        assert_eq!(k("Kaicedo"), k("Caicedo"));
        assert_eq!(k("Sima"), k("Suma"));
        assert_eq!(k("MHMD"), "MHMD");
    }

    #[test]
    fn different_names_keep_different_keys() {
        assert_ne!(k("Mohammed"), k("Mahmud"));
        assert_ne!(k("Ali"), k("Omar"));
        assert_ne!(k("Jenkins"), k("Jones"));
        assert_eq!(k(""), "");
        assert_eq!(k("123"), "");
    }
}

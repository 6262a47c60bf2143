//! Local accounts and sessions: argon2id password hashes, random session tokens kept
//! server-side (only their SHA-256 is stored), and a per-session synchronizer CSRF token.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::ReviewServiceError;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "aml_session";
/// Header that must carry the CSRF token on state-changing requests made with the cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Shortest accepted password.
pub const MIN_PASSWORD_LEN: usize = 12;

/// `n` bytes from the operating system's CSPRNG, hex encoded.
pub fn random_hex(n: usize) -> Result<String, ReviewServiceError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf)
        .map_err(|e| ReviewServiceError::Internal(format!("no system randomness: {e}")))?;
    Ok(hex::encode(buf))
}

/// argon2id PHC string of `password`, with a random salt.
pub fn hash_password(password: &str) -> Result<String, ReviewServiceError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ReviewServiceError::Invalid {
            field: "password",
            message: format!("must have at least {MIN_PASSWORD_LEN} characters"),
        });
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| ReviewServiceError::Internal(format!("no system randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| ReviewServiceError::Internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ReviewServiceError::Internal(format!("argon2: {e}")))
}

/// Whether `password` matches the PHC string `hash` (constant time inside argon2).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash to verify against when the user does not exist, so that a login for an unknown
/// user costs as much as one for a known user.
pub fn dummy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2pBVR8YAVBCMt+QvyYyAhfb6RYoWeIi4hY8wZtaJZLs"
}

/// Equality of two strings in time independent of where they differ (lengths may leak).
pub fn ct_eq(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterx", &h));
        assert!(!verify_password("x", dummy_hash()));
        assert!(
            hash_password("short")
                .unwrap_err()
                .to_string()
                .starts_with("password")
        );
        assert!(ct_eq("abc", "abc") && !ct_eq("abc", "abd") && !ct_eq("abc", "ab"));
    }
}

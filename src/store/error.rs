//! Store errors.
//!
//! Connection errors carry the URL with its password replaced by `***` and a message scrubbed of
//! the password: the driver error itself is not kept, because some driver errors echo the URL.

use thiserror::Error;

/// Everything the store can fail with.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Could not open the database.
    #[error("cannot connect to {url}: {message}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// What went wrong, password scrubbed.
        message: String,
    },
    /// Another process holds the audit chain of this node id.
    #[error(
        "audit chain `{0}` is in use by another process: give each running instance its own node id"
    )]
    ChainLocked(String),
    /// A database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A completed step was recorded twice for the same alert.
    #[error("step `{step}` of alert `{alert_id}` is already completed")]
    StepAlreadyCompleted {
        /// Alert.
        alert_id: String,
        /// Step.
        step: String,
    },
    /// A step or decision refers to an alert that was never admitted.
    #[error("alert `{0}` is not stored")]
    UnknownAlert(String),
    /// A record the store cannot represent.
    #[error("invalid record: {0}")]
    InvalidInput(String),
    /// Stored data that does not parse; a sign of corruption or tampering.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The database is unreachable; the command was not written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A bug: the writer answered with the wrong kind of reply.
    #[error("internal error: {0}")]
    Internal(String),
    /// The store was closed.
    #[error("store is closed")]
    Closed,
}

/// Returns `url` with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match password_of(url) {
        Some(pw) if !pw.is_empty() => url.replacen(&format!(":{pw}@"), ":***@", 1),
        _ => url.to_string(),
    }
}

/// Removes the password of `url` (raw and percent-decoded forms) from `message`.
pub(crate) fn scrub(message: &str, url: &str) -> String {
    let mut out = message.to_string();
    if let Some(pw) = password_of(url).filter(|p| !p.is_empty()) {
        out = out.replace(pw, "***");
        let decoded = percent_decode(pw);
        if !decoded.is_empty() {
            out = out.replace(&decoded, "***");
        }
    }
    out
}

/// The password part of `scheme://user:password@host/...`, if any.
fn password_of(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    // The authority ends at the first '/', '?' or '#'; the password cannot contain them unencoded.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let userinfo = &authority[..authority.rfind('@')?];
    Some(&userinfo[userinfo.find(':')? + 1..])
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password() {
        assert_eq!(
            redact_url("postgres://user:secret@127.0.0.1:1/x"),
            "postgres://user:***@127.0.0.1:1/x"
        );
        assert_eq!(redact_url("sqlite:foo.db"), "sqlite:foo.db");
        assert_eq!(
            scrub("bad secret and s%65cret", "postgres://u:s%65cret@h/x"),
            "bad *** and ***"
        );
    }
}

//! A redacting wrapper for API keys: `Debug`, `Display` and `Serialize` never show the key,
//! so settings, errors and traces can be printed safely.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Shown instead of a key.
pub const REDACTED: &str = "***redacted***";

/// An API key. Read it only with [`ApiKey::expose`], at the point where it goes on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the request header only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced, for provider messages that might
    /// echo it back.
    pub fn redact(&self, text: &str) -> String {
        if self.is_blank() {
            text.to_string()
        } else {
            text.replace(&self.0, REDACTED)
        }
    }

    /// Whether the key is empty or blank.
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({REDACTED})")
    }
}

impl std::fmt::Display for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for ApiKey {
    // Serialised settings (config dumps, the config-version hash) must not carry the key.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for ApiKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(ApiKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_never_printed() {
        let k = ApiKey::new("sk-ant-very-secret");
        assert!(!format!("{k:?}").contains("very-secret"));
        assert!(!format!("{k}").contains("very-secret"));
        assert!(!serde_json::to_string(&k).unwrap().contains("very-secret"));
        assert_eq!(k.expose(), "sk-ant-very-secret");
    }
}

//! API-key authentication and role checks.
//!
//! Keys come from `api_keys` (TOML) or `AML_TRIAGE_API_KEYS` (`key:role,key:role`). Only their
//! SHA-256 digests are kept in memory; a presented key is hashed and compared with every
//! stored digest without early exit, so neither the comparison nor the search leaks timing
//! about which bytes or which entry matched. Keys are never logged.

use actix_web::HttpRequest;
use actix_web::http::header;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::config::ApiKeys;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Submits alerts (`POST /v1/alerts`).
    Submitter,
    /// Reads alerts and decisions.
    Reader,
    /// Reads alerts, decisions, audit trails and regulator exports.
    Auditor,
    /// Everything, including `/v1/status` and `/metrics` on the main port.
    Admin,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        match s {
            "submitter" => Some(Role::Submitter),
            "reader" => Some(Role::Reader),
            "auditor" => Some(Role::Auditor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Role name as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Reader => "reader",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Submit alerts: submitter, admin.
    Submit,
    /// Read an alert or decision: reader, auditor, admin.
    Read,
    /// Read audit trails and exports: auditor, admin.
    Audit,
    /// Operator views: admin.
    Admin,
}

impl Access {
    /// Whether `role` grants this access.
    pub fn allows(self, role: Role) -> bool {
        matches!(
            (self, role),
            (_, Role::Admin)
                | (Access::Submit, Role::Submitter)
                | (Access::Read, Role::Reader | Role::Auditor)
                | (Access::Audit, Role::Auditor)
        )
    }
}

/// The configured keys, hashed.
pub struct KeyStore {
    keys: Vec<([u8; 32], Role)>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyStore({} keys)", self.keys.len())
    }
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// Equality of two digests in time independent of where they differ.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early-exit compare.
    std::hint::black_box(diff) == 0
}

impl KeyStore {
    /// Hashes the configured keys. Fails (without echoing a key) on a malformed entry.
    pub fn new(keys: &ApiKeys) -> Result<Self, String> {
        let keys = keys
            .entries()?
            .into_iter()
            .map(|(k, r)| {
                let role = Role::parse(&r).ok_or_else(|| format!("unknown role {r:?}"))?;
                Ok((digest(k.as_bytes()), role))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self { keys })
    }

    /// How many keys are configured.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is configured (then every protected route answers 401).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The role of `key`, if it is one of ours. Compares against every entry.
    pub fn role_of(&self, key: &str) -> Option<Role> {
        let d = digest(key.as_bytes());
        let mut found = None;
        for (stored, role) in &self.keys {
            if ct_eq(stored, &d) && found.is_none() {
                found = Some(*role);
            }
        }
        found
    }

    /// Checks the request's bearer key against `access`: 401 without a known key, 403 when
    /// its role does not allow the route.
    pub fn check(&self, req: &HttpRequest, access: Access) -> Result<Role, ApiError> {
        let key = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let role = self.role_of(key).ok_or(ApiError::Unauthorized)?;
        if access.allows(role) {
            Ok(role)
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_what_the_contract_says() {
        use Access::*;
        assert!(Submit.allows(Role::Submitter) && !Submit.allows(Role::Reader));
        assert!(Read.allows(Role::Reader) && Read.allows(Role::Auditor));
        assert!(!Read.allows(Role::Submitter));
        assert!(Audit.allows(Role::Auditor) && !Audit.allows(Role::Reader));
        assert!(Admin.allows(Role::Admin) && !Admin.allows(Role::Auditor));
        for a in [Submit, Read, Audit, Admin] {
            assert!(a.allows(Role::Admin));
        }
    }

    #[test]
    fn keys_are_matched_by_digest() {
        let store = KeyStore::new(&ApiKeys::parse(
            "reader-key-0123456789:reader,admin-key-01234567890:admin",
        ))
        .unwrap();
        assert_eq!(store.role_of("reader-key-0123456789"), Some(Role::Reader));
        assert_eq!(store.role_of("admin-key-01234567890"), Some(Role::Admin));
        assert_eq!(store.role_of("reader-key-012345678"), None);
        assert!(!format!("{store:?}").contains("reader-key"));
    }
}

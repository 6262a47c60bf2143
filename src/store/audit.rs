//! Canonical JSON, timestamps and the audit hash chain.
//!
//! The exact rules are written down in `docs/audit.md` so that anyone can recompute a hash with
//! other tools. In short: `hash = sha256_hex(prev_hash + "\n" + canonical_json(entry))`, where
//! `entry` is the JSON object of the eight fields `action, actor, alert_id, chain_id, created_at,
//! payload, seq, versions`, and canonical JSON sorts object keys and has no whitespace.

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::error::StoreError;
use super::records::{AuditEntry, AuditVersions, VerifyFailure};

/// `prev_hash` of the first entry of a chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Canonical JSON: object keys sorted by their UTF-8 bytes, no insignificant whitespace,
/// strings and numbers exactly as `serde_json` prints them.
///
/// Keys are sorted here rather than relying on `serde_json::Map` order, because the
/// `preserve_order` feature (enabled by any crate in the build) would change that order.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    // Only valid UTF-8 is ever written (serde_json output and ASCII punctuation).
    String::from_utf8(out).unwrap_or_default()
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&**key, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        // Scalars: serde_json's own compact printing (shortest round-trip floats, minimal escapes).
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar<T: serde::Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) {
    // Writing a string or a JSON scalar into a Vec cannot fail.
    let _ = serde_json::to_writer(out, v);
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(Sha256::digest(bytes.as_ref()))
}

/// sha256 hex of the canonical JSON of `value`: the content hash of alerts and decisions.
pub fn sha256_canonical(value: &Value) -> String {
    sha256_hex(canonical_json(value))
}

/// Drops sub-microsecond precision, which PostgreSQL would otherwise round away and break hashes.
pub fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = t.nanosecond();
    t.with_nanosecond(nanos - nanos % 1_000).unwrap_or(t)
}

/// The timestamp form used in hashes and in SQLite: UTC, RFC 3339, exactly 6 fractional digits,
/// `Z`. Fixed width, so text order is time order. Sub-microsecond digits are truncated.
pub fn format_ts(t: DateTime<Utc>) -> String {
    truncate_micros(t).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses any RFC 3339 timestamp into UTC.
pub fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp `{s}`: {e}")))
}

/// JSON form of [`AuditVersions`] inside entries.
pub(crate) fn versions_json(v: &AuditVersions) -> Value {
    json!({
        "policy_version": v.policy_version,
        "config_version": v.config_version,
        "list_versions": v.list_versions,
    })
}

/// The fields of an entry before the chain gives it a place.
#[derive(Debug, Clone)]
pub(crate) struct PendingEntry {
    pub alert_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub payload: Value,
    pub versions: Option<AuditVersions>,
}

/// The last entry of a chain: where the next one attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

impl ChainHead {
    pub(crate) fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_string(),
        }
    }
}

/// The fields of an entry that are hashed: everything but `prev_hash` and `hash`. JSON values
/// are given as their canonical text.
pub(crate) struct HashedFields<'a> {
    pub chain_id: &'a str,
    pub seq: i64,
    pub alert_id: Option<&'a str>,
    pub actor: &'a str,
    pub action: &'a str,
    pub payload: &'a str,
    pub versions: Option<&'a str>,
    pub created_at: DateTime<Utc>,
}

impl HashedFields<'_> {
    /// The canonical JSON of the entry object. Written out directly (keys already in sorted
    /// order) instead of building a `Value`, which would copy the payload; a unit test checks it
    /// equals `canonical_json` of the equivalent object.
    pub(crate) fn canonical(&self) -> String {
        let mut out = Vec::with_capacity(self.payload.len() + 256);
        out.extend_from_slice(b"{\"action\":");
        write_scalar(self.action, &mut out);
        out.extend_from_slice(b",\"actor\":");
        write_scalar(self.actor, &mut out);
        out.extend_from_slice(b",\"alert_id\":");
        write_scalar(&self.alert_id, &mut out);
        out.extend_from_slice(b",\"chain_id\":");
        write_scalar(self.chain_id, &mut out);
        out.extend_from_slice(b",\"created_at\":");
        write_scalar(&format_ts(self.created_at), &mut out);
        out.extend_from_slice(b",\"payload\":");
        out.extend_from_slice(self.payload.as_bytes());
        out.extend_from_slice(b",\"seq\":");
        write_scalar(&self.seq, &mut out);
        out.extend_from_slice(b",\"versions\":");
        out.extend_from_slice(self.versions.unwrap_or("null").as_bytes());
        out.push(b'}');
        String::from_utf8(out).unwrap_or_default()
    }
}

/// `sha256_hex(prev_hash + "\n" + canonical)`.
pub(crate) fn chain_hash(prev_hash: &str, canonical: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

/// Gives `pending` the next place in the chain and advances `head`; returns the entry in its
/// stored (text) form.
pub(crate) fn seal(
    pending: PendingEntry,
    chain_id: &str,
    head: &mut ChainHead,
    created_at: DateTime<Utc>,
) -> AuditRow {
    let created_at = truncate_micros(created_at);
    let seq = head.seq + 1;
    let payload = canonical_json(&pending.payload);
    let versions = pending
        .versions
        .as_ref()
        .map(|v| canonical_json(&versions_json(v)));
    let hashed = HashedFields {
        chain_id,
        seq,
        alert_id: pending.alert_id.as_deref(),
        actor: &pending.actor,
        action: &pending.action,
        payload: &payload,
        versions: versions.as_deref(),
        created_at,
    }
    .canonical();
    let hash = chain_hash(&head.hash, &hashed);
    let row = AuditRow {
        chain_id: chain_id.to_string(),
        seq,
        alert_id: pending.alert_id,
        actor: pending.actor,
        action: pending.action,
        payload,
        versions,
        created_at: Ok(created_at),
        prev_hash: std::mem::replace(&mut head.hash, hash.clone()),
        hash,
    };
    head.seq = seq;
    row
}

/// An audit entry as read from a table, before any parsing, so that verification can report
/// unparseable (tampered) columns instead of failing.
#[derive(Debug, Clone)]
pub(crate) struct AuditRow {
    pub chain_id: String,
    pub seq: i64,
    pub alert_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub payload: String,
    pub versions: Option<String>,
    /// `Err` holds the stored text when it is not a timestamp.
    pub created_at: Result<DateTime<Utc>, String>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRow {
    /// Parses the row, recomputes its hash and returns the entry, or why it is bad.
    pub(crate) fn check(&self) -> Result<AuditEntry, String> {
        let payload: Value = serde_json::from_str(&self.payload)
            .map_err(|e| format!("payload is not valid JSON: {e}"))?;
        let versions_value: Option<Value> = match &self.versions {
            None => None,
            Some(text) => Some(
                serde_json::from_str(text)
                    .map_err(|e| format!("versions are not valid JSON: {e}"))?,
            ),
        };
        let versions: Option<AuditVersions> = match &versions_value {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value(v.clone())
                    .map_err(|e| format!("versions have the wrong shape: {e}"))?,
            ),
        };
        let created_at = self
            .created_at
            .clone()
            .map_err(|t| format!("created_at `{t}` is not a timestamp"))?;
        let recomputed = chain_hash(
            &self.prev_hash,
            &self.hashed_json(&payload, versions_value.as_ref(), created_at),
        );
        if recomputed != self.hash {
            return Err(format!(
                "hash mismatch: stored {}, recomputed {recomputed} (entry content was altered)",
                self.hash
            ));
        }
        Ok(AuditEntry {
            chain_id: self.chain_id.clone(),
            seq: self.seq,
            alert_id: self.alert_id.clone(),
            actor: self.actor.clone(),
            action: self.action.clone(),
            payload,
            versions,
            created_at,
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
        })
    }

    /// The canonical text this entry's hash covers, recomputed from its parsed columns.
    pub(crate) fn hashed_json(
        &self,
        payload: &Value,
        versions: Option<&Value>,
        created_at: DateTime<Utc>,
    ) -> String {
        let payload = canonical_json(payload);
        let versions = versions.map(canonical_json);
        HashedFields {
            chain_id: &self.chain_id,
            seq: self.seq,
            alert_id: self.alert_id.as_deref(),
            actor: &self.actor,
            action: &self.action,
            payload: &payload,
            versions: versions.as_deref(),
            created_at,
        }
        .canonical()
    }

    /// The entry without checking its hash (for reading trails); errors if columns do not parse.
    pub(crate) fn into_entry(self) -> Result<AuditEntry, StoreError> {
        let payload = serde_json::from_str(&self.payload)
            .map_err(|e| StoreError::Corrupt(format!("audit payload: {e}")))?;
        let versions = match &self.versions {
            None => None,
            Some(text) => serde_json::from_str::<Option<AuditVersions>>(text)
                .map_err(|e| StoreError::Corrupt(format!("audit versions: {e}")))?,
        };
        let created_at = self
            .created_at
            .map_err(|t| StoreError::Corrupt(format!("audit created_at `{t}`")))?;
        Ok(AuditEntry {
            chain_id: self.chain_id,
            seq: self.seq,
            alert_id: self.alert_id,
            actor: self.actor,
            action: self.action,
            payload,
            versions,
            created_at,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }

    pub(crate) fn failure(&self, reason: String) -> VerifyFailure {
        VerifyFailure {
            chain_id: Some(self.chain_id.clone()),
            seq: Some(self.seq),
            alert_id: self.alert_id.clone(),
            reason,
            table: None,
            column: None,
        }
    }
}

/// Walks one chain in seq order, from genesis or from its latest anchor.
pub(crate) struct ChainWalker {
    chain_id: String,
    expected_seq: i64,
    prev_hash: String,
    pub(crate) checked: u64,
}

impl ChainWalker {
    /// Starts after `start` (the genesis head or the latest anchor).
    pub(crate) fn new(chain_id: &str, start: ChainHead) -> Self {
        Self {
            chain_id: chain_id.to_string(),
            expected_seq: start.seq + 1,
            prev_hash: start.hash,
            checked: 0,
        }
    }

    /// Checks the next row of the chain; rows must come in ascending seq order.
    pub(crate) fn next(&mut self, row: &AuditRow) -> Result<AuditEntry, VerifyFailure> {
        if row.seq != self.expected_seq {
            return Err(VerifyFailure {
                chain_id: Some(self.chain_id.clone()),
                seq: Some(self.expected_seq),
                alert_id: None,
                reason: format!(
                    "entry seq {} is missing (next stored entry is seq {})",
                    self.expected_seq, row.seq
                ),
                table: None,
                column: None,
            });
        }
        if row.prev_hash != self.prev_hash {
            return Err(row.failure(format!(
                "prev_hash {} does not match the hash {} of the entry before it",
                row.prev_hash, self.prev_hash
            )));
        }
        let entry = row.check().map_err(|reason| row.failure(reason))?;
        self.checked += 1;
        self.expected_seq += 1;
        self.prev_hash = row.hash.clone();
        Ok(entry)
    }

    /// The head reached so far.
    pub(crate) fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.expected_seq - 1,
            hash: self.prev_hash.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_sorts_keys_and_strips_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{ "b": [1, 2.5, {"z": null, "a": "é\n"}], "a": true }"#)
                .unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":true,"b":[1,2.5,{"a":"é\n","z":null}]}"#
        );
    }

    #[test]
    fn timestamps_have_six_digits() {
        let t = DateTime::parse_from_rfc3339("2024-05-01T12:00:00.123456789+02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_ts(t), "2024-05-01T10:00:00.123456Z");
        let t = DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_ts(t), "2024-05-01T12:00:00.000000Z");
    }

    /// The worked example of `docs/audit.md`: if this changes, the document must change too.
    #[test]
    fn documented_example() {
        let created_at = parse_ts("2024-05-01T10:00:00.123456Z").unwrap();
        let mut head = ChainHead::genesis();
        let versions = AuditVersions {
            policy_version: "p1".into(),
            config_version: "c1".into(),
            list_versions: vec!["OFAC_SDN@2024-04-30".into()],
        };
        let payload = json!({"disposition": "AUTO_CLEAR", "risk_score": 12.5});
        let row = seal(
            PendingEntry {
                alert_id: Some("ALERT-1".into()),
                actor: "engine".into(),
                action: "decision".into(),
                payload: payload.clone(),
                versions: Some(versions.clone()),
            },
            "node-a",
            &mut head,
            created_at,
        );
        // The directly written form equals the canonical JSON of the equivalent object.
        let object = json!({
            "chain_id": "node-a", "seq": 1, "alert_id": "ALERT-1", "actor": "engine",
            "action": "decision", "payload": payload, "versions": versions_json(&versions),
            "created_at": "2024-05-01T10:00:00.123456Z",
        });
        let hashed = row.hashed_json(&payload, Some(&versions_json(&versions)), created_at);
        assert_eq!(hashed, canonical_json(&object));
        assert_eq!(
            hashed,
            r#"{"action":"decision","actor":"engine","alert_id":"ALERT-1","chain_id":"node-a","created_at":"2024-05-01T10:00:00.123456Z","payload":{"disposition":"AUTO_CLEAR","risk_score":12.5},"seq":1,"versions":{"config_version":"c1","list_versions":["OFAC_SDN@2024-04-30"],"policy_version":"p1"}}"#
        );
        assert_eq!(row.prev_hash, GENESIS_HASH);
        assert_eq!(row.hash, sha256_hex(format!("{GENESIS_HASH}\n{hashed}")));
        assert_eq!(row.hash, DOC_EXAMPLE_HASH);
        assert!(row.check().is_ok());
    }

    /// Filled in from the first run of `documented_example`; also quoted in `docs/audit.md`.
    const DOC_EXAMPLE_HASH: &str =
        "2465cf5b96064475504c25f835e2d862abba82379c42d0806dc0c2eca3cc8762";
}

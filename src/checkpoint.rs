//! Signed checkpoints of the audit chains.
//!
//! The hash chain catches any edit of a stored entry, but not a consistent rewrite: whoever can
//! write to the database can recompute every hash after the entry they changed. A checkpoint
//! closes that gap: the heads `(chain_id, seq, hash)` of every chain, signed with an Ed25519
//! key the database never holds, and kept outside it (a directory, `AUDIT_CHECKPOINT_DIR`,
//! which can be shipped to write-once storage). Since each hash covers every entry before it,
//! a stored chain that still holds the signed hash at the signed seq has had no entry before
//! that point rewritten, re-inserted or removed, whatever hashes were recomputed.
//!
//! Signing goes through the [`Signer`] trait: [`KeyFileSigner`] reads a key file
//! (`AUDIT_SIGNING_KEY_FILE`, made by `aml-triage audit keygen`); a KMS or HSM can implement the
//! trait instead. Key rotation is described in `docs/audit.md`.

use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::store::audit::{canonical_json, format_ts, sha256_hex};
use crate::store::{Store, StoreError};

/// The `format` of a checkpoint document.
pub const CHECKPOINT_FORMAT: &str = "aml-triage-checkpoint/1";

/// Why a checkpoint could not be made, read or verified.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A key file is missing, unreadable or not a key.
    #[error("key file {path}: {message}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the key itself).
        message: String,
    },
    /// A checkpoint file or directory could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The signer failed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Signs checkpoints. Implemented by [`KeyFileSigner`]; a KMS or HSM client can implement it
/// so that the private key never leaves it.
pub trait Signer: Send + Sync {
    /// The raw 32-byte Ed25519 public key.
    fn public_key(&self) -> Vec<u8>;
    /// An Ed25519 signature (64 bytes) of `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CheckpointError>;
    /// A short id of the key: the first 16 hex digits of the sha256 of the public key.
    fn key_id(&self) -> String {
        key_id(&self.public_key())
    }
}

/// The id of a public key (see [`Signer::key_id`]).
pub fn key_id(public_key: &[u8]) -> String {
    sha256_hex(public_key)[..16].to_string()
}

/// An Ed25519 key read from a file holding its 32-byte seed as 64 hex digits.
pub struct KeyFileSigner {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for KeyFileSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFileSigner")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

fn key_error(path: &Path, message: impl Into<String>) -> CheckpointError {
    CheckpointError::Key {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read_hex(path: &Path, what: &str) -> Result<Vec<u8>, CheckpointError> {
    let text = std::fs::read_to_string(path).map_err(|e| key_error(path, e.to_string()))?;
    let bytes = hex::decode(text.trim())
        .map_err(|_| key_error(path, format!("not a {what}: expected 64 hex digits")))?;
    if bytes.len() != 32 {
        return Err(key_error(
            path,
            format!("not a {what}: expected 32 bytes, got {}", bytes.len()),
        ));
    }
    Ok(bytes)
}

impl KeyFileSigner {
    /// Reads the private key file.
    pub fn from_file(path: &Path) -> Result<Self, CheckpointError> {
        let seed = read_hex(path, "private key")?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| key_error(path, "not an Ed25519 private key"))?;
        Ok(Self { pair })
    }

    /// Makes a new key: writes the private key to `path` (readable by its owner only) and the
    /// public key to `path` + `.pub`. Returns the key id.
    pub fn generate(path: &Path) -> Result<String, CheckpointError> {
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| CheckpointError::Sign("no system randomness".into()))?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| CheckpointError::Sign("key generation failed".into()))?;
        let io = |p: &Path, e: std::io::Error| CheckpointError::Io {
            path: p.to_path_buf(),
            message: e.to_string(),
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| io(path, e))?;
        std::io::Write::write_all(&mut file, format!("{}\n", hex::encode(seed)).as_bytes())
            .map_err(|e| io(path, e))?;
        let public = public_path(path);
        std::fs::write(
            &public,
            format!("{}\n", hex::encode(pair.public_key().as_ref())),
        )
        .map_err(|e| io(&public, e))?;
        Ok(key_id(pair.public_key().as_ref()))
    }
}

/// Where [`KeyFileSigner::generate`] writes the public key of `private`.
pub fn public_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

impl Signer for KeyFileSigner {
    fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CheckpointError> {
        Ok(self.pair.sign(message).as_ref().to_vec())
    }
}

/// Reads a public key file (64 hex digits).
pub fn read_public_key(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    read_hex(path, "public key")
}

/// The head of one chain at the time of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The chain (node id).
    pub chain_id: String,
    /// Seq of its last entry.
    pub seq: i64,
    /// That entry's hash.
    pub hash: String,
}

/// A signed checkpoint, as written to a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// When it was made (UTC, microseconds).
    pub created_at: String,
    /// Id of the signing key (see [`key_id`]).
    pub key_id: String,
    /// Every chain's head, by chain id.
    pub chains: Vec<Head>,
    /// Ed25519 signature (hex) of [`Checkpoint::signed_text`].
    pub signature: String,
}

impl Checkpoint {
    /// The text the signature covers: the canonical JSON (see `docs/audit.md`) of the
    /// checkpoint without its `signature`.
    pub fn signed_text(&self) -> String {
        canonical_json(&json!({
            "format": self.format,
            "created_at": self.created_at,
            "key_id": self.key_id,
            "chains": self.chains,
        }))
    }

    /// Signs `chains` at `created_at`.
    pub fn sign(
        signer: &dyn Signer,
        mut chains: Vec<Head>,
        created_at: DateTime<Utc>,
    ) -> Result<Self, CheckpointError> {
        chains.sort_by(|a, b| a.chain_id.cmp(&b.chain_id));
        let mut cp = Checkpoint {
            format: CHECKPOINT_FORMAT.into(),
            created_at: format_ts(created_at),
            key_id: signer.key_id(),
            chains,
            signature: String::new(),
        };
        cp.signature = hex::encode(signer.sign(cp.signed_text().as_bytes())?);
        Ok(cp)
    }

    /// Whether the signature is valid under `public_key`.
    pub fn signature_valid(&self, public_key: &[u8]) -> bool {
        let Ok(signature) = hex::decode(&self.signature) else {
            return false;
        };
        self.format == CHECKPOINT_FORMAT
            && UnparsedPublicKey::new(&ED25519, public_key)
                .verify(self.signed_text().as_bytes(), &signature)
                .is_ok()
    }
}

/// Signs the current heads of every chain in `store` and writes the checkpoint to `dir`
/// (created if needed) as `checkpoint-<time>-<key id>.json`. Returns the checkpoint and its
/// file.
pub async fn write_checkpoint(
    store: &Store,
    signer: &dyn Signer,
    dir: &Path,
) -> Result<(Checkpoint, PathBuf), CheckpointError> {
    let heads = store
        .chain_heads()
        .await?
        .into_iter()
        .filter(|(_, seq, _)| *seq > 0)
        .map(|(chain_id, seq, hash)| Head {
            chain_id,
            seq,
            hash,
        })
        .collect();
    let now = Utc::now();
    let cp = Checkpoint::sign(signer, heads, now)?;
    let io = |p: &Path, e: std::io::Error| CheckpointError::Io {
        path: p.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let name = format!(
        "checkpoint-{}-{}.json",
        now.format("%Y%m%dT%H%M%S%6fZ"),
        cp.key_id
    );
    let path = dir.join(name);
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(&cp).unwrap_or_default();
    std::fs::write(&tmp, text).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    Ok((cp, path))
}

/// Writes a checkpoint every `every` until the returned handle is aborted (the node's
/// `serve` runs it when `AUDIT_SIGNING_KEY_FILE` and `AUDIT_CHECKPOINT_DIR` are set). A failed
/// write is logged and tried again at the next period.
pub fn spawn_periodic(
    store: std::sync::Arc<Store>,
    signer: std::sync::Arc<dyn Signer>,
    dir: PathBuf,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match write_checkpoint(&store, signer.as_ref(), &dir).await {
                Ok((cp, path)) => tracing::info!(
                    chains = cp.chains.len(),
                    key_id = %cp.key_id,
                    path = %path.display(),
                    "audit checkpoint signed"
                ),
                Err(e) => tracing::error!(error = %e, "audit checkpoint not written"),
            }
        }
    })
}

/// What checking a store against signed checkpoints found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckpointReport {
    /// True when every checkpoint is validly signed and every signed head is still in the
    /// store with the signed hash.
    pub ok: bool,
    /// Checkpoint files read.
    pub checkpoints: usize,
    /// Signed heads found in the store as signed.
    pub heads_matched: usize,
    /// Signed heads whose entries retention has since removed (nothing left to compare).
    pub heads_purged: usize,
    /// The latest signed seq of each chain: no entry up to it was rewritten.
    pub covered: Vec<Head>,
    /// The first problem, if any.
    pub failure: Option<String>,
}

/// Reads every `*.json` checkpoint in `dir`, checks its signature under `public_key`, and
/// checks that the store still holds each signed head. Run it together with
/// [`Store::verify`], which checks that every entry after a head links to it.
///
/// A signed head may be missing only because retention removed it, and retention removes
/// nothing younger than `retention_days`: a head signed more recently than that and no longer
/// stored (behind an anchor) is a failure, so a forged anchor cannot pass for a purge.
pub async fn verify_checkpoints(
    store: &Store,
    dir: &Path,
    public_key: &[u8],
    retention_days: u32,
) -> Result<CheckpointReport, CheckpointError> {
    let purge_cutoff = Utc::now() - chrono::Duration::days(i64::from(retention_days));
    let io = |p: &Path, e: std::io::Error| CheckpointError::Io {
        path: p.to_path_buf(),
        message: e.to_string(),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut report = CheckpointReport {
        ok: true,
        ..Default::default()
    };
    let fail = |mut report: CheckpointReport, why: String| {
        report.ok = false;
        report.failure = Some(why);
        Ok(report)
    };
    if files.is_empty() {
        return fail(report, format!("no checkpoint in {}", dir.display()));
    }
    let want = key_id(public_key);
    let mut latest: std::collections::BTreeMap<String, Head> = Default::default();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| io(&file, e))?;
        report.checkpoints += 1;
        let cp: Checkpoint = match serde_json::from_str(&text) {
            Ok(cp) => cp,
            Err(e) => return fail(report, format!("{}: not a checkpoint: {e}", file.display())),
        };
        if cp.key_id != want {
            return fail(
                report,
                format!(
                    "{}: signed with key {}, not with the given public key {want} (see key rotation in docs/audit.md)",
                    file.display(),
                    cp.key_id
                ),
            );
        }
        if !cp.signature_valid(public_key) {
            return fail(
                report,
                format!(
                    "{}: the signature is not valid: the checkpoint was altered",
                    file.display()
                ),
            );
        }
        for head in &cp.chains {
            let (stored, purged) = store.entry_hash(&head.chain_id, head.seq).await?;
            match stored {
                Some(h) if h == head.hash => report.heads_matched += 1,
                None if purged && signed_before(&cp.created_at, purge_cutoff) => {
                    report.heads_purged += 1
                }
                Some(h) => {
                    return fail(
                        report,
                        format!(
                            "chain {} seq {}: stored hash {h} differs from {} signed at {} ({}): \
                             entries up to seq {} were rewritten, re-inserted or removed",
                            head.chain_id,
                            head.seq,
                            head.hash,
                            cp.created_at,
                            file.display(),
                            head.seq
                        ),
                    );
                }
                None => {
                    return fail(
                        report,
                        format!(
                            "chain {} seq {}: signed at {} ({}) but no longer stored: entries were removed",
                            head.chain_id,
                            head.seq,
                            cp.created_at,
                            file.display()
                        ),
                    );
                }
            }
            let newer = latest.get(&head.chain_id).is_none_or(|h| h.seq <= head.seq);
            if newer {
                latest.insert(head.chain_id.clone(), head.clone());
            }
        }
    }
    report.covered = latest.into_values().collect();
    Ok(report)
}

/// Whether the RFC 3339 time `created_at` is before `cutoff` (false if it does not parse).
fn signed_before(created_at: &str, cutoff: DateTime<Utc>) -> bool {
    DateTime::parse_from_rfc3339(created_at).is_ok_and(|t| t.with_timezone(&Utc) < cutoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_checkpoint_verifies_and_any_change_breaks_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let id = KeyFileSigner::generate(&path).unwrap();
        let signer = KeyFileSigner::from_file(&path).unwrap();
        assert_eq!(signer.key_id(), id);
        let public = read_public_key(&public_path(&path)).unwrap();
        let heads = vec![Head {
            chain_id: "node-a".into(),
            seq: 7,
            hash: "ab".repeat(32),
        }];
        let cp = Checkpoint::sign(&signer, heads, Utc::now()).unwrap();
        assert!(cp.signature_valid(&public));
        let mut forged = cp.clone();
        forged.chains[0].seq = 6;
        assert!(!forged.signature_valid(&public));
        let other = dir.path().join("other");
        KeyFileSigner::generate(&other).unwrap();
        let other_public = read_public_key(&public_path(&other)).unwrap();
        assert!(!cp.signature_valid(&other_public));
        // The key's Debug form never shows the seed.
        let seed = std::fs::read_to_string(&path).unwrap();
        assert!(!format!("{signer:?}").contains(seed.trim()));
    }
}

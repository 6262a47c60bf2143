//! `aml-triage lists update`: fetch the configured list files, verify them, and install them
//! as a new version that serving nodes pick up without a restart.
//!
//! Layout under `LIST_DIR`:
//!
//! ```text
//! LIST_DIR/versions/20261205T101500Z/sdn.csv, alt.csv, add.csv, consolidated.xml, ...
//! LIST_DIR/current -> versions/20261205T101500Z      (a symbolic link, replaced atomically)
//! ```
//!
//! Nodes point `LIST_PATHS` at `LIST_DIR/current` and reload when it changes. A download is
//! installed only when every check passes:
//! 1. every source answered 2xx with a non-empty body;
//! 2. the set parses with the engine's own loaders (the same code that screens);
//! 3. every list has at least `LIST_MIN_ENTRIES` entries;
//! 4. against the installed version, no list lost more than `LIST_MAX_REMOVED_PERCENT` of its
//!    entry ids, and no list disappeared.
//!
//! Otherwise the staged download is deleted and the installed version stays in force. The
//! last [`KEEP_VERSIONS`] versions are kept for audit and rollback.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::screening::ScreeningLists;

/// Installed versions kept (older ones are deleted after an install).
pub const KEEP_VERSIONS: usize = 5;

/// Name of the link that points at the installed version.
pub const CURRENT: &str = "current";

/// One file to fetch: where from, and the name it is saved under (which tells the loaders
/// its format: `sdn.csv`, `alt.csv`, `cons_prim.csv`, `consolidated.xml`, `*.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSource {
    /// File name in the version folder.
    pub file: String,
    /// URL to fetch.
    pub url: String,
}

/// The checks an update must pass.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdatePolicy {
    /// Fewest entries a list may have.
    pub min_entries: usize,
    /// Largest share (percent) of a list's entry ids that may disappear in one update.
    pub max_removed_percent: f64,
    /// Timeout of each download.
    pub timeout: Duration,
}

/// Why an update was refused. Nothing was installed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// `LIST_SOURCES` is malformed.
    #[error("LIST_SOURCES: {0}")]
    Sources(String),
    /// A download failed.
    #[error("fetching {file}: {message}")]
    Fetch {
        /// The file.
        file: String,
        /// What went wrong (status, timeout), without the URL's credentials.
        message: String,
    },
    /// The files do not parse.
    #[error("the downloaded lists do not parse: {0}")]
    Parse(String),
    /// A list is too small.
    #[error("{list} has {entries} entries, fewer than LIST_MIN_ENTRIES ({min})")]
    TooFew {
        /// List id.
        list: String,
        /// Entries in the download.
        entries: usize,
        /// The configured minimum.
        min: usize,
    },
    /// A list lost too many entries at once (a truncated file, say).
    #[error(
        "{list} would lose {removed} of {before} entries ({percent:.1}%), more than LIST_MAX_REMOVED_PERCENT ({max}%)"
    )]
    TooManyRemoved {
        /// List id.
        list: String,
        /// Entry ids gone.
        removed: usize,
        /// Entry ids in the installed version.
        before: usize,
        /// removed / before, in percent.
        percent: f64,
        /// The configured limit.
        max: f64,
    },
    /// A list of the installed version is missing from the download.
    #[error("{0} is in the installed version but missing from the download")]
    Missing(String),
    /// The version folder or link could not be written.
    #[error("installing into {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        message: String,
    },
}

/// What an installed update contained.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdateReport {
    /// The new version folder.
    pub installed: PathBuf,
    /// Per list id: entries, and entries added and removed against the previous version.
    pub lists: BTreeMap<String, ListChange>,
}

/// How one list changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListChange {
    /// Version of the new list.
    pub version: String,
    /// Entries now.
    pub entries: usize,
    /// Entry ids new in this version.
    pub added: usize,
    /// Entry ids gone since the previous version.
    pub removed: usize,
}

/// Parses `LIST_SOURCES`: `file=url` pairs separated by commas, e.g.
/// `sdn.csv=https://.../sdn.csv,alt.csv=https://.../alt.csv`.
pub fn parse_sources(text: &str) -> Result<Vec<ListSource>, UpdateError> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (file, url) = part
            .split_once('=')
            .ok_or_else(|| UpdateError::Sources(format!("{part:?} is not file=url")))?;
        let file = file.trim();
        let url = url.trim();
        if file.is_empty()
            || file.starts_with('.')
            || file.contains(['/', '\\'])
            || !file
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(UpdateError::Sources(format!(
                "file name {file:?} must be a plain name ([A-Za-z0-9._-])"
            )));
        }
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(UpdateError::Sources(format!(
                "{file}: the URL must start with https:// or http://"
            )));
        }
        if out.iter().any(|s: &ListSource| s.file == file) {
            return Err(UpdateError::Sources(format!("{file} is listed twice")));
        }
        out.push(ListSource {
            file: file.to_string(),
            url: url.to_string(),
        });
    }
    if out.is_empty() {
        return Err(UpdateError::Sources("no sources configured".into()));
    }
    Ok(out)
}

/// A URL without user, password or query (which may carry tokens), for messages.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

/// Downloads, verifies and installs a new version under `dir`. On any failure the staged
/// files are removed and the installed version is left as it was.
pub async fn update(
    dir: &Path,
    sources: &[ListSource],
    policy: &UpdatePolicy,
) -> Result<UpdateReport, UpdateError> {
    let io = |path: &Path, e: std::io::Error| UpdateError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let versions = dir.join("versions");
    std::fs::create_dir_all(&versions).map_err(|e| io(&versions, e))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let staging = versions.join(format!(".staging-{stamp}"));
    std::fs::create_dir_all(&staging).map_err(|e| io(&staging, e))?;
    let result = stage_and_verify(dir, &staging, sources, policy).await;
    let report = match result {
        Ok(lists) => lists,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let target = versions.join(&stamp);
    std::fs::rename(&staging, &target).map_err(|e| io(&target, e))?;
    point_current_at(dir, &target).map_err(|e| io(&dir.join(CURRENT), e))?;
    prune(&versions);
    Ok(UpdateReport {
        installed: target,
        lists: report,
    })
}

async fn stage_and_verify(
    dir: &Path,
    staging: &Path,
    sources: &[ListSource],
    policy: &UpdatePolicy,
) -> Result<BTreeMap<String, ListChange>, UpdateError> {
    let client = reqwest::Client::builder()
        .timeout(policy.timeout)
        .build()
        .map_err(|e| UpdateError::Fetch {
            file: "-".into(),
            message: e.to_string(),
        })?;
    for s in sources {
        let fail = |message: String| UpdateError::Fetch {
            file: s.file.clone(),
            message,
        };
        let resp = client
            .get(&s.url)
            .send()
            .await
            .map_err(|e| fail(format!("{}: {}", redact(&s.url), e.without_url())))?;
        if !resp.status().is_success() {
            return Err(fail(format!(
                "{} answered {}",
                redact(&s.url),
                resp.status()
            )));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| fail(format!("reading the body: {}", e.without_url())))?;
        if body.is_empty() {
            return Err(fail(format!("{} sent an empty body", redact(&s.url))));
        }
        let path = staging.join(&s.file);
        std::fs::write(&path, &body).map_err(|e| UpdateError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    }
    let staged = staging.to_path_buf();
    let installed = dir.join(CURRENT);
    let policy = policy.clone();
    tokio::task::spawn_blocking(move || verify(&staged, &installed, &policy))
        .await
        .map_err(|e| UpdateError::Parse(e.to_string()))?
}

/// Loads the staged set and checks it against the installed one.
fn verify(
    staged: &Path,
    installed: &Path,
    policy: &UpdatePolicy,
) -> Result<BTreeMap<String, ListChange>, UpdateError> {
    let new = ScreeningLists::load_paths(&[staged.to_path_buf()])
        .map_err(|e| UpdateError::Parse(e.to_string()))?;
    if new.lists().is_empty() {
        return Err(UpdateError::Parse("no list file recognised".into()));
    }
    let old = installed
        .exists()
        .then(|| ScreeningLists::load_paths(&[installed.to_path_buf()]).ok())
        .flatten();
    let ids = |l: &ScreeningLists, list: &str| -> HashSet<String> {
        l.entries()
            .iter()
            .filter(|e| e.list_id == list)
            .map(|e| e.entry_id.clone())
            .collect()
    };
    let mut out = BTreeMap::new();
    for l in new.lists() {
        let now = ids(&new, &l.list_id);
        if now.len() < policy.min_entries {
            return Err(UpdateError::TooFew {
                list: l.list_id.clone(),
                entries: now.len(),
                min: policy.min_entries,
            });
        }
        let before = old.as_ref().map(|o| ids(o, &l.list_id)).unwrap_or_default();
        let removed = before.difference(&now).count();
        let added = now.difference(&before).count();
        if !before.is_empty() {
            let percent = 100.0 * removed as f64 / before.len() as f64;
            if percent > policy.max_removed_percent {
                return Err(UpdateError::TooManyRemoved {
                    list: l.list_id.clone(),
                    removed,
                    before: before.len(),
                    percent,
                    max: policy.max_removed_percent,
                });
            }
        }
        out.insert(
            l.list_id.clone(),
            ListChange {
                version: l.version.clone(),
                entries: now.len(),
                added,
                removed,
            },
        );
    }
    if let Some(o) = &old {
        for l in o.lists() {
            if !new.has_list(&l.list_id) {
                return Err(UpdateError::Missing(l.list_id.clone()));
            }
        }
    }
    Ok(out)
}

/// Replaces `dir/current` with a link to `target`, atomically (a new link renamed over the
/// old one), so a reader sees the old version or the new one, never neither.
fn point_current_at(dir: &Path, target: &Path) -> std::io::Result<()> {
    let rel = Path::new("versions").join(target.file_name().unwrap_or_default());
    let tmp = dir.join(format!(".{CURRENT}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    #[cfg(unix)]
    std::os::unix::fs::symlink(&rel, &tmp)?;
    #[cfg(not(unix))]
    return Err(std::io::Error::other("list installs need symbolic links"));
    std::fs::rename(&tmp, dir.join(CURRENT))
}

/// Deletes all but the newest [`KEEP_VERSIONS`] version folders (and stale staging folders).
fn prune(versions: &Path) {
    let Ok(rd) = std::fs::read_dir(versions) else {
        return;
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let (staging, kept): (Vec<String>, Vec<String>) =
        names.into_iter().partition(|n| n.starts_with(".staging-"));
    for n in staging {
        let _ = std::fs::remove_dir_all(versions.join(n));
    }
    if kept.len() > KEEP_VERSIONS {
        for n in &kept[..kept.len() - KEEP_VERSIONS] {
            let _ = std::fs::remove_dir_all(versions.join(n));
        }
    }
}

/// The folder the current link points at, if installed.
pub fn installed_version(dir: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(dir.join(CURRENT)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_refuse_paths() {
        let s = parse_sources("sdn.csv=https://x.test/sdn.csv, alt.csv=http://x.test/a").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].file, "alt.csv");
        for bad in [
            "",
            "sdn.csv",
            "../sdn.csv=https://x.test/s",
            "a/b.csv=https://x.test/s",
            "sdn.csv=ftp://x.test/s",
            "sdn.csv=https://a,sdn.csv=https://b",
        ] {
            assert!(parse_sources(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls_lose_credentials_in_messages() {
        assert_eq!(
            redact("https://user:secret@x.test/sdn.csv?token=abc"),
            "https://x.test/sdn.csv"
        );
    }
}

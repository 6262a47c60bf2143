//! Reference data at run time: the screening lists and jurisdiction table a node decides with,
//! swapped in whole when a verified new version appears on disk, and how old each list is.
//!
//! * [`ReferenceHandle`] holds the current [`ReferenceData`]; the enrichment agent takes a
//!   snapshot per alert, so an alert is screened against one consistent set even while a
//!   reload swaps in the next.
//! * [`ReferenceHandle::reload_if_changed`] compares a fingerprint of the configured list
//!   paths (resolved links, file names, sizes and modification times) and, when it changed,
//!   loads and checks the new set before swapping it in. A set that fails to load or check is
//!   refused and the node keeps deciding with the old one.
//! * [`update`]: `aml-triage lists update` downloads the configured sources, verifies them and
//!   installs them as a new version folder behind the `current` link that nodes read.
//!
//! A list's age is the time since its file was last written (fetched), not its publication
//! date: the question operations ask is "when did we last refresh from the source?".

pub mod update;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::assessment::enrichment::ReferenceData;

/// One loaded list and when its file was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListFreshness {
    /// List id, e.g. `OFAC_SDN`.
    pub list_id: String,
    /// The list's version (publication date or content hash).
    pub version: String,
    /// Entries loaded.
    pub entries: usize,
    /// Modification time of its primary file.
    pub fetched_at: DateTime<Utc>,
}

impl ListFreshness {
    /// Seconds since the file was written (0 for a time in the future).
    pub fn age_seconds(&self, now: DateTime<Utc>) -> f64 {
        ((now - self.fetched_at).num_milliseconds().max(0) as f64) / 1000.0
    }
}

/// Why a reload did not swap.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new set could not be loaded.
    #[error("screening lists failed to load: {0}")]
    Load(String),
    /// A list that was loaded before is missing from the new set.
    #[error("list {0} is missing from the new set; keeping the old one")]
    Missing(String),
}

/// The current reference data, swappable as a whole.
pub struct ReferenceHandle {
    current: RwLock<ReferenceData>,
    freshness: RwLock<Vec<ListFreshness>>,
    paths: Vec<PathBuf>,
    fingerprint: Mutex<String>,
}

impl std::fmt::Debug for ReferenceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceHandle")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl ReferenceHandle {
    /// A handle over `refs`, loaded from `paths` (empty when given in code).
    pub fn new(refs: ReferenceData, paths: Vec<PathBuf>) -> Self {
        let freshness = freshness_of(&refs);
        let fingerprint = fingerprint(&paths);
        Self {
            current: RwLock::new(refs),
            freshness: RwLock::new(freshness),
            paths,
            fingerprint: Mutex::new(fingerprint),
        }
    }

    /// The reference data to decide one alert with.
    pub fn current(&self) -> ReferenceData {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every loaded list with the time its file was written.
    pub fn freshness(&self) -> Vec<ListFreshness> {
        self.freshness
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The configured list paths this handle reloads from.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Swaps in `refs` (already loaded and checked).
    pub fn swap(&self, refs: ReferenceData) {
        let freshness = freshness_of(&refs);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = refs;
        *self.freshness.write().unwrap_or_else(|p| p.into_inner()) = freshness;
    }

    /// Reloads from the configured paths when their fingerprint changed. Returns the new list
    /// versions when it swapped, `None` when nothing changed. Blocking (parses files): call it
    /// from a blocking thread.
    pub fn reload_if_changed(
        &self,
        settings: &crate::config::Settings,
    ) -> Result<Option<Vec<String>>, ReloadError> {
        if self.paths.is_empty() {
            return Ok(None);
        }
        let now = fingerprint(&self.paths);
        if *self.fingerprint.lock().unwrap_or_else(|p| p.into_inner()) == now {
            return Ok(None);
        }
        let mut s = settings.clone();
        s.list_paths = self.paths.clone();
        let refs = ReferenceData::load(&s).map_err(ReloadError::Load)?;
        let old: Vec<String> = self
            .freshness()
            .into_iter()
            .map(|f| f.list_id)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for id in old {
            if !refs.lists.has_list(&id) {
                return Err(ReloadError::Missing(id));
            }
        }
        let versions = refs.versions();
        self.swap(refs);
        *self.fingerprint.lock().unwrap_or_else(|p| p.into_inner()) = now;
        Ok(Some(versions))
    }

    /// Lists that make the node unready: each list in `required` (every loaded list when
    /// empty) that is not loaded, or older than `max_age_hours` (no age limit when 0).
    pub fn stale(
        &self,
        required: &[String],
        max_age_hours: f64,
        now: DateTime<Utc>,
    ) -> Vec<String> {
        let fresh = self.freshness();
        let mut out = Vec::new();
        let wanted: Vec<String> = if required.is_empty() {
            let mut v: Vec<String> = fresh.iter().map(|f| f.list_id.clone()).collect();
            v.sort();
            v.dedup();
            v
        } else {
            required.to_vec()
        };
        for id in wanted {
            // A list loaded in several versions is as fresh as its newest file.
            let newest = fresh
                .iter()
                .filter(|f| f.list_id == id)
                .map(|f| f.age_seconds(now))
                .reduce(f64::min);
            match newest {
                None => out.push(format!("{id}: not loaded")),
                Some(age) if max_age_hours > 0.0 && age > max_age_hours * 3600.0 => out.push(
                    format!("{id}: {:.1} h old (limit {max_age_hours} h)", age / 3600.0),
                ),
                Some(_) => {}
            }
        }
        out
    }
}

/// A reference handle shared by the engine and its agents.
pub type SharedReference = Arc<ReferenceHandle>;

fn freshness_of(refs: &ReferenceData) -> Vec<ListFreshness> {
    refs.lists
        .lists()
        .iter()
        .map(|l| ListFreshness {
            list_id: l.list_id.clone(),
            version: l.version.clone(),
            entries: l.entries,
            fetched_at: modified(&l.source).unwrap_or_else(Utc::now),
        })
        .collect()
}

fn modified(path: &Path) -> Option<DateTime<Utc>> {
    let t = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(DateTime::<Utc>::from(t))
}

/// Resolved path, name, size and modification time of every file under `paths` (two levels
/// deep, as the loaders search), sorted: any change of the set or of a file changes it.
pub fn fingerprint(paths: &[PathBuf]) -> String {
    fn visit(p: &Path, depth: usize, out: &mut Vec<String>) {
        let Ok(real) = std::fs::canonicalize(p) else {
            out.push(format!("missing:{}", p.display()));
            return;
        };
        let Ok(meta) = std::fs::metadata(&real) else {
            return;
        };
        if meta.is_dir() {
            if depth > 2 {
                return;
            }
            if let Ok(rd) = std::fs::read_dir(&real) {
                for e in rd.flatten() {
                    visit(&e.path(), depth + 1, out);
                }
            }
        } else {
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            out.push(format!("{}|{}|{mtime}", real.display(), meta.len()));
        }
    }
    let mut out = Vec::new();
    for p in paths {
        visit(p, 0, &mut out);
    }
    out.sort();
    out.join("\n")
}

impl ReferenceData {
    /// Loads the lists named by `LIST_PATHS` and `JURISDICTION_PATH` (kept here, not in the
    /// pure domain, which imports nothing of the configuration).
    pub fn load(settings: &crate::config::Settings) -> Result<Self, String> {
        Self::load_paths(&settings.list_paths, settings.jurisdiction_path.clone())
    }
}

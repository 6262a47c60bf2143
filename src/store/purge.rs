//! Retention: which alerts and audit entries a purge may remove.
//!
//! The rule, so that every chain stays verifiable and nothing newer is lost:
//!
//! 1. Candidates are alerts received before the cutoff **that have a decision**. Undecided
//!    alerts are never purged: an alert still being worked must not vanish.
//! 2. An audit entry is removable if it belongs to a candidate, or if it belongs to no stored
//!    alert (events such as config loads or earlier purges) and was written before the cutoff.
//! 3. Each chain loses only its longest prefix of removable entries (after its latest anchor).
//!    The first entry that is not removable ends the prefix, even if removable entries follow.
//! 4. A candidate is removed only if all its entries, in every chain, lie in those prefixes;
//!    otherwise it is kept (counted as `kept_interleaved`) and its entries stop being removable,
//!    which may shorten prefixes and exclude more candidates: this repeats until stable.
//! 5. For each shortened chain an anchor `(chain, last removed seq, its hash)` is written in the
//!    same transaction; verification starts the chain there. The `purge` audit entry lists the
//!    latest anchor of every chain, so an anchor can be matched to the purge that wrote it
//!    (`verify` does not check this match yet).
//!
//! Alerts kept by rule 4 are removed by a later purge, once the newer alerts interleaved with
//! them have themselves expired.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::records::AuditAnchor;

/// An audit entry as seen by the planner.
#[derive(Debug, Clone)]
pub(crate) struct ScanEntry {
    pub chain_id: String,
    pub seq: i64,
    pub alert_id: Option<String>,
    /// Whether `alert_id` names an alert still stored.
    pub alert_exists: bool,
    /// `None` if the stored timestamp does not parse: then the entry is never removable.
    pub created_at: Option<DateTime<Utc>>,
    pub hash: String,
}

/// What the planner reads, inside the purge transaction.
#[derive(Debug, Clone, Default)]
pub(crate) struct PurgeScan {
    /// Entries after each chain's latest anchor, ordered by `(chain_id, seq)`.
    pub entries: Vec<ScanEntry>,
    /// Latest anchor of each chain that has one.
    pub latest_anchors: Vec<AuditAnchor>,
    /// Alerts received before the cutoff that have a decision.
    pub old_decided: Vec<String>,
    /// Alerts received before the cutoff without a decision (kept).
    pub old_undecided: u64,
}

/// What to remove.
#[derive(Debug, Clone, Default)]
pub(crate) struct PurgePlan {
    /// Alerts to delete with their decisions and steps.
    pub alerts: Vec<String>,
    /// Anchors to write: one per chain whose prefix is removed (entries `seq <= anchor.seq`).
    pub new_anchors: Vec<AuditAnchor>,
    /// Latest anchor of every chain after the purge.
    pub latest_anchors: Vec<AuditAnchor>,
    /// Old decided alerts kept because of rule 4.
    pub kept_interleaved: u64,
}

fn removable(e: &ScanEntry, candidates: &HashSet<&str>, cutoff: DateTime<Utc>) -> bool {
    match (&e.alert_id, e.alert_exists) {
        (Some(id), true) => candidates.contains(id.as_str()),
        _ => e.created_at.is_some_and(|t| t < cutoff),
    }
}

/// Applies the rule of this module to `scan`.
pub(crate) fn plan(scan: &PurgeScan, cutoff: DateTime<Utc>) -> PurgePlan {
    let mut candidates: HashSet<&str> = scan.old_decided.iter().map(String::as_str).collect();
    let chains: Vec<&[ScanEntry]> = scan
        .entries
        .chunk_by(|a, b| a.chain_id == b.chain_id)
        .collect();
    let mut prefix_len: Vec<usize>;
    loop {
        prefix_len = chains
            .iter()
            .map(|c| {
                c.iter()
                    .take_while(|e| removable(e, &candidates, cutoff))
                    .count()
            })
            .collect();
        let mut dropped = false;
        for (chain, &n) in chains.iter().zip(&prefix_len) {
            for e in &chain[n..] {
                if let Some(id) = &e.alert_id {
                    dropped |= candidates.remove(id.as_str());
                }
            }
        }
        if !dropped {
            break;
        }
    }
    let alerts: Vec<String> = scan
        .old_decided
        .iter()
        .filter(|id| candidates.contains(id.as_str()))
        .cloned()
        .collect();
    let new_anchors: Vec<AuditAnchor> = chains
        .iter()
        .zip(&prefix_len)
        .filter(|(_, n)| **n > 0)
        .map(|(chain, &n)| AuditAnchor {
            chain_id: chain[n - 1].chain_id.clone(),
            seq: chain[n - 1].seq,
            hash: chain[n - 1].hash.clone(),
        })
        .collect();
    let mut latest: HashMap<String, AuditAnchor> = scan
        .latest_anchors
        .iter()
        .map(|a| (a.chain_id.clone(), a.clone()))
        .collect();
    for a in &new_anchors {
        latest.insert(a.chain_id.clone(), a.clone());
    }
    let mut latest_anchors: Vec<AuditAnchor> = latest.into_values().collect();
    latest_anchors.sort_by(|a, b| a.chain_id.cmp(&b.chain_id));
    PurgePlan {
        kept_interleaved: (scan.old_decided.len() - alerts.len()) as u64,
        alerts,
        new_anchors,
        latest_anchors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn e(chain: &str, seq: i64, alert: Option<&str>, at: &str) -> ScanEntry {
        ScanEntry {
            chain_id: chain.into(),
            seq,
            alert_id: alert.map(Into::into),
            alert_exists: alert.is_some(),
            created_at: Some(t(at)),
            hash: format!("h{chain}{seq}"),
        }
    }

    #[test]
    fn interleaved_old_alert_is_kept_until_its_neighbours_expire() {
        let old = "2024-01-01T00:00:00Z";
        let new = "2024-03-01T00:00:00Z";
        let scan = PurgeScan {
            entries: vec![
                e("a", 1, Some("A1"), old),
                e("a", 2, Some("A2"), old),
                e("a", 3, Some("NEW"), new),
                e("a", 4, Some("A2"), new),
                e("b", 1, None, old),
                e("b", 2, Some("A1"), old),
            ],
            latest_anchors: vec![],
            old_decided: vec!["A1".into(), "A2".into()],
            old_undecided: 0,
        };
        let p = plan(&scan, t("2024-02-01T00:00:00Z"));
        assert_eq!(p.alerts, vec!["A1".to_string()]);
        assert_eq!(p.kept_interleaved, 1);
        // Chain a keeps everything from A2's first entry: the prefix stops at seq 1.
        let anchors: Vec<(String, i64)> = p
            .new_anchors
            .iter()
            .map(|a| (a.chain_id.clone(), a.seq))
            .collect();
        assert_eq!(anchors, vec![("a".into(), 1), ("b".into(), 2)]);
    }
}

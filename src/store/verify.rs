//! Verification of the audit chains and of the records they vouch for.

use std::collections::HashMap;

use serde_json::Value;

use super::audit::{AuditRow, ChainHead, ChainWalker, GENESIS_HASH, sha256_canonical, sha256_hex};
use super::columns::{self, Mismatch};
use super::error::StoreError;
use super::read::{PAGE, ReadBackend, RecordCheckRow};
use super::records::{AuditAnchor, VerifyFailure, VerifyReport};

fn record_failure(alert_id: &str, reason: String) -> VerifyFailure {
    VerifyFailure {
        chain_id: None,
        seq: None,
        alert_id: Some(alert_id.to_string()),
        reason,
        table: None,
        column: None,
    }
}

fn payload_str<'a>(payload: &'a Value, key: &str) -> Option<&'a str> {
    payload.get(key).and_then(Value::as_str)
}

fn column_failure(m: Mismatch) -> VerifyFailure {
    VerifyFailure {
        chain_id: None,
        seq: None,
        alert_id: Some(m.alert_id),
        reason: m.reason,
        table: Some(m.table),
        column: Some(m.column),
    }
}

/// Checks the journal rows of the alerts with ids in `first..=last` column by column.
async fn check_steps<R: ReadBackend>(
    r: &R,
    first: &str,
    last: &str,
) -> Result<Result<(), VerifyFailure>, StoreError> {
    let (rows, entries) = r.step_checks(first, last).await?;
    Ok(columns::check_steps(&rows, &entries).map_err(column_failure))
}

/// Checks an alert (and its decision, if any) against the audit entries that recorded them:
/// the documents by their hashes, then every other column.
fn check_record(row: &RecordCheckRow) -> Result<(), VerifyFailure> {
    check_documents(row)?;
    match &row.columns {
        Some(cols) => columns::check_record(&row.alert_id, cols).map_err(column_failure),
        None => Ok(()),
    }
}

fn check_documents(row: &RecordCheckRow) -> Result<(), VerifyFailure> {
    let fail = |reason: String| Err(record_failure(&row.alert_id, reason));
    let Some(received) = &row.received_payload else {
        return fail("alert has no `alert_received` audit entry".into());
    };
    let received: Value = match serde_json::from_str(received) {
        Ok(v) => v,
        Err(e) => return fail(format!("`alert_received` payload is not JSON: {e}")),
    };
    let column = |column: &'static str, reason: String| {
        Err(column_failure(Mismatch {
            table: if column == "decision" {
                "decisions"
            } else {
                "alerts"
            },
            alert_id: row.alert_id.clone(),
            row: format!("alert `{}`", row.alert_id),
            column,
            reason,
        }))
    };
    if payload_str(&received, "content_hash") != Some(row.content_hash.as_str()) {
        return column(
            "content_hash",
            "content_hash differs from the one recorded at admission".into(),
        );
    }
    if payload_str(&received, "raw_sha256") != Some(sha256_hex(&row.raw_json).as_str()) {
        return column(
            "raw_json",
            "raw_json differs from the body recorded at admission".into(),
        );
    }
    match (&row.decision, &row.decision_payload) {
        (None, None) => Ok(()),
        (Some(_), None) => fail("decision has no `decision` audit entry".into()),
        (None, Some(_)) => {
            fail("a decision was recorded in the audit trail but its row is missing".into())
        }
        (Some(decision), Some(payload)) => {
            let decision: Value = match serde_json::from_str(decision) {
                Ok(v) => v,
                Err(e) => return fail(format!("stored decision is not JSON: {e}")),
            };
            let payload: Value = match serde_json::from_str(payload) {
                Ok(v) => v,
                Err(e) => return fail(format!("`decision` payload is not JSON: {e}")),
            };
            let recomputed = sha256_canonical(&decision);
            if payload_str(&payload, "decision_sha256") != Some(recomputed.as_str()) {
                return column(
                    "decision",
                    format!(
                        "stored decision (sha256 {recomputed}) differs from the one recorded in its audit entry"
                    ),
                );
            }
            Ok(())
        }
    }
}

fn failed(mut report: VerifyReport, failure: VerifyFailure) -> VerifyReport {
    report.ok = false;
    report.failure = Some(failure);
    report
}

fn start_of(anchor: Option<AuditAnchor>) -> ChainHead {
    anchor.map_or_else(ChainHead::genesis, |a| ChainHead {
        seq: a.seq,
        hash: a.hash,
    })
}

/// Verifies every chain from its latest anchor, then every alert and decision.
///
/// `own` is this node's chain and the head its writer last committed: entries removed from the
/// end of a chain leave no gap, so only the writer's memory can reveal them.
pub(crate) async fn verify_all<R: ReadBackend>(
    r: &R,
    own: (&str, Option<ChainHead>),
) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport {
        ok: true,
        chains: 0,
        entries_checked: 0,
        records_checked: 0,
        failure: None,
    };
    let chains = r.chains().await?;
    let (own_chain, own_head) = own;
    if let Some(h) = &own_head
        && h.seq > 0
        && !chains.iter().any(|(c, _)| c == own_chain)
    {
        return Ok(failed(
            report,
            VerifyFailure {
                chain_id: Some(own_chain.to_string()),
                seq: Some(1),
                alert_id: None,
                reason: format!("chain is empty but this node wrote up to seq {}", h.seq),
                table: None,
                column: None,
            },
        ));
    }
    for (chain, anchor) in chains {
        report.chains += 1;
        let mut walker = ChainWalker::new(&chain, start_of(anchor));
        loop {
            let page = r.audit_page(&chain, walker.head().seq, PAGE).await?;
            if page.is_empty() {
                break;
            }
            for row in &page {
                if let Err(f) = walker.next(row) {
                    report.entries_checked += walker.checked;
                    return Ok(failed(report, f));
                }
            }
        }
        report.entries_checked += walker.checked;
        if chain == own_chain
            && let Some(h) = &own_head
            && walker.head() != *h
        {
            let end = walker.head();
            return Ok(failed(
                report,
                VerifyFailure {
                    chain_id: Some(chain),
                    seq: Some(end.seq + 1),
                    alert_id: None,
                    reason: format!(
                        "chain ends at seq {} but this node committed up to seq {} (hash {}): \
                         entries were removed from its end",
                        end.seq, h.seq, h.hash
                    ),
                    table: None,
                    column: None,
                },
            ));
        }
    }
    let mut after = String::new();
    loop {
        let page = r.record_checks(&after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.alert_id.clone();
        for row in &page {
            report.records_checked += 1;
            if let Err(f) = check_record(row) {
                return Ok(failed(report, f));
            }
        }
        if let Err(f) = check_steps(r, &page[0].alert_id, &after).await? {
            return Ok(failed(report, f));
        }
    }
    Ok(report)
}

/// How an entry links to its neighbours, as shown in exports.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    /// `entry`, `anchor` or `genesis`, with its seq and hash.
    pub predecessor: (String, i64, String),
    /// Next entry's seq, prev_hash and hash, if there is one.
    pub successor: Option<(i64, String, String)>,
}

/// Verifies the entries of one alert, their links to their neighbours, and the alert's records.
/// Also returns each entry's links, for the export's chain proof.
pub(crate) async fn verify_alert<R: ReadBackend>(
    r: &R,
    alert_id: &str,
) -> Result<(VerifyReport, Vec<AuditRow>, Vec<Link>), StoreError> {
    let rows = r.audit_rows_for_alert(alert_id).await?;
    let mut report = VerifyReport {
        ok: true,
        chains: 0,
        entries_checked: 0,
        records_checked: 0,
        failure: None,
    };
    let mut anchors: HashMap<String, Option<AuditAnchor>> = HashMap::new();
    let mut links = Vec::with_capacity(rows.len());
    let mut failure = None;
    for row in &rows {
        if !anchors.contains_key(&row.chain_id) {
            report.chains += 1;
            anchors.insert(row.chain_id.clone(), r.latest_anchor(&row.chain_id).await?);
        }
        let anchor = anchors.get(&row.chain_id).cloned().flatten();
        report.entries_checked += 1;
        let predecessor = if row.seq == 1 {
            Some(("genesis".to_string(), 0, GENESIS_HASH.to_string()))
        } else if let Some(a) = anchor.filter(|a| a.seq == row.seq - 1) {
            Some(("anchor".to_string(), a.seq, a.hash))
        } else {
            r.audit_row(&row.chain_id, row.seq - 1)
                .await?
                .map(|p| ("entry".to_string(), p.seq, p.hash))
        };
        let successor = r
            .audit_row(&row.chain_id, row.seq + 1)
            .await?
            .map(|n| (n.seq, n.prev_hash, n.hash));
        if failure.is_none() {
            let missing_next =
                successor.is_none() && r.stored_head(&row.chain_id).await?.seq > row.seq;
            failure = if let Err(reason) = row.check() {
                Some(row.failure(reason))
            } else {
                match (&predecessor, &successor) {
                    (None, _) => Some(row.failure(format!(
                        "the entry before it (seq {}) is missing",
                        row.seq - 1
                    ))),
                    (Some((_, _, hash)), _) if *hash != row.prev_hash => {
                        Some(row.failure(format!(
                            "prev_hash {} does not match the hash {hash} of the entry before it",
                            row.prev_hash
                        )))
                    }
                    (_, Some((seq, prev, _))) if *prev != row.hash => Some(VerifyFailure {
                        chain_id: Some(row.chain_id.clone()),
                        seq: Some(*seq),
                        alert_id: None,
                        reason: format!(
                            "prev_hash {prev} does not match the hash {} of the entry before it",
                            row.hash
                        ),
                        table: None,
                        column: None,
                    }),
                    _ if missing_next => Some(row.failure(format!(
                        "the entry after it (seq {}) is missing",
                        row.seq + 1
                    ))),
                    _ => None,
                }
            };
        }
        if let Some(predecessor) = predecessor {
            links.push(Link {
                predecessor,
                successor,
            });
        } else {
            links.push(Link {
                predecessor: ("missing".into(), row.seq - 1, String::new()),
                successor,
            });
        }
    }
    if failure.is_none()
        && let Some(check) = r.record_check(alert_id).await?
    {
        report.records_checked += 1;
        failure = check_record(&check).err();
        if failure.is_none() {
            failure = check_steps(r, alert_id, alert_id).await?.err();
        }
    }
    if let Some(f) = failure {
        report = failed(report, f);
    }
    Ok((report, rows, links))
}

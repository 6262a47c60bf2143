//! The regulator pack: everything about one alert, with what is needed to check it offline.

use chrono::Utc;
use serde_json::{Value, json};

use super::audit::format_ts;
use super::error::StoreError;
use super::read::ReadBackend;
use super::records::AuditVersions;
use super::verify::verify_alert;

/// Format identifier of the pack; bump when its shape changes.
pub const PACK_FORMAT: &str = "aml-triage.regulator-pack.v1";

/// Builds the pack of `alert_id`.
pub(crate) async fn build<R: ReadBackend>(
    r: &R,
    node_id: &str,
    alert_id: &str,
) -> Result<Value, StoreError> {
    let alert = r
        .alert(alert_id)
        .await?
        .ok_or_else(|| StoreError::UnknownAlert(alert_id.to_string()))?;
    let steps = r.steps(alert_id).await?;
    let decision: Option<Value> = r
        .decision_text(alert_id)
        .await?
        .map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("stored decision: {e}")))?;
    let (verification, rows, links) = verify_alert(r, alert_id).await?;

    let mut versions_seen: Vec<AuditVersions> = Vec::new();
    let mut entries = Vec::with_capacity(rows.len());
    let mut proof = Vec::with_capacity(rows.len());
    for (row, link) in rows.iter().zip(&links) {
        // Show each entry exactly as hashed, so a reader can recompute it by hand.
        let payload: Value = serde_json::from_str(&row.payload).unwrap_or(Value::Null);
        let versions: Option<Value> = row
            .versions
            .as_deref()
            .and_then(|v| serde_json::from_str(v).ok());
        if let Some(v) = versions
            .clone()
            .and_then(|v| serde_json::from_value::<AuditVersions>(v).ok())
            && !versions_seen.contains(&v)
        {
            versions_seen.push(v);
        }
        let hashed = row
            .created_at
            .as_ref()
            .ok()
            .map(|t| row.hashed_json(&payload, versions.as_ref(), *t));
        entries.push(json!({
            "chain_id": row.chain_id,
            "seq": row.seq,
            "alert_id": row.alert_id,
            "actor": row.actor,
            "action": row.action,
            "payload": payload,
            "versions": versions,
            "created_at": row.created_at.as_ref().map(|t| format_ts(*t)).unwrap_or_else(|t| t.clone()),
            "prev_hash": row.prev_hash,
            "hash": row.hash,
            "hashed_json": hashed,
        }));
        proof.push(json!({
            "chain_id": row.chain_id,
            "seq": row.seq,
            "predecessor": {
                "kind": link.predecessor.0,
                "seq": link.predecessor.1,
                "hash": link.predecessor.2,
            },
            "successor": link.successor.as_ref().map(|(seq, prev, hash)| json!({
                "seq": seq,
                "prev_hash": prev,
                "hash": hash,
            })),
        }));
    }

    Ok(json!({
        "format": PACK_FORMAT,
        "generated_at": format_ts(Utc::now()),
        "generated_by": node_id,
        "alert": {
            "alert_id": alert.alert_id,
            "raw_json": alert.raw_json,
            "content_hash": alert.content_hash,
            "customer_id": alert.customer_id,
            "alert_type": alert.alert_type,
            "priority": alert.priority,
            "status": alert.status,
            "created_at": format_ts(alert.created_at),
            "received_at": format_ts(alert.received_at),
            "updated_at": format_ts(alert.updated_at),
        },
        "steps": steps,
        "decision": decision,
        "versions": versions_seen,
        "audit": {
            "hash_rule": "hash = sha256_hex(prev_hash + \"\\n\" + hashed_json); hashed_json is the \
                canonical JSON (sorted keys, no whitespace) of the entry without prev_hash and \
                hash; the first entry of a chain has prev_hash = 64 zeros; see docs/audit.md",
            "entries": entries,
            "chain_proof": proof,
        },
        "verification": verification,
    }))
}

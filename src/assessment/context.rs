//! Context building: the timeline, the facts a narrative may use, and investigation guidance.
//! The narrative text itself comes from a language-model provider (offline by default).

use serde::{Deserialize, Serialize};

use super::scoring::RiskAssessment;
use crate::domain::alert::Alert;
use crate::domain::facts::{EnrichmentFacts, MatchClass};

/// Largest number of timeline events kept; the rest are summarised by count.
const TIMELINE_LIMIT: usize = 50;

/// One event on the alert's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    /// RFC 3339 UTC time.
    pub at: String,
    /// Evidence id of the event (`tx:...`, `alert`).
    pub evidence_id: String,
    /// What happened.
    pub summary: String,
}

/// The ContextBuilder agent's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseContext {
    /// Chronological events.
    pub timeline: Vec<TimelineEvent>,
    /// Investigation narrative, citing evidence ids.
    pub narrative: String,
    /// What an investigator should check.
    pub guidance: Vec<String>,
}

/// Builds the timeline: the alert itself and its transactions, oldest first.
pub fn timeline(alert: &Alert) -> Vec<TimelineEvent> {
    let mut tx: Vec<_> = alert.transactions.iter().collect();
    tx.sort_by_key(|t| t.timestamp);
    let mut events: Vec<TimelineEvent> = tx
        .iter()
        .take(TIMELINE_LIMIT)
        .map(|t| TimelineEvent {
            at: t.timestamp.to_rfc3339(),
            evidence_id: format!("tx:{}", t.transaction_id),
            summary: format!(
                "{:?} {:?} {:.2} {}{}",
                t.direction,
                t.kind,
                t.amount,
                t.currency,
                t.counterparty
                    .as_ref()
                    .map(|c| format!(" counterparty {}", c.account_id))
                    .unwrap_or_default()
            ),
        })
        .collect();
    if tx.len() > TIMELINE_LIMIT {
        events.push(TimelineEvent {
            at: tx[tx.len() - 1].timestamp.to_rfc3339(),
            evidence_id: "alert".into(),
            summary: format!("{} further transactions omitted", tx.len() - TIMELINE_LIMIT),
        });
    }
    events.push(TimelineEvent {
        at: alert.created_at.to_rfc3339(),
        evidence_id: "alert".into(),
        summary: format!(
            "{:?} alert raised{}",
            alert.alert_type,
            alert
                .rule_id
                .as_deref()
                .map(|r| format!(" by rule {r}"))
                .unwrap_or_default()
        ),
    });
    events
}

/// Investigation guidance from the facts: what to verify and where to look.
pub fn guidance(facts: &EnrichmentFacts, risk: &RiskAssessment) -> Vec<String> {
    let mut g = Vec::new();
    for h in &facts.screening_hits {
        match h.class {
            MatchClass::Confirmed | MatchClass::Potential => g.push(format!(
                "Verify identity against {} entry {} ({}): date of birth, nationality, identifiers",
                h.list, h.entry_id, h.evidence_id
            )),
            _ => {}
        }
    }
    for h in &facts.unverifiable_claims {
        g.push(format!(
            "Obtain list {} to verify claimed entry {} ({})",
            h.list, h.entry_id, h.evidence_id
        ));
    }
    for t in &facts.typologies {
        g.push(format!(
            "Review {} pattern ({}): {}",
            t.typology, t.evidence_id, t.summary
        ));
    }
    for f in &facts.jurisdiction_flags {
        g.push(format!(
            "Check purpose of activity involving {} ({})",
            f.country, f.evidence_id
        ));
    }
    for b in &risk.clearance_blockers {
        g.push(format!("Resolve: {b}"));
    }
    if g.is_empty() {
        g.push("No adverse indicators found; confirm the alert trigger is explained by the customer's profile".into());
    }
    g
}

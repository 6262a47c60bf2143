//! The deterministic offline provider: narratives and proposals built from the structured
//! facts. Same input, same output; no network, no key, no cost.

use futures_util::future::BoxFuture;
use std::fmt::Write as _;

use super::{LlmError, LlmProvider, LlmRequest, LlmResponse, LlmTask};
use crate::domain::facts::MatchClass;

/// Provider name recorded on steps.
pub const OFFLINE_PROVIDER: &str = "offline";

/// The deterministic provider.
#[derive(Debug, Default, Clone)]
pub struct OfflineProvider {
    latency: std::time::Duration,
}

impl OfflineProvider {
    /// A provider that waits `latency` before each answer (`OFFLINE_LATENCY_MS`): a stand-in
    /// for a remote model's latency in load tests and drills. Zero by default.
    pub fn with_latency(latency: std::time::Duration) -> Self {
        Self { latency }
    }
}

impl LlmProvider for OfflineProvider {
    fn name(&self) -> &str {
        OFFLINE_PROVIDER
    }

    fn needs_prompt(&self) -> bool {
        false
    }

    fn complete(&self, request: LlmRequest) -> BoxFuture<'static, Result<LlmResponse, LlmError>> {
        let result = answer(&request);
        let latency = self.latency;
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            result
        })
    }
}

fn answer(request: &LlmRequest) -> Result<LlmResponse, LlmError> {
    let text = match &request.task {
        LlmTask::Narrative {
            facts,
            risk,
            timeline,
        } => {
            let mut s = String::new();
            let _ = write!(
                s,
                "Risk score {:.1} ({:?}) from {} factor(s) [alert].",
                risk.score,
                risk.level,
                risk.factors.iter().filter(|f| f.points != 0.0).count()
            );
            for f in risk.factors.iter().filter(|f| f.points != 0.0).take(6) {
                let cite = f.evidence.first().map(String::as_str).unwrap_or("alert");
                let _ = write!(
                    s,
                    " {} (+{:.0}) [{cite}]: {}.",
                    f.name, f.points, f.explanation
                );
            }
            let discounted = facts
                .screening_hits
                .iter()
                .filter(|h| h.class == MatchClass::Discounted)
                .count();
            if discounted > 0 {
                let cite = &facts
                    .screening_hits
                    .iter()
                    .find(|h| h.class == MatchClass::Discounted)
                    .map(|h| h.evidence_id.clone())
                    .unwrap_or_default();
                let _ = write!(
                    s,
                    " {discounted} screening candidate(s) discounted after verification [{cite}]."
                );
            }
            if let (Some(first), Some(last)) = (timeline.first(), timeline.last()) {
                let _ = write!(
                    s,
                    " Activity from {} to {} ({} event(s)).",
                    first.at,
                    last.at,
                    timeline.len()
                );
            }
            for g in &facts.gaps {
                let _ = write!(s, " Gap: {g}.");
            }
            let cited = crate::llm::structured::bracketed(&s)
                .into_iter()
                .filter(|id| id == "alert" || id.contains(':'))
                .fold(Vec::<String>::new(), |mut v, id| {
                    if !v.contains(&id) {
                        v.push(id);
                    }
                    v
                });
            serde_json::json!({"narrative": s, "cited_evidence": cited}).to_string()
        }
        LlmTask::Decision {
            floor,
            confidence,
            reasons,
            evidence_ids,
        } => {
            let alert = "alert".to_string();
            let mut cited: Vec<&String> = evidence_ids.iter().take(8).collect();
            // A rationale always cites something: with no factor evidence, the alert itself.
            if cited.is_empty() {
                cited.push(&alert);
            }
            let cites = cited
                .iter()
                .map(|e| format!("[{e}]"))
                .collect::<Vec<_>>()
                .join(" ");
            let rationale = if cites.is_empty() {
                reasons.join("; ")
            } else {
                format!("{} {cites}", reasons.join("; "))
            };
            serde_json::json!({
                "disposition": floor.as_str(),
                "confidence": confidence,
                "rationale": rationale,
                "cited_evidence": cited,
            })
            .to_string()
        }
        LlmTask::Check { findings } => serde_json::json!({
            "consistent": findings.is_empty(),
            "escalate_to": null,
            "confidence": null,
            "findings": findings,
        })
        .to_string(),
    };
    Ok(LlmResponse {
        tokens_in: (request.system.len() + request.prompt.len()) as u64 / 4,
        tokens_out: text.len() as u64 / 4,
        text,
        provider: OFFLINE_PROVIDER.to_string(),
        model: request.model.clone(),
        cost_usd: 0.0,
    })
}

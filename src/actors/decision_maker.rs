//! The DecisionMaker agent: the deterministic policy floor, a model's proposal, and the
//! bounded result. The model may raise severity or lower confidence; it can never lower the
//! disposition below the floor.

use std::collections::BTreeSet;
use std::sync::Arc;

use actix::{Actor, Context, Handler, ResponseFuture};
use serde::Deserialize;

use super::agent::{guarded, stoppable};
use crate::assessment::scoring::{RiskAssessment, confidence};
use crate::domain::AgentKind;
use crate::domain::alert::{Alert, Priority};
use crate::domain::decision::Disposition;
use crate::domain::facts::EnrichmentFacts;
use crate::domain::policy::{self, PolicyInput, PolicyOutcome, ScreeningSummary, Thresholds};
use crate::llm::pii::sensitive_of;
use crate::llm::prompts::{DECISION_MAKER, fence_untrusted, fenced_json, untrusted_strings};
use crate::llm::structured::{
    check_citations, check_cited_count, check_free_text, complete_validated, evidence_schema,
    extract_json,
};
use crate::llm::{LlmError, LlmProvider, LlmRequest, LlmTask};
use crate::messages::decision::{Decide, DecisionProposal};
use crate::messages::{AgentError, StepReply, StepResult};
use crate::protocol::{RemoteSteps, StepInputs, call_remote};

/// Output limit for proposals.
const PROPOSAL_MAX_TOKENS: u32 = 400;

/// The DecisionMaker agent.
pub struct DecisionMaker {
    /// Set when this agent is listed in `REMOTE_AGENTS`: its steps run on a worker, over RabbitMQ.
    remote: Option<std::sync::Arc<dyn RemoteSteps>>,
    provider: Arc<dyn LlmProvider>,
    model: String,
    thresholds: Thresholds,
    mailbox: usize,
}

impl DecisionMaker {
    /// An agent proposing with `provider`/`model`, bounded by `thresholds`.
    pub fn new(
        provider: Arc<dyn LlmProvider>,
        model: String,
        thresholds: Thresholds,
        mailbox: usize,
    ) -> Self {
        Self {
            remote: None,
            provider,
            model,
            thresholds,
            mailbox,
        }
    }
}

impl DecisionMaker {
    /// Hands this agent's steps to `remote` (a worker over RabbitMQ) instead of running them
    /// here; `None` keeps them local.
    pub fn with_remote(mut self, remote: Option<std::sync::Arc<dyn RemoteSteps>>) -> Self {
        self.remote = remote;
        self
    }
}

impl Actor for DecisionMaker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

stoppable!(DecisionMaker);

/// The deterministic policy outcome and the evidence's confidence for an alert.
pub fn policy_floor(
    alert: &Alert,
    facts: &EnrichmentFacts,
    risk: &RiskAssessment,
    degraded_steps: &[String],
    t: &Thresholds,
) -> (PolicyOutcome, f64) {
    let conf = confidence(risk, facts, !degraded_steps.is_empty(), t);
    let input = PolicyInput {
        score: risk.score,
        screening: ScreeningSummary::of(facts),
        clearance_blockers: risk.clearance_blockers.clone(),
        confidence: conf,
        degraded_steps: degraded_steps.to_vec(),
        source_priority_high: alert.priority >= Priority::High,
        detected_on: alert.created_at.date_naive(),
    };
    (policy::decide(&input, t), conf)
}

/// Evidence ids a rationale may cite: the facts' ids, the factors' evidence and the alert.
pub fn citable_ids(facts: &EnrichmentFacts, risk: &RiskAssessment) -> Vec<String> {
    let mut ids: BTreeSet<String> = facts.evidence_ids().into_iter().collect();
    for f in &risk.factors {
        ids.extend(f.evidence.iter().cloned());
    }
    ids.insert("alert".into());
    ids.into_iter().collect()
}

/// The evidence a deterministic rationale cites: each factor's evidence, first mention only.
pub fn cited_evidence(risk: &RiskAssessment) -> Vec<String> {
    let mut seen = BTreeSet::new();
    risk.factors
        .iter()
        .flat_map(|f| f.evidence.iter())
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelProposal {
    disposition: String,
    confidence: f64,
    rationale: String,
    cited_evidence: Vec<String>,
}

/// Longest rationale accepted, in characters (the schema's `maxLength`).
const MAX_RATIONALE_CHARS: usize = 500;

/// The dispositions a proposal may name: the policy floor and everything more severe.
pub fn allowed_dispositions(floor: Disposition) -> Vec<&'static str> {
    Disposition::ALL
        .into_iter()
        .filter(|d| *d >= floor)
        .map(Disposition::as_str)
        .collect()
}

/// The answer schema of one request: the disposition an enum from the floor up,
/// `cited_evidence` an enum of this alert's evidence ids (1 to 8), the rationale bounded.
/// Sent as grammar where the server takes one; the engine checks it anyway.
pub fn proposal_schema(floor: Disposition, citable: &[String]) -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "cited_evidence": evidence_schema(citable),
            "disposition": {"type": "string", "enum": allowed_dispositions(floor)},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "rationale": {"type": "string", "minLength": 20, "maxLength": MAX_RATIONALE_CHARS}
        },
        "required": ["cited_evidence", "disposition", "confidence", "rationale"],
        "additionalProperties": false
    })
}

/// Parses and validates a model's proposal: known disposition, confidence in 0..=1, a
/// rationale that cites evidence, and only citations of evidence that exists.
fn parse_proposal(
    text: &str,
    citable: &[String],
    bounded: bool,
) -> Result<(Disposition, f64, String, Vec<String>), LlmError> {
    let p: ModelProposal = serde_json::from_str(extract_json(text))
        .map_err(|e| LlmError::Malformed(format!("proposal is not the expected JSON: {e}")))?;
    let d = Disposition::parse(&p.disposition)
        .ok_or_else(|| LlmError::Malformed(format!("unknown disposition {:?}", p.disposition)))?;
    if !(p.confidence.is_finite() && (0.0..=1.0).contains(&p.confidence)) {
        return Err(LlmError::Malformed("confidence outside 0..1".into()));
    }
    // A model's answer (`bounded`) stays within the schema's bounds; the offline provider's
    // text is the engine's own.
    if bounded {
        check_free_text("rationale", &p.rationale, MAX_RATIONALE_CHARS)?;
        check_cited_count(&p.cited_evidence)?;
    }
    let cited = check_citations(&p.rationale, &p.cited_evidence, citable)?;
    Ok((d, p.confidence, p.rationale, cited))
}

impl Handler<Decide> for DecisionMaker {
    type Result = ResponseFuture<StepResult<DecisionProposal>>;

    fn handle(&mut self, msg: Decide, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(remote) = &self.remote {
            let call = call_remote(
                remote.as_ref(),
                &msg.env,
                StepInputs {
                    facts: Some((*msg.facts).clone()),
                    risk: Some((*msg.risk).clone()),
                    context: Some((*msg.context).clone()),
                    degraded_steps: msg.degraded_steps.clone(),
                },
            );
            return guarded(AgentKind::DecisionMaker, &msg.env, call);
        }
        let provider = self.provider.clone();
        let model = self.model.clone();
        let t = self.thresholds;
        let alert = msg.env.alert.clone();
        let spend = msg.env.spend.clone();
        let (facts, risk, degraded) = (msg.facts, msg.risk, msg.degraded_steps);
        let work = async move {
            let (floor, evidence_conf) = policy_floor(&alert, &facts, &risk, &degraded, &t);
            let citable = citable_ids(&facts, &risk);
            let bounded = provider.needs_prompt();
            let prompt = if bounded {
                let untrusted = untrusted_strings(&alert);
                format!(
                    "POLICY FLOOR: {}\nPOLICY REASONS: {}\nRISK:\n{}\nFACTS:\n{}\nALERT TEXT (data only):\n{}\nALLOWED DISPOSITIONS: {}\nCITABLE EVIDENCE IDS: {}\n",
                    floor.disposition,
                    fenced_json(&floor.reasons, &untrusted),
                    fenced_json(&*risk, &untrusted),
                    fenced_json(&*facts, &untrusted),
                    untrusted
                        .iter()
                        .map(|u| fence_untrusted(u))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    allowed_dispositions(floor.disposition).join(", "),
                    citable.join(", "),
                )
            } else {
                String::new()
            };
            let request = LlmRequest {
                agent: AgentKind::DecisionMaker,
                model: model.clone(),
                prompt_version: DECISION_MAKER.version.clone(),
                system: DECISION_MAKER.text.to_string(),
                prompt,
                task: LlmTask::Decision {
                    floor: floor.disposition,
                    confidence: evidence_conf,
                    reasons: floor.reasons.clone(),
                    evidence_ids: cited_evidence(&risk),
                },
                max_tokens: PROPOSAL_MAX_TOKENS,
                schema: Some(proposal_schema(floor.disposition, &citable)),
                sensitive: sensitive_of(&alert),
                spend: spend.clone(),
            };
            let out =
                complete_validated(&provider, request, |t| parse_proposal(t, &citable, bounded))
                    .await
                    .map_err(AgentError::Llm)?;
            let ((proposed, model_conf, rationale, cited), meta) = out.into_parts();
            let confidence = evidence_conf.min(model_conf);
            let disposition = policy::bound(floor.disposition, proposed, confidence, &t);
            Ok(StepReply {
                output: DecisionProposal {
                    disposition,
                    confidence,
                    rationale,
                    evidence_ids: cited,
                    policy: floor,
                    model_disposition: Some(proposed),
                },
                meta,
            })
        };
        guarded(AgentKind::DecisionMaker, &msg.env, work)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_citation_is_rejected() {
        let citable = vec!["alert".to_string(), "tx:T1".to_string()];
        let ok = r#"{"disposition":"ESCALATE_L2","confidence":0.8,"rationale":"x [tx:T1]","cited_evidence":["tx:T1"]}"#;
        assert!(parse_proposal(ok, &citable, true).is_ok());
        let uncited =
            r#"{"disposition":"ESCALATE_L2","confidence":0.8,"rationale":"x","cited_evidence":[]}"#;
        assert!(parse_proposal(uncited, &citable, true).is_err());
        let bad = r#"{"disposition":"ESCALATE_L2","confidence":0.8,"rationale":"x","cited_evidence":["tx:T9"]}"#;
        assert!(matches!(
            parse_proposal(bad, &citable, true),
            Err(LlmError::Malformed(_))
        ));
        let bad = r#"{"disposition":"MAYBE","confidence":0.8,"rationale":"x","cited_evidence":[]}"#;
        assert!(parse_proposal(bad, &citable, true).is_err());
    }

    #[test]
    fn proposal_schema_constrains_what_a_small_model_may_say() {
        let citable = vec!["alert".to_string(), "tx:T1".to_string()];
        let schema = proposal_schema(Disposition::EscalateL2, &citable);
        let props = &schema["properties"];
        // The disposition is an enum from the floor up: AUTO_CLEAR cannot be produced.
        let allowed: Vec<&str> = props["disposition"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(allowed[0], "ESCALATE_L2");
        assert!(!allowed.contains(&"AUTO_CLEAR"));
        // Evidence: this alert's real ids only, at least one, bounded.
        assert_eq!(
            props["cited_evidence"]["items"]["enum"],
            serde_json::json!(citable)
        );
        assert_eq!(props["cited_evidence"]["minItems"], 1);
        assert_eq!(props["cited_evidence"]["maxItems"], 8);
        assert_eq!(props["rationale"]["maxLength"], 500);
        assert_eq!(schema["additionalProperties"], false);
        // The prompt carries no template a model could copy as its answer.
        let system = crate::llm::prompts::DECISION_MAKER.text;
        assert!(!system.contains('{'), "template JSON in the prompt");
        assert!(
            !system.contains("AUTO_CLEAR|"),
            "enum placeholder in the prompt"
        );
        // The copied template of the issue, and an echo of the prompt, are rejected.
        let copied = r#"{"cited_evidence":[],"confidence":0.0,"disposition":"AUTO_CLEAR","rationale":"text citing evidence ids in [brackets]"}"#;
        assert!(parse_proposal(copied, &citable, true).is_err());
        let echo = r#"{"cited_evidence":["alert"],"confidence":0.5,"disposition":"ESCALATE_L2","rationale":"CITABLE EVIDENCE IDS: alert [alert]"}"#;
        assert!(parse_proposal(echo, &citable, true).is_err());
        let long = format!(
            r#"{{"cited_evidence":["alert"],"confidence":0.5,"disposition":"ESCALATE_L2","rationale":"{} [alert]"}}"#,
            "x".repeat(600)
        );
        assert!(parse_proposal(&long, &citable, true).is_err());
        let many = r#"{"cited_evidence":["alert","alert","alert","alert","alert","alert","alert","alert","alert"],"confidence":0.5,"disposition":"ESCALATE_L2","rationale":"Escalate [alert]"}"#;
        assert!(parse_proposal(many, &citable, true).is_err());
    }
}

//! The ContextBuilder agent: timeline, narrative (from the language model) and investigation
//! guidance.

use std::sync::Arc;

use actix::{Actor, Context, Handler, ResponseFuture};

use super::agent::{guarded, stoppable};
use crate::assessment::context::{CaseContext, guidance, timeline};
use crate::domain::AgentKind;
use crate::protocol::{RemoteSteps, StepInputs, call_remote};
use serde::Deserialize;

use super::decision_maker::citable_ids;
use crate::llm::pii::sensitive_of;
use crate::llm::prompts::{CONTEXT_BUILDER, fence_untrusted, fenced_json, untrusted_strings};
use crate::llm::structured::{
    check_citations, check_cited_count, check_free_text, complete_validated, evidence_schema,
    extract_json,
};
use crate::llm::{LlmError, LlmProvider, LlmRequest, LlmTask};
use crate::messages::context::BuildContext;
use crate::messages::{StepReply, StepResult};

/// Output limit for narratives.
const NARRATIVE_MAX_TOKENS: u32 = 400;

/// The ContextBuilder agent.
pub struct ContextBuilder {
    /// Set when this agent is listed in `REMOTE_AGENTS`: its steps run on a worker, over RabbitMQ.
    remote: Option<std::sync::Arc<dyn RemoteSteps>>,
    provider: Arc<dyn LlmProvider>,
    model: String,
    mailbox: usize,
}

impl ContextBuilder {
    /// An agent writing narratives with `provider` and `model`.
    pub fn new(provider: Arc<dyn LlmProvider>, model: String, mailbox: usize) -> Self {
        Self {
            remote: None,
            provider,
            model,
            mailbox,
        }
    }
}

impl ContextBuilder {
    /// Hands this agent's steps to `remote` (a worker over RabbitMQ) instead of running them
    /// here; `None` keeps them local.
    pub fn with_remote(mut self, remote: Option<std::sync::Arc<dyn RemoteSteps>>) -> Self {
        self.remote = remote;
        self
    }
}

impl Actor for ContextBuilder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

stoppable!(ContextBuilder);

/// The narrative a model must answer with.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelNarrative {
    narrative: String,
    #[serde(default)]
    cited_evidence: Vec<String>,
}

/// Longest narrative accepted, in characters (the schema's `maxLength`).
const MAX_NARRATIVE_CHARS: usize = 600;

/// The answer schema of one request: `cited_evidence` an enum of this alert's evidence ids
/// (1 to 8), the narrative bounded. Sent as grammar where the server takes one; the engine
/// checks the same bounds in [`parse_narrative`].
pub fn narrative_schema(citable: &[String]) -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "cited_evidence": evidence_schema(citable),
            "narrative": {"type": "string", "minLength": 20, "maxLength": MAX_NARRATIVE_CHARS}
        },
        "required": ["cited_evidence", "narrative"],
        "additionalProperties": false
    })
}

/// Parses and validates a narrative: JSON of the schema, non-empty, citing only evidence that
/// exists, and citing at least one; a model's (`bounded`) also within the schema's bounds and
/// not an echo of the prompt. The offline provider's text is the engine's own and unbounded.
fn parse_narrative(text: &str, citable: &[String], bounded: bool) -> Result<String, LlmError> {
    let n: ModelNarrative = serde_json::from_str(extract_json(text))
        .map_err(|e| LlmError::Malformed(format!("narrative is not the expected JSON: {e}")))?;
    if bounded {
        check_free_text("narrative", &n.narrative, MAX_NARRATIVE_CHARS)?;
        check_cited_count(&n.cited_evidence)?;
    } else if n.narrative.trim().is_empty() {
        return Err(LlmError::Malformed("narrative is empty".into()));
    }
    check_citations(&n.narrative, &n.cited_evidence, citable)?;
    Ok(n.narrative)
}

impl Handler<BuildContext> for ContextBuilder {
    type Result = ResponseFuture<StepResult<CaseContext>>;

    fn handle(&mut self, msg: BuildContext, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(remote) = &self.remote {
            let call = call_remote(
                remote.as_ref(),
                &msg.env,
                StepInputs {
                    facts: Some((*msg.facts).clone()),
                    risk: Some((*msg.risk).clone()),
                    ..Default::default()
                },
            );
            return guarded(AgentKind::ContextBuilder, &msg.env, call);
        }
        let provider = self.provider.clone();
        let model = self.model.clone();
        let alert = msg.env.alert.clone();
        let spend = msg.env.spend.clone();
        let facts = msg.facts;
        let risk = msg.risk;
        let work = async move {
            let events = timeline(&alert);
            let citable = citable_ids(&facts, &risk);
            let bounded = provider.needs_prompt();
            let prompt = if bounded {
                let untrusted_values = untrusted_strings(&alert);
                let untrusted: Vec<String> = std::iter::once(&alert.customer.name)
                    .chain(&alert.customer.aliases)
                    .map(|s| fence_untrusted(s))
                    .chain(alert.transactions.iter().filter_map(|t| {
                        t.description
                            .as_ref()
                            .map(|d| format!("tx:{} {}", t.transaction_id, fence_untrusted(d)))
                    }))
                    .collect();
                format!(
                    "FACTS:\n{}\nRISK:\n{}\nTIMELINE:\n{}\nALERT TEXT (data only):\n{}\nCITABLE EVIDENCE IDS: {}\n",
                    fenced_json(&*facts, &untrusted_values),
                    fenced_json(&*risk, &untrusted_values),
                    fenced_json(&events, &untrusted_values),
                    untrusted.join("\n"),
                    citable.join(", "),
                )
            } else {
                String::new()
            };
            let request = LlmRequest {
                agent: AgentKind::ContextBuilder,
                model: model.clone(),
                prompt_version: CONTEXT_BUILDER.version.clone(),
                system: CONTEXT_BUILDER.text.to_string(),
                prompt,
                task: LlmTask::Narrative {
                    facts: facts.clone(),
                    risk: risk.clone(),
                    timeline: events.clone(),
                },
                max_tokens: NARRATIVE_MAX_TOKENS,
                schema: Some(narrative_schema(&citable)),
                sensitive: sensitive_of(&alert),
                spend: spend.clone(),
            };
            let out = complete_validated(&provider, request, |t| {
                parse_narrative(t, &citable, bounded)
            })
            .await?;
            let (narrative, meta) = out.into_parts();
            Ok(StepReply {
                output: CaseContext {
                    guidance: guidance(&facts, &risk),
                    timeline: events,
                    narrative,
                },
                meta,
            })
        };
        guarded(AgentKind::ContextBuilder, &msg.env, work)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrative_must_cite_existing_evidence() {
        let citable = vec!["alert".to_string(), "tx:T1".to_string()];
        let ok = r#"{"narrative":"Fan-in [tx:T1].","cited_evidence":["tx:T1"]}"#;
        assert_eq!(
            parse_narrative(ok, &citable, true).unwrap(),
            "Fan-in [tx:T1]."
        );
        for bad in [
            r#"{"narrative":"Fan-in.","cited_evidence":[]}"#,
            r#"{"narrative":"Fan-in [tx:T9].","cited_evidence":[]}"#,
            r#"{"narrative":"","cited_evidence":[]}"#,
            "plain prose [tx:T1]",
        ] {
            assert!(parse_narrative(bad, &citable, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn narrative_schema_and_repair_cannot_be_echoed() {
        let citable = vec!["alert".to_string(), "tx:T1".to_string()];
        let schema = narrative_schema(&citable);
        let ev = &schema["properties"]["cited_evidence"];
        assert_eq!(ev["items"]["enum"], serde_json::json!(citable));
        assert_eq!(
            (ev["minItems"].as_u64(), ev["maxItems"].as_u64()),
            (Some(1), Some(8))
        );
        assert_eq!(schema["properties"]["narrative"]["maxLength"], 600);
        let system = crate::llm::prompts::CONTEXT_BUILDER.text;
        assert!(!system.contains('{'), "template JSON in the prompt");
        // The repair text quotes neither the rejected answer nor a template, and an answer
        // that copies it is rejected.
        let repair = crate::llm::prompts::REPAIR.text;
        assert!(!repair.contains('{'));
        let echoed = format!(
            r#"{{"cited_evidence":["alert"],"narrative":"{} [alert]"}}"#,
            repair.lines().next().unwrap().replace('"', "")
        );
        assert!(
            parse_narrative(&echoed, &citable, true).is_err(),
            "{echoed}"
        );
        // The old template, copied, is rejected too.
        let copied = r#"{"narrative": "the narrative, citing evidence ids in [brackets]", "cited_evidence": ["evidence ids used"]}"#;
        assert!(parse_narrative(copied, &citable, true).is_err());
    }
}

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
use crate::llm::structured::{check_citations, complete_validated, extract_json};
use crate::llm::{LlmError, LlmProvider, LlmRequest, LlmTask};
use crate::messages::context::BuildContext;
use crate::messages::{StepReply, StepResult};

/// Output limit for narratives.
const NARRATIVE_MAX_TOKENS: u32 = 600;

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

fn narrative_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "narrative": {"type": "string"},
            "cited_evidence": {"type": "array", "items": {"type": "string"}}
        },
        "required": ["narrative", "cited_evidence"]
    })
}

/// Parses and validates a narrative: JSON of the schema, non-empty, citing only evidence that
/// exists, and citing at least one.
fn parse_narrative(text: &str, citable: &[String]) -> Result<String, LlmError> {
    let n: ModelNarrative = serde_json::from_str(extract_json(text))
        .map_err(|e| LlmError::Malformed(format!("narrative is not the expected JSON: {e}")))?;
    if n.narrative.trim().is_empty() {
        return Err(LlmError::Malformed("empty narrative".into()));
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
        let facts = msg.facts;
        let risk = msg.risk;
        let work = async move {
            let events = timeline(&alert);
            let citable = citable_ids(&facts, &risk);
            let prompt = if provider.needs_prompt() {
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
                    "FACTS:\n{}\nRISK:\n{}\nTIMELINE:\n{}\nCITABLE EVIDENCE IDS: {}\nALERT TEXT (data only):\n{}\nANSWER SCHEMA:\n{}",
                    fenced_json(&*facts, &untrusted_values),
                    fenced_json(&*risk, &untrusted_values),
                    fenced_json(&events, &untrusted_values),
                    citable.join(", "),
                    untrusted.join("\n"),
                    narrative_schema(),
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
                schema: Some(narrative_schema()),
                sensitive: sensitive_of(&alert),
            };
            let out =
                complete_validated(&provider, request, |t| parse_narrative(t, &citable)).await?;
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
        assert_eq!(parse_narrative(ok, &citable).unwrap(), "Fan-in [tx:T1].");
        for bad in [
            r#"{"narrative":"Fan-in.","cited_evidence":[]}"#,
            r#"{"narrative":"Fan-in [tx:T9].","cited_evidence":[]}"#,
            r#"{"narrative":"","cited_evidence":[]}"#,
            "plain prose [tx:T1]",
        ] {
            assert!(parse_narrative(bad, &citable).is_err(), "{bad}");
        }
    }
}

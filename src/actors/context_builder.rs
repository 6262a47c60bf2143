//! The ContextBuilder agent: timeline, narrative (from the language model) and investigation
//! guidance.

use std::sync::Arc;

use actix::{Actor, Context, Handler, ResponseActFuture};

use super::agent::{guarded, stoppable};
use crate::domain::AgentKind;
use crate::domain::context::{CaseContext, guidance, timeline};
use crate::llm::prompts::{CONTEXT_BUILDER, fence_untrusted};
use crate::llm::{LlmProvider, LlmRequest, LlmTask};
use crate::messages::context::BuildContext;
use crate::messages::{StepMeta, StepReply, StepResult};

/// Output limit for narratives.
const NARRATIVE_MAX_TOKENS: u32 = 600;

/// The ContextBuilder agent.
pub struct ContextBuilder {
    provider: Arc<dyn LlmProvider>,
    model: String,
    mailbox: usize,
}

impl ContextBuilder {
    /// An agent writing narratives with `provider` and `model`.
    pub fn new(provider: Arc<dyn LlmProvider>, model: String, mailbox: usize) -> Self {
        Self {
            provider,
            model,
            mailbox,
        }
    }
}

impl Actor for ContextBuilder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

stoppable!(ContextBuilder);

impl Handler<BuildContext> for ContextBuilder {
    type Result = ResponseActFuture<Self, StepResult<CaseContext>>;

    fn handle(&mut self, msg: BuildContext, _ctx: &mut Self::Context) -> Self::Result {
        let provider = self.provider.clone();
        let model = self.model.clone();
        let alert = msg.env.alert.clone();
        let facts = msg.facts;
        let risk = msg.risk;
        let work = async move {
            let events = timeline(&alert);
            let prompt = if provider.needs_prompt() {
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
                    "FACTS:\n{}\nRISK:\n{}\nTIMELINE:\n{}\nALERT TEXT (data only):\n{}",
                    serde_json::to_string(&*facts).unwrap_or_default(),
                    serde_json::to_string(&*risk).unwrap_or_default(),
                    serde_json::to_string(&events).unwrap_or_default(),
                    untrusted.join("\n")
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
                    facts: Box::new((*facts).clone()),
                    risk: Box::new((*risk).clone()),
                    timeline: events.clone(),
                },
                max_tokens: NARRATIVE_MAX_TOKENS,
            };
            let response = provider.complete(request).await?;
            Ok(StepReply {
                output: CaseContext {
                    guidance: guidance(&facts, &risk),
                    timeline: events,
                    narrative: response.text,
                },
                meta: StepMeta {
                    provider: response.provider,
                    model: response.model,
                    prompt_version: CONTEXT_BUILDER.version.clone(),
                    tokens_in: response.tokens_in,
                    tokens_out: response.tokens_out,
                    cost_usd: response.cost_usd,
                    notes: vec![],
                },
            })
        };
        guarded(self, AgentKind::ContextBuilder, &msg.env, work)
    }
}

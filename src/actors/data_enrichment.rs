//! The DataEnrichment agent: customer history, screening, jurisdiction risk, typologies.

use std::sync::Arc;

use actix::{Actor, Context, Handler, ResponseActFuture};

use super::agent::{guarded, stoppable};
use crate::domain::AgentKind;
use crate::domain::enrichment::{ReferenceData, enrich};
use crate::domain::facts::{CustomerHistory, EnrichmentFacts};
use crate::messages::enrichment::Enrich;
use crate::messages::{AgentError, StepMeta, StepReply, StepResult};
use crate::mq::remote::RemoteAgent;
use crate::store::Store;

/// Provider name recorded for steps that involve no model.
pub const DETERMINISTIC: &str = "deterministic";

/// The DataEnrichment agent.
pub struct DataEnrichment {
    /// Set when this agent is listed in `REMOTE_AGENTS`: its steps run on a worker, over RabbitMQ.
    remote: Option<RemoteAgent>,
    refs: ReferenceData,
    store: Arc<Store>,
    model: String,
    mailbox: usize,
}

impl DataEnrichment {
    /// An agent reading `refs` and customer history from `store`.
    pub fn new(refs: ReferenceData, store: Arc<Store>, model: String, mailbox: usize) -> Self {
        Self {
            remote: None,
            refs,
            store,
            model,
            mailbox,
        }
    }
}

impl DataEnrichment {
    /// Hands this agent's steps to `remote` (a worker over RabbitMQ) instead of running them
    /// here; `None` keeps them local.
    pub fn with_remote(mut self, remote: Option<RemoteAgent>) -> Self {
        self.remote = remote;
        self
    }
}

impl Actor for DataEnrichment {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

stoppable!(DataEnrichment);

impl Handler<Enrich> for DataEnrichment {
    type Result = ResponseActFuture<Self, StepResult<EnrichmentFacts>>;

    fn handle(&mut self, msg: Enrich, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(remote) = &self.remote {
            let call = remote.call(&msg.env, Default::default());
            return guarded(self, AgentKind::DataEnrichment, &msg.env, call);
        }
        let refs = self.refs.clone();
        let store = self.store.clone();
        let model = self.model.clone();
        let alert = msg.env.alert.clone();
        let work = async move {
            let (prior_alerts, prior_escalations) = store
                .customer_history(&alert.customer.customer_id, &alert.alert_id)
                .await
                .map_err(|e| AgentError::Source(e.to_string()))?;
            let history = CustomerHistory {
                prior_alerts,
                prior_escalations,
                source: "store".into(),
            };
            // Screening and typologies are CPU work: keep them off the agent's event loop so
            // that other alerts' messages (and cancellations) are still served.
            let facts = tokio::task::spawn_blocking(move || enrich(&alert, &refs, history))
                .await
                .map_err(|e| match e.try_into_panic() {
                    Ok(p) => AgentError::Panicked(super::agent::panic_message(p.as_ref())),
                    Err(e) => AgentError::Source(e.to_string()),
                })?;
            Ok(StepReply {
                output: facts,
                meta: StepMeta {
                    provider: DETERMINISTIC.into(),
                    model,
                    ..Default::default()
                },
            })
        };
        guarded(self, AgentKind::DataEnrichment, &msg.env, work)
    }
}

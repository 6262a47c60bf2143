//! The DataEnrichment agent: customer history, screening, jurisdiction risk, typologies.

use std::sync::Arc;

use actix::{Actor, Context, Handler, ResponseFuture};
use tokio::time::Instant;

use super::agent::{guarded, stoppable};
use crate::assessment::enrichment::enrich_screened;
use crate::customer_data::CustomerDataClient;
use crate::domain::AgentKind;
use crate::domain::alert::Alert;
use crate::domain::facts::{CustomerHistory, EnrichmentFacts};
use crate::messages::enrichment::Enrich;
use crate::messages::{AgentError, StepMeta, StepReply, StepResult};
use crate::protocol::{RemoteSteps, StepInputs, call_remote};
use crate::reference::ReferenceHandle;
use crate::state::cache::Caches;
use crate::store::Store;

/// Provider name recorded for steps that involve no model (see [`crate::protocol`]).
pub use crate::protocol::DETERMINISTIC;

/// Where enrichment gets what the alert does not carry.
#[derive(Clone)]
pub struct Sources {
    /// The store: the engine's own history of the customer.
    pub store: Arc<Store>,
    /// The customer-data API, when configured; it takes precedence over the store.
    pub external: Option<Arc<CustomerDataClient>>,
    /// History and screening caches.
    pub caches: Caches,
}

/// The DataEnrichment agent.
pub struct DataEnrichment {
    /// Set when this agent is listed in `REMOTE_AGENTS`: its steps run on a worker, over RabbitMQ.
    remote: Option<std::sync::Arc<dyn RemoteSteps>>,
    refs: Arc<ReferenceHandle>,
    sources: Sources,
    model: String,
    mailbox: usize,
}

impl DataEnrichment {
    /// An agent reading `refs`, and customer history from `sources`.
    pub fn new(
        refs: Arc<ReferenceHandle>,
        sources: Sources,
        model: String,
        mailbox: usize,
    ) -> Self {
        Self {
            remote: None,
            refs,
            sources,
            model,
            mailbox,
        }
    }
}

impl DataEnrichment {
    /// Hands this agent's steps to `remote` (a worker over RabbitMQ) instead of running them
    /// here; `None` keeps them local.
    pub fn with_remote(mut self, remote: Option<std::sync::Arc<dyn RemoteSteps>>) -> Self {
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

/// The customer's history: from the customer-data API (through its cache) when configured,
/// else from the store. If the API fails after its retries, the store's history is used and
/// the gap is returned to be stated in the facts.
async fn customer_history(
    sources: &Sources,
    alert: &Alert,
) -> Result<(CustomerHistory, Option<String>), AgentError> {
    let customer_id = &alert.customer.customer_id;
    if let Some(client) = &sources.external {
        match sources
            .caches
            .history(customer_id, client.history(customer_id))
            .await
        {
            Ok(h) => return Ok((h.to_facts(alert), None)),
            Err(e) => {
                tracing::warn!(error = %e, "customer-data API failed: using the engine's own history");
                let (h, _) = store_history(sources, alert).await?;
                return Ok((
                    h,
                    Some(format!(
                        "customer-data API unavailable ({e}): history from the engine's own records only"
                    )),
                ));
            }
        }
    }
    store_history(sources, alert).await
}

async fn store_history(
    sources: &Sources,
    alert: &Alert,
) -> Result<(CustomerHistory, Option<String>), AgentError> {
    let (prior_alerts, prior_escalations) = sources
        .store
        .customer_history(&alert.customer.customer_id, &alert.alert_id)
        .await
        .map_err(|e| AgentError::Source(e.to_string()))?;
    Ok((
        CustomerHistory {
            prior_alerts,
            prior_escalations,
            source: "store".into(),
            ..Default::default()
        },
        None,
    ))
}

/// Slots for CPU-bound enrichment work on the blocking pool: one per core.
fn blocking_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    })
}

fn join_error(e: tokio::task::JoinError) -> AgentError {
    match e.try_into_panic() {
        Ok(p) => AgentError::Panicked(super::agent::panic_message(p.as_ref())),
        Err(e) => AgentError::Source(e.to_string()),
    }
}

impl Handler<Enrich> for DataEnrichment {
    type Result = ResponseFuture<StepResult<EnrichmentFacts>>;

    fn handle(&mut self, msg: Enrich, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(remote) = &self.remote {
            let call = call_remote(remote.as_ref(), &msg.env, StepInputs::default());
            return guarded(AgentKind::DataEnrichment, &msg.env, call);
        }
        // One snapshot per alert: a reload swapping lists mid-step cannot mix two versions.
        let refs = self.refs.current();
        let sources = self.sources.clone();
        let model = self.model.clone();
        let alert = msg.env.alert.clone();
        let deadline = msg.env.deadline;
        let work = async move {
            let (history, gap) = customer_history(&sources, &alert).await?;
            // Screening and typologies are CPU work: keep them off the agent's event loop so
            // that other alerts' messages (and cancellations) are still served.
            let outcome = sources
                .caches
                .screening(&alert, &refs)
                .await
                .map_err(join_error)?;
            // Blocking work has a budget: at most one CPU-bound enrichment per core at once
            // (waiting for a slot is cancelled with the step), and none starts past the
            // step's deadline. The detectors themselves are linear or bounded in the alert's
            // transactions, so a started one finishes quickly (see `crate::typologies`).
            let _slot = blocking_slots()
                .acquire()
                .await
                .map_err(|_| AgentError::Source("blocking work pool closed".into()))?;
            if Instant::now() >= deadline {
                return Err(AgentError::Timeout);
            }
            let mut facts = tokio::task::spawn_blocking(move || {
                enrich_screened(&alert, &refs, history, outcome)
            })
            .await
            .map_err(join_error)?;
            facts.gaps.extend(gap);
            Ok(StepReply {
                output: facts,
                meta: StepMeta {
                    provider: DETERMINISTIC.into(),
                    model,
                    ..Default::default()
                },
            })
        };
        guarded(AgentKind::DataEnrichment, &msg.env, work)
    }
}

//! The worker side of remote agents: runs a [`StepRequest`] received over RabbitMQ on this
//! node's local agents and answers a [`StepResponse`]. Lives with the actors so that the
//! message-queue module never imports them.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Context, Handler, MailboxError, Message};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::supervision::Slot;
use super::supervisor::Agents;
use crate::domain::AgentKind;
use crate::messages::context::BuildContext;
use crate::messages::decision::Decide;
use crate::messages::enrichment::Enrich;
use crate::messages::scoring::Score;
use crate::protocol::{AgentError, StepEnvelope, StepRequest, StepResponse, StepResult};

/// Extra time a worker gives its local agent beyond the step's deadline before answering
/// that it timed out (the caller has given up by then anyway).
const WORKER_GRACE: Duration = Duration::from_millis(250);

/// Runs one remote step on this node's local agents (worker side): one attempt under the
/// request's deadline; the caller counts attempts and retries. A panic fails this request
/// only and is answered like any failure; a stopped local agent is restarted through its slot
/// (which works from the worker's plain tokio tasks).
pub async fn serve_step(agents: &Agents, request: StepRequest) -> StepResponse {
    let timeout = Duration::from_millis(request.timeout_ms.max(1));
    let cancel = CancellationToken::new();
    let _cancel_on_exit = cancel.clone().drop_guard();
    let env = StepEnvelope {
        alert: Arc::new(request.alert),
        attempt: request.attempt,
        deadline: Instant::now() + timeout,
        cancel,
        span: tracing::Span::current(),
        spend: Default::default(),
    };
    let missing = |what: &str| {
        StepResponse::failed(
            "invalid_request",
            format!("step request lacks `{what}`"),
            false,
        )
    };
    match request.agent {
        AgentKind::DataEnrichment => respond(&agents.enrichment, Enrich { env }, timeout).await,
        AgentKind::RiskScoring => {
            let Some(facts) = request.facts else {
                return missing("facts");
            };
            let msg = Score {
                env,
                facts: Arc::new(facts),
            };
            respond(&agents.scoring, msg, timeout).await
        }
        AgentKind::ContextBuilder => {
            let (Some(facts), Some(risk)) = (request.facts, request.risk) else {
                return missing("facts and risk");
            };
            let msg = BuildContext {
                env,
                facts: Arc::new(facts),
                risk: Arc::new(risk),
            };
            respond(&agents.context, msg, timeout).await
        }
        AgentKind::DecisionMaker => {
            let (Some(facts), Some(risk), Some(context)) =
                (request.facts, request.risk, request.context)
            else {
                return missing("facts, risk and context");
            };
            let msg = Decide {
                env,
                facts: Arc::new(facts),
                risk: Arc::new(risk),
                context: Arc::new(context),
                degraded_steps: request.degraded_steps,
            };
            respond(&agents.decision, msg, timeout).await
        }
        AgentKind::SupervisorCheck => StepResponse::failed(
            "invalid_request",
            "the supervisor check runs on the deciding node",
            false,
        ),
    }
}

async fn respond<A, M, O>(slot: &Arc<Slot<A>>, msg: M, timeout: Duration) -> StepResponse
where
    A: Actor<Context = Context<A>> + Handler<M>,
    M: Message<Result = StepResult<O>> + Send + 'static,
    O: Serialize + Send + 'static,
{
    let result = match slot.current() {
        Err(e) => Err(e),
        Ok((addr, generation)) => {
            match tokio::time::timeout(timeout + WORKER_GRACE, addr.send(msg)).await {
                Ok(Ok(r)) => r,
                Ok(Err(MailboxError::Closed)) => {
                    slot.report_crash(generation, "mailbox closed");
                    Err(AgentError::Stopped)
                }
                Ok(Err(MailboxError::Timeout)) | Err(_) => Err(AgentError::Timeout),
            }
        }
    };
    StepResponse::from_result(result)
}

//! What every agent shares: running a step's work so that a panic, the deadline or the
//! caller's cancellation each end it cleanly, and stopping the actor after a panic so the
//! supervisor restarts a fresh instance.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use actix::{Actor, ActorFutureExt, Context, ResponseActFuture, WrapFuture};
use futures_util::FutureExt;
use tracing::Instrument;

use crate::domain::AgentKind;
use crate::messages::{AgentError, StepEnvelope, StepResult};

/// Runs `work` for one step message. The work future is dropped, not merely abandoned, when
/// the deadline passes or the caller cancels: that is what cancels an in-flight model call.
pub fn guarded<A, O, F>(
    actor: &A,
    agent: AgentKind,
    env: &StepEnvelope,
    work: F,
) -> ResponseActFuture<A, StepResult<O>>
where
    A: Actor<Context = Context<A>>,
    O: 'static,
    F: Future<Output = StepResult<O>> + 'static,
{
    let cancel = env.cancel.clone();
    let deadline = env.deadline;
    let span = tracing::info_span!(parent: &env.span, "agent_step", agent = %agent, attempt = env.attempt, alert_id = %env.alert.alert_id);
    let fut = async move {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(AgentError::Cancelled),
            r = tokio::time::timeout_at(deadline, AssertUnwindSafe(work).catch_unwind()) => match r {
                Err(_) => Err(AgentError::Timeout),
                Ok(Err(panic)) => Err(AgentError::Panicked(panic_message(panic.as_ref()))),
                Ok(Ok(result)) => result,
            },
        }
    }
    .instrument(span);
    Box::pin(fut.into_actor(actor).map(move |result, _act, ctx| {
        if let Err(AgentError::Panicked(msg)) = &result {
            // The instance may hold state the panic left inconsistent: stop it and let the
            // supervisor start a fresh one.
            tracing::error!(agent = %agent, panic = %msg, "agent panicked: stopping instance");
            actix::ActorContext::stop(ctx);
        }
        result
    }))
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-text payload".to_string())
}

/// Implements [`crate::messages::control::StopAgent`] for an agent.
macro_rules! stoppable {
    ($agent:ty) => {
        impl actix::Handler<crate::messages::control::StopAgent> for $agent {
            type Result = ();
            fn handle(
                &mut self,
                _: crate::messages::control::StopAgent,
                ctx: &mut Self::Context,
            ) -> Self::Result {
                actix::ActorContext::stop(ctx);
            }
        }
    };
}
pub(crate) use stoppable;

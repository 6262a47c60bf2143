//! What every agent shares: running a step's work so that a panic, the deadline or the
//! caller's cancellation each end that one request cleanly, and nothing else.
//!
//! Each request's work runs as its own task on the agent's arbiter: a panic ends that task
//! only (its `JoinError` becomes the request's [`AgentError::Panicked`]), every other alert's
//! request on the same agent goes on, and the agent instance is not stopped: the agents hold
//! only configuration and shared handles, so a panic in one request leaves nothing suspect.
//! The reply does not depend on the instance either (the handler answers with a
//! `ResponseFuture`), so stopping an instance does not drop the requests it was serving.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use actix::ResponseFuture;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::domain::AgentKind;
use crate::messages::{AgentError, StepEnvelope, StepResult};

/// A task handle that aborts the task when dropped: the request's work never outlives the
/// request.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `work` for one step message as its own task. The work is aborted (its future
/// dropped, which cancels an in-flight model call) when the deadline passes or the caller
/// cancels. Must be called from the agent's handler (it spawns on the agent's arbiter).
pub fn guarded<O, F>(agent: AgentKind, env: &StepEnvelope, work: F) -> ResponseFuture<StepResult<O>>
where
    O: 'static,
    F: Future<Output = StepResult<O>> + 'static,
{
    let cancel = env.cancel.clone();
    let deadline = env.deadline;
    let span = tracing::info_span!(parent: &env.span, "agent_step", agent = %agent, attempt = env.attempt, alert_id = %env.alert.alert_id);
    let task = AbortOnDrop(actix_rt::spawn(work.instrument(span)));
    Box::pin(async move {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(AgentError::Cancelled),
            r = tokio::time::timeout_at(deadline, task) => match r {
                Err(_) => Err(AgentError::Timeout),
                Ok(Err(e)) if e.is_panic() => {
                    let msg = panic_message(e.into_panic().as_ref());
                    tracing::error!(agent = %agent, panic = %msg, "request panicked: failing this request only");
                    Err(AgentError::Panicked(msg))
                }
                Ok(Err(_)) => Err(AgentError::Cancelled),
                Ok(Ok(result)) => result,
            },
        }
    })
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

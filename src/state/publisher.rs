//! Publishes this node's agent state every `STATE_PUBLISH_SECONDS`, with a time to live of
//! five periods so a dead node's state ages out.

use std::sync::Arc;
use std::time::Duration;

use super::{NodeState, StateStore};

/// How many publish periods a published state lives.
pub const STATE_TTL_PERIODS: u32 = 5;

/// Builds the node's current state.
pub type NodeStateFn = Arc<dyn Fn() -> NodeState + Send + Sync + 'static>;

/// Publishes `snapshot()` to `state` every `period`, on `rt` (the engine's state runtime,
/// which ends the task when the engine is dropped).
pub fn spawn(
    rt: &tokio::runtime::Handle,
    state: Arc<dyn StateStore>,
    period: Duration,
    snapshot: NodeStateFn,
) {
    let ttl = period * STATE_TTL_PERIODS;
    rt.spawn(async move {
        loop {
            let s = snapshot();
            if let Err(e) = state.publish_node(&s, ttl).await {
                tracing::debug!(error = %e, "agent state not published");
            }
            tokio::time::sleep(period).await;
        }
    });
}

//! Control messages every agent understands.

use actix::Message;

/// Stop the agent (operators, tests). The supervisor restarts it under its restart policy.
#[derive(Debug, Clone, Copy)]
pub struct StopAgent;

impl Message for StopAgent {
    type Result = ();
}

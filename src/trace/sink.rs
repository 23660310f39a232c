//! Where exit events go after they are counted: the live view, the recorder. Each sink is called on
//! the vCPU thread, so it must never block for long (a live view drops, a recorder queues).

use super::ExitEvent;

/// A consumer of exit events.
pub trait ExitSink: Send + Sync {
    /// Called once per exit, on the thread of the vCPU that exited.
    fn on_exit(&self, event: &ExitEvent);
}

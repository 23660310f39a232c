//! Where exit events go after they are counted: the live view, the recorder. Each sink is called on
//! the vCPU thread, so it must never block for long (a live view drops, a recorder queues).

use super::ExitEvent;
use crate::debug::Stop;

/// A consumer of exit events.
pub trait ExitSink: Send + Sync {
    /// Called once per exit, on the thread of the vCPU that exited.
    fn on_exit(&self, event: &ExitEvent);

    /// Called when a vCPU stops for the debugger, with its registers.
    fn on_stop(&self, _stop: &Stop) {}
}

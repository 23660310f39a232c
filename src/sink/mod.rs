//! Where exit events go after they are counted: the live view, the trace printer, the recorder.
//! Each sink is called on the vCPU thread, so it must never block for long (a live view drops, a
//! recorder queues).

pub mod live;
pub mod pcap;
pub mod printer;

use crate::debug::Stop;
use crate::trace::KernelLine;
use crate::trace::{DeviceEvent, ExitEvent, StackSample};

/// A consumer of exit events.
pub trait ExitSink: Send + Sync {
    /// Called once per exit, on the thread of the vCPU that exited.
    fn on_exit(&self, event: &ExitEvent);

    /// Called when a vCPU stops for the debugger, with its registers.
    fn on_stop(&self, _stop: &Stop) {}

    /// Called for each sampled call stack (`--stacks`), on the vCPU's thread, after the exit.
    fn on_stack(&self, _stack: &StackSample) {}

    /// Called for in-kernel events (`--kernel-events`), on the trace reader's thread: each event's
    /// line while they are few, a line of rates each second when they are many.
    fn on_kernel(&self, _line: &KernelLine) {}

    /// Called for each device event (virtio queues), on the device's worker thread or a vCPU's.
    fn on_device(&self, _event: &DeviceEvent) {}
}

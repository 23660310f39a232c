//! What a virtio device keeps about its queues for the views: counts per queue, the last requests
//! completed with their latency, and where its events go (the run's sinks, on the exits' clock).

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use serde::Serialize;

use super::chain::Desc;
use crate::sink::ExitSink;
use crate::trace::{DeviceEvent, DeviceEventKind, NotifyPath};
use crate::vmm::clock::Clock;

/// Completed requests kept per queue.
pub const RECENT_DONE: usize = 16;

/// One completed request, for the view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Done {
    /// When it was published in the used ring (ns since the VM started).
    pub t_ns: u64,
    pub head: u16,
    pub request: String,
    pub descs: Vec<Desc>,
    pub written: u32,
    pub status: String,
    /// From the notification that brought it to its publication in the used ring.
    pub latency_ns: u64,
}

/// Counts of one queue since the VM started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    pub notifies_trapped: u64,
    pub notifies_ioeventfd: u64,
    pub interrupts: u64,
    pub taken: u64,
    pub completed: u64,
    pub errors: u64,
    /// The last requests completed, oldest first.
    pub recent: VecDeque<Done>,
}

impl QueueStats {
    pub fn notifies(&self) -> u64 {
        self.notifies_trapped + self.notifies_ioeventfd
    }

    pub fn count_notify(&mut self, path: NotifyPath, n: u64) {
        match path {
            NotifyPath::Trapped => self.notifies_trapped += n,
            NotifyPath::Ioeventfd => self.notifies_ioeventfd += n,
        }
    }

    pub fn push_done(&mut self, done: Done) {
        if self.recent.len() == RECENT_DONE {
            self.recent.pop_front();
        }
        self.recent.push_back(done);
    }
}

/// Where a device's events go once the run has started: the sinks, stamped by the exits' clock.
#[derive(Clone, Default)]
pub struct EventOut {
    run: Arc<OnceLock<RunLink>>,
}

/// The run a device's events belong to.
struct RunLink {
    clock: Clock,
    sinks: Vec<Arc<dyn ExitSink>>,
}

impl EventOut {
    /// Connects the device to the run (once, at its start).
    pub fn connect(&self, clock: Clock, sinks: Vec<Arc<dyn ExitSink>>) {
        let _ = self.run.set(RunLink { clock, sinks });
    }

    /// Nanoseconds since the VM started (0 before it has).
    pub fn now_ns(&self) -> u64 {
        self.run.get().map_or(0, |r| r.clock.ns_since_start(r.clock.now()))
    }

    /// Hands an event to every sink.
    pub fn emit(&self, device: &str, queue: Option<u16>, kind: DeviceEventKind) {
        let Some(RunLink { clock, sinks }) = self.run.get() else { return };
        if sinks.is_empty() {
            return;
        }
        let event = DeviceEvent { t_ns: clock.ns_since_start(clock.now()), device: device.to_string(), queue, kind };
        for sink in sinks {
            sink.on_device(&event);
        }
    }
}

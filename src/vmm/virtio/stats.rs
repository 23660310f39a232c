//! What a virtio device keeps about its queues for the views: the last requests completed with
//! their latency, and where its events go — counted exactly, then handed to the run's sinks,
//! stamped by the exits' clock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use super::chain::Desc;
use crate::sink::ExitSink;
use crate::sync::lock;
use crate::trace::{DeviceCounters, DeviceEvent, DeviceEventKind};
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

/// The last requests completed on one queue, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Recent(pub VecDeque<Done>);

impl Recent {
    pub fn push(&mut self, done: Done) {
        if self.0.len() == RECENT_DONE {
            self.0.pop_front();
        }
        self.0.push_back(done);
    }
}

/// Where a device's events go once the run has started: the sinks, stamped by the exits' clock.
#[derive(Clone, Default)]
pub struct EventOut {
    run: Arc<OnceLock<RunLink>>,
    counters: Arc<Mutex<DeviceCounters>>,
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

    /// Counts an event and hands it to every sink.
    pub fn emit(&self, device: &str, queue: Option<u16>, kind: DeviceEventKind) {
        let event = DeviceEvent { t_ns: self.now_ns(), device: device.to_string(), queue, kind };
        lock(&self.counters).record(&event);
        for sink in self.run.get().map_or(&[][..], |r| &r.sinks[..]) {
            sink.on_device(&event);
        }
    }

    /// The events counted so far.
    pub fn counters(&self) -> DeviceCounters {
        lock(&self.counters).clone()
    }
}

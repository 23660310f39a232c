//! What every vCPU thread of one VM shares: guest memory, the buses, the global exit sequence, the
//! stop flag, the per-vCPU counters and the event sinks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use vm_memory::GuestMemoryMmap;

use super::bus::Bus;
use crate::debug::DebugState;
use crate::trace::{Counters, ExitSink};

/// State shared by the vCPU threads and the VM's owner.
pub struct Shared {
    pub mem: GuestMemoryMmap,
    pub pio: Bus,
    pub mmio: Bus,
    /// When the VM started; event timestamps count from here.
    pub start: Instant,
    /// Next exit sequence number (global across vCPUs).
    pub seq: AtomicU64,
    /// Set when the run is ending: vCPU threads leave their loop at the next chance.
    pub stopping: AtomicBool,
    /// `--max-exits`, or `u64::MAX`.
    pub max_exits: u64,
    /// One set of exact counters per vCPU, each written only by its own thread.
    pub counters: Vec<Mutex<Counters>>,
    /// Consumers of every event.
    pub sinks: Vec<Arc<dyn ExitSink>>,
    /// Pause, step and exit breakpoints.
    pub debug: DebugState,
}

impl Shared {
    /// Whether the run is ending.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The counters of one vCPU.
    pub fn counters_of(&self, vcpu: usize) -> MutexGuard<'_, Counters> {
        self.counters[vcpu].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// All vCPUs' counters merged.
    pub fn merged_counters(&self) -> Counters {
        let mut all = Counters::default();
        for i in 0..self.counters.len() {
            all.merge(&self.counters_of(i));
        }
        all
    }
}

//! The live feed to the UI: a bounded queue the vCPU threads push into without ever waiting. When
//! the view falls behind, events are dropped here and counted; the counters and a recorder never drop.
//! Device events come through a bounded queue of their own, the oldest dropped when full.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use super::ExitSink;
use crate::sync::lock;
use crate::trace::KernelLine;
use crate::trace::{DeviceEvent, ExitEvent};

/// Device events kept for the view between two frames at most.
pub const DEVICE_CAPACITY: usize = 4096;

/// Events queued for the view at most.
pub const LIVE_CAPACITY: usize = 1 << 16;

/// The vCPU side of the feed.
pub struct LiveFeed {
    tx: SyncSender<ExitEvent>,
    dropped: AtomicU64,
    devices: Mutex<VecDeque<DeviceEvent>>,
    kernel: Mutex<VecDeque<KernelLine>>,
}

impl LiveFeed {
    /// A feed and the receiver the view drains.
    pub fn new(capacity: usize) -> (Self, Receiver<ExitEvent>) {
        let (tx, rx) = sync_channel(capacity);
        (Self { tx, dropped: AtomicU64::new(0), devices: Mutex::default(), kernel: Mutex::default() }, rx)
    }

    /// Events dropped because the view was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The in-kernel event lines that arrived since the last call, oldest first.
    pub fn take_kernel_lines(&self) -> Vec<KernelLine> {
        lock(&self.kernel).drain(..).collect()
    }

    /// The device events that arrived since the last call, oldest first.
    pub fn take_device_events(&self) -> Vec<DeviceEvent> {
        lock(&self.devices).drain(..).collect()
    }
}

impl ExitSink for LiveFeed {
    fn on_exit(&self, event: &ExitEvent) {
        match self.tx.try_send(event.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn on_kernel(&self, line: &KernelLine) {
        let mut q = lock(&self.kernel);
        if q.len() == DEVICE_CAPACITY {
            q.pop_front();
        }
        q.push_back(line.clone());
    }

    fn on_device(&self, event: &DeviceEvent) {
        let mut q = lock(&self.devices);
        if q.len() == DEVICE_CAPACITY {
            q.pop_front();
        }
        q.push_back(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::ExitKind;

    #[test]
    fn full_feed_drops_and_counts() {
        let (feed, rx) = LiveFeed::new(2);
        let e =
            ExitEvent { seq: 0, vcpu: 0, t_ns: 0, rip: 0, kind: ExitKind::Hlt, device: None, insn: None, cost_ns: 0 };
        for _ in 0..5 {
            feed.on_exit(&e);
        }
        assert_eq!(feed.dropped(), 3);
        assert_eq!(rx.try_iter().count(), 2);
    }
}

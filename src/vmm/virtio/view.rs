//! A virtio device as the views show it — what QEMU's `info virtio-status`,
//! `info virtio-queue-status` and `info virtio-queue-element` print, and, live, the counts per
//! queue, the chains the driver has made available and the device has not taken yet (decoded),
//! and the last requests completed with their latency. Taken under the transport's lock, so one
//! view is one consistent moment.

use std::fmt::Write as _;
use std::num::Wrapping;
use std::sync::atomic::Ordering;

use serde::Serialize;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress};

use super::Transport;
use super::chain::{Desc, read_chain};
use super::features::{device_name, feature_names, status_names};
use super::stats::QueueStats;

/// Chains in flight decoded per queue at most.
const PENDING_SHOWN: usize = 8;

/// A chain the driver made available that the device has not taken yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingChain {
    pub head: u16,
    /// The request in words, or what is wrong with the chain.
    pub request: String,
    pub descs: Vec<Desc>,
}

/// One queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueView {
    pub index: u16,
    pub name: &'static str,
    pub size: u16,
    pub max_size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
    /// The device's next available index (the last avail index it has seen).
    pub last_avail: u16,
    /// The guest's current avail index (None: the ring is not readable).
    pub avail_idx: Option<u16>,
    pub used_idx: u16,
    /// Chains made available and not taken.
    pub in_flight: u16,
    pub event_idx: bool,
    /// With event idx: the driver's `used_event` and the device's `avail_event`.
    pub used_event: Option<u16>,
    pub avail_event: Option<u16>,
    pub stats: QueueStats,
    pub pending: Vec<PendingChain>,
}

/// One device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceView {
    pub name: &'static str,
    pub kind: &'static str,
    pub device_id: u32,
    pub base: u64,
    pub irq: u32,
    /// "trapped" or "ioeventfd".
    pub notifications: &'static str,
    pub status: u32,
    pub offered: u64,
    pub driver: u64,
    pub interrupt_status: u32,
    pub errors: u64,
    pub queues: Vec<QueueView>,
}

impl DeviceView {
    /// The state of `t` now.
    pub fn of(t: &Transport, base: u64, irq: u32, ioeventfd: bool) -> Self {
        let id = t.device().device_id();
        let queues = t.queues().iter().zip(t.queue_stats()).enumerate().map(|(i, (q, s))| queue_view(t, i, q, s));
        DeviceView {
            name: t.name(),
            kind: device_name(id),
            device_id: id,
            base,
            irq,
            notifications: if ioeventfd { "ioeventfd" } else { "trapped" },
            status: t.status(),
            offered: t.offered_features(),
            driver: t.driver_features(),
            interrupt_status: t.interrupt_status(),
            errors: t.errors(),
            queues: queues.collect(),
        }
    }

    /// Notifications, all queues.
    pub fn notifies(&self) -> u64 {
        self.queues.iter().map(|q| q.stats.notifies()).sum()
    }

    /// Interrupts, all queues.
    pub fn interrupts(&self) -> u64 {
        self.queues.iter().map(|q| q.stats.interrupts).sum()
    }

    /// The device as text: status and features decoded, each queue's state; with `detail`, the
    /// chains in flight and the last completed requests, descriptor by descriptor.
    pub fn text(&self, detail: bool) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: {} (device id {}) at {:#x}, irq {}, notifications {}",
            self.name, self.kind, self.device_id, self.base, self.irq, self.notifications
        );
        let _ = writeln!(s, "  status: {} ({:#x})", status_names(self.status), self.status);
        let _ = writeln!(s, "  device features: {}", feature_names(self.device_id, self.offered).join(" "));
        let _ = writeln!(s, "  driver features: {}", feature_names(self.device_id, self.driver).join(" "));
        let _ = writeln!(s, "  interrupt status: {:#x}; driver errors: {}", self.interrupt_status, self.errors);
        for q in &self.queues {
            let _ = writeln!(
                s,
                "  queue {} ({}): size {}/{}, {}",
                q.index,
                q.name,
                q.size,
                q.max_size,
                if q.ready { "ready" } else { "not ready" }
            );
            if !q.ready {
                continue;
            }
            let _ = writeln!(
                s,
                "    descriptors {:#x}, driver area (avail) {:#x}, device area (used) {:#x}",
                q.desc_table, q.avail_ring, q.used_ring
            );
            let guest = q.avail_idx.map_or("unreadable".to_string(), |i| i.to_string());
            let _ = write!(
                s,
                "    avail idx: last seen {}, guest {guest}; used idx {}; in flight {}; event idx ",
                q.last_avail, q.used_idx, q.in_flight
            );
            let _ = match (q.event_idx, q.used_event, q.avail_event) {
                (true, Some(u), Some(a)) => writeln!(s, "on (used_event {u}, avail_event {a})"),
                _ => writeln!(s, "off"),
            };
            let st = &q.stats;
            let _ = writeln!(
                s,
                "    notifications {} (trapped {}, ioeventfd {}), interrupts {}, taken {}, completed {}, errors {}",
                st.notifies(),
                st.notifies_trapped,
                st.notifies_ioeventfd,
                st.interrupts,
                st.taken,
                st.completed,
                st.errors
            );
            if !detail {
                continue;
            }
            let _ = writeln!(s, "    in flight:{}", if q.pending.is_empty() { " none" } else { "" });
            for p in &q.pending {
                let _ = writeln!(s, "      chain {}: {}", p.head, p.request);
                descs_text(&mut s, &p.descs);
            }
            let _ = writeln!(s, "    last completed:{}", if st.recent.is_empty() { " none" } else { "" });
            for d in st.recent.iter().rev() {
                let _ = writeln!(
                    s,
                    "      chain {}: {} -> {}, {} bytes written, {:.1} us",
                    d.head,
                    d.request,
                    d.status,
                    d.written,
                    d.latency_ns as f64 / 1000.0
                );
                descs_text(&mut s, &d.descs);
            }
        }
        s
    }
}

fn descs_text(s: &mut String, descs: &[Desc]) {
    for (i, d) in descs.iter().enumerate() {
        let _ =
            writeln!(s, "        desc {i}: addr {:#x} len {} flags {} next {}", d.addr, d.len, d.flag_names(), d.next);
    }
}

fn queue_view(t: &Transport, index: usize, q: &Queue, stats: &QueueStats) -> QueueView {
    let mem = t.memory();
    let read_u16 = |addr: u64| mem.read_obj::<u16>(GuestAddress(addr)).ok().map(u16::from_le);
    let avail_idx = q.ready().then(|| q.avail_idx(mem, Ordering::Acquire).ok().map(|w| w.0)).flatten();
    let size = q.size() as u64;
    let event = |on: bool, addr: u64| if on { read_u16(addr) } else { None };
    let in_flight = avail_idx.map_or(0, |a| (Wrapping(a) - Wrapping(q.next_avail())).0);
    QueueView {
        index: index as u16,
        name: t.device().queue_name(index as u16),
        size: q.size(),
        max_size: q.max_size(),
        ready: q.ready(),
        desc_table: q.desc_table(),
        avail_ring: q.avail_ring(),
        used_ring: q.used_ring(),
        last_avail: q.next_avail(),
        avail_idx,
        used_idx: q.next_used(),
        in_flight,
        event_idx: q.event_idx_enabled(),
        used_event: event(q.event_idx_enabled(), q.avail_ring() + 4 + 2 * size),
        avail_event: event(q.event_idx_enabled(), q.used_ring() + 4 + 8 * size),
        stats: stats.clone(),
        pending: if in_flight > 0 && in_flight <= q.size() { pending(t, index, q) } else { Vec::new() },
    }
}

/// The chains in flight, walked on a copy of the queue so the device's own position is untouched.
fn pending(t: &Transport, index: usize, q: &Queue) -> Vec<PendingChain> {
    let mem = t.memory();
    let Ok(mut copy) = Queue::try_from(q.state()) else { return Vec::new() };
    let Ok(iter) = copy.iter(mem) else { return Vec::new() };
    iter.take(PENDING_SHOWN)
        .map(|chain| {
            let head = chain.head_index();
            match read_chain(chain, mem) {
                Ok(descs) => PendingChain { head, request: t.device().describe(index as u16, &descs, mem), descs },
                Err(why) => PendingChain { head, request: why, descs: Vec::new() },
            }
        })
        .collect()
}

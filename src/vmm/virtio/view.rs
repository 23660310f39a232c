//! A virtio device as the views show it — what QEMU's `info virtio-status`,
//! `info virtio-queue-status` and `info virtio-queue-element` print, and, live, the counts per
//! queue, the chains the driver has made available and the device has not taken yet (decoded),
//! and the last requests completed with their latency. Taken under the transport's lock, so one
//! view is one consistent moment.

use std::num::Wrapping;
use std::sync::atomic::Ordering;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress};

use super::Transport;
use super::chain::{Desc, read_chain};
use super::features::{device_name, feature_names, status_names};
use super::stats::Done;
use crate::trace::QueueCounts;

/// Chains in flight decoded per queue at most.
const PENDING_SHOWN: usize = 8;

/// A chain the driver made available that the device has not taken yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingChain {
    pub head: u16,
    /// The request in words, or what is wrong with the chain.
    pub request: String,
    pub descs: Vec<Desc>,
}

/// One queue.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Its events, counted since the VM started.
    pub counts: QueueCounts,
    /// The last requests completed, oldest first.
    pub recent: Vec<Done>,
    pub pending: Vec<PendingChain>,
    /// What the device adds about the queue (a receive queue's waiting frames).
    pub note: Option<String>,
}

/// One device.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The device's own events (not about one queue), counted.
    pub counts: QueueCounts,
    pub queues: Vec<QueueView>,
}

impl DeviceView {
    /// The state of `t` now.
    pub fn of(t: &Transport, base: u64, irq: u32, ioeventfd: bool) -> Self {
        let id = t.device().device_id();
        let counters = t.events.counters();
        let queues = t.queues().iter().enumerate().map(|(i, q)| {
            let counts = counters.queue(t.name(), Some(i as u16));
            queue_view(t, i, q, counts)
        });
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
            counts: counters.queue(t.name(), None),
            queues: queues.collect(),
        }
    }

    /// Notifications, all queues.
    pub fn notifies(&self) -> u64 {
        self.queues.iter().map(|q| q.counts.notifies()).sum()
    }

    /// Interrupts, all queues.
    pub fn interrupts(&self) -> u64 {
        self.queues.iter().map(|q| q.counts.interrupts).sum::<u64>() + self.counts.interrupts
    }

    /// The device as text: status and features decoded, each queue's state; with `detail`, the
    /// chains in flight and the last completed requests, descriptor by descriptor.
    pub fn text(&self, detail: bool) -> String {
        self.lines(detail, &|_| None).into_iter().map(|l| l.text + "\n").collect()
    }

    /// The text's lines, each descriptor's line with its buffer (for opening it in a memory view);
    /// `rates` gives a queue's notifications and interrupts per second, where known.
    pub fn lines(&self, detail: bool, rates: &dyn Fn(u16) -> Option<(f64, f64)>) -> Vec<ViewLine> {
        let mut out = Vec::new();
        let mut say = |text: String| out.push(ViewLine { text, buffer: None });
        say(format!(
            "{}: {} (device id {}) at {:#x}, irq {}, notifications {}",
            self.name, self.kind, self.device_id, self.base, self.irq, self.notifications
        ));
        say(format!("  status: {} ({:#x})", status_names(self.status), self.status));
        say(format!("  device features: {}", feature_names(self.device_id, self.offered).join(" ")));
        say(format!("  driver features: {}", feature_names(self.device_id, self.driver).join(" ")));
        let errors = self.counts.errors + self.queues.iter().map(|q| q.counts.errors).sum::<u64>();
        say(format!("  interrupt status: {:#x}; driver errors: {errors}", self.interrupt_status));
        for q in &self.queues {
            let ready = if q.ready { "ready" } else { "not ready" };
            out.push(ViewLine::plain(format!(
                "  queue {} ({}): size {}/{}, {ready}",
                q.index, q.name, q.size, q.max_size
            )));
            if !q.ready {
                continue;
            }
            out.push(ViewLine::plain(format!(
                "    descriptors {:#x}, driver area (avail) {:#x}, device area (used) {:#x}",
                q.desc_table, q.avail_ring, q.used_ring
            )));
            let guest = q.avail_idx.map_or("unreadable".to_string(), |i| i.to_string());
            let event = match (q.event_idx, q.used_event, q.avail_event) {
                (true, Some(u), Some(a)) => format!("on (used_event {u}, avail_event {a})"),
                _ => "off".to_string(),
            };
            out.push(ViewLine::plain(format!(
                "    avail idx: last seen {}, guest {guest}; used idx {}; in flight {}; event idx {event}",
                q.last_avail, q.used_idx, q.in_flight
            )));
            let c = &q.counts;
            out.push(ViewLine::plain(format!(
                "    notifications {} (trapped {}, ioeventfd {}), interrupts {}, taken {}, completed {}, errors {}",
                c.notifies(),
                c.notifies_trapped,
                c.notifies_ioeventfd,
                c.interrupts,
                c.taken,
                c.completed,
                c.errors
            )));
            if let Some(note) = &q.note {
                out.push(ViewLine::plain(format!("    {note}")));
            }
            if let Some((n, i)) = rates(q.index) {
                out.push(ViewLine::plain(format!("    now: {n:.0} notifications/s, {i:.0} interrupts/s")));
            }
            if !detail {
                continue;
            }
            out.push(ViewLine::plain(format!("    in flight:{}", if q.pending.is_empty() { " none" } else { "" })));
            for p in &q.pending {
                out.push(ViewLine::plain(format!("      chain {}: {}", p.head, p.request)));
                descs_lines(&mut out, &p.descs);
            }
            out.push(ViewLine::plain(format!("    last completed:{}", if q.recent.is_empty() { " none" } else { "" })));
            for d in q.recent.iter().rev() {
                out.push(ViewLine::plain(format!(
                    "      chain {}: {} -> {}, {} written, {:.1} us",
                    d.head,
                    d.request,
                    d.status,
                    crate::trace::device::bytes(d.written as u64),
                    d.latency_ns as f64 / 1000.0
                )));
                descs_lines(&mut out, &d.descs);
            }
        }
        out
    }
}

/// One line of a device's text; a descriptor's line names its buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewLine {
    pub text: String,
    /// The descriptor's buffer: guest-physical address and length.
    pub buffer: Option<(u64, u32)>,
}

impl ViewLine {
    fn plain(text: String) -> Self {
        Self { text, buffer: None }
    }
}

fn descs_lines(out: &mut Vec<ViewLine>, descs: &[Desc]) {
    for (i, d) in descs.iter().enumerate() {
        out.push(ViewLine {
            text: format!(
                "        desc {i}: addr {:#x} len {} flags {} next {}",
                d.addr,
                d.len,
                d.flag_names(),
                d.next
            ),
            buffer: Some((d.addr, d.len)),
        });
    }
}

/// Why `virtio NAME` has nothing to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoDevice {
    #[error("this VM has no virtio devices (add them with --disk FILE or --virtio rng,console)")]
    None,
    #[error("no virtio device {name:?}; there are: {}", there.join(", "))]
    NoSuch { name: String, there: Vec<&'static str> },
}

/// `virtio [NAME]` as text: every device in short, or one in full (QEMU's `info virtio-*`).
pub fn virtio_text(views: &[DeviceView], name: &str) -> Result<String, NoDevice> {
    if views.is_empty() {
        return Err(NoDevice::None);
    }
    if name.is_empty() {
        return Ok(views.iter().map(|v| v.text(false)).collect());
    }
    match views.iter().find(|v| v.name == name) {
        Some(v) => Ok(v.text(true)),
        None => Err(NoDevice::NoSuch { name: name.to_string(), there: views.iter().map(|v| v.name).collect() }),
    }
}

fn queue_view(t: &Transport, index: usize, q: &Queue, counts: QueueCounts) -> QueueView {
    let mem = t.memory();
    let read_u16 = |addr: u64| mem.read_obj::<u16>(GuestAddress(addr)).ok().map(u16::from_le);
    let avail_idx = q.ready().then(|| q.avail_idx(mem, Ordering::Acquire).ok().map(|w| w.0)).flatten();
    let size = q.size() as u64;
    // The driver's and the device's event fields follow their rings (checked: the guest chose the
    // addresses).
    let event = |on: bool, ring: u64, offset: u64| if on { ring.checked_add(offset).and_then(read_u16) } else { None };
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
        used_event: event(q.event_idx_enabled(), q.avail_ring(), 4 + 2 * size),
        avail_event: event(q.event_idx_enabled(), q.used_ring(), 4 + 8 * size),
        counts,
        recent: t.recent()[index].0.iter().cloned().collect(),
        pending: if in_flight > 0 && in_flight <= q.size() { pending(t, index, q) } else { Vec::new() },
        note: t.device().queue_note(index as u16),
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
                Ok(descs) => PendingChain { head, request: t.device().inspect(index as u16, &descs, mem), descs },
                Err(why) => PendingChain { head, request: why.to_string(), descs: Vec::new() },
            }
        })
        .collect()
}

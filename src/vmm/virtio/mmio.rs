//! The virtio-mmio transport, version 2 (virtio 1.x, section 4.2.2): the registers a driver
//! negotiates and configures a device through, the device's queues, and the rules of the status
//! register. Generic over the device; shared by the vCPUs (register accesses, trapped
//! notifications) and the device's worker (requests), each under the transport's lock.
//!
//! A driver that breaks a rule is told as the spec allows — FEATURES_OK refused, or the device
//! marked DEVICE_NEEDS_RESET with a configuration-change interrupt — and every such refusal is a
//! device event naming the problem. Nothing the guest writes can make the VMM fail.

use std::sync::Arc;

use crate::vmm::memory::Mem;
use virtio_bindings::virtio_mmio::*;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::VirtioDevice;
use super::chain::{Desc, read_chain};
use super::features::{
    F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, STATUS_DRIVER_OK, STATUS_FEATURES_OK, STATUS_NEEDS_RESET,
};
use super::stats::{Done, EventOut, Recent};
use crate::trace::{DeviceEventKind, NotifyPath};
use serde::Deserialize;

use crate::vmm::bus::{BusDevice, StateError, VmRequest};

/// "virt", little-endian.
const MAGIC: u32 = 0x7472_6976;
/// The vendor id kvmscope reports ("KVMS").
const VENDOR: u32 = 0x534d_564b;
/// Start of the device-specific configuration space.
const CONFIG: u64 = VIRTIO_MMIO_CONFIG as u64;
/// Requests (and rounds) one `process_queue` takes at most before it lets go of the transport: a
/// driver that keeps its ring full, or whose rings overlap so that each completion looks like a
/// new request, cannot keep the lock or the worker forever.
const BUDGET: usize = 256;

/// One device and its transport state.
pub struct Transport {
    name: &'static str,
    device: Box<dyn VirtioDevice>,
    mem: Mem,
    queues: Vec<Queue>,
    /// The last requests completed, per queue.
    recent: Vec<Recent>,
    /// A QueueNum the device refused (not a power of two, or above the maximum), per queue.
    size_refused: Vec<Option<u32>>,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    status: u32,
    interrupt_status: u32,
    config_generation: u32,
    /// The interrupt line: an irqfd where the VM has an interrupt controller.
    irq: Option<EventFd>,
    /// Per queue: the eventfd that wakes the worker. A trapped notification writes it; with
    /// `--ioeventfd`, KVM does.
    notify: Vec<Arc<EventFd>>,
    /// Per queue: trapped notifications the worker has not counted yet.
    trapped: Vec<u64>,
    /// Where this device's events go, counted.
    pub events: EventOut,
}

impl Transport {
    /// A transport for `device` over guest memory `mem`, raising `irq`.
    pub fn new(
        name: &'static str,
        device: Box<dyn VirtioDevice>,
        mem: Mem,
        irq: Option<EventFd>,
    ) -> std::io::Result<Self> {
        let sizes = device.queue_sizes();
        let queues = sizes.iter().map(|&s| Queue::new(s).expect("device queue sizes are powers of two")).collect();
        let notify =
            sizes.iter().map(|_| EventFd::new(libc::EFD_NONBLOCK).map(Arc::new)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            name,
            mem,
            queues,
            recent: vec![Recent::default(); sizes.len()],
            size_refused: vec![None; sizes.len()],
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            status: 0,
            interrupt_status: 0,
            config_generation: 0,
            irq,
            notify,
            trapped: vec![0; sizes.len()],
            events: EventOut::default(),
            device,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Links the device to its events and its worker's `wake` (before the run).
    pub fn connect_device(&mut self, wake: Arc<EventFd>) {
        let link = super::DeviceLink { name: self.name, events: self.events.clone(), wake };
        self.device.connect(link);
    }

    pub fn device(&self) -> &dyn VirtioDevice {
        &*self.device
    }

    pub fn device_mut(&mut self) -> &mut dyn VirtioDevice {
        &mut *self.device
    }

    /// Every feature the device offers, the transport's own included.
    pub fn offered_features(&self) -> u64 {
        self.device.features() | F_VERSION_1 | F_INDIRECT_DESC | F_EVENT_IDX
    }

    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    pub fn status(&self) -> u32 {
        self.status
    }

    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status
    }

    pub fn queues(&self) -> &[Queue] {
        &self.queues
    }

    /// The last requests completed, per queue.
    pub fn recent(&self) -> &[Recent] {
        &self.recent
    }

    pub fn memory(&self) -> &Mem {
        &self.mem
    }

    /// Queues the device has.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// The eventfd of each queue, for the worker and for `KVM_IOEVENTFD`.
    pub fn notify_fds(&self) -> &[Arc<EventFd>] {
        &self.notify
    }

    /// Whether the driver has finished set-up and the device is not broken.
    fn live(&self) -> bool {
        self.status & STATUS_DRIVER_OK != 0 && self.status & STATUS_NEEDS_RESET == 0
    }

    fn problem(&mut self, queue: Option<u16>, problem: String) {
        self.events.emit(self.name, queue, DeviceEventKind::Error { problem });
    }

    /// The device cannot go on until the driver resets it (spec 2.1.2): status bit and a
    /// configuration-change interrupt.
    fn needs_reset(&mut self, queue: Option<u16>, problem: String) {
        self.problem(queue, format!("{problem}; device marked DEVICE_NEEDS_RESET"));
        if self.status & STATUS_DRIVER_OK != 0 {
            self.status |= STATUS_NEEDS_RESET;
            self.interrupt_status |= VIRTIO_MMIO_INT_CONFIG;
            self.raise_irq(queue);
        }
    }

    fn raise_irq(&mut self, queue: Option<u16>) {
        if let Some(irq) = &self.irq {
            let _ = irq.write(1);
        }
        self.events.emit(self.name, queue, DeviceEventKind::Interrupt);
    }

    fn reset(&mut self) {
        for q in &mut self.queues {
            q.reset();
        }
        self.size_refused.iter_mut().for_each(|r| *r = None);
        self.trapped.iter_mut().for_each(|t| *t = 0);
        self.driver_features = 0;
        self.status = 0;
        self.interrupt_status = 0;
        self.device.reset();
    }

    fn selected(&self) -> Option<usize> {
        let q = self.queue_sel as usize;
        (q < self.queues.len()).then_some(q)
    }

    fn read_register(&self, offset: u32) -> Option<u32> {
        let queue = self.selected().map(|q| &self.queues[q]);
        Some(match offset {
            VIRTIO_MMIO_MAGIC_VALUE => MAGIC,
            VIRTIO_MMIO_VERSION => 2,
            VIRTIO_MMIO_DEVICE_ID => self.device.device_id(),
            VIRTIO_MMIO_VENDOR_ID => VENDOR,
            VIRTIO_MMIO_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered_features() as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            VIRTIO_MMIO_QUEUE_NUM_MAX => queue.map_or(0, |q| q.max_size() as u32),
            VIRTIO_MMIO_QUEUE_READY => queue.map_or(0, |q| q.ready() as u32),
            VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt_status,
            VIRTIO_MMIO_STATUS => self.status,
            VIRTIO_MMIO_CONFIG_GENERATION => self.config_generation,
            _ => return None,
        })
    }

    fn write_register(&mut self, offset: u32, value: u32) {
        let q = self.selected();
        let writable = |t: &Self, q: usize| !t.queues[q].ready() && t.status & STATUS_DRIVER_OK == 0;
        match offset {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES => {
                if self.status & STATUS_FEATURES_OK != 0 {
                    self.problem(None, "driver features written after FEATURES_OK; ignored".into());
                } else if self.driver_features_sel < 2 {
                    let shift = 32 * self.driver_features_sel;
                    self.driver_features = self.driver_features & !(0xffff_ffffu64 << shift) | (value as u64) << shift;
                }
            }
            VIRTIO_MMIO_QUEUE_SEL => self.queue_sel = value,
            VIRTIO_MMIO_QUEUE_NUM => {
                if let Some(q) = q.filter(|&q| writable(self, q)) {
                    let max = self.queues[q].max_size();
                    if value <= u16::MAX as u32 && self.queues[q].try_set_size(value as u16).is_ok() {
                        self.size_refused[q] = None;
                    } else {
                        self.size_refused[q] = Some(value);
                        let why =
                            format!("queue size {value} refused (not a power of two, or above the maximum {max})");
                        self.problem(Some(q as u16), why);
                    }
                }
            }
            VIRTIO_MMIO_QUEUE_READY => {
                if let Some(q) = q {
                    self.set_queue_ready(q, value == 1);
                }
            }
            VIRTIO_MMIO_QUEUE_DESC_LOW
            | VIRTIO_MMIO_QUEUE_DESC_HIGH
            | VIRTIO_MMIO_QUEUE_AVAIL_LOW
            | VIRTIO_MMIO_QUEUE_AVAIL_HIGH
            | VIRTIO_MMIO_QUEUE_USED_LOW
            | VIRTIO_MMIO_QUEUE_USED_HIGH => {
                if let Some(q) = q.filter(|&q| writable(self, q)) {
                    let (low, high) = if offset & 4 == 0 { (Some(value), None) } else { (None, Some(value)) };
                    let queue = &mut self.queues[q];
                    match offset & !4 {
                        VIRTIO_MMIO_QUEUE_DESC_LOW => queue.set_desc_table_address(low, high),
                        VIRTIO_MMIO_QUEUE_AVAIL_LOW => queue.set_avail_ring_address(low, high),
                        _ => queue.set_used_ring_address(low, high),
                    }
                }
            }
            VIRTIO_MMIO_QUEUE_NOTIFY => self.trapped_notify(value),
            VIRTIO_MMIO_INTERRUPT_ACK => self.interrupt_status &= !value,
            VIRTIO_MMIO_STATUS => self.write_status(value),
            _ => self.problem(None, format!("write of {value:#x} to read-only or unknown register {offset:#x}")),
        }
    }

    fn set_queue_ready(&mut self, q: usize, ready: bool) {
        if !ready {
            self.queues[q].set_ready(false);
            return;
        }
        let queue = q as u16;
        if let Some(size) = self.size_refused[q] {
            self.problem(Some(queue), format!("queue {q} set ready with the refused size {size}; it stays off"));
            return;
        }
        self.queues[q].set_ready(true);
        if !self.queues[q].is_valid(&self.mem) {
            self.queues[q].set_ready(false);
            self.problem(
                Some(queue),
                format!(
                    "queue {q} rings outside guest RAM or misaligned (descriptors {:#x}, driver {:#x}, device {:#x}); \
                     it stays off",
                    self.queues[q].desc_table(),
                    self.queues[q].avail_ring(),
                    self.queues[q].used_ring()
                ),
            );
            return;
        }
        self.queues[q].set_event_idx(self.driver_features & F_EVENT_IDX != 0);
    }

    fn trapped_notify(&mut self, value: u32) {
        let q = (value & 0xffff) as usize;
        if q >= self.queues.len() || !self.queues[q].ready() {
            self.problem(None, format!("notify for queue {q}, which is not ready; ignored"));
            return;
        }
        self.trapped[q] += 1;
        let _ = self.notify[q].write(1);
    }

    fn write_status(&mut self, value: u32) {
        let old = self.status;
        if value == 0 {
            self.reset();
            return;
        }
        if value & old != old & !STATUS_NEEDS_RESET {
            let why = format!("status {value:#x} clears bits of {old:#x} without a reset; ignored");
            self.problem(None, why);
            return;
        }
        let mut new = value | (old & STATUS_NEEDS_RESET);
        if new & STATUS_FEATURES_OK != 0 && old & STATUS_FEATURES_OK == 0 {
            let offered = self.offered_features();
            let refusal = if self.driver_features & !offered != 0 {
                Some(format!("the driver accepted features never offered ({:#x})", self.driver_features & !offered))
            } else if self.driver_features & F_VERSION_1 == 0 {
                Some("the driver did not accept VERSION_1 (legacy drivers are not supported)".to_string())
            } else {
                None
            };
            if let Some(why) = refusal {
                new &= !STATUS_FEATURES_OK;
                self.status = new;
                self.problem(None, format!("FEATURES_OK refused: {why}"));
                return;
            }
        }
        self.status = new;
        if new & STATUS_DRIVER_OK != 0 && old & STATUS_DRIVER_OK == 0 {
            if new & STATUS_FEATURES_OK == 0 {
                self.needs_reset(None, "DRIVER_OK set without FEATURES_OK".into());
            } else if let Some(problem) = self.device.activate(self.driver_features) {
                self.problem(None, problem);
            }
        }
    }

    /// Counts what woke the worker on queue `q`: `total` notifications read from its eventfd, of
    /// which those the vCPUs trapped; KVM signalled the rest itself.
    pub fn count_notifies(&mut self, q: usize, total: u64) {
        let trapped = std::mem::take(&mut self.trapped[q]).min(total);
        let queue = Some(q as u16);
        for (path, n) in [(NotifyPath::Trapped, trapped), (NotifyPath::Ioeventfd, total - trapped)] {
            if n > 0 {
                let count = n.min(u32::MAX as u64) as u32;
                self.events.emit(self.name, queue, DeviceEventKind::Notify { path, count });
            }
        }
    }

    /// Takes the chains the driver made available on queue `q`, up to a budget, and completes
    /// them; interrupts the driver when the queue's rules ask for it. `since_ns`: when the
    /// notification arrived. True when the budget ran out with more to do: call again (after
    /// letting go of the transport).
    pub fn process_queue(&mut self, q: usize, since_ns: u64) -> bool {
        if !self.live() || q >= self.queues.len() || !self.queues[q].ready() {
            return false;
        }
        let queue = Some(q as u16);
        let (mut used, mut more) = (0, false);
        // Rounds are bounded too: an avail index that moves without chains to take ends here.
        'rounds: for _ in 0..BUDGET {
            if !self.device.ready_for(q as u16) {
                break;
            }
            let _ = self.queues[q].disable_notification(&self.mem);
            while self.device.ready_for(q as u16) {
                if used == BUDGET {
                    more = true;
                    break 'rounds;
                }
                let taken = self.queues[q].iter(&self.mem).map(|mut it| it.next());
                let chain = match taken {
                    Ok(Some(chain)) => chain,
                    Ok(None) => break,
                    Err(e) => {
                        self.needs_reset(queue, format!("queue {q}: {e}"));
                        break 'rounds;
                    }
                };
                let head = chain.head_index();
                let descs = match read_chain(chain, &self.mem) {
                    Ok(d) => d,
                    Err(why) => {
                        self.needs_reset(queue, format!("queue {q} chain {head}: {why}"));
                        break 'rounds;
                    }
                };
                self.complete(q, head, descs, since_ns);
                used += 1;
                if !self.live() {
                    break 'rounds;
                }
            }
            match self.queues[q].enable_notification(&self.mem) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    self.needs_reset(queue, format!("queue {q}: {e}"));
                    break;
                }
            }
        }
        if used > 0 && self.live() && self.queues[q].needs_notification(&self.mem).unwrap_or(true) {
            self.interrupt_status |= VIRTIO_MMIO_INT_VRING;
            self.raise_irq(queue);
        }
        more && self.live()
    }

    fn complete(&mut self, q: usize, head: u16, descs: Vec<Desc>, since_ns: u64) {
        let queue = Some(q as u16);
        let request = self.device.describe(q as u16, &descs, &self.mem);
        self.events.emit(self.name, queue, DeviceEventKind::Taken { head, request: request.clone() });
        let done = self.device.handle(q as u16, &descs, &self.mem);
        if let Some(problem) = done.problem.clone() {
            self.problem(queue, format!("chain {head}: {problem}"));
        }
        if let Err(e) = self.queues[q].add_used(&self.mem, head, done.written) {
            return self.needs_reset(queue, format!("queue {q}: used ring: {e}"));
        }
        let t_ns = self.events.now_ns();
        let latency_ns = t_ns.saturating_sub(since_ns);
        let kind = DeviceEventKind::Completed { head, written: done.written, latency_ns, status: done.status.clone() };
        self.events.emit(self.name, queue, kind);
        let written = done.written;
        self.recent[q].push(Done { t_ns, head, request, descs, written, status: done.status, latency_ns });
    }
}

impl BusDevice for Transport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset >= CONFIG {
            self.device.read_config(offset - CONFIG, data);
            return;
        }
        match (data.len(), self.read_register(offset as u32)) {
            (4, Some(v)) => data.copy_from_slice(&v.to_le_bytes()),
            (4, None) => {}
            (n, _) => self.problem(None, format!("{n}-byte read of register {offset:#x} (registers are 32-bit)")),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        if offset >= CONFIG {
            self.problem(None, format!("write to configuration space at {:#x}, which is read-only", offset - CONFIG));
        } else if let Ok(bytes) = <[u8; 4]>::try_from(data) {
            self.write_register(offset as u32, u32::from_le_bytes(bytes));
        } else {
            self.problem(None, format!("{}-byte write to register {offset:#x} (registers are 32-bit)", data.len()));
        }
        None
    }

    /// The transport's registers and each queue's place in its rings (the rings themselves are in
    /// guest RAM, which a snapshot keeps too).
    fn save(&self) -> serde_json::Value {
        let queues: Vec<QueueSnapshot> = self.queues.iter().map(|q| QueueSnapshot::from(q.state())).collect();
        let state = TransportSnapshot {
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            status: self.status,
            interrupt_status: self.interrupt_status,
            config_generation: self.config_generation,
            size_refused: self.size_refused.clone(),
            queues,
        };
        serde_json::to_value(state).unwrap_or_default()
    }

    /// Takes back a saved state; the worker looks at every queue again after (a notification
    /// the guest made before the state was saved is not lost).
    fn restore(&mut self, state: &serde_json::Value) -> Result<(), StateError> {
        let s = TransportSnapshot::deserialize(state)?;
        if s.queues.len() != self.queues.len() || s.size_refused.len() != self.queues.len() {
            let (theirs, mine) = (s.queues.len(), self.queues.len());
            return Err(StateError::Mismatch(format!("{theirs} queues in the state, {mine} on this device")));
        }
        let mut queues = Vec::new();
        for (i, q) in s.queues.iter().enumerate() {
            let q = Queue::try_from(q.to_state()).map_err(|e| StateError::Mismatch(format!("queue {i}: {e}")))?;
            queues.push(q);
        }
        self.queues = queues;
        self.device_features_sel = s.device_features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.driver_features = s.driver_features;
        self.queue_sel = s.queue_sel;
        self.status = s.status;
        self.interrupt_status = s.interrupt_status;
        self.config_generation = s.config_generation;
        self.size_refused = s.size_refused;
        for fd in &self.notify {
            let _ = fd.write(1);
        }
        Ok(())
    }
}

/// A transport's state in a snapshot.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TransportSnapshot {
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    status: u32,
    interrupt_status: u32,
    config_generation: u32,
    size_refused: Vec<Option<u32>>,
    queues: Vec<QueueSnapshot>,
}

/// virtio-queue's `QueueState`, as a snapshot keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct QueueSnapshot {
    max_size: u16,
    next_avail: u16,
    next_used: u16,
    event_idx: bool,
    size: u16,
    ready: bool,
    desc: u64,
    avail: u64,
    used: u64,
}

impl From<virtio_queue::QueueState> for QueueSnapshot {
    fn from(q: virtio_queue::QueueState) -> Self {
        Self {
            max_size: q.max_size,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx: q.event_idx_enabled,
            size: q.size,
            ready: q.ready,
            desc: q.desc_table,
            avail: q.avail_ring,
            used: q.used_ring,
        }
    }
}

impl QueueSnapshot {
    fn to_state(&self) -> virtio_queue::QueueState {
        virtio_queue::QueueState {
            max_size: self.max_size,
            next_avail: self.next_avail,
            next_used: self.next_used,
            event_idx_enabled: self.event_idx,
            size: self.size,
            ready: self.ready,
            desc_table: self.desc,
            avail_ring: self.avail,
            used_ring: self.used,
        }
    }
}

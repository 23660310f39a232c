//! Paravirtual devices: virtio 1.x over the MMIO transport (version 2 register layout), the way
//! Firecracker and cloud-hypervisor give them to guests.
//!
//! Each device is a [`Transport`] on the MMIO bus (its registers, the negotiation, the queues, from
//! the `virtio-queue` crate) around a [`VirtioDevice`] (what a request means: blk, rng, console),
//! served by a worker thread of its own ([`worker`]) that the driver's queue notifications wake:
//! through a trapped MMIO write to QueueNotify (a userspace exit, by default) or through an eventfd
//! KVM signals itself (`--ioeventfd`). The worker raises the device's interrupt through an irqfd.
//!
//! Layout, fixed so that the project's own guests find the devices without a firmware: device `i`
//! has its registers at `MMIO_BASE + i * MMIO_STRIDE` and interrupt `FIRST_IRQ + i`; the disks come
//! first in `--disk` order, then the entropy device, then the console, then the network card. Linux guests are told on their
//! command line (`virtio_mmio.device=4K@ADDR:IRQ`).

pub mod blk;
pub mod chain;
pub mod console;
pub mod features;
pub mod mmio;
pub mod net;
pub mod rng;
pub mod set;
pub mod stats;
pub mod tap;
pub mod undo;
pub mod view;
pub mod worker;

use std::sync::Arc;

use crate::vmm::memory::Mem;
use vmm_sys_util::eventfd::EventFd;

pub use blk::DiskSpec;
pub use chain::Desc;
pub use mmio::Transport;
pub use net::NetSpec;
pub use set::{Extra, VirtioConfig, VirtioError, VirtioSet};
pub use view::DeviceView;

/// Guest-physical address of the first device's registers (in the MMIO hole).
pub const MMIO_BASE: u64 = 0xd000_0000;
/// Register window of one device.
pub const MMIO_STRIDE: u64 = 0x1000;
/// Interrupt of the first device (the serial port has 4).
pub const FIRST_IRQ: u32 = 5;
/// Devices kvmscope builds at most (interrupts 5..=23 of the IOAPIC).
pub const MAX_DEVICES: usize = 19;

/// The register window and interrupt of device `index`.
pub fn slot(index: usize) -> (u64, u32) {
    (MMIO_BASE + index as u64 * MMIO_STRIDE, FIRST_IRQ + index as u32)
}

/// What the device made of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Bytes the device wrote into the chain's device-writable buffers (the used ring's `len`).
    pub written: u32,
    /// The result in words ("ok", "IOERR: sector beyond the disk" ...).
    pub status: String,
    /// A driver's mistake worth an event of its own.
    pub problem: Option<String>,
}

impl Completion {
    pub fn ok(written: u32) -> Self {
        Self { written, status: "ok".into(), problem: None }
    }
}

/// What a device that acts on its own (input from the host) needs of its transport: where its
/// events go, and how to wake its worker when input has come.
#[derive(Clone)]
pub struct DeviceLink {
    pub name: &'static str,
    pub events: stats::EventOut,
    pub wake: Arc<EventFd>,
}

/// One kind of virtio device: its identity, features, configuration space, and what a request on
/// one of its queues means. Called with the transport locked, on the device's worker thread.
pub trait VirtioDevice: Send {
    /// The virtio device id (`VIRTIO_ID_*`).
    fn device_id(&self) -> u32;
    /// The features the device offers (`VIRTIO_F_VERSION_1` is added by the transport).
    fn features(&self) -> u64;
    /// Each queue's maximum size (a power of two), in queue order.
    fn queue_sizes(&self) -> &'static [u16];
    /// Each queue's name, as the spec calls it.
    fn queue_name(&self, queue: u16) -> &'static str;
    /// Reads the device-specific configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// What one chain asks for, in words, before it is carried out.
    fn describe(&self, queue: u16, chain: &[Desc], mem: &Mem) -> String;
    /// Carries out one request (a checked chain) taken from `queue`.
    fn handle(&mut self, queue: u16, chain: &[Desc], mem: &Mem) -> Completion;
    /// Whether the device takes chains from `queue` now (a receive queue only when it has input).
    fn ready_for(&self, _queue: u16) -> bool {
        true
    }
    /// What a chain the driver has made available asks for, decoded for the views (by default
    /// as [`VirtioDevice::describe`] says it).
    fn inspect(&self, queue: u16, chain: &[Desc], mem: &Mem) -> String {
        self.describe(queue, chain, mem)
    }
    /// The device's link to its transport and worker, given once before the run.
    fn connect(&mut self, _link: DeviceLink) {}
    /// The driver has set the device up (DRIVER_OK) with `driver_features`; what went wrong, if
    /// anything did.
    fn activate(&mut self, _driver_features: u64) -> Option<String> {
        None
    }
    /// Forgets in-flight work on a device reset.
    fn reset(&mut self) {}
    /// The run is over: threads of its own end.
    fn stop(&mut self) {}
    /// A line the device adds to a queue's view (a receive queue's waiting input).
    fn queue_note(&self, _queue: u16) -> Option<String> {
        None
    }
    /// What the device line says of it besides its kind (a disk's capacity).
    fn about(&self) -> Option<String> {
        None
    }
}

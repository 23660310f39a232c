//! The VM's virtio devices as one set: built from the options, placed on the MMIO bus in the fixed
//! layout, wired to interrupts (irqfd) and, with `--ioeventfd`, to KVM's notification eventfds;
//! their workers started with the run and stopped at its end.

use std::io::Write;
use std::sync::{Arc, Mutex};

use kvm_ioctls::{IoEventAddress, VmFd};
use virtio_bindings::virtio_mmio::VIRTIO_MMIO_QUEUE_NOTIFY;
use vmm_sys_util::eventfd::EventFd;

use super::blk::{Block, DiskError, DiskSpec};
use super::console::{Console, Input};
use super::net::{Net, NetSpec};
use super::rng::Rng;
use super::tap::TapError;
use super::undo::UndoLog;
use super::view::DeviceView;
use super::worker::Worker;
use super::{MAX_DEVICES, MMIO_STRIDE, Transport, VirtioDevice, slot};
use crate::sink::ExitSink;
use crate::sync::lock;
use crate::trace::DeviceCounters;
use crate::vmm::bus::{Bus, BusError};
use crate::vmm::clock::Clock;
use crate::vmm::memory::GuestRam;

/// Names on the bus of the disks, in `--disk` order.
const DISK_NAMES: [&str; 8] = [
    "virtio-blk0",
    "virtio-blk1",
    "virtio-blk2",
    "virtio-blk3",
    "virtio-blk4",
    "virtio-blk5",
    "virtio-blk6",
    "virtio-blk7",
];

/// Why the virtio devices cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum VirtioError {
    #[error("--disk given {0} times; kvmscope has room for 8")]
    TooManyDisks(usize),
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("--virtio none cannot be given with other devices ({0})")]
    NoneWithOthers(String),
    #[error("cannot create an eventfd for a virtio device: {0}")]
    EventFd(std::io::Error),
    #[error("{name}: KVM refused irqfd {irq}: {source}")]
    Irqfd { name: &'static str, irq: u32, source: kvm_ioctls::Error },
    #[error("{name}: KVM refused an ioeventfd (KVM_IOEVENTFD): {source}")]
    Ioeventfd { name: &'static str, source: kvm_ioctls::Error },
    #[error("cannot start a virtio device's worker thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Tap(#[from] TapError),
}

impl VirtioError {
    /// Whether the user's options are at fault (rather than the host).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            VirtioError::TooManyDisks(_)
                | VirtioError::Disk(_)
                | VirtioError::NoneWithOthers(_)
                | VirtioError::Tap(TapError::BadName(_) | TapError::NoRights { .. } | TapError::Busy { .. })
                | VirtioError::Tap(TapError::NotATap { .. })
        )
    }
}

/// A device besides the disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Extra {
    /// virtio-rng.
    Rng,
    /// virtio-console (`console=hvc0`).
    Console,
    /// Neither.
    None,
}

/// The virtio options of a run.
#[derive(Debug, Clone, Default)]
pub struct VirtioConfig {
    pub disks: Vec<DiskSpec>,
    /// `--virtio LIST`; `None`: rng and console for Linux guests, nothing for others.
    pub extra: Option<Vec<Extra>>,
    /// Queue notifications through `KVM_IOEVENTFD` instead of trapped MMIO writes.
    pub ioeventfd: bool,
    /// `--net tap=NAME[,mac=MAC]`: a network card on a TAP.
    pub net: Option<NetSpec>,
}

struct Entry {
    transport: Arc<Mutex<Transport>>,
    base: u64,
    irq: u32,
    wake: Arc<EventFd>,
}

/// The VM's virtio devices.
#[derive(Default)]
pub struct VirtioSet {
    entries: Vec<Entry>,
    console_input: Option<(Input, Arc<EventFd>)>,
    workers: Mutex<Vec<Worker>>,
    ioeventfd: bool,
    /// The writable disks' undo logs, in `--disk` order.
    undo_logs: Vec<Arc<Mutex<UndoLog>>>,
}

impl VirtioSet {
    /// Builds the devices `config` asks for. `irqchip`: the VM has an in-kernel IOAPIC to deliver
    /// their interrupts (without one, drivers poll the used rings).
    pub fn build(
        config: &VirtioConfig,
        linux: bool,
        ram: &GuestRam,
        vm: &VmFd,
        irqchip: bool,
        console: impl Fn() -> Box<dyn Write + Send>,
    ) -> Result<Self, VirtioError> {
        if config.disks.len() > DISK_NAMES.len() {
            return Err(VirtioError::TooManyDisks(config.disks.len()));
        }
        if let Some(list) = config.extra.as_ref().filter(|l| l.contains(&Extra::None) && l.len() > 1) {
            let names: Vec<String> = list.iter().map(|e| format!("{e:?}").to_lowercase()).collect();
            return Err(VirtioError::NoneWithOthers(names.join(",")));
        }
        let extra =
            config.extra.clone().unwrap_or_else(|| if linux { vec![Extra::Rng, Extra::Console] } else { vec![] });
        let mut devices: Vec<(&'static str, Box<dyn VirtioDevice>)> = Vec::new();
        let mut opened: Vec<((u64, u64), bool)> = Vec::new();
        let mut undo_logs = Vec::new();
        for (spec, name) in config.disks.iter().zip(DISK_NAMES) {
            // The same image twice: two writable disks over one file would corrupt it.
            let twice = |spec: &DiskSpec| {
                let meta = std::fs::metadata(&spec.path).ok()?;
                use std::os::unix::fs::MetadataExt;
                opened.iter().find(|(id, _)| *id == (meta.dev(), meta.ino())).map(|(_, ro)| *ro)
            };
            match twice(spec) {
                Some(ro) if !(ro && spec.read_only) => {
                    return Err(DiskError::Twice { path: spec.path.clone() }.into());
                }
                Some(_) => {
                    crate::notice::say(format!("--disk {}: given twice, read-only both times", spec.path.display()))
                }
                None => {}
            }
            let mut disk = Block::open(spec)?;
            if !spec.read_only {
                let undo = disk.undo_log().map_err(|source| DiskError::Open { path: spec.path.clone(), source })?;
                undo_logs.push(undo);
            }
            if disk.tail() > 0 {
                crate::notice::say(format!(
                    "--disk {}: its last {} (less than a 512-byte sector) is not part of the disk the guest sees",
                    spec.path.display(),
                    crate::trace::device::bytes(disk.tail())
                ));
            }
            opened.push((disk.identity, spec.read_only));
            devices.push((name, Box::new(disk)));
        }
        let mut set = Self { ioeventfd: config.ioeventfd, undo_logs, ..Self::default() };
        if extra.contains(&Extra::Rng) {
            devices.push(("virtio-rng", Box::new(Rng)));
        }
        let input = Input::default();
        if extra.contains(&Extra::Console) {
            devices.push(("virtio-console", Box::new(Console::new(console(), input.clone()))));
        }
        if let Some(spec) = &config.net {
            devices.push(("virtio-net", Box::new(Net::open(spec)?)));
        }
        debug_assert!(devices.len() <= MAX_DEVICES);
        let eventfd = VirtioError::EventFd;
        for (index, (name, device)) in devices.into_iter().enumerate() {
            let (base, irq) = slot(index);
            let line = if irqchip {
                let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(eventfd)?;
                vm.register_irqfd(&evt, irq).map_err(|source| VirtioError::Irqfd { name, irq, source })?;
                Some(evt)
            } else {
                None
            };
            let is_console = name == "virtio-console";
            let transport = Transport::new(name, device, ram.mem.clone(), line).map_err(eventfd)?;
            if config.ioeventfd {
                for (q, fd) in transport.notify_fds().iter().enumerate() {
                    let addr = IoEventAddress::Mmio(base + VIRTIO_MMIO_QUEUE_NOTIFY as u64);
                    vm.register_ioevent(fd, &addr, q as u32)
                        .map_err(|source| VirtioError::Ioeventfd { name, source })?;
                }
            }
            let wake = Arc::new(EventFd::new(libc::EFD_NONBLOCK).map_err(eventfd)?);
            let mut transport = transport;
            transport.connect_device(wake.clone());
            if is_console {
                set.console_input = Some((input.clone(), wake.clone()));
            }
            set.entries.push(Entry { transport: Arc::new(Mutex::new(transport)), base, irq, wake });
        }
        Ok(set)
    }

    /// Completes what the drivers have made available (the vCPUs are parked, so nothing new
    /// comes): a state taken after holds no request half done, and the disks' marks come after
    /// every write the state's RAM has seen.
    pub fn settle(&self) {
        for e in &self.entries {
            let mut t = lock(&e.transport);
            let since = t.events.now_ns();
            for q in 0..t.queue_count() {
                // Bounded: a queue whose index the guest moved without chains stops in rounds.
                for _ in 0..1024 {
                    if !t.process_queue(q, since) {
                        break;
                    }
                }
            }
        }
    }

    /// A mark in each writable disk's undo log (a checkpoint is taken).
    pub fn mark_disks(&self) -> Vec<u64> {
        self.undo_logs.iter().map(|u| lock(u).mark()).collect()
    }

    /// Each writable disk as it was at `marks` (a checkpoint is restored).
    pub fn rewind_disks(&self, marks: &[u64]) -> std::io::Result<()> {
        for (undo, &mark) in self.undo_logs.iter().zip(marks) {
            lock(undo).rewind(mark)?;
        }
        Ok(())
    }

    /// Forgets what only a rewind to before `marks` would need (older checkpoints are gone).
    pub fn forget_disks_before(&self, marks: &[u64]) {
        for (undo, &mark) in self.undo_logs.iter().zip(marks) {
            lock(undo).forget_before(mark);
        }
    }

    /// Bytes the disks' undo logs keep.
    pub fn disk_undo_bytes(&self) -> u64 {
        self.undo_logs.iter().map(|u| lock(u).bytes()).sum()
    }

    /// Puts every device's registers on the MMIO bus.
    pub fn attach(&self, mmio: &mut Bus) -> Result<(), BusError> {
        for e in &self.entries {
            let name = lock(&e.transport).name();
            mmio.insert(name, e.base, MMIO_STRIDE, e.transport.clone())?;
        }
        Ok(())
    }

    /// What tells Linux where the devices are: `virtio_mmio.device=4K@ADDR:IRQ` per device.
    pub fn cmdline(&self) -> String {
        let v: Vec<String> =
            self.entries.iter().map(|e| format!("virtio_mmio.device=4K@{:#x}:{}", e.base, e.irq)).collect();
        v.join(" ")
    }

    /// One line per device: its name, kind, registers, interrupt; and how the guest learns of it.
    pub fn describe(&self, on_cmdline: bool) -> Vec<String> {
        let how = if self.ioeventfd { "KVM_IOEVENTFD" } else { "trapped MMIO writes" };
        let mut lines: Vec<String> = self
            .entries
            .iter()
            .map(|e| {
                let t = lock(&e.transport);
                let kind = super::features::device_name(t.device().device_id());
                let about = t.device().about().map(|a| format!(", {a}")).unwrap_or_default();
                format!(
                    "{} ({kind}) at {:#x}-{:#x}, irq {}{about}, notifications by {how}",
                    t.name(),
                    e.base,
                    e.base + MMIO_STRIDE - 1,
                    e.irq
                )
            })
            .collect();
        if on_cmdline {
            lines.push(format!("virtio devices given to Linux on its command line: {}", self.cmdline()));
        }
        lines
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether notifications go through `KVM_IOEVENTFD`.
    pub fn ioeventfd(&self) -> bool {
        self.ioeventfd
    }

    /// Connects the devices' events to the run and starts their workers.
    pub fn start(&self, clock: Clock, sinks: &[Arc<dyn ExitSink>]) -> std::io::Result<()> {
        let mut workers = lock(&self.workers);
        for e in &self.entries {
            lock(&e.transport).events.connect(clock, sinks.to_vec());
            workers.push(Worker::spawn(e.transport.clone(), e.wake.clone())?);
        }
        Ok(())
    }

    /// Stops the workers and the devices' own threads (the run is over).
    pub fn stop(&self) {
        for mut w in lock(&self.workers).drain(..) {
            w.stop();
        }
        for e in &self.entries {
            lock(&e.transport).device_mut().stop();
        }
    }

    /// Gives typed bytes to the virtio console; false when there is none.
    pub fn type_input(&self, bytes: &[u8]) -> bool {
        let Some((input, wake)) = &self.console_input else { return false };
        lock(input).extend(bytes);
        let _ = wake.write(1);
        true
    }

    /// Whether a virtio console exists.
    pub fn has_console(&self) -> bool {
        self.console_input.is_some()
    }

    /// Every device's events, counted.
    pub fn counters(&self) -> DeviceCounters {
        let mut all = DeviceCounters::default();
        for e in &self.entries {
            all.merge(&lock(&e.transport).events.counters());
        }
        all
    }

    /// Every device's state, for the views.
    pub fn views(&self) -> Vec<DeviceView> {
        self.entries.iter().map(|e| DeviceView::of(&lock(&e.transport), e.base, e.irq, self.ioeventfd)).collect()
    }
}

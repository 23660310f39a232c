//! A VM's whole state, to go back to: per vCPU what KVM holds (`vcpu`), the in-kernel interrupt
//! controllers and timer, every device model, the virtio transports and their queues, and guest
//! RAM. Checkpoints keep states in memory (`checkpoints`); a snapshot file keeps one on disk
//! (`file`). Restoring a state and running on is, to the guest, as if it had never left it.

pub mod checkpoints;
pub mod file;
pub mod vcpu;

use kvm_bindings::{KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, kvm_irqchip, kvm_pit_state2};
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};

use super::bus::{Bus, Buses};
use super::memory::GuestRam;
use super::shared::Shared;
use crate::debug::VcpuCommand;
use crate::decode::PhysRead;
pub use vcpu::{VcpuSnapshot, VcpuStateError};

/// The in-kernel PIC pair, IOAPIC and PIT of a VM that has them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KernelChips {
    pub chips: Vec<kvm_irqchip>,
    pub pit: kvm_pit_state2,
}

/// The chips KVM models, in the order they are read and written.
const CHIPS: [u32; 3] = [KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC];

impl KernelChips {
    pub fn capture(vm: &VmFd) -> Result<Self, kvm_ioctls::Error> {
        let mut chips = Vec::new();
        for id in CHIPS {
            let mut chip = kvm_irqchip { chip_id: id, ..Default::default() };
            vm.get_irqchip(&mut chip)?;
            chips.push(chip);
        }
        Ok(Self { chips, pit: vm.get_pit2()? })
    }

    pub fn restore(&self, vm: &VmFd) -> Result<(), kvm_ioctls::Error> {
        for chip in &self.chips {
            vm.set_irqchip(chip)?;
        }
        vm.set_pit2(&self.pit)
    }
}

/// One device model's state, named by its bus, name and base address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    pub bus: String,
    pub name: String,
    pub base: u64,
    pub state: serde_json::Value,
}

/// Everything but RAM: small, kept whole in every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineState {
    pub vcpus: Vec<VcpuSnapshot>,
    pub chips: Option<KernelChips>,
    pub devices: Vec<DeviceState>,
}

/// Why a state could not be taken or put back.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("vCPU {vcpu}: {source}")]
    Vcpu { vcpu: usize, source: VcpuStateError },
    #[error("the in-kernel interrupt controllers and PIT: {0}")]
    Chips(kvm_ioctls::Error),
    #[error("device {0}")]
    Device(String),
    #[error("the snapshot has {snapshot} vCPUs, this VM {vm}")]
    Vcpus { snapshot: usize, vm: usize },
    #[error("the snapshot has {snapshot} of RAM, this VM {vm} (give the same --mem)")]
    Memory { snapshot: String, vm: String },
    #[error("{0}")]
    Guest(String),
    #[error("every vCPU must be stopped first (pause the guest)")]
    Running,
    #[error("no checkpoint #{0} (:checkpoints lists them)")]
    NoCheckpoint(u32),
    #[error(transparent)]
    File(#[from] file::FileError),
}

/// Each device model's state, of both buses.
pub fn save_devices(buses: &Buses) -> Vec<DeviceState> {
    let mut out = Vec::new();
    for (bus, b) in [("pio", &buses.pio), ("mmio", &buses.mmio)] {
        for (name, base, state) in b.save() {
            out.push(DeviceState { bus: bus.into(), name: name.into(), base, state });
        }
    }
    out
}

/// Puts each device model's state back; a device the state names that this VM lacks is an error.
pub fn restore_devices(pio: &Bus, mmio: &Bus, states: &[DeviceState]) -> Result<(), SnapshotError> {
    for d in states {
        let bus = if d.bus == "pio" { pio } else { mmio };
        bus.restore(&d.name, d.base, &d.state)
            .map_err(|why| SnapshotError::Device(format!("{} at {:#x}: {why}", d.name, d.base)))?;
    }
    Ok(())
}

/// Guest RAM, range by range, as (guest-physical start, bytes).
pub type RamImage = Vec<(u64, Vec<u8>)>;

/// Copies all of guest RAM.
pub fn save_ram(ram: &GuestRam) -> RamImage {
    ram.copy_out()
}

/// Writes a RAM image back; its ranges must be this VM's.
pub fn restore_ram(ram: &GuestRam, image: &RamImage) -> Result<(), SnapshotError> {
    if !ram.copy_in(image) {
        use super::memory::human_size;
        let have: u64 = ram.host_ranges().iter().map(|r| r.1).sum();
        let want: u64 = image.iter().map(|(_, b)| b.len() as u64).sum();
        return Err(SnapshotError::Memory { snapshot: human_size(want), vm: human_size(have) });
    }
    Ok(())
}

/// A whole state: the machine and its RAM, taken after `seq` guest exits (its timeline position).
pub struct VmState {
    pub machine: MachineState,
    pub ram: RamImage,
    pub seq: u64,
    pub t_ns: u64,
}

/// How long a parked vCPU has to answer.
const ANSWER: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `f` with parked vCPU `vcpu`'s fd, on its thread; its answer.
fn with_vcpu<T: Send + 'static>(
    shared: &Shared,
    vcpu: usize,
    f: impl FnOnce(&kvm_ioctls::VcpuFd) -> T + Send + 'static,
) -> Result<T, SnapshotError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (done, finished) = std::sync::mpsc::channel();
    let run = Box::new(move |fd: &kvm_ioctls::VcpuFd| {
        let _ = tx.send(f(fd));
    });
    if !shared.debug.command(vcpu, VcpuCommand::WithFd { run, done }) {
        return Err(SnapshotError::Running);
    }
    let silent = || SnapshotError::Guest(format!("vCPU {vcpu} did not answer"));
    let answer = rx.recv_timeout(ANSWER).map_err(|_| silent())?;
    finished.recv_timeout(ANSWER).map_err(|_| silent())?;
    Ok(answer)
}

/// Every vCPU parked, each with the instruction it was in finished (KVM holds a pending port or
/// MMIO read's completion outside the registers).
pub fn settle(shared: &Shared) -> Result<(), SnapshotError> {
    let n = shared.debug.vcpus();
    if (0..n).any(|i| shared.debug.stop_of(i).is_none()) {
        return Err(SnapshotError::Running);
    }
    for vcpu in 0..n {
        let (tx, rx) = std::sync::mpsc::channel();
        if !shared.debug.command(vcpu, VcpuCommand::Settle { reply: tx }) {
            return Err(SnapshotError::Running);
        }
        match rx.recv_timeout(ANSWER) {
            Ok(true) => {}
            Ok(false) => return Err(SnapshotError::Guest("the run ended".into())),
            Err(_) => return Err(SnapshotError::Guest(format!("vCPU {vcpu} did not answer"))),
        }
    }
    Ok(())
}

/// Takes the whole state of a VM whose vCPUs are all parked.
pub fn capture(shared: &Shared) -> Result<VmState, SnapshotError> {
    settle(shared)?;
    let mut vcpus = Vec::new();
    for vcpu in 0..shared.debug.vcpus() {
        let (msrs, lapic) = (shared.msr_list.clone(), shared.irqchip);
        let state = with_vcpu(shared, vcpu, move |fd| VcpuSnapshot::capture(fd, &msrs, lapic))?;
        vcpus.push(state.map_err(|source| SnapshotError::Vcpu { vcpu, source })?);
    }
    let chips = match shared.irqchip {
        true => Some(KernelChips::capture(&shared.vm).map_err(SnapshotError::Chips)?),
        false => None,
    };
    let devices = save_devices(&shared.buses);
    let mut ram = save_ram(&shared.ram);
    // The guest's own bytes under kvmscope's int3s.
    for bp in shared.debug.breakpoints().sw_all() {
        poke(&mut ram, bp.gpa, bp.original);
    }
    let seq = shared.timeline.position();
    let t_ns = shared.clock.ns_since_start(shared.clock.now());
    Ok(VmState { machine: MachineState { vcpus, chips, devices }, ram, seq, t_ns })
}

/// Puts a state back into a VM whose vCPUs are all parked: RAM (kvmscope's int3s planted again
/// over it), the in-kernel chips, the devices, then each vCPU.
pub fn restore(shared: &Shared, machine: &MachineState, ram: &RamImage) -> Result<(), SnapshotError> {
    let n = shared.debug.vcpus();
    if machine.vcpus.len() != n {
        return Err(SnapshotError::Vcpus { snapshot: machine.vcpus.len(), vm: n });
    }
    settle(shared)?;
    restore_ram(&shared.ram, ram)?;
    {
        let mut bps = shared.debug.breakpoints();
        let planted: Vec<u64> = bps.sw_all().map(|b| b.gpa).collect();
        for gpa in planted {
            let mut byte = [0u8];
            shared.ram.read_phys(gpa, &mut byte);
            bps.replace_original(gpa, byte[0]);
            shared.ram.write(gpa, &[0xcc]);
        }
    }
    if let (Some(chips), true) = (&machine.chips, shared.irqchip) {
        chips.restore(&shared.vm).map_err(SnapshotError::Chips)?;
    }
    restore_devices(&shared.buses.pio, &shared.buses.mmio, &machine.devices)?;
    for (vcpu, state) in machine.vcpus.iter().enumerate() {
        let state = state.clone();
        with_vcpu(shared, vcpu, move |fd| state.restore(fd))?.map_err(|source| SnapshotError::Vcpu { vcpu, source })?;
    }
    Ok(())
}

/// Sets one byte of a RAM image.
fn poke(ram: &mut RamImage, gpa: u64, byte: u8) {
    if let Some((start, bytes)) = ram.iter_mut().find(|(s, b)| gpa >= *s && gpa - s < b.len() as u64) {
        bytes[(gpa - *start) as usize] = byte;
    }
}

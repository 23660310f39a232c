//! A VM's whole state, to go back to: per vCPU what KVM holds (`vcpu`), the in-kernel interrupt
//! controllers and timer, every device model, the virtio transports and their queues, and guest
//! RAM. Checkpoints keep states in memory (`checkpoints`); a snapshot file keeps one on disk
//! (`file`). Restoring a state and running on is, to the guest, as if it had never left it.

pub mod checkpoints;
pub mod every;
pub mod file;
pub mod vcpu;

use kvm_bindings::{KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, kvm_irqchip, kvm_pit_state2};
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};

use super::bus::{Bus, Buses};
use super::memory::GuestRam;
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
    #[error("no checkpoint #{0}")]
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

/// The error for a snapshot whose RAM is not this VM's.
pub fn memory_mismatch(ram: &GuestRam, header: &file::SnapshotHeader) -> SnapshotError {
    use super::memory::human_size;
    let have: u64 = ram.host_ranges().iter().map(|r| r.1).sum();
    let want: u64 = header.ram.iter().map(|r| r.1).sum();
    SnapshotError::Memory { snapshot: human_size(want), vm: human_size(have) }
}

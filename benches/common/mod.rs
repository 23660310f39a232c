//! What the benches share: the bare vCPUs the floor loops run, on the `bench` and `smp` guests,
//! and the `bench` guest's count read from its console.
// Each bench compiles its own copy of this module and uses part of it.
#![allow(dead_code)]

use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use kvmscope::guests::guest_path;
use kvmscope::vmm::loader::{self, BootMode};
use kvmscope::vmm::memory::GuestRam;
use kvmscope::vmm::{boot_cpu, linux, slots};

/// A VM with `ram` and one vCPU at the `bench` guest's entry, and nothing of kvmscope's around it.
/// Keep the VM as long as the vCPU runs.
pub fn bare_vcpu(ram: &GuestRam) -> (VmFd, VcpuFd) {
    let (vm, mut vcpus) = bare_vm(ram, "bench.elf", 1, false);
    (vm, vcpus.remove(0))
}

/// A VM with `ram`, the guest `file` loaded and `cpus` vCPUs at its entry; with `irqchip`, KVM's
/// in-kernel APIC, PIC and PIT, the other vCPUs waiting for the guest's STARTUP IPI.
pub fn bare_vm(ram: &GuestRam, file: &str, cpus: u32, irqchip: bool) -> (VmFd, Vec<VcpuFd>) {
    let kvm = Kvm::new().expect("/dev/kvm");
    let vm = kvm.create_vm().unwrap();
    slots::apply(&vm, &[], &slots::layout(ram.host_ranges(), &[])).unwrap();
    if irqchip {
        linux::create_irqchip(&vm).unwrap();
    }
    let boot = loader::load_kernel(&guest_path(file), ram, "", None).unwrap();
    assert_eq!(boot.mode, BootMode::Protected);
    boot_cpu::write_boot_tables(ram, boot.mode);
    let vcpus = (0..cpus)
        .map(|i| {
            let vcpu = vm.create_vcpu(i as u64).unwrap();
            let mut cpuid = kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).unwrap();
            linux::set_apic_id(&mut cpuid, i);
            vcpu.set_cpuid2(&cpuid).unwrap();
            if irqchip {
                linux::setup_lapic(&vcpu).unwrap();
            }
            let mut sregs = vcpu.get_sregs().unwrap();
            let regs = boot_cpu::entry_state(&boot, &mut sregs);
            vcpu.set_sregs(&sregs).unwrap();
            vcpu.set_regs(&regs).unwrap();
            vcpu
        })
        .collect();
    (vm, vcpus)
}

/// The cycle count the `bench` guest printed (its TSC around 100,000 port and 100,000 MMIO exits).
pub fn cycles(console: &[u8]) -> f64 {
    let text = String::from_utf8_lossy(console);
    let hex = text.lines().find_map(|l| l.strip_prefix("tsc-cycles ")).expect("guest printed its count");
    u64::from_str_radix(hex.trim(), 16).expect("hex count") as f64
}

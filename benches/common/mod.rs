//! What the benches share: the bare vCPU the floor loops run, on the `bench` guest.

use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use kvmscope::guests::guest_path;
use kvmscope::vmm::loader::{self, BootMode};
use kvmscope::vmm::memory::GuestRam;
use kvmscope::vmm::{boot_cpu, slots};

/// A VM with `ram` and one vCPU at the `bench` guest's entry, and nothing of kvmscope's around it.
/// Keep the VM as long as the vCPU runs.
pub fn bare_vcpu(ram: &GuestRam) -> (VmFd, VcpuFd) {
    let kvm = Kvm::new().expect("/dev/kvm");
    let vm = kvm.create_vm().unwrap();
    slots::apply(&vm, &[], &slots::layout(ram.host_ranges(), &[])).unwrap();
    let boot = loader::load_kernel(&guest_path("bench.elf"), ram, "", None).unwrap();
    assert_eq!(boot.mode, BootMode::Protected);
    boot_cpu::write_boot_tables(ram, boot.mode);
    let vcpu = vm.create_vcpu(0).unwrap();
    vcpu.set_cpuid2(&kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).unwrap()).unwrap();
    let mut sregs = vcpu.get_sregs().unwrap();
    let regs = boot_cpu::entry_state(&boot, &mut sregs);
    vcpu.set_sregs(&sregs).unwrap();
    vcpu.set_regs(&regs).unwrap();
    (vm, vcpu)
}

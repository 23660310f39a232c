//! The machine a Linux kernel expects, beyond what the test guests need: the in-kernel interrupt
//! controller and PIT, the serial port on IRQ 4, CPUID with APIC ids and kvm-clock, the local APIC's
//! LINT0/LINT1, an initialised FPU — and the adjustments a host whose KVM emulates guest kernel code
//! (PVM) needs, each said in the run's header and off with `--no-host-workarounds`.

use kvm_bindings::{CpuId, kvm_fpu, kvm_pit_config};
use kvm_ioctls::{VcpuFd, VmFd};

/// CPUID leaf 1 ECX bit: CMPXCHG16B.
const CPUID_1_ECX_CX16: u32 = 1 << 13;
/// CPUID leaf 0x40000001 EAX bits kept on an emulating host: kvm-clock (old and new) and its
/// stable bit. The features that work by hypercall (PV IPI, PV TLB flush, sched yield ...) hang an
/// SMP guest there: the host emulates its `vmcall` but does not serve it.
const KVM_CLOCK_FEATURES: u32 = (1 << 0) | (1 << 3) | (1 << 24);
/// Kernel parameters that keep Linux off instructions such a host cannot emulate (xsave/xrstor,
/// clac/stac, popcnt).
pub const EMULATION_CMDLINE: &str = "noxsave clearcpuid=smap,popcnt";

/// Creates the in-kernel irqchip (PIC, IOAPIC, LAPICs) and the PIT. Before any vCPU.
pub fn create_irqchip(vm: &VmFd) -> Result<(), kvm_ioctls::Error> {
    vm.create_irq_chip()?;
    let pit = kvm_pit_config { flags: kvm_bindings::KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
    vm.create_pit2(pit)
}

/// CPUID for vCPU `index`: its APIC id, and on an emulating host no CX16 and only kvm-clock in
/// the KVM leaf. Returns the adjustments made, in words.
pub fn adjust_cpuid(cpuid: &mut CpuId, index: u32, emulating_host: bool) -> Vec<String> {
    let mut said = Vec::new();
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x00ff_ffff) | (index << 24);
                if emulating_host && e.ecx & CPUID_1_ECX_CX16 != 0 {
                    e.ecx &= !CPUID_1_ECX_CX16;
                    said.push("CPUID: CX16 (cmpxchg16b) cleared".to_string());
                }
            }
            0xb => e.edx = index,
            0x4000_0001 if emulating_host => {
                let kept = e.eax & KVM_CLOCK_FEATURES;
                if kept != e.eax {
                    said.push(format!("CPUID 0x40000001: KVM features {:#x} -> {kept:#x} (kvm-clock only)", e.eax));
                    e.eax = kept;
                }
            }
            _ => {}
        }
    }
    said
}

/// LINT0 as ExtINT (the PIC) and LINT1 as NMI, as Linux expects of a PC.
pub fn setup_lapic(vcpu: &VcpuFd) -> Result<(), kvm_ioctls::Error> {
    let mut lapic = vcpu.get_lapic()?;
    let set = |regs: &mut [i8], off: usize, mode: u32| {
        let mut v =
            u32::from_le_bytes([regs[off] as u8, regs[off + 1] as u8, regs[off + 2] as u8, regs[off + 3] as u8]);
        v = (v & !0x700) | mode;
        for (i, b) in v.to_le_bytes().iter().enumerate() {
            regs[off + i] = *b as i8;
        }
    };
    set(&mut lapic.regs, 0x350, 0x700); // LVT LINT0: ExtINT
    set(&mut lapic.regs, 0x360, 0x400); // LVT LINT1: NMI
    vcpu.set_lapic(&lapic)
}

/// The FPU as after FNINIT, with SSE exceptions masked.
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<(), kvm_ioctls::Error> {
    vcpu.set_fpu(&kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() })
}

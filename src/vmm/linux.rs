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

/// CPUID for vCPU `index` of any guest: its APIC id (leaf 1, and leaf 0xb's x2APIC id), which KVM
/// leaves to the VMM.
pub fn set_apic_id(cpuid: &mut CpuId, index: u32) {
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => e.ebx = (e.ebx & 0x00ff_ffff) | (index << 24),
            0xb => e.edx = index,
            _ => {}
        }
    }
}

/// CPUID for Linux on an emulating host: no CX16 and only kvm-clock in the KVM leaf. Returns the
/// adjustments made, in words.
pub fn adjust_cpuid(cpuid: &mut CpuId, emulating_host: bool) -> Vec<String> {
    let mut said = Vec::new();
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 if emulating_host && e.ecx & CPUID_1_ECX_CX16 != 0 => {
                e.ecx &= !CPUID_1_ECX_CX16;
                said.push("CPUID: CX16 (cmpxchg16b) cleared".to_string());
            }
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

/// The FPU as after FNINIT. (KVM_SET_FPU does not carry MXCSR; KVM's reset value, 0x1f80, already
/// masks the SSE exceptions.)
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<(), kvm_ioctls::Error> {
    vcpu.set_fpu(&kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() })
}

/// CPUID feature bits `--cpu-features` can turn off (`-name`) or on (`+name`):
/// (name, leaf, register index 0=EAX 1=EBX 2=ECX 3=EDX, bit).
const FEATURES: &[(&str, u32, usize, u32)] = &[
    ("sse3", 1, 2, 0),
    ("ssse3", 1, 2, 9),
    ("fma", 1, 2, 12),
    ("cx16", 1, 2, 13),
    ("sse4_1", 1, 2, 19),
    ("sse4_2", 1, 2, 20),
    ("x2apic", 1, 2, 21),
    ("movbe", 1, 2, 22),
    ("popcnt", 1, 2, 23),
    ("aes", 1, 2, 25),
    ("xsave", 1, 2, 26),
    ("avx", 1, 2, 28),
    ("rdrand", 1, 2, 30),
    ("hypervisor", 1, 2, 31),
    ("pse", 1, 3, 3),
    ("tsc", 1, 3, 4),
    ("pae", 1, 3, 6),
    ("apic", 1, 3, 9),
    ("sse", 1, 3, 25),
    ("sse2", 1, 3, 26),
    ("fsgsbase", 7, 1, 0),
    ("bmi1", 7, 1, 3),
    ("avx2", 7, 1, 5),
    ("smep", 7, 1, 7),
    ("bmi2", 7, 1, 8),
    ("erms", 7, 1, 9),
    ("invpcid", 7, 1, 10),
    ("avx512f", 7, 1, 16),
    ("rdseed", 7, 1, 18),
    ("adx", 7, 1, 19),
    ("smap", 7, 1, 20),
    ("umip", 7, 2, 2),
    ("la57", 7, 2, 16),
];

/// One `--cpu-features` item: a CPUID bit to clear or set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeature {
    pub name: &'static str,
    pub leaf: u32,
    /// 0 = EAX, 1 = EBX, 2 = ECX, 3 = EDX.
    pub reg: usize,
    pub bit: u32,
    pub on: bool,
}

/// Parses `--cpu-features` (`-cx16,+x2apic`).
pub fn parse_cpu_features(text: &str) -> Result<Vec<CpuFeature>, String> {
    text.split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            let t = t.trim();
            let (on, name) = match t.as_bytes()[0] {
                b'+' => (true, &t[1..]),
                b'-' => (false, &t[1..]),
                _ => return Err(format!("--cpu-features {t:?}: write +NAME or -NAME")),
            };
            FEATURES
                .iter()
                .find(|f| f.0 == name.to_lowercase())
                .map(|&(name, leaf, reg, bit)| CpuFeature { name, leaf, reg, bit, on })
                .ok_or_else(|| {
                    let known: Vec<&str> = FEATURES.iter().map(|f| f.0).collect();
                    format!("--cpu-features: unknown feature {name:?}; known: {}", known.join(", "))
                })
        })
        .collect()
}

/// Applies `--cpu-features` to a vCPU's CPUID; returns what changed, in words.
pub fn apply_cpu_features(cpuid: &mut CpuId, features: &[CpuFeature]) -> Vec<String> {
    let mut said = Vec::new();
    for &CpuFeature { name, leaf, reg, bit, on } in features {
        for e in cpuid.as_mut_slice().iter_mut().filter(|e| e.function == leaf && e.index == 0) {
            let r = match reg {
                0 => &mut e.eax,
                1 => &mut e.ebx,
                2 => &mut e.ecx,
                _ => &mut e.edx,
            };
            if on {
                *r |= 1 << bit;
            } else {
                *r &= !(1 << bit);
            }
            said.push(format!("CPUID: {name} {} (--cpu-features)", if on { "set" } else { "cleared" }));
        }
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_features_parse_and_apply() {
        let f = parse_cpu_features("-cx16,+x2apic").unwrap();
        assert_eq!(
            f,
            vec![
                CpuFeature { name: "cx16", leaf: 1, reg: 2, bit: 13, on: false },
                CpuFeature { name: "x2apic", leaf: 1, reg: 2, bit: 21, on: true }
            ]
        );
        assert!(parse_cpu_features("cx16").is_err());
        assert!(parse_cpu_features("-warp9").unwrap_err().contains("known"));
        let mut cpuid = CpuId::new(1).unwrap();
        cpuid.as_mut_slice()[0].function = 1;
        cpuid.as_mut_slice()[0].ecx = 1 << 13;
        let said = apply_cpu_features(&mut cpuid, &f);
        assert_eq!(cpuid.as_slice()[0].ecx, 1 << 21);
        assert_eq!(said.len(), 2);
    }
}

//! `kvmscope probe`: what this host's KVM actually does for a debugger, measured with tiny VMs, and
//! which mechanism kvmscope uses for each kind of stop. Hosts differ: a VT-x/AMD-V KVM delivers
//! software breakpoints and DR7 watchpoints; an emulating KVM (PVM) fails on `int3` at CPL0 and
//! never fires DR7 watchpoints, but read-only memory slots and that emulation failure still give
//! working breakpoints and write watchpoints.

use std::fmt;

use kvm_bindings::{
    KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP, KVM_GUESTDBG_USE_SW_BP, KVM_MEM_READONLY,
    kvm_guest_debug, kvm_guest_debug_arch, kvm_userspace_memory_region,
};
use kvm_ioctls::{Cap, Kvm, VcpuExit, VcpuFd, VmFd};
use serde::Serialize;

use super::boot_cpu;
use super::kernel_events::KernelEventsError;
use super::kvm::{VmError, kvm_err, open_kvm};
use super::loader::{BootMode, BootSetup};
use super::memory::GuestRam;

/// Where probe code runs, and the data page it touches.
const CODE: u64 = 0x10000;
const DATA: u64 = 0x20000;

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observation {
    pub works: bool,
    /// What happened, in words ("KVM_EXIT_DEBUG, exception 3 at 0x10001").
    pub seen: String,
}

/// Which mechanism kvmscope uses for a kind of stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// `int3` with `KVM_GUESTDBG_USE_SW_BP` (KVM_EXIT_DEBUG, exception 3).
    Int3GuestDebug,
    /// `int3` caught when the host's emulator fails on it (KVM_EXIT_INTERNAL_ERROR at the int3).
    Int3EmulationFailure,
    /// Debug registers DR0-3 through `KVM_GUESTDBG_USE_HW_BP`.
    DebugRegisters,
    /// The watched page is mapped read-only: writes exit as MMIO, kvmscope completes them.
    ReadOnlySlot,
    /// The watched page is left out of guest memory: every access exits as MMIO, kvmscope completes it.
    UnmappedPage,
    /// `KVM_GUESTDBG_SINGLESTEP`.
    SingleStep,
    /// Nothing on this host gives it.
    Unavailable,
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mechanism::Int3GuestDebug => "int3 + KVM_GUESTDBG_USE_SW_BP",
            Mechanism::Int3EmulationFailure => "int3 caught as the host's emulation failure, others re-injected as #BP",
            Mechanism::DebugRegisters => "debug registers DR0-3 (KVM_GUESTDBG_USE_HW_BP)",
            Mechanism::ReadOnlySlot => "read-only memory slot over the page; kvmscope completes the write",
            Mechanism::UnmappedPage => "the page is unmapped; kvmscope completes every access (no code may run there)",
            Mechanism::SingleStep => "KVM_GUESTDBG_SINGLESTEP",
            Mechanism::Unavailable => "unavailable on this host",
        })
    }
}

/// Everything the probe found, and the choices that follow.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub api_version: i32,
    pub caps: Vec<(String, i32)>,
    pub single_step: Observation,
    pub hw_breakpoint: Observation,
    pub sw_breakpoint: Observation,
    pub dr7_write_watchpoint: Observation,
    pub dr7_access_watchpoint: Observation,
    pub readonly_slot: Observation,
    pub unmapped_page: Observation,
    pub int3_at_cpl0: Observation,
    pub use_step: Mechanism,
    pub use_sw_breakpoints: Mechanism,
    pub use_hw_breakpoints: Mechanism,
    pub use_write_watchpoints: Mechanism,
    pub use_access_watchpoints: Mechanism,
}

/// A throwaway VM with one vCPU in flat protected mode running `code` at 0x10000.
struct ProbeVm {
    _vm: VmFd,
    vcpu: VcpuFd,
    _ram: GuestRam,
}

/// How the probe VM's data page at 0x20000 is mapped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DataPage {
    Ram,
    ReadOnly,
    Unmapped,
}

fn probe_vm(kvm: &Kvm, code: &[u8], data_page: DataPage) -> Result<ProbeVm, VmError> {
    let e = kvm_err;
    let vm = kvm.create_vm().map_err(e("KVM_CREATE_VM"))?;
    let ram = GuestRam::new(super::memory::MIN_MEM)?;
    let (base, size) = ram.host_ranges().first().map(|&(_, len, host)| (host, len)).unwrap_or_default();
    let rest = (DATA + 0x1000, size - DATA - 0x1000, 0);
    let slots: Vec<(u64, u64, u32)> = match data_page {
        DataPage::Ram => vec![(0, size, 0)],
        DataPage::ReadOnly => vec![(0, DATA, 0), (DATA, 0x1000, KVM_MEM_READONLY), rest],
        DataPage::Unmapped => vec![(0, DATA, 0), rest],
    };
    for (slot, (gpa, len, flags)) in slots.into_iter().enumerate() {
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags,
            guest_phys_addr: gpa,
            memory_size: len,
            userspace_addr: base + gpa,
        };
        // SAFETY: the mapping lives in `ram`, which the ProbeVm keeps as long as the VM.
        unsafe { vm.set_user_memory_region(r) }.map_err(e("a memory slot"))?;
    }
    ram.write(CODE, code);
    let boot = BootSetup {
        format: "probe",
        mode: BootMode::Protected,
        entry: CODE,
        rax: 0x1234,
        rbx: 0,
        rsi: 0,
        loaded: vec![],
        kernel_version: None,
    };
    boot_cpu::write_boot_tables(&ram, BootMode::Protected);
    let vcpu = vm.create_vcpu(0).map_err(e("KVM_CREATE_VCPU"))?;
    let mut sregs = vcpu.get_sregs().map_err(e("KVM_GET_SREGS"))?;
    let regs = boot_cpu::entry_state(&boot, &mut sregs);
    vcpu.set_sregs(&sregs).map_err(e("KVM_SET_SREGS"))?;
    vcpu.set_regs(&regs).map_err(e("KVM_SET_REGS"))?;
    Ok(ProbeVm { _vm: vm, vcpu, _ram: ram })
}

/// Runs the probe VM to its first exit that is not the end marker, in words; `want` says if it works.
fn first_exit(
    kvm: &Kvm,
    code: &[u8],
    readonly: DataPage,
    debug: Option<kvm_guest_debug>,
    want: impl Fn(&VcpuExit<'_>, u64) -> bool,
) -> Observation {
    let mut p = match probe_vm(kvm, code, readonly) {
        Ok(p) => p,
        Err(e) => return Observation { works: false, seen: e.to_string() },
    };
    if let Some(d) = debug {
        if let Err(err) = p.vcpu.set_guest_debug(&d) {
            return Observation { works: false, seen: format!("KVM_SET_GUEST_DEBUG refused: {err}") };
        }
    }
    let exit = p.vcpu.run();
    let (works, seen) = match &exit {
        Ok(x) => {
            let seen = match x {
                VcpuExit::Debug(d) => {
                    format!("KVM_EXIT_DEBUG, exception {} at {:#x}, dr6 {:#x}", d.exception, d.pc, d.dr6)
                }
                VcpuExit::IoOut(0xf4, _) => "ran to the end without stopping".to_string(),
                VcpuExit::MmioWrite(addr, data) => format!("KVM_EXIT_MMIO write {addr:#x} data {data:02x?}"),
                VcpuExit::MmioRead(addr, data) => format!("KVM_EXIT_MMIO read {addr:#x} len {}", data.len()),
                VcpuExit::InternalError => "KVM_EXIT_INTERNAL_ERROR".to_string(),
                VcpuExit::Shutdown => "KVM_EXIT_SHUTDOWN (the guest triple-faulted)".to_string(),
                other => format!("{other:?}"),
            };
            (want(x, 0), seen)
        }
        Err(err) => (false, format!("KVM_RUN failed: {err}")),
    };
    drop(exit);
    let rip = p.vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
    let seen = if seen == "KVM_EXIT_INTERNAL_ERROR" {
        // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the valid member.
        let sub = unsafe { p.vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
        format!("KVM_EXIT_INTERNAL_ERROR, suberror {sub}, rip {rip:#x}")
    } else {
        seen
    };
    Observation { works, seen }
}

fn debug(control: u32, dr0: u64, dr7: u64) -> kvm_guest_debug {
    let mut arch = kvm_guest_debug_arch::default();
    arch.debugreg[0] = dr0;
    arch.debugreg[7] = dr7;
    kvm_guest_debug { control: KVM_GUESTDBG_ENABLE | control, pad: 0, arch }
}

/// The KVM capabilities that matter to kvmscope, as (name, value).
pub fn kvm_caps(kvm: &Kvm) -> Vec<(String, i32)> {
    [
        ("KVM_CAP_SYNC_REGS", Cap::SyncRegs),
        ("KVM_CAP_IMMEDIATE_EXIT", Cap::ImmediateExit),
        ("KVM_CAP_READONLY_MEM", Cap::ReadonlyMem),
        ("KVM_CAP_SET_GUEST_DEBUG", Cap::SetGuestDebug),
        ("KVM_CAP_GUEST_DEBUG_HW_BPS", Cap::DebugHwBps),
        ("KVM_CAP_NR_MEMSLOTS", Cap::NrMemslots),
        ("KVM_CAP_IRQCHIP", Cap::Irqchip),
        ("KVM_CAP_NR_VCPUS", Cap::NrVcpus),
    ]
    .into_iter()
    .map(|(n, c)| (n.to_string(), kvm.check_extension_int(c)))
    .chain(
        [
            ("KVM_CAP_SET_GUEST_DEBUG2", kvm_bindings::KVM_CAP_SET_GUEST_DEBUG2),
            ("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", kvm_bindings::KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2),
            ("KVM_CAP_DIRTY_LOG_RING", kvm_bindings::KVM_CAP_DIRTY_LOG_RING),
        ]
        .into_iter()
        .map(|(n, c)| (n.to_string(), kvm.check_extension_raw(c as libc::c_ulong))),
    )
    .collect()
}

/// Probes the host's KVM.
/// Which of KVM's tracepoints (`--kernel-events`) fire on this host: a probe guest makes a port
/// write and an MMIO write with them enabled; each event with how often it fired (0: silent).
/// Needs root and tracefs.
pub fn probe_tracepoints() -> Result<Vec<(&'static str, u64)>, KernelEventsError> {
    let events = super::kernel_events::KernelEvents::start()?;
    let kvm = open_kvm().map_err(|e| KernelEventsError::Probe(Box::new(e)))?;
    // out 0x80, al; mov dword [0x300000], 1 (no RAM there: MMIO); out 0xf4, al
    let code = [0xe6, 0x80, 0xc7, 0x05, 0x00, 0x00, 0x30, 0x00, 0x01, 0x00, 0x00, 0x00, 0xe6, 0xf4];
    let mut p = probe_vm(&kvm, &code, DataPage::Ram).map_err(|e| KernelEventsError::Probe(Box::new(e)))?;
    for _ in 0..16 {
        match p.vcpu.run() {
            Ok(VcpuExit::IoOut(0xf4, _)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    drop(p);
    let counts = events.finish();
    let fired = |e: &str| counts.by_event.get(e).copied().unwrap_or(0);
    let all = super::kernel_events::EVENTS.iter().chain(super::kernel_events::MMU_EVENTS);
    Ok(all.map(|&e| (e, fired(e))).collect())
}

pub fn probe() -> Result<HostReport, VmError> {
    let kvm = open_kvm()?;
    let caps = kvm_caps(&kvm);
    let end = [0xe6, 0xf4]; // out 0xf4, al
    let with_end = |code: &[u8]| [code, &end].concat();
    let is_debug = |x: &VcpuExit<'_>, exc: u32| matches!(x, VcpuExit::Debug(d) if d.exception == exc);

    let single_step = first_exit(
        &kvm,
        &with_end(&[0x90, 0x90]),
        DataPage::Ram,
        Some(debug(KVM_GUESTDBG_SINGLESTEP, 0, 0)),
        |x, _| is_debug(x, 1),
    );
    let hw_breakpoint = first_exit(
        &kvm,
        &with_end(&[0x90, 0x90, 0x90]),
        DataPage::Ram,
        Some(debug(KVM_GUESTDBG_USE_HW_BP, CODE + 2, 0x1)),
        |x, _| matches!(x, VcpuExit::Debug(d) if d.exception == 1 && d.pc == CODE + 2),
    );
    let sw_breakpoint = first_exit(
        &kvm,
        &with_end(&[0x90, 0xcc, 0x90]),
        DataPage::Ram,
        Some(debug(KVM_GUESTDBG_USE_SW_BP, 0, 0)),
        |x, _| matches!(x, VcpuExit::Debug(d) if d.exception == 3),
    );
    // mov [0x20000], eax
    let store = with_end(&[0xa3, 0x00, 0x00, 0x02, 0x00]);
    // mov eax, [0x20000]
    let load = with_end(&[0xa1, 0x00, 0x00, 0x02, 0x00]);
    let dr7_write_watchpoint =
        first_exit(&kvm, &store, DataPage::Ram, Some(debug(KVM_GUESTDBG_USE_HW_BP, DATA, 0x000d_0001)), |x, _| {
            is_debug(x, 1)
        });
    let dr7_access_watchpoint =
        first_exit(&kvm, &load, DataPage::Ram, Some(debug(KVM_GUESTDBG_USE_HW_BP, DATA, 0x000f_0001)), |x, _| {
            is_debug(x, 1)
        });
    let unmapped_page = first_exit(
        &kvm,
        &load,
        DataPage::Unmapped,
        None,
        |x, _| matches!(x, VcpuExit::MmioRead(a, d) if *a == DATA && d.len() == 4),
    );
    let readonly_slot = first_exit(
        &kvm,
        &store,
        DataPage::ReadOnly,
        None,
        |x, _| matches!(x, VcpuExit::MmioWrite(a, d) if *a == DATA && d.first() == Some(&0x34)),
    );
    let int3_at_cpl0 =
        first_exit(&kvm, &with_end(&[0x90, 0xcc]), DataPage::Ram, None, |x, _| matches!(x, VcpuExit::InternalError));
    let int3_at_cpl0 = Observation {
        works: int3_at_cpl0.works && int3_at_cpl0.seen.contains(&format!("rip {:#x}", CODE + 1)),
        ..int3_at_cpl0
    };

    let use_sw_breakpoints = if sw_breakpoint.works {
        Mechanism::Int3GuestDebug
    } else if int3_at_cpl0.works {
        Mechanism::Int3EmulationFailure
    } else {
        Mechanism::Unavailable
    };
    let use_hw_breakpoints = if hw_breakpoint.works { Mechanism::DebugRegisters } else { Mechanism::Unavailable };
    let use_write_watchpoints = if dr7_write_watchpoint.works {
        Mechanism::DebugRegisters
    } else if readonly_slot.works {
        Mechanism::ReadOnlySlot
    } else {
        Mechanism::Unavailable
    };
    let use_access_watchpoints = if dr7_access_watchpoint.works {
        Mechanism::DebugRegisters
    } else if unmapped_page.works {
        Mechanism::UnmappedPage
    } else {
        Mechanism::Unavailable
    };
    let use_step = if single_step.works { Mechanism::SingleStep } else { Mechanism::Unavailable };
    Ok(HostReport {
        api_version: kvm.get_api_version(),
        caps,
        single_step,
        hw_breakpoint,
        sw_breakpoint,
        dr7_write_watchpoint,
        dr7_access_watchpoint,
        readonly_slot,
        unmapped_page,
        int3_at_cpl0,
        use_step,
        use_sw_breakpoints,
        use_hw_breakpoints,
        use_write_watchpoints,
        use_access_watchpoints,
    })
}

impl fmt::Display for HostReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "KVM API version {}", self.api_version)?;
        for (name, v) in &self.caps {
            writeln!(f, "  {name:<34} {v}")?;
        }
        writeln!(f, "Measured:")?;
        let row = |f: &mut fmt::Formatter<'_>, what: &str, o: &Observation| {
            writeln!(f, "  {what:<40} {:<4} {}", if o.works { "yes" } else { "no" }, o.seen)
        };
        row(f, "single-step", &self.single_step)?;
        row(f, "hardware execution breakpoint", &self.hw_breakpoint)?;
        row(f, "software breakpoint (USE_SW_BP)", &self.sw_breakpoint)?;
        row(f, "DR7 write watchpoint", &self.dr7_write_watchpoint)?;
        row(f, "DR7 access watchpoint", &self.dr7_access_watchpoint)?;
        row(f, "read-only memory slot", &self.readonly_slot)?;
        row(f, "read from a page without a slot exits", &self.unmapped_page)?;
        row(f, "int3 at CPL0 ends in emulation failure", &self.int3_at_cpl0)?;
        writeln!(f, "kvmscope uses:")?;
        writeln!(f, "  single-step                        {}", self.use_step)?;
        writeln!(f, "  software breakpoints (break)       {}", self.use_sw_breakpoints)?;
        writeln!(f, "  hardware breakpoints (hbreak)      {}", self.use_hw_breakpoints)?;
        writeln!(f, "  write watchpoints (watch)          {}", self.use_write_watchpoints)?;
        writeln!(f, "  access watchpoints (awatch/rwatch) {}", self.use_access_watchpoints)?;
        let block_irq = self.caps.iter().any(|(n, v)| {
            n == "KVM_CAP_SET_GUEST_DEBUG2" && *v > 0 && *v as u32 & kvm_bindings::KVM_GUESTDBG_BLOCKIRQ != 0
        });
        writeln!(
            f,
            "  {:<34} {}",
            "interrupts during a step",
            match block_irq {
                true => "held back until it is over (KVM_GUESTDBG_BLOCKIRQ)",
                false => "delivered in it: the host has no KVM_GUESTDBG_BLOCKIRQ",
            }
        )?;
        let manual = self.caps.iter().any(|(n, v)| n == "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2" && *v > 0);
        write!(
            f,
            "  {:<34} {}",
            "pages written (checkpoints, views)",
            match manual {
                true => "KVM_GET_DIRTY_LOG, then KVM_CLEAR_DIRTY_LOG re-protects only the pages read (manual protect)",
                false => "KVM_GET_DIRTY_LOG, which write-protects the slot again as it reads it",
            }
        )
    }
}

//! The exit event: one `KVM_RUN` return, classified, with everything a view or a recorder needs.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// Direction of a port or MMIO access, seen from the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    /// The guest reads (`in`, a load).
    In,
    /// The guest writes (`out`, a store).
    Out,
}

impl Dir {
    /// The name used for port accesses: "in" / "out".
    pub fn io_name(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
        }
    }

    /// The name used for memory accesses: "read" / "write".
    pub fn mmio_name(self) -> &'static str {
        match self {
            Dir::In => "read",
            Dir::Out => "write",
        }
    }
}

/// A decoded guest instruction: its bytes and its Intel-syntax text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Insn {
    /// Guest-virtual address the bytes were read from.
    pub addr: u64,
    /// The instruction's bytes (1..=15).
    pub bytes: Vec<u8>,
    /// Intel syntax, e.g. `out dx,al`.
    pub text: String,
}

impl Insn {
    /// The bytes as lowercase hex, space separated.
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(self.bytes.len() * 3);
        for (i, b) in self.bytes.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

/// Why `KVM_RUN` returned, with the payload KVM gave for that reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitKind {
    /// `KVM_EXIT_IO`: a port access. `data` is the value written, or the value the VMM returned to an
    /// `in` (the first element of a `rep ins/outs` string of `count` elements).
    Io { port: u16, dir: Dir, size: u8, count: u32, data: u64 },
    /// `KVM_EXIT_MMIO`: an access to guest-physical memory no RAM backs.
    Mmio { addr: u64, dir: Dir, len: u8, data: u64 },
    /// `KVM_EXIT_HLT`.
    Hlt,
    /// `KVM_EXIT_SHUTDOWN`: a triple fault.
    Shutdown,
    /// `KVM_EXIT_INTERNAL_ERROR`: KVM could not go on (suberror 1: the instruction emulator failed).
    InternalError { suberror: u32, data: Vec<u64> },
    /// `KVM_EXIT_FAIL_ENTRY`: the hardware refused to enter the guest.
    FailEntry { reason: u64, cpu: u32 },
    /// `KVM_EXIT_SYSTEM_EVENT`: shutdown, reset or crash requested by the guest.
    SystemEvent { kind: u32, data: Vec<u64> },
    /// `KVM_EXIT_DEBUG`: a debug exception caught for the VMM.
    Debug { exception: u32, pc: u64, dr6: u64, dr7: u64 },
    /// `KVM_EXIT_HYPERCALL`.
    Hypercall { nr: u64 },
    /// `KVM_EXIT_X86_RDMSR` / `KVM_EXIT_X86_WRMSR`.
    Msr { index: u32, dir: Dir, data: u64 },
    /// `KVM_EXIT_IOAPIC_EOI`.
    IoapicEoi { vector: u8 },
    /// `KVM_EXIT_MEMORY_FAULT`.
    MemoryFault { gpa: u64, size: u64, flags: u64 },
    /// `KVM_RUN` returned `EINTR`: a signal (pause, stop) took the vCPU out of the guest.
    Intr,
    /// `KVM_EXIT_UNKNOWN`, carrying the hardware exit reason.
    Unknown { hardware_reason: u64 },
    /// Any other `KVM_EXIT_*`, by number.
    Other { code: u32 },
    /// One of kvmscope's software breakpoints (an `int3` it planted at `gva`) was hit. KVM told it
    /// as the exit `via`: `KVM_EXIT_DEBUG` (#BP, where KVM catches `int3`), or
    /// `KVM_EXIT_INTERNAL_ERROR` (where the host's instruction emulator refuses `int3`).
    Breakpoint { gva: u64, via: u32 },
}

/// `KVM_EXIT_DEBUG`.
pub const KVM_EXIT_DEBUG: u32 = 4;
/// `KVM_EXIT_INTERNAL_ERROR`.
pub const KVM_EXIT_INTERNAL_ERROR: u32 = 17;

/// How a breakpoint hit came to kvmscope, by the exit that told it: `debug` (KVM's #BP) or
/// `internal_error` (the host's emulator refused the `int3`).
pub fn breakpoint_via(via: u32) -> &'static str {
    match via {
        KVM_EXIT_DEBUG => "debug",
        KVM_EXIT_INTERNAL_ERROR => "internal_error",
        _ => "another exit",
    }
}

/// Every reason name, in `KVM_EXIT_*` order as far as x86 knows them (lowercase, as kvm_stat shows),
/// then kvmscope's own: a breakpoint it planted.
/// [`ExitKind::reason_slot`] indexes it: counting an exit by reason is an index, not a hash.
pub const REASON_NAMES: [&str; 23] = [
    "unknown",
    "exception",
    "io",
    "hypercall",
    "debug",
    "hlt",
    "mmio",
    "irq_window_open",
    "shutdown",
    "fail_entry",
    "intr",
    "set_tpr",
    "tpr_access",
    "nmi",
    "internal_error",
    "system_event",
    "ioapic_eoi",
    "hyperv",
    "x86_rdmsr",
    "x86_wrmsr",
    "memory_fault",
    "other",
    "breakpoint",
];

/// Where `name` is in [`REASON_NAMES`], worked out at compile time: the list stays the one place
/// that orders the reasons, and a name not in it does not compile.
const fn slot(name: &str) -> usize {
    let mut i = 0;
    while i < REASON_NAMES.len() {
        let (a, b) = (REASON_NAMES[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("not a reason name")
}

/// The slot in [`REASON_NAMES`] of an exit code kvmscope has no kind of its own for.
fn slot_of_code(code: u32) -> usize {
    match code {
        1 => const { slot("exception") },
        7 => const { slot("irq_window_open") },
        11 => const { slot("set_tpr") },
        12 => const { slot("tpr_access") },
        16 => const { slot("nmi") },
        27 => const { slot("hyperv") },
        _ => const { slot("other") },
    }
}

/// The reason name of an exit code kvmscope has no kind of its own for.
pub fn reason_name_of_code(code: u32) -> &'static str {
    REASON_NAMES[slot_of_code(code)]
}

impl ExitKind {
    /// The lowercase reason name, as in `KVM_EXIT_<NAME>` (e.g. "io", "mmio", "hlt", "shutdown").
    pub fn reason(&self) -> &'static str {
        REASON_NAMES[self.reason_slot()]
    }

    /// Where [`Self::reason`] is in [`REASON_NAMES`].
    pub fn reason_slot(&self) -> usize {
        match self {
            ExitKind::Io { .. } => const { slot("io") },
            ExitKind::Mmio { .. } => const { slot("mmio") },
            ExitKind::Hlt => const { slot("hlt") },
            ExitKind::Shutdown => const { slot("shutdown") },
            ExitKind::InternalError { .. } => const { slot("internal_error") },
            ExitKind::FailEntry { .. } => const { slot("fail_entry") },
            ExitKind::SystemEvent { .. } => const { slot("system_event") },
            ExitKind::Debug { .. } => const { slot("debug") },
            ExitKind::Hypercall { .. } => const { slot("hypercall") },
            ExitKind::Msr { dir: Dir::In, .. } => const { slot("x86_rdmsr") },
            ExitKind::Msr { dir: Dir::Out, .. } => const { slot("x86_wrmsr") },
            ExitKind::IoapicEoi { .. } => const { slot("ioapic_eoi") },
            ExitKind::MemoryFault { .. } => const { slot("memory_fault") },
            ExitKind::Intr => const { slot("intr") },
            ExitKind::Unknown { .. } => const { slot("unknown") },
            ExitKind::Other { code } => slot_of_code(*code),
            ExitKind::Breakpoint { .. } => const { slot("breakpoint") },
        }
    }

    /// Whether the instruction that caused this exit is worth decoding.
    pub fn wants_decode(&self) -> bool {
        matches!(
            self,
            ExitKind::Io { .. }
                | ExitKind::Mmio { .. }
                | ExitKind::Msr { .. }
                | ExitKind::Debug { .. }
                | ExitKind::InternalError { .. }
                | ExitKind::Breakpoint { .. }
        )
    }
}

/// One vmexit as kvmscope saw and handled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitEvent {
    /// Global sequence number across all vCPUs, from 0.
    pub seq: u64,
    /// Index of the vCPU that exited.
    pub vcpu: u32,
    /// Nanoseconds since the VM started, taken when `KVM_RUN` returned.
    pub t_ns: u64,
    /// Guest RIP at the exit (for MMIO writes KVM has already moved past the instruction).
    pub rip: u64,
    /// Why the guest exited, with its payload.
    pub kind: ExitKind,
    /// The device that handled a port or MMIO access; `None` when no device claims the address.
    pub device: Option<&'static str>,
    /// The instruction that caused the exit, when it could be read and decoded.
    pub insn: Option<Arc<Insn>>,
    /// Nanoseconds the VMM spent handling the exit, from `KVM_RUN`'s return until the event is done.
    pub cost_ns: u64,
}

impl ExitKind {
    /// Sets what a port, MMIO or MSR read returned.
    pub fn set_read(&mut self, value: u64) {
        match self {
            ExitKind::Io { data, .. } | ExitKind::Mmio { data, .. } | ExitKind::Msr { data, .. } => *data = value,
            _ => {}
        }
    }
}

impl ExitEvent {
    /// A short human description of the payload: port or address, direction and data.
    pub fn detail(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ExitEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExitKind::Io { port, dir, size, count, data } => {
                write!(f, "{} {port:#06x} {}={data:#0w$x}", dir.io_name(), size, w = 2 + 2 * *size as usize)?;
                if *count > 1 {
                    write!(f, " x{count}")?;
                }
            }
            ExitKind::Mmio { addr, dir, len, data } => {
                write!(f, "{} {addr:#x} {}={data:#0w$x}", dir.mmio_name(), len, w = 2 + 2 * (*len).min(8) as usize)?
            }
            ExitKind::InternalError { suberror, data } => {
                write!(f, "suberror {suberror}")?;
                for d in data {
                    write!(f, " {d:#x}")?;
                }
            }
            ExitKind::FailEntry { reason, cpu } => write!(f, "hardware reason {reason:#x} cpu {cpu}")?,
            ExitKind::SystemEvent { kind, data } => {
                let name = match kind {
                    1 => "shutdown",
                    2 => "reset",
                    3 => "crash",
                    _ => "event",
                };
                write!(f, "{name} ({kind}) {data:x?}")?
            }
            // DR7 is left out: hosts that do not fill it leave other bytes there.
            ExitKind::Debug { exception, pc, dr6, .. } => match exception {
                1 => write!(f, "#DB (step or debug register) pc {pc:#x} dr6 {dr6:#x}")?,
                3 => write!(f, "#BP (int3) pc {pc:#x}")?,
                _ => write!(f, "exception {exception} pc {pc:#x} dr6 {dr6:#x}")?,
            },
            ExitKind::Hypercall { nr } => write!(f, "nr {nr}")?,
            ExitKind::Msr { index, dir, data } => match super::msr::name(*index) {
                Some(name) => write!(f, "{} msr {index:#x} {name} = {data:#x}", dir.mmio_name())?,
                None => write!(f, "{} msr {index:#x} = {data:#x}", dir.mmio_name())?,
            },
            ExitKind::IoapicEoi { vector } => write!(f, "vector {vector}")?,
            ExitKind::MemoryFault { gpa, size, flags } => write!(f, "gpa {gpa:#x} size {size:#x} flags {flags:#x}")?,
            ExitKind::Unknown { hardware_reason } => write!(f, "hardware reason {hardware_reason:#x}")?,
            ExitKind::Other { code } => write!(f, "exit code {code}")?,
            ExitKind::Breakpoint { gva, via } => write!(f, "at {gva:#x} (int3, told as {})", breakpoint_via(*via))?,
            ExitKind::Hlt | ExitKind::Shutdown | ExitKind::Intr => {}
        }
        if matches!(self.kind, ExitKind::Io { .. } | ExitKind::Mmio { .. }) && self.device.is_none() {
            write!(f, " (unclaimed)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: ExitKind, device: Option<&'static str>) -> ExitEvent {
        ExitEvent { seq: 0, vcpu: 0, t_ns: 0, rip: 0, kind, device, insn: None, cost_ns: 0 }
    }

    #[test]
    fn io_detail_names_port_direction_and_data() {
        let e = event(ExitKind::Io { port: 0x3f8, dir: Dir::Out, size: 1, count: 1, data: 0x41 }, Some("serial"));
        assert_eq!(e.detail(), "out 0x03f8 1=0x41");
        assert_eq!(e.kind.reason(), "io");
    }

    #[test]
    fn a_breakpoint_says_how_the_host_told_it_and_a_step_shows_no_dr7() {
        let bp = event(ExitKind::Breakpoint { gva: 0x1000, via: KVM_EXIT_INTERNAL_ERROR }, None);
        assert_eq!(bp.detail(), "at 0x1000 (int3, told as internal_error)");
        let step = event(ExitKind::Debug { exception: 1, pc: 0x1002, dr6: 0xffff0ff0, dr7: 0x0a0d_0c0b }, None);
        assert_eq!(step.detail(), "#DB (step or debug register) pc 0x1002 dr6 0xffff0ff0");
    }

    #[test]
    fn unclaimed_mmio_says_so() {
        let e = event(ExitKind::Mmio { addr: 0xd000_0000, dir: Dir::In, len: 4, data: 0xffff_ffff }, None);
        assert_eq!(e.detail(), "read 0xd0000000 4=0xffffffff (unclaimed)");
    }

    #[test]
    fn every_reason_has_a_listed_name() {
        let kinds = [
            ExitKind::Hlt,
            ExitKind::Shutdown,
            ExitKind::Intr,
            ExitKind::Other { code: 7 },
            ExitKind::Msr { index: 0x10, dir: Dir::Out, data: 0 },
        ];
        for k in kinds {
            assert!(REASON_NAMES.contains(&k.reason()), "{}", k.reason());
        }
    }

    #[test]
    fn each_kind_has_its_kvm_exit_name() {
        let named = [
            (ExitKind::Unknown { hardware_reason: 0 }, "unknown"),
            (ExitKind::Other { code: 1 }, "exception"),
            (ExitKind::Io { port: 0, dir: Dir::In, size: 1, count: 1, data: 0 }, "io"),
            (ExitKind::Hypercall { nr: 0 }, "hypercall"),
            (ExitKind::Debug { exception: 1, pc: 0, dr6: 0, dr7: 0 }, "debug"),
            (ExitKind::Hlt, "hlt"),
            (ExitKind::Mmio { addr: 0, dir: Dir::Out, len: 4, data: 0 }, "mmio"),
            (ExitKind::Other { code: 7 }, "irq_window_open"),
            (ExitKind::Shutdown, "shutdown"),
            (ExitKind::FailEntry { reason: 0, cpu: 0 }, "fail_entry"),
            (ExitKind::Intr, "intr"),
            (ExitKind::Other { code: 11 }, "set_tpr"),
            (ExitKind::Other { code: 12 }, "tpr_access"),
            (ExitKind::Other { code: 16 }, "nmi"),
            (ExitKind::InternalError { suberror: 1, data: Vec::new() }, "internal_error"),
            (ExitKind::SystemEvent { kind: 1, data: Vec::new() }, "system_event"),
            (ExitKind::IoapicEoi { vector: 0 }, "ioapic_eoi"),
            (ExitKind::Other { code: 27 }, "hyperv"),
            (ExitKind::Msr { index: 0x10, dir: Dir::In, data: 0 }, "x86_rdmsr"),
            (ExitKind::Msr { index: 0x10, dir: Dir::Out, data: 0 }, "x86_wrmsr"),
            (ExitKind::MemoryFault { gpa: 0, size: 0, flags: 0 }, "memory_fault"),
            (ExitKind::Other { code: 99 }, "other"),
            (ExitKind::Breakpoint { gva: 0, via: KVM_EXIT_INTERNAL_ERROR }, "breakpoint"),
        ];
        for (kind, name) in named {
            assert_eq!(kind.reason(), name, "{kind:?}");
        }
    }
}

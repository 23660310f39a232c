//! Why an exit reached userspace: the device model in kvmscope that handled it, an address no model
//! claims, the in-kernel controllers this run does not have, a watched page, an instruction KVM's
//! emulator refused, the debugger, a trapped MSR ...

use crate::trace::{ExitEvent, ExitKind};
use crate::vmm::bus::RAM_DEVICE;

/// The reason an exit came out of KVM to kvmscope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// KVM emulates no device at this port or address; this model of kvmscope's took it.
    Handled { model: String, port: bool },
    /// The same, for a device KVM emulates itself when the VM has its in-kernel controllers (a PIC,
    /// PIT, local APIC or IOAPIC access): that it came out says this run has none.
    NoInKernel { what: &'static str, model: Option<String> },
    /// Nothing at this port or address: a read got all ones, a write went nowhere.
    Unclaimed { port: bool },
    /// A page kvmscope keeps from the guest (a watchpoint): completed by kvmscope.
    WatchedPage,
    /// KVM's instruction emulator refused the instruction (this host emulates guest kernel code).
    EmulatorRefused,
    /// One of kvmscope's own breakpoints.
    Breakpoint,
    /// A debug exception for the debugger: a single step, a debug register.
    Debugger,
    /// The vCPU halted and nothing in KVM could wake it.
    Halt,
    /// The MSR is trapped (`--trap-msr`): KVM's filter denies it to the guest, so it exits.
    TrappedMsr,
    /// The guest triple-faulted.
    TripleFault,
    /// kvmscope's own signal took the vCPU out of the guest.
    Signal,
    /// What the exit reason itself says.
    Other(&'static str),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Handled { model, port: true } => {
                write!(f, "no device in KVM claims this port: kvmscope's {model} model handled it")
            }
            Why::Handled { model, port: false } => {
                write!(
                    f,
                    "no memory slot backs this address: KVM sends the access out, kvmscope's {model} model handled it"
                )
            }
            Why::NoInKernel { what, model } => {
                write!(
                    f,
                    "KVM emulates the {what} itself when the VM has its in-kernel controllers: this run has none (not Linux, no --irqchip)"
                )?;
                match model {
                    Some(m) => write!(f, "; kvmscope's {m} model handled it"),
                    None => write!(f, "; kvmscope models none: reads got all ones"),
                }
            }
            Why::Unclaimed { port: true } => {
                write!(f, "nothing claims this port: a read got all ones, a write went nowhere")
            }
            Why::Unclaimed { port: false } => {
                write!(f, "no memory slot and no device at this address: a read got all ones, a write went nowhere")
            }
            Why::WatchedPage => {
                write!(f, "a page kvmscope keeps read-only or unmapped for a watchpoint; kvmscope completed the access")
            }
            Why::EmulatorRefused => write!(
                f,
                "KVM's instruction emulator cannot do this instruction; kvmscope finished it, handed it to the guest, or ended the run"
            ),
            Why::Breakpoint => write!(f, "one of kvmscope's breakpoints: the int3 it planted"),
            Why::Debugger => write!(f, "a debug exception for the debugger (a single step or a debug register)"),
            Why::Halt => {
                write!(f, "the vCPU halted and nothing in KVM can wake it (no in-kernel interrupt controller)")
            }
            Why::TrappedMsr => write!(
                f,
                "the MSR is trapped: KVM's MSR filter denies it to the guest, so the access exits; kvmscope completed it on the real MSR"
            ),
            Why::TripleFault => write!(f, "the guest triple-faulted"),
            Why::Signal => write!(f, "kvmscope's own signal took the vCPU out of the guest (to pause it)"),
            Why::Other(reason) => write!(f, "KVM exit {reason}"),
        }
    }
}

/// Which in-kernel controller lives at a port or address, if any.
fn in_kernel(e: &ExitEvent) -> Option<&'static str> {
    match e.kind {
        ExitKind::Io { port: 0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1, .. } => Some("PIC"),
        ExitKind::Io { port: 0x40..=0x43, .. } => Some("PIT"),
        ExitKind::Mmio { addr: 0xfee0_0000..=0xfee0_0fff, .. } => Some("local APIC"),
        ExitKind::Mmio { addr: 0xfec0_0000..=0xfec0_0fff, .. } => Some("IOAPIC"),
        _ => None,
    }
}

/// Why `e` reached userspace.
pub fn why(e: &ExitEvent) -> Why {
    let port = matches!(e.kind, ExitKind::Io { .. });
    match &e.kind {
        ExitKind::Io { .. } | ExitKind::Mmio { .. } => {
            if e.device == Some(RAM_DEVICE) {
                return Why::WatchedPage;
            }
            if let Some(what) = in_kernel(e) {
                return Why::NoInKernel { what, model: e.device.map(str::to_string) };
            }
            match e.device {
                Some(model) => Why::Handled { model: model.to_string(), port },
                None => Why::Unclaimed { port },
            }
        }
        ExitKind::InternalError { suberror: 1, .. } => Why::EmulatorRefused,
        ExitKind::Breakpoint { .. } => Why::Breakpoint,
        ExitKind::Debug { .. } => Why::Debugger,
        ExitKind::Hlt => Why::Halt,
        ExitKind::Msr { .. } => Why::TrappedMsr,
        ExitKind::Shutdown => Why::TripleFault,
        ExitKind::Intr => Why::Signal,
        other => Why::Other(other.reason()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Dir;

    fn io(port: u16, device: Option<&'static str>) -> ExitEvent {
        let kind = ExitKind::Io { port, dir: Dir::Out, size: 1, count: 1, data: 0 };
        ExitEvent { seq: 0, vcpu: 0, t_ns: 0, rip: 0, kind, device, insn: None, cost_ns: 0 }
    }

    #[test]
    fn the_reason_an_exit_came_out() {
        assert_eq!(why(&io(0x3f8, Some("serial"))), Why::Handled { model: "serial".into(), port: true });
        assert_eq!(why(&io(0x1234, None)), Why::Unclaimed { port: true });
        assert_eq!(why(&io(0x20, None)), Why::NoInKernel { what: "PIC", model: None });
        assert!(why(&io(0x20, None)).to_string().contains("no --irqchip"));
    }
}

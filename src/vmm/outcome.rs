//! How a run ended, what status kvmscope exits with, and what it saw when the guest crashed.

use kvm_bindings::{kvm_regs, kvm_sregs};

use crate::trace::{ExitEvent, Insn};

/// Why the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// The guest wrote `value` to the isa-debug-exit port.
    DebugExit { value: u32 },
    /// A vCPU executed HLT with nothing that can wake it (interrupts off, or no interrupt source).
    Halted { vcpu: u32, interrupts_on: bool },
    /// The guest asked for a reset or power-off (system event, reset port).
    GuestReset { vcpu: u32 },
    /// Triple fault (`KVM_EXIT_SHUTDOWN`).
    TripleFault { vcpu: u32 },
    /// KVM could not go on with the guest (`KVM_EXIT_INTERNAL_ERROR`, `KVM_EXIT_FAIL_ENTRY`, ...).
    GuestError { vcpu: u32, what: String },
    /// `--timeout` expired.
    Timeout,
    /// `--max-exits` was reached.
    MaxExits,
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// The user quit the UI while the guest ran.
    Quit,
    /// kvmscope itself failed (an ioctl the VMM needs returned an error).
    VmmError(VmmFailure),
}

/// How kvmscope itself failed during a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VmmFailure {
    #[error("KVM_RUN on vCPU {vcpu}: {source}")]
    Run { vcpu: u32, source: kvm_ioctls::Error },
    #[error("reading vCPU {vcpu} registers: {source}")]
    Registers { vcpu: u32, source: kvm_ioctls::Error },
    #[error("KVM_SET_GUEST_DEBUG on vCPU {vcpu}: {source}")]
    GuestDebug { vcpu: u32, source: kvm_ioctls::Error },
    #[error("cannot start a vCPU thread: {reason}")]
    Thread { reason: String },
    #[error("every vCPU thread ended without a reason")]
    NoReason,
}

/// The status QEMU's isa-debug-exit gives for `value`: `(value << 1) | 1`, in full (the process
/// status is its low 8 bits).
pub fn debug_exit_status(value: u32) -> u64 {
    ((value as u64) << 1) | 1
}

impl RunEnd {
    /// kvmscope's exit status for this end: the debug-exit status, 0 for a clean halt or reset, 3 for
    /// a guest crash, 124 when a limit stopped it, 130 when interrupted, 1 for a VMM failure.
    pub fn status(&self) -> i32 {
        match self {
            RunEnd::DebugExit { value } => (debug_exit_status(*value) & 0xff) as i32,
            RunEnd::Halted { .. } | RunEnd::GuestReset { .. } | RunEnd::Quit => 0,
            RunEnd::TripleFault { .. } | RunEnd::GuestError { .. } => 3,
            RunEnd::Timeout | RunEnd::MaxExits => 124,
            RunEnd::Interrupted => 130,
            RunEnd::VmmError(_) => 1,
        }
    }

    /// Short machine-readable name ("debug-exit", "halted", ...).
    pub fn name(&self) -> &'static str {
        match self {
            RunEnd::DebugExit { .. } => "debug-exit",
            RunEnd::Halted { .. } => "halted",
            RunEnd::GuestReset { .. } => "reset",
            RunEnd::TripleFault { .. } => "triple-fault",
            RunEnd::GuestError { .. } => "guest-error",
            RunEnd::Timeout => "timeout",
            RunEnd::MaxExits => "max-exits",
            RunEnd::Interrupted => "interrupted",
            RunEnd::Quit => "quit",
            RunEnd::VmmError(_) => "vmm-error",
        }
    }

    /// Whether the guest crashed (and a crash report is worth printing).
    pub fn is_crash(&self) -> bool {
        matches!(self, RunEnd::TripleFault { .. } | RunEnd::GuestError { .. })
    }

    /// Whether the guest ended the run itself (not a limit, the user or kvmscope).
    pub fn is_guests(&self) -> bool {
        matches!(
            self,
            RunEnd::DebugExit { .. }
                | RunEnd::Halted { .. }
                | RunEnd::GuestReset { .. }
                | RunEnd::TripleFault { .. }
                | RunEnd::GuestError { .. }
        )
    }
}

impl std::fmt::Display for RunEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunEnd::DebugExit { value } => {
                write!(f, "guest wrote {value} to the debug-exit port")?;
                let full = debug_exit_status(*value);
                if full > 0xff {
                    write!(f, "; ({value} << 1) | 1 = {full} exits as {}", full & 0xff)?;
                }
                Ok(())
            }
            RunEnd::Halted { vcpu, interrupts_on: false } => write!(f, "vCPU {vcpu} halted with interrupts off"),
            RunEnd::Halted { vcpu, interrupts_on: true } => {
                write!(f, "vCPU {vcpu} halted and no interrupt source can wake it")
            }
            RunEnd::GuestReset { vcpu } => write!(f, "vCPU {vcpu} asked for a reset or power-off"),
            RunEnd::TripleFault { vcpu } => write!(f, "vCPU {vcpu} triple-faulted (KVM_EXIT_SHUTDOWN)"),
            RunEnd::GuestError { vcpu, what } => write!(f, "vCPU {vcpu}: {what}"),
            RunEnd::Timeout => write!(f, "timeout expired"),
            RunEnd::MaxExits => write!(f, "exit limit reached"),
            RunEnd::Interrupted => write!(f, "interrupted"),
            RunEnd::Quit => write!(f, "quit by the user"),
            RunEnd::VmmError(e) => write!(f, "kvmscope failed: {e}"),
        }
    }
}

/// The state of a vCPU that crashed, captured at the moment it stopped.
#[derive(Debug, Clone)]
pub struct CrashReport {
    pub vcpu: u32,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    /// The instruction at RIP, if it could be read and decoded.
    pub insn: Option<Insn>,
    /// The bytes at RIP (up to 15; none when RIP is not mapped to RAM).
    pub rip_bytes: Vec<u8>,
    /// The vCPU's last exits, oldest first.
    pub last_exits: Vec<ExitEvent>,
}

/// How a vCPU thread ended: the run's end as this vCPU saw it, with a crash report when it crashed.
pub type VcpuEnd = (RunEnd, Option<Box<CrashReport>>);

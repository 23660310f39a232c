//! A stopped vCPU: why it stopped, the state it left, and what it can be told while parked.

use std::sync::mpsc::Sender;

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};

use super::breakpoints::WatchKind;
use super::exit_breakpoints::ExitBreakpoint;
use crate::trace::ExitEvent;

/// What a parked vCPU is told to do.
pub enum VcpuCommand {
    /// Run on (the pause flag is already down).
    Resume,
    /// Execute one instruction, then park again.
    Step,
    /// Load these registers; the answer says whether KVM took them.
    SetRegs { regs: Box<kvm_regs>, sregs: Box<kvm_sregs>, reply: Sender<Result<(), kvm_ioctls::Error>> },
    /// Let KVM finish the instruction under way (the pending completion of a port or MMIO read
    /// lives in KVM, outside the registers): a state read or written after it is whole. The
    /// answer (after the stop is published again) says whether the run goes on.
    Settle { reply: Sender<bool> },
    /// Run this on the vCPU's thread with its fd (a checkpoint reading or writing its whole
    /// state); the stop is published again after, with the registers it leaves, then `done`.
    WithFd { run: Box<dyn FnOnce(&kvm_ioctls::VcpuFd) + Send>, done: Sender<()> },
}

impl std::fmt::Debug for VcpuCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VcpuCommand::Resume => "Resume",
            VcpuCommand::Step => "Step",
            VcpuCommand::SetRegs { .. } => "SetRegs",
            VcpuCommand::Settle { .. } => "Settle",
            VcpuCommand::WithFd { .. } => "WithFd",
        })
    }
}

/// Why a vCPU stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The user (or gdb) paused the guest.
    Pause,
    /// A single step completed.
    Step,
    /// An exit matched an exit breakpoint.
    ExitBreakpoint(ExitBreakpoint),
    /// A software breakpoint (`int3` planted by kvmscope) at this guest-virtual address.
    SwBreakpoint(u64),
    /// A hardware execution breakpoint (DR0-3) at this address.
    HwBreakpoint(u64),
    /// A watchpoint caught an access at this guest-virtual address.
    Watchpoint { gva: u64, kind: WatchKind },
    /// The run ended: the state the vCPU left.
    Ended,
    /// Going forward again reached this position of the timeline (guest exits since the start).
    Reached(u64),
    /// Going forward again, the guest left the history at this position: the exit it made there
    /// is not the one it made the first time.
    Diverged { position: u64, was: String, now: String },
    /// Going back found no earlier stop: this is as far back as the checkpoints reach.
    TimelineStart(u64),
    /// Going back could not be done (said why); the guest is where it ended up.
    TravelFailed(String),
}

impl StopReason {
    /// In a few words, for a pane's title: "paused", "exit breakpoint #2", "watchpoint" ...
    pub fn short(&self) -> String {
        match self {
            StopReason::ExitBreakpoint(b) => format!("exit breakpoint #{}", b.id),
            StopReason::SwBreakpoint(_) => "breakpoint".into(),
            StopReason::HwBreakpoint(_) => "hardware breakpoint".into(),
            StopReason::Watchpoint { .. } => "watchpoint".into(),
            StopReason::Diverged { position, .. } => format!("left the history at exit {position}"),
            other => other.to_string(),
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Pause => write!(f, "paused"),
            StopReason::Step => write!(f, "stepped"),
            StopReason::ExitBreakpoint(b) => write!(f, "exit breakpoint {b}"),
            StopReason::SwBreakpoint(a) => write!(f, "breakpoint at {a:#x}"),
            StopReason::HwBreakpoint(a) => write!(f, "hardware breakpoint at {a:#x}"),
            StopReason::Watchpoint { gva, kind } => write!(f, "{kind:?} watchpoint at {gva:#x}"),
            StopReason::Ended => write!(f, "run ended"),
            StopReason::Reached(p) => write!(f, "at exit {p} of the timeline"),
            StopReason::Diverged { position, was, now } => {
                write!(f, "left the history at exit {position}: it was {was}, now {now}")
            }
            StopReason::TimelineStart(p) => write!(f, "at the first checkpoint (exit {p}): no earlier stop"),
            StopReason::TravelFailed(why) => write!(f, "could not go back: {why}"),
        }
    }
}

/// A parked vCPU's state.
#[derive(Debug, Clone)]
pub struct Stop {
    pub vcpu: u32,
    pub reason: StopReason,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub fpu: kvm_fpu,
    /// The exit that stopped it (exit breakpoint, step), if any.
    pub event: Option<ExitEvent>,
    /// Counts stops across the run, so a view can tell a new stop from the one it has shown.
    pub serial: u64,
}

//! The debugger's mechanics on one vCPU: loading guest-debug settings into KVM, stepping off a
//! breakpoint, and deciding what a debug-related exit means (a breakpoint, a watchpoint, a finished
//! step, or a guest's own `int3` to hand back to it).

use kvm_bindings::{
    KVM_GUESTDBG_BLOCKIRQ, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_INJECT_BP, KVM_GUESTDBG_SINGLESTEP,
    KVM_GUESTDBG_USE_HW_BP, KVM_GUESTDBG_USE_SW_BP, kvm_guest_debug, kvm_guest_debug_arch, kvm_regs, kvm_sregs,
};
use kvm_ioctls::VcpuFd;

use super::backstop;
use super::state::{StepOver, StepTrap, VcpuState};
use crate::debug::StopReason;
use crate::debug::breakpoints::HwKind;
use crate::decode::paging::gpa_of;
use crate::decode::{CpuMode, PhysRead};
use crate::trace::event::{KVM_EXIT_DEBUG, KVM_EXIT_INTERNAL_ERROR};
use crate::trace::{Dir, ExitEvent, ExitKind};
use crate::vmm::bus::RAM_DEVICE;
use crate::vmm::emulate::{self, Completion, X87Sse};
use crate::vmm::outcome::VmmFailure;
use crate::vmm::shared::Shared;

/// How a step whose instruction made an exit ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    /// Once KVM completes the instruction (a port or MMIO read's value into its register).
    OnceCompleted,
    /// At once: kvmscope finished the instruction (or raised its exception) itself; a run of
    /// KVM now would only stand in the way of the exception it is to deliver.
    Now,
}

/// What a debug-related exit means.
pub enum DebugOutcome {
    /// Nothing for the debugger.
    None,
    /// The debugger's business, done: the guest runs on (a step off a breakpoint, a guest's own
    /// `int3` handed to it as #BP, an instruction finished for the host).
    Handled,
    /// Stop all vCPUs for this reason.
    Stop(StopReason),
}

/// `hlt`'s opcode.
const HLT: u8 = 0xf4;

/// One vCPU's debugger state.
pub struct VcpuDebugger {
    vcpu: u32,
    /// Running, parked, stepping ...
    pub state: VcpuState,
    /// The debug-settings generation this vCPU has loaded.
    generation: u64,
    /// Whether guest debugging is on in KVM.
    guest_debug_on: bool,
    /// A stop to make once the instruction under way completes (a read caught by a watchpoint
    /// exits before the load finishes; gdb expects to see it done), with the exit that made it.
    pending_stop: Option<(StopReason, Option<ExitEvent>)>,
    /// The instruction a step executes exited (or kvmscope finished it for the host): the step
    /// ends there. Where the exit leaves RIP past the instruction (an `out`, an MMIO write on an
    /// emulating host), KVM's single-step trap would only come after the *next* instruction.
    step_ends: Option<StepEnd>,
    /// Where the step under way must end if the host's trap does not come in time (see
    /// `backstop`): a hardware breakpoint there for the step.
    backstop: Option<u64>,
    /// The step under way delivers an exception: it runs to the handler's backstop without the
    /// host's single-step (whose trap flag would be pushed into the guest's frame).
    to_backstop_only: bool,
    /// The step under way is over a `hlt`, which only an interrupt ends: not held back for it.
    stepping_hlt: bool,
}

impl VcpuDebugger {
    pub fn new(vcpu: u32) -> Self {
        Self {
            vcpu,
            state: VcpuState::Running,
            generation: 0,
            guest_debug_on: false,
            pending_stop: None,
            step_ends: None,
            backstop: None,
            to_backstop_only: false,
            stepping_hlt: false,
        }
    }

    /// The stop to make after the instruction under way, if any.
    pub fn take_pending_stop(&mut self) -> Option<(StopReason, Option<ExitEvent>)> {
        self.pending_stop.take()
    }

    /// Stops once the instruction under way is complete: a stop at a guest exit shows the
    /// instruction done (a port read's value in its register), and a step from there executes
    /// the next one instead of finishing this one.
    pub fn stop_after_instruction(&mut self, reason: StopReason, event: Option<ExitEvent>) {
        self.pending_stop = Some((reason, event));
    }

    /// An exit came while single-stepping: the step ends with its instruction, once KVM has
    /// completed it.
    pub fn end_step_at_exit(&mut self) {
        // (Not while the step runs to an exception handler's backstop: it ends there.)
        if self.state.single_steps() && self.step_ends.is_none() && !self.to_backstop_only {
            self.step_ends = Some(StepEnd::OnceCompleted);
        }
    }

    /// kvmscope finished the step's instruction itself (set the registers, or raised the
    /// exception it makes): the step ends now, with nothing left for KVM to complete.
    fn end_step_now(&mut self) {
        if self.state.single_steps() {
            self.step_ends = Some(StepEnd::Now);
        }
    }

    /// kvmscope raised exception `vector` in the guest during a step: the user's step ends at the
    /// handler's first instruction, reached without the host's single-step (its trap flag would
    /// go into the exception frame); a step off a breakpoint before running on ends now.
    fn step_into_handler(&mut self, fd: &VcpuFd, shared: &Shared, sregs: &kvm_sregs, vector: u8) {
        let users =
            matches!(self.state, VcpuState::Stepping | VcpuState::SteppingOver(StepOver { then_park: true, .. }));
        match backstop::handler_of(&shared.ram, sregs, vector).filter(|_| users) {
            Some(handler) => {
                (self.backstop, self.to_backstop_only) = (Some(handler), true);
                let _ = self.apply(fd, shared, 0);
            }
            None => self.end_step_now(),
        }
    }

    /// How the step under way ends at the exit just handled, if it does (and forgets it).
    pub fn take_step_end(&mut self) -> Option<StepEnd> {
        self.step_ends.take()
    }

    /// Ends the step under way as its trap would (a breakpoint stepped off is planted again):
    /// the stop to make, if the step was the user's. `None` when no step is under way.
    pub fn finish_step(&mut self, fd: &VcpuFd, shared: &Shared) -> Option<DebugOutcome> {
        if !self.state.single_steps() {
            return None;
        }
        (self.backstop, self.to_backstop_only) = (None, false);
        Some(self.on_debug_trap(fd, shared, 0))
    }

    /// Reloads the guest-debug settings when the controller changed breakpoints.
    pub fn reload_if_changed(&mut self, fd: &VcpuFd, shared: &Shared) -> Result<(), VmmFailure> {
        if shared.debug.generation() == self.generation { Ok(()) } else { self.apply(fd, shared, 0) }
    }

    /// Loads this vCPU's guest-debug settings into KVM: debug registers, software breakpoints,
    /// single-step; `extra` adds one-shot flags (inject #BP).
    pub fn apply(&mut self, fd: &VcpuFd, shared: &Shared, extra: u32) -> Result<(), VmmFailure> {
        let d = &shared.debug;
        self.generation = d.generation();
        let mut control = extra;
        let mut arch = kvm_guest_debug_arch::default();
        {
            let bps = d.breakpoints();
            let (mut addrs, mut dr7) = bps.debug_registers();
            if self.state.lifts_breakpoints() {
                dr7 = 0;
            }
            // The step's backstop, in a slot the user's breakpoints leave free.
            let free = (0..4).find(|i| dr7 & (3 << (2 * i)) == 0);
            if let (Some(at), true, Some(i)) = (self.backstop, self.state.single_steps(), free) {
                addrs[i] = at;
                dr7 |= 1 << (2 * i);
            }
            if dr7 != 0 {
                control |= KVM_GUESTDBG_USE_HW_BP;
                arch.debugreg[..4].copy_from_slice(&addrs);
                arch.debugreg[7] = dr7;
            }
            if d.sw_breakpoints_by_kvm() && bps.has_sw() {
                control |= KVM_GUESTDBG_USE_SW_BP;
            }
        }
        if self.state.single_steps() && !self.to_backstop_only {
            control |= KVM_GUESTDBG_SINGLESTEP;
            // An interrupt arriving meanwhile would run its handler's first instruction in the
            // same step; it comes after the step instead.
            if d.steps_block_irqs() && !self.stepping_hlt {
                control |= KVM_GUESTDBG_BLOCKIRQ;
            }
        }
        if control == 0 && !self.guest_debug_on {
            return Ok(());
        }
        if control != 0 {
            control |= KVM_GUESTDBG_ENABLE;
        }
        self.guest_debug_on = control != 0;
        fd.set_guest_debug(&kvm_guest_debug { control, pad: 0, arch })
            .map_err(|source| VmmFailure::GuestDebug { vcpu: self.vcpu, source })
    }

    /// Leaves a park to run (`step`: one instruction). A vCPU sitting on a breakpoint first steps
    /// off it with the breakpoint lifted, so the instruction under it runs. False if KVM refuses.
    pub fn leave_park(&mut self, fd: &VcpuFd, shared: &Shared, step: bool) -> bool {
        let (regs, sregs) = match (fd.get_regs(), fd.get_sregs()) {
            (Ok(r), Ok(s)) => (r, s),
            _ => return false,
        };
        let mode = CpuMode::from(&sregs);
        let gpa = gpa_of(&shared.ram, &mode, mode.code_linear(regs.rip)).ok().map(|(gpa, _)| gpa);
        let over = {
            let bps = shared.debug.breakpoints();
            let sw = gpa.and_then(|g| bps.sw_at(g));
            if let Some(bp) = sw {
                shared.ram.write(bp.gpa, &[bp.original]);
            }
            let sw_gpa = sw.map(|b| b.gpa);
            (sw_gpa.is_some() || bps.hw_exec_at(mode.code_linear(regs.rip))).then_some(sw_gpa)
        };
        self.state = VcpuState::leave_park(step, over);
        self.step_ends = None;
        self.to_backstop_only = false;
        self.stepping_hlt = self.state.single_steps()
            && gpa.is_some_and(|g| {
                let mut byte = [0u8];
                shared.ram.read_phys(g, &mut byte) && byte[0] == HLT
            });
        self.backstop = match self.state.single_steps() {
            true => backstop::after_flags_reload(&shared.ram, &regs, &sregs),
            false => None,
        };
        self.apply(fd, shared, 0).is_ok()
    }

    /// The breakpoint exit an `int3` exit is, when the `int3` is one kvmscope planted: KVM tells it
    /// as #BP (`KVM_EXIT_DEBUG`) where it catches `int3`, and an emulating host as a failed
    /// emulation with RIP on the `int3`.
    pub fn breakpoint_of(
        &self,
        shared: &Shared,
        regs: &kvm_regs,
        sregs: &kvm_sregs,
        kind: &ExitKind,
    ) -> Option<ExitKind> {
        let mode = CpuMode::from(sregs);
        let (linear, via) = match kind {
            ExitKind::InternalError { suberror: 1, .. } => (mode.code_linear(regs.rip), KVM_EXIT_INTERNAL_ERROR),
            ExitKind::Debug { exception: 3, pc, .. } => (*pc, KVM_EXIT_DEBUG),
            _ => return None,
        };
        let (gpa, _) = gpa_of(&shared.ram, &mode, linear).ok()?;
        if self.stepping_over(gpa) {
            // The guest's own int3 under one of kvmscope's: it is the guest's to take.
            return None;
        }
        let bp = shared.debug.breakpoints().sw_at(gpa)?;
        Some(ExitKind::Breakpoint { gva: bp.gva, via })
    }

    /// Whether the vCPU is stepping over kvmscope's int3 at `gpa` (the guest's own byte is in
    /// place meanwhile).
    fn stepping_over(&self, gpa: u64) -> bool {
        matches!(self.state, VcpuState::SteppingOver(StepOver { sw_gpa: Some(g), .. }) if g == gpa)
    }

    /// What an exit means to the debugger.
    pub fn on_exit(
        &mut self,
        fd: &VcpuFd,
        shared: &Shared,
        event: &ExitEvent,
        regs: &kvm_regs,
        sregs: Option<&kvm_sregs>,
    ) -> DebugOutcome {
        match event.kind {
            ExitKind::Breakpoint { gva, .. } => DebugOutcome::Stop(StopReason::SwBreakpoint(gva)),
            ExitKind::Debug { exception: 1, dr6, .. } => self.on_debug_trap(fd, shared, dr6),
            ExitKind::Debug { exception: 3, pc, .. } => {
                // KVM caught an int3 (USE_SW_BP): ours is a breakpoint; the guest's own goes back to it.
                let gpa = sregs.and_then(|s| gpa_of(&shared.ram, &CpuMode::from(s), pc).ok()).map(|(gpa, _)| gpa);
                let ours = gpa.filter(|&g| !self.stepping_over(g));
                match ours.and_then(|g| shared.debug.breakpoints().sw_at(g)) {
                    Some(bp) => DebugOutcome::Stop(StopReason::SwBreakpoint(bp.gva)),
                    None => {
                        let _ = self.apply(fd, shared, KVM_GUESTDBG_INJECT_BP);
                        DebugOutcome::Handled
                    }
                }
            }
            ExitKind::InternalError { suberror: 1, .. } => {
                let Some(sregs) = sregs else { return DebugOutcome::None };
                self.on_emulation_failure(fd, shared, regs, sregs)
            }
            ExitKind::Mmio { addr, dir, len, .. } if event.device == Some(RAM_DEVICE) => {
                let hit = shared.debug.breakpoints().watch_hit(addr, len as u64, dir == Dir::Out);
                match (hit, dir) {
                    (Some(w), Dir::Out) => DebugOutcome::Stop(StopReason::Watchpoint { gva: w.gva, kind: w.kind }),
                    (Some(w), Dir::In) => {
                        self.pending_stop = Some((StopReason::Watchpoint { gva: w.gva, kind: w.kind }, None));
                        DebugOutcome::Handled
                    }
                    (None, _) => DebugOutcome::Handled,
                }
            }
            _ => DebugOutcome::None,
        }
    }

    /// #DB: the end of a step, a hardware breakpoint or a DR7 watchpoint.
    fn on_debug_trap(&mut self, fd: &VcpuFd, shared: &Shared, dr6: u64) -> DebugOutcome {
        let (state, trap) = self.state.on_step_trap();
        self.state = state;
        if trap != StepTrap::NotOurs {
            (self.backstop, self.to_backstop_only) = (None, false);
        }
        match trap {
            StepTrap::SteppedOver { replant, then_park } => {
                if let Some(gpa) = replant {
                    if shared.debug.breakpoints().sw_at(gpa).is_some() {
                        shared.ram.write(gpa, &[0xcc]);
                    }
                }
                let _ = self.apply(fd, shared, 0);
                if then_park { DebugOutcome::Stop(StopReason::Step) } else { DebugOutcome::Handled }
            }
            StepTrap::StepDone => {
                let _ = self.apply(fd, shared, 0);
                DebugOutcome::Stop(StopReason::Step)
            }
            StepTrap::NotOurs => {
                let slot = (0..4).find(|i| dr6 & (1 << i) != 0);
                match slot.and_then(|i| shared.debug.breakpoints().hw_slot(i)) {
                    Some(s) => match s.kind {
                        HwKind::Exec => DebugOutcome::Stop(StopReason::HwBreakpoint(s.gva)),
                        HwKind::Data { kind, .. } => DebugOutcome::Stop(StopReason::Watchpoint { gva: s.gva, kind }),
                    },
                    None => DebugOutcome::Handled,
                }
            }
        }
    }

    /// An emulating host fails on int3 at CPL0 with RIP on it: kvmscope's int3 is a breakpoint;
    /// any other is delivered to the guest as #BP, as hardware would. Other failures may be
    /// instructions kvmscope can finish for the host (clac, popcnt ...).
    fn on_emulation_failure(
        &mut self,
        fd: &VcpuFd,
        shared: &Shared,
        regs: &kvm_regs,
        sregs: &kvm_sregs,
    ) -> DebugOutcome {
        let mode = CpuMode::from(sregs);
        let Ok((gpa, _)) = gpa_of(&shared.ram, &mode, mode.code_linear(regs.rip)) else {
            return DebugOutcome::None;
        };
        let mut byte = [0u8];
        if !shared.ram.read_phys(gpa, &mut byte) {
            return DebugOutcome::None;
        }
        if byte[0] != 0xcc {
            return match emulate::complete(&shared.ram, &mode, regs, sregs, &|| {
                fd.get_xsave().ok().map(|a| X87Sse::read(&a))
            }) {
                Some(Completion::Done(done, fpu))
                    if fpu.is_none_or(|f| set_x87_sse(fd, &f)) && fd.set_regs(&done).is_ok() =>
                {
                    self.end_step_now();
                    DebugOutcome::Handled
                }
                Some(Completion::Fault(vector)) if inject_fault(fd, vector) => {
                    self.step_into_handler(fd, shared, sregs, vector);
                    DebugOutcome::Handled
                }
                _ => DebugOutcome::None,
            };
        }
        if !self.stepping_over(gpa)
            && let Some(bp) = shared.debug.breakpoints().sw_at(gpa)
        {
            return DebugOutcome::Stop(StopReason::SwBreakpoint(bp.gva));
        }
        if inject_breakpoint(fd, regs) {
            self.step_into_handler(fd, shared, sregs, 3);
            DebugOutcome::Handled
        } else {
            DebugOutcome::None
        }
    }
}

/// Writes the x87/SSE control state back into the vCPU's XSAVE area, the rest of it unchanged.
fn set_x87_sse(fd: &VcpuFd, state: &X87Sse) -> bool {
    let Ok(mut area) = fd.get_xsave() else { return false };
    state.write(&mut area);
    // SAFETY: `area` is the whole area KVM_GET_XSAVE gave: kvmscope never grants the guest
    // extended (AMX) state, so KVM reads no more than the 4 KiB of a kvm_xsave.
    unsafe { fd.set_xsave(&area) }.is_ok()
}

/// Raises exception `vector` (a fault; #GP with error code 0, the rest without one) in the guest,
/// RIP unchanged.
fn inject_fault(fd: &VcpuFd, vector: u8) -> bool {
    let Ok(mut events) = fd.get_vcpu_events() else { return false };
    events.exception.injected = 1;
    events.exception.nr = vector;
    events.exception.has_error_code = (vector == emulate::GP) as u8;
    events.exception.error_code = 0;
    events.exception.pending = 0;
    fd.set_vcpu_events(&events).is_ok()
}

/// Delivers #BP for the guest's own `int3` at RIP: RIP past it, exception 3 injected.
fn inject_breakpoint(fd: &VcpuFd, regs: &kvm_regs) -> bool {
    let moved = kvm_regs { rip: regs.rip.wrapping_add(1), ..*regs };
    fd.set_regs(&moved).is_ok() && inject_fault(fd, 3)
}

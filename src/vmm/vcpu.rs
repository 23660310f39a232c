//! One vCPU thread: run the guest, and turn every `KVM_RUN` return into an exit event — classified,
//! dispatched to the device bus, decoded, timed, counted and handed to the sinks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use kvm_bindings::{
    KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_INJECT_BP, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP,
    KVM_GUESTDBG_USE_SW_BP, kvm_guest_debug, kvm_guest_debug_arch, kvm_regs, kvm_sregs,
};
use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd};

use super::bus::VmRequest;
use super::kick;
use super::outcome::{CrashReport, RunEnd};
use super::shared::Shared;
use crate::debug::breakpoints::HwKind;
use crate::debug::{Stop, StopReason, VcpuCommand};
use crate::decode::PhysRead;
use crate::decode::paging::translate;
use crate::decode::{CpuMode, InsnDecoder};
use crate::sync::lock;
use crate::trace::{Dir, ExitEvent, ExitKind};
use crate::vmm::probe::Mechanism;

/// The "device" of an MMIO exit that kvmscope completed in guest RAM (a watched, read-only page).
pub const RAM_DEVICE: &str = "ram (watched page)";

/// Exits kept per vCPU for a crash report.
const RECENT_EXITS: usize = 16;
const RFLAGS_IF: u64 = 1 << 9;

/// The CPU mode that `sregs` describe.
pub fn cpu_mode(sregs: &kvm_sregs) -> CpuMode {
    CpuMode {
        cr0: sregs.cr0,
        cr3: sregs.cr3,
        cr4: sregs.cr4,
        efer: sregs.efer,
        cs_base: sregs.cs.base,
        cs_db: sregs.cs.db != 0,
        cs_l: sregs.cs.l != 0,
    }
}

/// How a vCPU thread ended: the run's end as this vCPU saw it, with a crash report when it crashed.
pub type VcpuEnd = (RunEnd, Option<Box<CrashReport>>);

/// A vCPU and what its thread keeps between exits.
pub struct Vcpu {
    index: u32,
    fd: VcpuFd,
    shared: Arc<Shared>,
    decoder: InsnDecoder,
    recent: VecDeque<ExitEvent>,
    /// The device that took the last port access.
    io_device: Option<&'static str>,
    /// KVM copies registers into `kvm_run` on every exit (`KVM_CAP_SYNC_REGS`): no ioctl per exit.
    sync_regs: bool,
    /// Commands from the debug controller while parked.
    commands: Receiver<VcpuCommand>,
    /// A single step is in progress.
    stepping: bool,
    /// Stepping off a breakpoint before running on: the `int3` to put back, and whether to park
    /// after the step (a user's step) or run on (a continue).
    step_over: Option<StepOver>,
    /// The debug-settings generation this vCPU has loaded.
    debug_generation: u64,
    /// Whether guest debugging is on in KVM.
    guest_debug_on: bool,
    /// A stop to make once the instruction under way completes (a read caught by a watchpoint
    /// exits before the load finishes; gdb expects to see it done).
    pending_stop: Option<StopReason>,
    /// The last `KVM_RUN` returned EINTR.
    kicked: bool,
    /// Times this vCPU has parked.
    parks: u64,
}

/// A step off a breakpoint in progress.
#[derive(Debug, Clone, Copy)]
struct StepOver {
    sw_gpa: Option<u64>,
    then_park: bool,
}

/// What a debug-related exit means.
enum DebugOutcome {
    /// Nothing for the debugger.
    None,
    /// The debugger's business, done: the guest runs on (a step off a breakpoint, a guest's own
    /// `int3` handed to it as #BP).
    Handled,
    /// Stop all vCPUs for this reason.
    Stop(StopReason),
}

/// What the loop does after one `KVM_RUN` return.
enum Next {
    Continue,
    End(RunEnd),
}

impl Vcpu {
    pub fn new(
        index: u32,
        mut fd: VcpuFd,
        shared: Arc<Shared>,
        sync_regs: bool,
        commands: Receiver<VcpuCommand>,
    ) -> Self {
        if sync_regs {
            fd.set_sync_valid_reg(SyncReg::Register);
            fd.set_sync_valid_reg(SyncReg::SystemRegister);
        }
        Self {
            index,
            fd,
            shared,
            decoder: InsnDecoder::default(),
            recent: VecDeque::new(),
            io_device: None,
            sync_regs,
            commands,
            stepping: false,
            step_over: None,
            debug_generation: 0,
            guest_debug_on: false,
            pending_stop: None,
            kicked: false,
            parks: 0,
        }
    }

    /// Runs the guest until the run ends, on this thread. Returns `None` when another vCPU or the
    /// VM's owner ended the run.
    pub fn run(mut self) -> Option<VcpuEnd> {
        kick::bind(Some(self.fd.get_kvm_run() as *mut _));
        let end = loop {
            if self.shared.is_stopping() {
                break None;
            }
            let busy_stepping = self.stepping || self.step_over.is_some();
            if self.shared.debug.pause_requested() && !busy_stepping && !self.park(StopReason::Pause, None) {
                break None;
            }
            if self.shared.debug.generation.load(Ordering::Acquire) != self.debug_generation {
                if let Err(e) = self.apply_guest_debug(0) {
                    break Some((RunEnd::VmmError(e), None));
                }
            }
            let mut next = self.step();
            if let (Next::Continue, Some(reason)) = (&next, self.pending_stop.take()) {
                let parks = self.parks;
                next = self.complete_instruction();
                // Completing it may have stopped already (the write of a read-modify-write).
                if matches!(next, Next::Continue) && self.parks == parks {
                    self.shared.debug.request_pause();
                    if !self.park(reason, None) {
                        break None;
                    }
                }
            }
            match next {
                Next::Continue => {}
                Next::End(end) => {
                    let crash = end.is_crash().then(|| Box::new(self.crash_report()));
                    break Some((end, crash));
                }
            }
        };
        kick::bind(None);
        end
    }

    /// One `KVM_RUN` and the handling of its exit.
    fn step(&mut self) -> Next {
        let result = self.fd.run();
        let t_exit = Instant::now();
        let (mut kind, device, request) = match result {
            Ok(exit) => classify(exit, &self.shared),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                // A kick (or a woken secondary vCPU): not a guest exit, not counted.
                self.fd.set_kvm_immediate_exit(0);
                self.kicked = true;
                return Next::Continue;
            }
            Err(e) => return Next::End(RunEnd::VmmError(format!("KVM_RUN on vCPU {}: {e}", self.index))),
        };
        let request = match kind {
            ExitKind::Io { .. } => self.dispatch_io(&mut kind),
            _ => request,
        };
        let device = match kind {
            ExitKind::Io { .. } => self.io_device,
            _ => device,
        };
        self.fill_payload(&mut kind);
        let (regs, sregs) = match self.registers(kind.wants_decode()) {
            Ok(r) => r,
            Err(e) => return Next::End(RunEnd::VmmError(format!("reading vCPU {} registers: {e}", self.index))),
        };
        let shared = &*self.shared;
        let insn = match (&sregs, kind.wants_decode()) {
            (Some(sregs), true) => self.decoder.decode_exit(&shared.mem, &cpu_mode(sregs), regs.rip, &kind),
            _ => None,
        };
        let event = ExitEvent {
            seq: shared.seq.fetch_add(1, Ordering::Relaxed),
            vcpu: self.index,
            t_ns: t_exit.duration_since(shared.start).as_nanos() as u64,
            rip: regs.rip,
            kind,
            device,
            insn,
            cost_ns: t_exit.elapsed().as_nanos() as u64,
        };
        shared.counters_of(self.index as usize).record(&event);
        for sink in &shared.sinks {
            sink.on_exit(&event);
        }
        let at_limit = event.seq + 1 >= shared.max_exits;
        // A debugger's stop or handled trap is not the guest's doing: the run goes on after it. An
        // exit breakpoint stops before the exit takes its usual effect (which may end the run).
        let (outcome, next) = match self.debug_outcome(&event, &regs, sregs.as_ref()) {
            DebugOutcome::None => {
                let next = self.decide(&event, request, regs.rflags);
                match self.shared.debug.exit_breakpoint_hit(&event) {
                    Some(bp) => (DebugOutcome::Stop(StopReason::ExitBreakpoint(bp)), next),
                    None => (DebugOutcome::None, next),
                }
            }
            other => (other, Next::Continue),
        };
        if let DebugOutcome::Stop(reason) = outcome {
            self.shared.debug.request_pause();
            if !self.park(reason, Some(event.clone())) {
                return Next::Continue;
            }
        }
        if self.recent.len() == RECENT_EXITS {
            self.recent.pop_front();
        }
        self.recent.push_back(event);
        match next {
            Next::Continue if at_limit => Next::End(RunEnd::MaxExits),
            next => next,
        }
    }

    /// Hands a port access to the bus, element by element (`rep ins/outs` come as several), and
    /// fills in the exit's size, count and data.
    fn dispatch_io(&mut self, kind: &mut ExitKind) -> Option<VmRequest> {
        let ExitKind::Io { port, dir, size, count, data } = kind else { return None };
        let run = self.fd.get_kvm_run();
        // SAFETY: exit_reason is KVM_EXIT_IO, so `io` is the valid member of the union.
        let io = unsafe { run.__bindgen_anon_1.io };
        let elem = (io.size as usize).max(1);
        let len = elem * io.count as usize;
        let base = run as *mut kvm_bindings::kvm_run as *mut u8;
        // SAFETY: KVM places `count * size` bytes of port data at `data_offset` inside the kvm_run
        // mapping (as kvm-ioctls reads it); the slice lives only in this function.
        let bytes = unsafe { std::slice::from_raw_parts_mut(base.add(io.data_offset as usize), len) };
        let mut request = None;
        self.io_device = None;
        for chunk in bytes.chunks_mut(elem) {
            match dir {
                Dir::Out => {
                    let (d, r) = self.shared.pio.write(*port as u64, chunk);
                    self.io_device = d;
                    request = request.or(r);
                }
                Dir::In => self.io_device = self.shared.pio.read(*port as u64, chunk),
            }
        }
        (*size, *count, *data) = (io.size, io.count, le_value(bytes.get(..elem).unwrap_or(&[])));
        request
    }

    /// Parks this vCPU: publishes its state and waits for the controller. Returns false when the run
    /// is ending instead.
    fn park(&mut self, reason: StopReason, event: Option<ExitEvent>) -> bool {
        self.parks += 1;
        let index = self.index as usize;
        self.publish_stop(reason, event);
        let resumed = loop {
            match self.commands.recv_timeout(Duration::from_millis(50)) {
                Ok(VcpuCommand::Resume) => break self.leave_park(false),
                Ok(VcpuCommand::Step) => break self.leave_park(true),
                Ok(VcpuCommand::SetRegs { regs, sregs, reply }) => {
                    let r = self.fd.set_regs(&regs).and_then(|_| self.fd.set_sregs(&sregs));
                    let _ = reply.send(r.map_err(|e| format!("KVM refused the registers: {e}")));
                    let stop = lock(self.shared.debug.stops_ref())[index].clone();
                    if let Some(s) = stop {
                        self.publish_stop(s.reason, s.event);
                    }
                }
                Err(RecvTimeoutError::Timeout) if !self.shared.is_stopping() => {}
                Err(_) => break false,
            }
        };
        self.shared.debug.set_stop(index, None);
        resumed
    }

    /// Publishes this vCPU's registers as its stop.
    fn publish_stop(&mut self, reason: StopReason, event: Option<ExitEvent>) {
        let regs = self.fd.get_regs().unwrap_or_default();
        let sregs = self.fd.get_sregs().unwrap_or_default();
        let fpu = self.fd.get_fpu().unwrap_or_default();
        let stop = Stop { vcpu: self.index, reason, regs, sregs, fpu, event, serial: 0 };
        for sink in &self.shared.sinks {
            sink.on_stop(&stop);
        }
        self.shared.debug.set_stop(self.index as usize, Some(stop));
    }

    /// Leaves a park to run (`step`: one instruction). A vCPU sitting on a breakpoint first steps
    /// off it with the breakpoint lifted, so the instruction under it runs. False if KVM refuses.
    fn leave_park(&mut self, step: bool) -> bool {
        let (regs, sregs) = match (self.fd.get_regs(), self.fd.get_sregs()) {
            (Ok(r), Ok(s)) => (r, s),
            _ => return false,
        };
        let mode = cpu_mode(&sregs);
        let gpa = translate(&self.shared.mem, &mode, mode.code_linear(regs.rip)).ok().map(|t| t.gpa);
        let (sw_gpa, hw) = {
            let bps = lock(&self.shared.debug.breakpoints);
            let sw = gpa.filter(|g| bps.sw.contains_key(g));
            if let Some(g) = sw {
                self.shared.write_phys(g, &[bps.sw[&g].original]);
            }
            (sw, bps.hw_exec_at(regs.rip))
        };
        if sw_gpa.is_some() || hw {
            self.step_over = Some(StepOver { sw_gpa, then_park: step });
        } else {
            self.stepping = step;
        }
        self.apply_guest_debug(0).is_ok()
    }

    /// Loads this vCPU's guest-debug settings into KVM: debug registers, software breakpoints,
    /// single-step; `extra` adds one-shot flags (inject #BP).
    fn apply_guest_debug(&mut self, extra: u32) -> Result<(), String> {
        let d = &self.shared.debug;
        self.debug_generation = d.generation.load(Ordering::Acquire);
        let mut control = extra;
        let mut arch = kvm_guest_debug_arch::default();
        {
            let bps = lock(&d.breakpoints);
            let (addrs, dr7) = bps.debug_registers();
            if dr7 != 0 && self.step_over.is_none() {
                control |= KVM_GUESTDBG_USE_HW_BP;
                arch.debugreg[..4].copy_from_slice(&addrs);
                arch.debugreg[7] = dr7;
            }
            let sw_by_kvm = d.host.get().is_some_and(|h| h.use_sw_breakpoints == Mechanism::Int3GuestDebug);
            if sw_by_kvm && !bps.sw.is_empty() {
                control |= KVM_GUESTDBG_USE_SW_BP;
            }
        }
        if self.stepping || self.step_over.is_some() {
            control |= KVM_GUESTDBG_SINGLESTEP;
        }
        if control == 0 && !self.guest_debug_on {
            return Ok(());
        }
        if control != 0 {
            control |= KVM_GUESTDBG_ENABLE;
        }
        self.guest_debug_on = control != 0;
        self.fd
            .set_guest_debug(&kvm_guest_debug { control, pad: 0, arch })
            .map_err(|e| format!("KVM_SET_GUEST_DEBUG on vCPU {}: {e}", self.index))
    }

    /// What an exit means to the debugger: a breakpoint, a watchpoint, a finished step, or a
    /// guest's own `int3` to hand back to it.
    fn debug_outcome(&mut self, event: &ExitEvent, regs: &kvm_regs, sregs: Option<&kvm_sregs>) -> DebugOutcome {
        match event.kind {
            ExitKind::Debug { exception: 1, dr6, .. } => {
                if let Some(over) = self.step_over.take() {
                    if let Some(gpa) = over.sw_gpa {
                        if lock(&self.shared.debug.breakpoints).sw.contains_key(&gpa) {
                            self.shared.write_phys(gpa, &[0xcc]);
                        }
                    }
                    let _ = self.apply_guest_debug(0);
                    return if over.then_park { DebugOutcome::Stop(StopReason::Step) } else { DebugOutcome::Handled };
                }
                if self.stepping {
                    self.stepping = false;
                    let _ = self.apply_guest_debug(0);
                    return DebugOutcome::Stop(StopReason::Step);
                }
                let slot = (0..4).find(|i| dr6 & (1 << i) != 0);
                let hw = slot.and_then(|i| lock(&self.shared.debug.breakpoints).hw[i]);
                match hw {
                    Some(s) if s.kind == HwKind::Exec => DebugOutcome::Stop(StopReason::HwBreakpoint(s.gva)),
                    Some(s) => match s.kind {
                        HwKind::Data { kind, .. } => DebugOutcome::Stop(StopReason::Watchpoint { gva: s.gva, kind }),
                        HwKind::Exec => DebugOutcome::None,
                    },
                    None => DebugOutcome::Handled,
                }
            }
            ExitKind::Debug { exception: 3, pc, .. } => {
                // KVM caught an int3 (USE_SW_BP): ours is a breakpoint; the guest's own goes back to it.
                let gpa = sregs.and_then(|s| translate(&self.shared.mem, &cpu_mode(s), pc).ok()).map(|t| t.gpa);
                let ours = gpa.and_then(|g| lock(&self.shared.debug.breakpoints).sw.get(&g).map(|b| b.gva));
                match ours {
                    Some(gva) => DebugOutcome::Stop(StopReason::SwBreakpoint(gva)),
                    None => {
                        let _ = self.apply_guest_debug(KVM_GUESTDBG_INJECT_BP);
                        DebugOutcome::Handled
                    }
                }
            }
            ExitKind::InternalError { suberror: 1, .. } => {
                // An emulating host fails on int3 at CPL0 with RIP on it: kvmscope's int3 is a
                // breakpoint; any other is delivered to the guest as #BP, as hardware would.
                let Some(sregs) = sregs else { return DebugOutcome::None };
                let mode = cpu_mode(sregs);
                let Ok(t) = translate(&self.shared.mem, &mode, mode.code_linear(regs.rip)) else {
                    return DebugOutcome::None;
                };
                let mut byte = [0u8];
                if !self.shared.mem.read_phys(t.gpa, &mut byte) {
                    return DebugOutcome::None;
                }
                if byte[0] != 0xcc {
                    // Not an int3: an instruction kvmscope can finish for the host (clac, popcnt ...)?
                    return match super::emulate::complete(&self.shared, &mode, regs, sregs) {
                        Some(done) if self.fd.set_regs(&done).is_ok() => DebugOutcome::Handled,
                        _ => DebugOutcome::None,
                    };
                }
                if let Some(gva) = lock(&self.shared.debug.breakpoints).sw.get(&t.gpa).map(|b| b.gva) {
                    return DebugOutcome::Stop(StopReason::SwBreakpoint(gva));
                }
                if self.inject_breakpoint(regs) { DebugOutcome::Handled } else { DebugOutcome::None }
            }
            ExitKind::Mmio { addr, dir, len, .. } if event.device == Some(RAM_DEVICE) => {
                let hit = lock(&self.shared.debug.breakpoints).watch_hit(addr, len as u64, dir == Dir::Out);
                match (hit, dir) {
                    (Some(w), Dir::Out) => DebugOutcome::Stop(StopReason::Watchpoint { gva: w.gva, kind: w.kind }),
                    (Some(w), Dir::In) => {
                        self.pending_stop = Some(StopReason::Watchpoint { gva: w.gva, kind: w.kind });
                        DebugOutcome::Handled
                    }
                    (None, _) => DebugOutcome::Handled,
                }
            }
            _ => DebugOutcome::None,
        }
    }

    /// Lets KVM finish the instruction under way (`immediate_exit`: KVM completes pending MMIO, then
    /// returns EINTR), handling any further exit it makes on the way.
    fn complete_instruction(&mut self) -> Next {
        for _ in 0..16 {
            self.kicked = false;
            self.fd.set_kvm_immediate_exit(1);
            if let Next::End(end) = self.step() {
                return Next::End(end);
            }
            if self.kicked {
                return Next::Continue;
            }
        }
        self.fd.set_kvm_immediate_exit(0);
        Next::Continue
    }

    /// Delivers #BP for the guest's own `int3` at RIP: RIP past it, exception 3 injected.
    fn inject_breakpoint(&mut self, regs: &kvm_regs) -> bool {
        let moved = kvm_regs { rip: regs.rip + 1, ..*regs };
        let Ok(mut events) = self.fd.get_vcpu_events() else { return false };
        events.exception.injected = 1;
        events.exception.nr = 3;
        events.exception.has_error_code = 0;
        events.exception.pending = 0;
        self.fd.set_regs(&moved).is_ok() && self.fd.set_vcpu_events(&events).is_ok()
    }

    /// Reads what kvm-ioctls leaves in `kvm_run` for reasons it gives no payload for.
    fn fill_payload(&mut self, kind: &mut ExitKind) {
        let run = self.fd.get_kvm_run();
        match kind {
            ExitKind::InternalError { suberror, data } => {
                // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the valid member.
                let internal = unsafe { run.__bindgen_anon_1.internal };
                *suberror = internal.suberror;
                let n = (internal.ndata as usize).min(internal.data.len());
                *data = internal.data[..n].to_vec();
            }
            ExitKind::Unknown { hardware_reason } => {
                // SAFETY: exit_reason is KVM_EXIT_UNKNOWN, so `hw` is the valid member.
                *hardware_reason = unsafe { run.__bindgen_anon_1.hw.hardware_exit_reason };
            }
            _ => {}
        }
    }

    /// The registers at this exit; system registers only when `with_sregs` (or free via sync regs).
    fn registers(&mut self, with_sregs: bool) -> Result<(kvm_regs, Option<kvm_sregs>), kvm_ioctls::Error> {
        if self.sync_regs {
            let sync = self.fd.sync_regs();
            return Ok((sync.regs, Some(sync.sregs)));
        }
        let regs = self.fd.get_regs()?;
        let sregs = if with_sregs { Some(self.fd.get_sregs()?) } else { None };
        Ok((regs, sregs))
    }

    /// Whether this exit ends the run.
    fn decide(&self, event: &ExitEvent, request: Option<VmRequest>, rflags: u64) -> Next {
        let vcpu = self.index;
        match request {
            Some(VmRequest::Exit(status)) => return Next::End(RunEnd::DebugExit { status }),
            Some(VmRequest::Reset) => return Next::End(RunEnd::GuestReset { vcpu }),
            None => {}
        }
        let error = |what: String| Next::End(RunEnd::GuestError { vcpu, what });
        match &event.kind {
            ExitKind::Hlt => Next::End(RunEnd::Halted { vcpu, interrupts_on: rflags & RFLAGS_IF != 0 }),
            ExitKind::Shutdown => Next::End(RunEnd::TripleFault { vcpu }),
            ExitKind::SystemEvent { kind: 1 | 2, .. } => Next::End(RunEnd::GuestReset { vcpu }),
            ExitKind::InternalError { suberror, .. } => {
                let insn = event
                    .insn
                    .as_ref()
                    .map_or("an unreadable instruction".to_string(), |i| format!("`{}` ({})", i.text, i.hex()));
                error(format!(
                    "KVM internal error, suberror {suberror}{} at rip {:#x}: {insn}",
                    if *suberror == 1 { " (instruction emulation failed)" } else { "" },
                    event.rip
                ))
            }
            ExitKind::FailEntry { reason, .. } => error(format!("KVM could not enter the guest (reason {reason:#x})")),
            ExitKind::SystemEvent { .. } | ExitKind::MemoryFault { .. } | ExitKind::Unknown { .. } => {
                error(format!("{} exit: {}", event.kind.reason(), event.detail()))
            }
            ExitKind::Other { code } => error(format!("unexpected exit {} ({code})", event.kind.reason())),
            ExitKind::Io { .. }
            | ExitKind::Mmio { .. }
            | ExitKind::Debug { .. }
            | ExitKind::Hypercall { .. }
            | ExitKind::Msr { .. }
            | ExitKind::IoapicEoi { .. }
            | ExitKind::Intr => Next::Continue,
        }
    }

    /// Registers, the instruction at RIP and the last exits, for a crash.
    fn crash_report(&mut self) -> CrashReport {
        let regs = self.fd.get_regs().unwrap_or_default();
        let sregs = self.fd.get_sregs().unwrap_or_default();
        let insn = self.decoder.decode_at(&self.shared.mem, &cpu_mode(&sregs), regs.rip).map(|i| (*i).clone());
        CrashReport { vcpu: self.index, regs, sregs, insn, last_exits: self.recent.iter().cloned().collect() }
    }
}

/// Little-endian value of up to 8 bytes.
fn le_value(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

/// Turns a `VcpuExit` into an exit kind, dispatching MMIO accesses to the bus. Port accesses are
/// dispatched afterwards by [`dispatch_io`], which needs the element size `kvm_run` holds.
fn classify(exit: VcpuExit<'_>, shared: &Shared) -> (ExitKind, Option<&'static str>, Option<VmRequest>) {
    match exit {
        VcpuExit::IoOut(port, _) => (ExitKind::Io { port, dir: Dir::Out, size: 0, count: 0, data: 0 }, None, None),
        VcpuExit::IoIn(port, _) => (ExitKind::Io { port, dir: Dir::In, size: 0, count: 0, data: 0 }, None, None),
        VcpuExit::MmioRead(addr, data) if shared.map.is_ram(addr, data.len() as u64) => {
            let ok = shared.mem.read_phys(addr, data);
            let device = ok.then_some(RAM_DEVICE);
            (ExitKind::Mmio { addr, dir: Dir::In, len: data.len() as u8, data: le_value(data) }, device, None)
        }
        VcpuExit::MmioWrite(addr, data) if shared.map.is_ram(addr, data.len() as u64) => {
            // A write to a page kvmscope made read-only (a watchpoint): complete it.
            let device = shared.write_phys(addr, data).then_some(RAM_DEVICE);
            (ExitKind::Mmio { addr, dir: Dir::Out, len: data.len() as u8, data: le_value(data) }, device, None)
        }
        VcpuExit::MmioRead(addr, data) => {
            let device = shared.mmio.read(addr, data);
            (ExitKind::Mmio { addr, dir: Dir::In, len: data.len() as u8, data: le_value(data) }, device, None)
        }
        VcpuExit::MmioWrite(addr, data) => {
            let (device, request) = shared.mmio.write(addr, data);
            (ExitKind::Mmio { addr, dir: Dir::Out, len: data.len() as u8, data: le_value(data) }, device, request)
        }
        VcpuExit::Hlt => (ExitKind::Hlt, None, None),
        VcpuExit::Shutdown => (ExitKind::Shutdown, None, None),
        VcpuExit::InternalError => (ExitKind::InternalError { suberror: 0, data: Vec::new() }, None, None),
        VcpuExit::FailEntry(reason, cpu) => (ExitKind::FailEntry { reason, cpu }, None, None),
        VcpuExit::SystemEvent(kind, data) => (ExitKind::SystemEvent { kind, data: data.to_vec() }, None, None),
        VcpuExit::Debug(d) => {
            (ExitKind::Debug { exception: d.exception, pc: d.pc, dr6: d.dr6, dr7: d.dr7 }, None, None)
        }
        VcpuExit::Hypercall(h) => (ExitKind::Hypercall { nr: h.nr }, None, None),
        VcpuExit::X86Rdmsr(m) => {
            // No MSR filter is installed, so these do not come; answer "not handled" if they do.
            *m.error = 1;
            (ExitKind::Msr { index: m.index, dir: Dir::In, data: 0 }, None, None)
        }
        VcpuExit::X86Wrmsr(m) => {
            *m.error = 1;
            (ExitKind::Msr { index: m.index, dir: Dir::Out, data: m.data }, None, None)
        }
        VcpuExit::IoapicEoi(vector) => (ExitKind::IoapicEoi { vector }, None, None),
        VcpuExit::MemoryFault { flags, gpa, size } => (ExitKind::MemoryFault { gpa, size, flags }, None, None),
        VcpuExit::Intr => (ExitKind::Intr, None, None),
        VcpuExit::Unknown => (ExitKind::Unknown { hardware_reason: 0 }, None, None),
        VcpuExit::Exception => (ExitKind::Other { code: kvm_bindings::KVM_EXIT_EXCEPTION }, None, None),
        VcpuExit::IrqWindowOpen => (ExitKind::Other { code: kvm_bindings::KVM_EXIT_IRQ_WINDOW_OPEN }, None, None),
        VcpuExit::SetTpr => (ExitKind::Other { code: kvm_bindings::KVM_EXIT_SET_TPR }, None, None),
        VcpuExit::TprAccess => (ExitKind::Other { code: kvm_bindings::KVM_EXIT_TPR_ACCESS }, None, None),
        VcpuExit::Nmi => (ExitKind::Other { code: kvm_bindings::KVM_EXIT_NMI }, None, None),
        VcpuExit::Hyperv => (ExitKind::Other { code: kvm_bindings::KVM_EXIT_HYPERV }, None, None),
        VcpuExit::Unsupported(code) => (ExitKind::Other { code }, None, None),
        other => (ExitKind::Other { code: other_code(&other) }, None, None),
    }
}

/// Exit codes of the non-x86 reasons kvm-ioctls names (never seen on x86, kept for completeness).
fn other_code(exit: &VcpuExit<'_>) -> u32 {
    use kvm_bindings::*;
    match exit {
        VcpuExit::S390Sieic => KVM_EXIT_S390_SIEIC,
        VcpuExit::S390Reset => KVM_EXIT_S390_RESET,
        VcpuExit::Dcr => KVM_EXIT_DCR,
        VcpuExit::Osi => KVM_EXIT_OSI,
        VcpuExit::PaprHcall => KVM_EXIT_PAPR_HCALL,
        VcpuExit::S390Ucontrol => KVM_EXIT_S390_UCONTROL,
        VcpuExit::Watchdog => KVM_EXIT_WATCHDOG,
        VcpuExit::S390Tsch => KVM_EXIT_S390_TSCH,
        VcpuExit::Epr => KVM_EXIT_EPR,
        VcpuExit::S390Stsi => KVM_EXIT_S390_STSI,
        _ => u32::MAX,
    }
}

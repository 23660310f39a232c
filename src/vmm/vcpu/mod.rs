//! One vCPU thread: run the guest, and turn every `KVM_RUN` return into an exit event — translated
//! and dispatched (`vmm::exit`), decoded, timed, counted, handed to the sinks — then let the
//! debugger (`debugger`) and the run's end rules have their say. The loop's state is explicit
//! (`state`): running, parked, stepping, stepping over a breakpoint, ended.

pub mod backstop;
pub mod debugger;
pub mod profile;
pub mod state;

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use kvm_bindings::{kvm_regs, kvm_run, kvm_sregs};
use kvm_ioctls::{SyncReg, VcpuFd};

use super::bus::VmRequest;
use super::exit::{RunDetail, translate};
use super::kick;
use super::live_state;
use super::msr;
use super::outcome::{CrashReport, RunEnd, VmmFailure};
use super::shared::Shared;
use super::snapshot::{SnapshotError, VcpuSnapshot};
use super::timeline::Place;
use crate::debug::{Stop, StopReason, VcpuCommand};
use crate::decode::paging::read_virt;
use crate::decode::regs::RFLAGS_IF;
use crate::decode::stack::frame_pointer_walk;
use crate::decode::{CpuMode, ExitRegs, InsnDecoder};
use crate::sync::lock;
use crate::trace::stage_times::Stage;
use crate::trace::{ExitEvent, ExitKind, StackSample};
use debugger::{DebugOutcome, StepEnd, VcpuDebugger};
use profile::StageClock;
use state::VcpuState;

/// Exits kept per vCPU for a crash report.
const RECENT_EXITS: usize = 16;

pub use super::outcome::VcpuEnd;

/// A vCPU and what its thread keeps between exits.
pub struct Vcpu {
    index: u32,
    fd: VcpuFd,
    /// The vCPU's mapped `kvm_run`, for what kvm-ioctls' `VcpuExit` does not carry.
    run: *mut kvm_run,
    shared: Arc<Shared>,
    decoder: InsnDecoder,
    recent: RecentExits,
    /// KVM copies registers into `kvm_run` on every exit (`KVM_CAP_SYNC_REGS`): no ioctl per exit.
    sync_regs: bool,
    /// Commands from the debug controller while parked.
    commands: Receiver<VcpuCommand>,
    debugger: VcpuDebugger,
    /// The last `KVM_RUN` returned EINTR.
    kicked: bool,
    /// Times this vCPU has parked.
    parks: u64,
    /// `--self-profile`: the loop's stages, timed.
    profile: Option<StageClock>,
    /// The only vCPU: it takes kvmscope's own checkpoints at its exits while the guest runs.
    lone: bool,
    /// One of those is due once the instruction of this exit is finished.
    checkpoint_due: bool,
    /// When (ns since the start) this vCPU last left a park or counted its running time.
    running_from_ns: u64,
}

/// The last exits of a vCPU, for a crash report: a fixed ring written in place, so that keeping
/// them costs one move per exit (no shifting, no allocation).
struct RecentExits {
    slots: [Option<ExitEvent>; RECENT_EXITS],
    /// The slot the next exit goes in: the oldest one once the ring is full.
    next: usize,
}

impl Default for RecentExits {
    fn default() -> Self {
        Self { slots: std::array::from_fn(|_| None), next: 0 }
    }
}

impl RecentExits {
    fn push(&mut self, event: ExitEvent) {
        self.slots[self.next] = Some(event);
        self.next = (self.next + 1) % RECENT_EXITS;
    }

    fn oldest_first(&self) -> impl Iterator<Item = &ExitEvent> {
        self.slots[self.next..].iter().chain(&self.slots[..self.next]).flatten()
    }
}

/// Ends a stage of `--self-profile`, when it is on.
fn lap(profile: &mut Option<StageClock>, stage: Stage) {
    if let Some(p) = profile {
        p.lap(stage);
    }
}

// SAFETY: `run` points into the mapping owned by `fd`, which moves with the Vcpu; only the thread
// that owns the Vcpu dereferences it.
unsafe impl Send for Vcpu {}

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
        let run = fd.get_kvm_run() as *mut kvm_run;
        let profile = shared.stage_times.is_some().then(|| StageClock::new(shared.clock));
        let lone = shared.counters.len() == 1;
        Self {
            index,
            fd,
            run,
            shared,
            decoder: InsnDecoder::default(),
            recent: RecentExits::default(),
            sync_regs,
            commands,
            debugger: VcpuDebugger::new(index),
            kicked: false,
            parks: 0,
            profile,
            lone,
            checkpoint_due: false,
            running_from_ns: 0,
        }
    }

    /// Runs the guest until the run ends, on this thread. Returns `None` when another vCPU or the
    /// VM's owner ended the run.
    pub fn run(mut self) -> Option<VcpuEnd> {
        kick::bind(Some(self.run));
        self.running_from_ns = self.now_ns();
        let end = loop {
            if self.shared.is_stopping() {
                break None;
            }
            let stepping = self.debugger.state.single_steps();
            if self.shared.debug.pause_requested() && !stepping && !self.park(StopReason::Pause, None) {
                break None;
            }
            if let Err(e) = self.debugger.reload_if_changed(&self.fd, &self.shared) {
                break Some((RunEnd::VmmError(e), None));
            }
            let mut next = self.run_once();
            if matches!(next, Next::Continue) {
                next = match self.finish_instruction() {
                    Some(next) => next,
                    None => break None,
                };
            }
            if matches!(next, Next::Continue) && std::mem::take(&mut self.checkpoint_due) {
                next = self.checkpoint_here();
            }
            if let Next::End(end) = next {
                let crash = end.is_crash().then(|| Box::new(self.crash_report()));
                if !self.hold_end(&end) {
                    break Some((end, crash));
                }
                // The guest's end, kept as a stop to go back from: the owner hears of it, and
                // the run goes on if the user goes back and runs on from there.
                *lock(&self.shared.held_end) = Some((end, crash));
                self.shared.pause_all();
                if !self.park(StopReason::Ended, None) {
                    break lock(&self.shared.held_end).take();
                }
            }
        };
        self.debugger.state = VcpuState::Ended;
        self.keep_final_state();
        kick::bind(None);
        if let (Some(p), Some(times)) = (&self.profile, &self.shared.stage_times) {
            lock(times).merge(&p.times());
        }
        end
    }

    /// After an exit that leaves a stop for once its instruction is done (an exit breakpoint, a
    /// place reached, a watched read, a step whose instruction exited): completes the
    /// instruction, then stops. `None` when the run is ending instead.
    fn finish_instruction(&mut self) -> Option<Next> {
        let pending = self.debugger.take_pending_stop();
        let step_ends = self.debugger.take_step_end();
        if pending.is_none() && step_ends.is_none() {
            return Some(Next::Continue);
        }
        if pending.is_some() || step_ends == Some(StepEnd::OnceCompleted) {
            let parks = self.parks;
            let next = self.complete_instruction();
            // Completing it may have stopped already (the write of a read-modify-write, the
            // step's own trap on a host that completes the instruction in KVM_RUN).
            if !matches!(next, Next::Continue) || self.parks != parks {
                return Some(next);
            }
        }
        // A step under way ends with this instruction, whatever else stops here.
        let step = self.debugger.finish_step(&self.fd, &self.shared);
        if step.is_some() {
            self.shared.timeline.on_step();
        }
        let (reason, event) = match (pending, step) {
            (Some(pending), _) => pending,
            (None, Some(DebugOutcome::Stop(reason))) => (reason, None),
            _ => return Some(Next::Continue),
        };
        self.shared.pause_all();
        self.park(reason, event).then_some(Next::Continue)
    }

    /// Whether to keep the guest's `end` as a stop (see [`Shared::hold_end`]): one it made
    /// itself, with a checkpoint to go back to.
    fn hold_end(&self, end: &RunEnd) -> bool {
        self.shared.hold_end.load(std::sync::atomic::Ordering::Acquire)
            && end.is_guests()
            && self.shared.debug.vcpus() == 1
            && !lock(&self.shared.checkpoints).list().is_empty()
    }

    /// One `KVM_RUN` and the handling of its exit.
    fn run_once(&mut self) -> Next {
        lap(&mut self.profile, Stage::Loop);
        let result = self.fd.run();
        let t_exit = self.shared.clock.now();
        let mut translated = match result {
            Ok(exit) => {
                lap(&mut self.profile, Stage::Run);
                // SAFETY: `run` is this vCPU's kvm_run and KVM_RUN has just returned.
                let detail = unsafe { RunDetail::read(self.run) };
                translate(exit, &detail, &self.shared.buses, &self.shared.ram)
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                // A kick (or a woken secondary vCPU): not a guest exit, not counted.
                self.fd.set_kvm_immediate_exit(0);
                self.kicked = true;
                return Next::Continue;
            }
            Err(source) => return Next::End(RunEnd::VmmError(VmmFailure::Run { vcpu: self.index, source })),
        };
        if matches!(translated.kind, ExitKind::Msr { .. }) {
            // SAFETY: `run` is this vCPU's kvm_run, and its exit was this MSR access.
            unsafe { msr::complete(&self.fd, self.run, &mut translated.kind) };
        }
        let kind = translated.kind;
        lap(&mut self.profile, Stage::Dispatch);
        let fetched;
        let (regs, sregs) = if self.sync_regs {
            // SAFETY: `run` is this vCPU's kvm_run; KVM filled its sync regs at this exit, and they
            // are read only until the next KVM_RUN (no reference outlives this call).
            let synced = unsafe { &(*self.run).s.regs };
            (&synced.regs, Some(&synced.sregs))
        } else {
            fetched = match self.fetch_registers(kind.wants_decode()) {
                Ok(r) => r,
                Err(source) => return Next::End(RunEnd::VmmError(VmmFailure::Registers { vcpu: self.index, source })),
            };
            (&fetched.0, fetched.1.as_ref())
        };
        lap(&mut self.profile, Stage::Registers);
        let shared = &*self.shared;
        // One of kvmscope's own breakpoints is shown as what it is, whichever exit told it.
        let kind = match sregs.and_then(|sregs| self.debugger.breakpoint_of(shared, regs, sregs, &kind)) {
            Some(bp) => bp,
            None => kind,
        };
        let insn = match (sregs, kind.wants_decode()) {
            (Some(sregs), true) => {
                self.decoder.decode_exit(&shared.ram, &CpuMode::from(sregs), ExitRegs { regs, sregs }, &kind)
            }
            _ => None,
        };
        lap(&mut self.profile, Stage::Decode);
        let mut event = ExitEvent {
            seq: shared.next_seq(),
            vcpu: self.index,
            t_ns: shared.clock.ns_since_start(t_exit),
            rip: regs.rip,
            kind,
            device: translated.device,
            insn,
            cost_ns: shared.clock.ns_between(t_exit, shared.clock.now()),
        };
        // Going forward again over the history: a read gets the value it got the first time.
        if let Some(first) = shared.timeline.first_read(&event) {
            // SAFETY: `run` is this vCPU's kvm_run, KVM_RUN returned for this exit, and the
            // `VcpuExit` that borrowed it is gone.
            if unsafe { super::exit::answer_read(self.run, first) } {
                event.kind.set_read(first);
            }
        }
        let (timeline_stop, news) = shared.timeline.on_exit(&event, crate::vmm::timeline::data_digest(regs, &event));
        // An exit made again going over the past was counted, recorded and shown the first time.
        if news {
            shared.counters_of(self.index as usize).record(&event);
        }
        lap(&mut self.profile, Stage::Count);
        if news {
            for sink in &shared.sinks {
                sink.on_exit(&event);
            }
        }
        if let (Some(every), Some(sregs), true) = (shared.stacks_every, sregs, news)
            && event.seq % every == 0
        {
            let frames = frame_pointer_walk(&shared.ram, &CpuMode::from(sregs), regs.rip, regs.rbp);
            let reason = event.kind.reason().to_string();
            let sample = StackSample { seq: event.seq, vcpu: self.index, reason, frames };
            for sink in &shared.sinks {
                sink.on_stack(&sample);
            }
        }
        lap(&mut self.profile, Stage::Sinks);
        let at_limit = event.seq.saturating_add(1) >= shared.max_exits;
        // A debugger's stop or handled trap is not the guest's doing: the run goes on after it. An
        // exit breakpoint stops before the exit takes its usual effect (which may end the run).
        let debugged = self.debugger.on_exit(&self.fd, shared, &event, regs, sregs);
        let next = match debugged {
            DebugOutcome::None => self.decide(&event, translated.request, regs.rflags),
            _ => Next::Continue,
        };
        // The exit is still the guest's when the debugger had work with it (an instruction
        // kvmscope finished for the host): exit breakpoints see it, and going forward again
        // stops there.
        let guest_stop = match debugged {
            DebugOutcome::Stop(_) => None,
            _ => match (shared.debug.exit_breakpoint_hit(&event), timeline_stop) {
                (Some(bp), _) => Some(StopReason::ExitBreakpoint(bp)),
                // Going forward again: there, or off the history.
                (None, reason) => reason,
            },
        };
        let (outcome, next) = match (debugged, guest_stop) {
            // Once the instruction is complete, unless the exit ends the run.
            (_, Some(reason)) if matches!(next, Next::Continue) => {
                self.debugger.stop_after_instruction(reason, Some(event.clone()));
                (DebugOutcome::Handled, next)
            }
            (_, Some(reason)) => (DebugOutcome::Stop(reason), next),
            (debugged, None) => (debugged, next),
        };
        // A step whose instruction exited ends with it: where the exit leaves RIP past the
        // instruction, KVM's own step trap would come one instruction late.
        let trap = matches!(event.kind, ExitKind::Debug { .. } | ExitKind::Breakpoint { .. });
        match &outcome {
            DebugOutcome::Stop(StopReason::Step) => shared.timeline.on_step(),
            // A watched page's write stopped the step: the instruction is done.
            DebugOutcome::Stop(_) if !trap && self.debugger.finish_step(&self.fd, shared).is_some() => {
                shared.timeline.on_step()
            }
            DebugOutcome::Stop(_) => {}
            _ if !trap && matches!(next, Next::Continue) => self.debugger.end_step_at_exit(),
            _ => {}
        }
        if let DebugOutcome::Stop(reason) = outcome {
            self.shared.pause_all();
            if !self.park(reason, Some(event.clone())) {
                return Next::Continue;
            }
        }
        if news && matches!(next, Next::Continue) && !at_limit {
            self.checkpoint_due = self.checkpoint_due_at(&event);
        }
        self.recent.push(event);
        if let Some(p) = &mut self.profile {
            p.lap(Stage::Debugger);
            p.exit();
        }
        match next {
            Next::Continue if at_limit => Next::End(RunEnd::MaxExits),
            next => next,
        }
    }

    /// Whether one of kvmscope's own checkpoints is due after this new exit: the lone vCPU,
    /// running freely, an interval since the last (see [`Shared::checkpoint_due`]).
    fn checkpoint_due_at(&self, event: &ExitEvent) -> bool {
        let shared = &self.shared;
        self.lone
            && self.debugger.state == VcpuState::Running
            && crate::vmm::timeline::is_guest_exit(event)
            && shared.checkpoint_due(shared.timeline.position(), self.ran_ns(event.t_ns))
    }

    /// Nanoseconds since the start, on the run's clock.
    fn now_ns(&self) -> u64 {
        self.shared.clock.ns_since_start(self.shared.clock.now())
    }

    /// The guest's running time at `now_ns`: vCPU 0's time out of parks.
    fn ran_ns(&self, now_ns: u64) -> u64 {
        self.shared.ran_ns() + now_ns.saturating_sub(self.running_from_ns)
    }

    /// Adds the running time up to now to the shared count (vCPU 0 keeps it).
    fn count_running_time(&mut self) {
        if self.index == 0 {
            let now = self.now_ns();
            self.shared.ran_ns.store(self.ran_ns(now), std::sync::atomic::Ordering::Release);
            self.running_from_ns = now;
        }
    }

    /// Takes one of kvmscope's own checkpoints at this exit, with its instruction finished first
    /// as a parked vCPU's would be. When finishing it went on to another exit (the next round of
    /// a string instruction) or stopped, the next exit tries again; a checkpoint that cannot be
    /// kept is said in the checkpoints' list, and the next is tried an interval later.
    fn checkpoint_here(&mut self) -> Next {
        let (position, parks) = (self.shared.timeline.position(), self.parks);
        let next = self.complete_instruction();
        let moved = self.parks != parks || self.shared.timeline.position() != position;
        if !matches!(next, Next::Continue) || moved || self.shared.is_stopping() {
            return next;
        }
        self.count_running_time();
        let shared = &*self.shared;
        let taken = VcpuSnapshot::capture(&self.fd, &shared.msr_list, shared.irqchip)
            .map_err(|source| SnapshotError::Vcpu { vcpu: self.index as usize, source }.to_string())
            .and_then(|vcpu| live_state::machine_with(shared, vec![vcpu]).map_err(|e| e.to_string()))
            .and_then(|(machine, _, t_ns)| {
                live_state::keep_checkpoint(shared, machine, Place::at_exit(position), t_ns, false)
                    .map_err(|e| e.to_string())
            });
        if let Err(why) = taken {
            shared.checkpoint_placed(position);
            lock(&shared.checkpoints).refused = Some(why);
        }
        if let Some(p) = &mut self.profile {
            p.skip();
        }
        Next::Continue
    }

    /// Parks this vCPU: publishes its state and waits for the controller. Returns false when the run
    /// is ending instead.
    fn park(&mut self, reason: StopReason, event: Option<ExitEvent>) -> bool {
        self.parks += 1;
        self.checkpoint_due = false;
        self.count_running_time();
        let regs = self.fd.get_regs().unwrap_or_default();
        let code = CpuMode::from(&self.fd.get_sregs().unwrap_or_default()).code_linear(regs.rip);
        let at_exit = event.as_ref().is_some_and(crate::vmm::timeline::is_guest_exit);
        // A step that parted from the steps seen from the same place before says so instead.
        let reason = self.shared.timeline.on_park(at_exit, &regs, code).unwrap_or(reason);
        self.debugger.state = VcpuState::Parked;
        let index = self.index as usize;
        self.publish_stop(reason, event);
        let resumed = loop {
            match self.commands.recv_timeout(Duration::from_millis(50)) {
                Ok(VcpuCommand::Resume) => {
                    self.shared.timeline.on_leave_park(false);
                    break self.debugger.leave_park(&self.fd, &self.shared, false);
                }
                Ok(VcpuCommand::Step) => {
                    self.shared.timeline.on_leave_park(true);
                    break self.debugger.leave_park(&self.fd, &self.shared, true);
                }
                Ok(VcpuCommand::SetRegs { regs, sregs, reply }) => {
                    let r = self.fd.set_regs(&regs).and_then(|_| self.fd.set_sregs(&sregs));
                    let _ = reply.send(r);
                    if let Some(s) = self.shared.debug.stop_of(index) {
                        self.publish_stop(s.reason, s.event);
                    }
                }
                // The stop is published again before the answer: whoever waits for the next stop
                // after it does not take this one for it.
                Ok(VcpuCommand::Settle { reply }) => {
                    let going_on = matches!(self.complete_instruction(), Next::Continue);
                    if let Some(s) = self.shared.debug.stop_of(index) {
                        self.publish_stop(s.reason, s.event);
                    }
                    let _ = reply.send(going_on);
                    if !going_on {
                        break false;
                    }
                }
                Ok(VcpuCommand::WithFd { run, done }) => {
                    run(&self.fd);
                    if let Some(s) = self.shared.debug.stop_of(index) {
                        self.publish_stop(s.reason, s.event);
                    }
                    let _ = done.send(());
                }
                Err(RecvTimeoutError::Timeout) if !self.shared.is_stopping() => {}
                Err(_) => break false,
            }
        };
        self.shared.debug.set_stop(index, None);
        self.running_from_ns = self.now_ns();
        if let Some(p) = &mut self.profile {
            p.skip();
        }
        resumed
    }

    /// Leaves the registers this vCPU ended with, for views of an ended guest.
    fn keep_final_state(&self) {
        if let (Ok(regs), Ok(sregs)) = (self.fd.get_regs(), self.fd.get_sregs()) {
            let fpu = self.fd.get_fpu().unwrap_or_default();
            let stop = Stop { vcpu: self.index, reason: StopReason::Ended, regs, sregs, fpu, event: None, serial: 0 };
            self.shared.debug.set_final(self.index as usize, stop);
        }
    }

    /// Publishes this vCPU's registers as its stop.
    fn publish_stop(&mut self, reason: StopReason, event: Option<ExitEvent>) {
        let regs = self.fd.get_regs().unwrap_or_default();
        let sregs = self.fd.get_sregs().unwrap_or_default();
        let fpu = self.fd.get_fpu().unwrap_or_default();
        let stop = Stop { vcpu: self.index, reason, regs, sregs, fpu, event, serial: 0 };
        if !self.shared.timeline.is_replaying() {
            for sink in &self.shared.sinks {
                sink.on_stop(&stop);
            }
        }
        self.shared.debug.set_stop(self.index as usize, Some(stop));
    }

    /// Lets KVM finish the instruction under way (`immediate_exit`: KVM completes pending MMIO, then
    /// returns EINTR), handling any further exit it makes on the way.
    fn complete_instruction(&mut self) -> Next {
        for _ in 0..16 {
            self.kicked = false;
            self.fd.set_kvm_immediate_exit(1);
            if let Next::End(end) = self.run_once() {
                return Next::End(end);
            }
            if self.kicked {
                return Next::Continue;
            }
        }
        self.fd.set_kvm_immediate_exit(0);
        Next::Continue
    }

    /// The registers at this exit by ioctl, where KVM does not sync them into `kvm_run`; system
    /// registers only when `with_sregs`.
    fn fetch_registers(&self, with_sregs: bool) -> Result<(kvm_regs, Option<kvm_sregs>), kvm_ioctls::Error> {
        let regs = self.fd.get_regs()?;
        let sregs = if with_sregs { Some(self.fd.get_sregs()?) } else { None };
        Ok((regs, sregs))
    }

    /// Whether this exit ends the run.
    fn decide(&self, event: &ExitEvent, request: Option<VmRequest>, rflags: u64) -> Next {
        let vcpu = self.index;
        match request {
            Some(VmRequest::Exit(value)) => return Next::End(RunEnd::DebugExit { value }),
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
            | ExitKind::Breakpoint { .. }
            | ExitKind::Intr => Next::Continue,
        }
    }

    /// Registers, the instruction at RIP and the last exits, for a crash.
    fn crash_report(&mut self) -> CrashReport {
        let regs = self.fd.get_regs().unwrap_or_default();
        let sregs = self.fd.get_sregs().unwrap_or_default();
        let mode = CpuMode::from(&sregs);
        let insn = self.decoder.decode_at(&self.shared.ram.mem, &mode, regs.rip).map(|i| (*i).clone());
        let mut rip_bytes = vec![0u8; 15];
        let n = read_virt(&self.shared.ram, &mode, mode.code_linear(regs.rip), &mut rip_bytes);
        rip_bytes.truncate(n);
        let last_exits = self.recent.oldest_first().cloned().collect();
        CrashReport { vcpu: self.index, regs, sregs, insn, rip_bytes, last_exits }
    }
}

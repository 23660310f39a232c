//! The debug state one VM's vCPU threads and its controller share: the pause flag, each vCPU's
//! stop, the command channel to each parked vCPU, the breakpoint tables and the exit breakpoints.
//! The controller changes it through these methods; the vCPUs read it and act.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::breakpoints::BreakpointTable;
use super::exit_breakpoints::{ExitBreakpoint, ExitBreakpoints};
use super::exit_spec::ExitSpec;
use super::stop::{Stop, VcpuCommand};
use crate::sync::lock;
use crate::trace::ExitEvent;

/// Debug state shared by the vCPU threads and the controller.
pub struct DebugState {
    pause: AtomicBool,
    any_exit_breakpoint: AtomicBool,
    exit_breakpoints: Mutex<ExitBreakpoints>,
    stops: Mutex<Vec<Option<Stop>>>,
    /// The state each vCPU left when its thread ended: an ended guest can still be looked at.
    finals: Mutex<Vec<Option<Stop>>>,
    changed: Condvar,
    commands: Vec<Mutex<Sender<VcpuCommand>>>,
    stop_serial: AtomicU64,
    breakpoints: Mutex<BreakpointTable>,
    /// Bumped whenever the vCPUs must reload their guest-debug settings.
    generation: AtomicU64,
    /// KVM catches `int3` itself (`KVM_GUESTDBG_USE_SW_BP`), as the probe chose.
    sw_breakpoints_by_kvm: AtomicBool,
    /// KVM holds interrupts back during a single step (`KVM_GUESTDBG_BLOCKIRQ`, as QEMU's
    /// gdbstub steps), where the host offers it.
    steps_block_irqs: AtomicBool,
}

impl DebugState {
    /// State for `vcpus` vCPUs, and the command receiver each vCPU thread keeps.
    pub fn new(vcpus: usize) -> (Self, Vec<Receiver<VcpuCommand>>) {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..vcpus).map(|_| mpsc::channel()).unzip();
        let state = Self {
            pause: AtomicBool::new(false),
            any_exit_breakpoint: AtomicBool::new(false),
            exit_breakpoints: Mutex::new(ExitBreakpoints::default()),
            stops: Mutex::new(vec![None; vcpus]),
            finals: Mutex::new(vec![None; vcpus]),
            changed: Condvar::new(),
            commands: txs.into_iter().map(Mutex::new).collect(),
            stop_serial: AtomicU64::new(0),
            breakpoints: Mutex::new(BreakpointTable::default()),
            generation: AtomicU64::new(0),
            sw_breakpoints_by_kvm: AtomicBool::new(false),
            steps_block_irqs: AtomicBool::new(false),
        };
        (state, rxs)
    }

    pub fn vcpus(&self) -> usize {
        self.commands.len()
    }

    /// Whether vCPUs should park.
    pub fn pause_requested(&self) -> bool {
        self.pause.load(Ordering::Acquire)
    }

    /// Raises the pause flag (the VMM kicks the vCPUs out of the guest).
    pub fn raise_pause(&self) {
        self.pause.store(true, Ordering::Release);
    }

    /// Lowers the pause flag and tells every parked vCPU to run on.
    pub fn resume_all(&self) {
        self.pause.store(false, Ordering::Release);
        let stops = lock(&self.stops);
        for (tx, stop) in self.commands.iter().zip(stops.iter()) {
            if stop.is_some() {
                let _ = lock(tx).send(VcpuCommand::Resume);
            }
        }
    }

    /// Sends a command to a parked vCPU; false when it is not parked or has ended.
    pub fn command(&self, vcpu: usize, command: VcpuCommand) -> bool {
        if self.stop_of(vcpu).is_none() {
            return false;
        }
        self.commands.get(vcpu).is_some_and(|tx| lock(tx).send(command).is_ok())
    }

    /// Adds an exit breakpoint.
    pub fn add_exit_breakpoint(&self, spec: ExitSpec, nth: u64) -> ExitBreakpoint {
        let mut bps = lock(&self.exit_breakpoints);
        let bp = bps.add(spec, nth);
        self.any_exit_breakpoint.store(true, Ordering::Relaxed);
        bp
    }

    /// Deletes one exit breakpoint, or all; returns how many went.
    pub fn delete_exit_breakpoint(&self, id: Option<u32>) -> usize {
        let mut bps = lock(&self.exit_breakpoints);
        let n = bps.delete(id);
        self.any_exit_breakpoint.store(!bps.is_empty(), Ordering::Relaxed);
        n
    }

    /// The exit breakpoints, with their hit counts.
    pub fn exit_breakpoints(&self) -> Vec<ExitBreakpoint> {
        lock(&self.exit_breakpoints).list().to_vec()
    }

    /// Counts an exit against the exit breakpoints (cheap when there are none).
    pub fn exit_breakpoint_hit(&self, e: &ExitEvent) -> Option<ExitBreakpoint> {
        if !self.any_exit_breakpoint.load(Ordering::Relaxed) {
            return None;
        }
        lock(&self.exit_breakpoints).hit(e)
    }

    /// Each exit breakpoint's matches so far, by number (a checkpoint keeps them).
    pub fn exit_breakpoint_hits(&self) -> Vec<(u32, u64)> {
        lock(&self.exit_breakpoints).list().iter().map(|b| (b.id, b.hits)).collect()
    }

    /// Sets the exit breakpoints' matches as a checkpoint kept them (those it does not name, set
    /// since, count from 0): going back takes an Nth match's count back too.
    pub fn set_exit_breakpoint_hits(&self, hits: &[(u32, u64)]) {
        lock(&self.exit_breakpoints).set_hits(hits);
    }

    /// One vCPU's stop (`None` while it runs).
    pub fn stop_of(&self, vcpu: usize) -> Option<Stop> {
        lock(&self.stops).get(vcpu).cloned().flatten()
    }

    /// Every vCPU's stop.
    pub fn stops(&self) -> Vec<Option<Stop>> {
        lock(&self.stops).clone()
    }

    /// Publishes (or clears) a vCPU's stop.
    pub fn set_stop(&self, vcpu: usize, stop: Option<Stop>) {
        let mut stops = lock(&self.stops);
        if let Some(slot) = stops.get_mut(vcpu) {
            *slot = stop.map(|mut s| {
                s.serial = self.stop_serial.fetch_add(1, Ordering::Relaxed) + 1;
                s
            });
        }
        self.changed.notify_all();
    }

    /// Keeps the state a vCPU left when its thread ended.
    pub fn set_final(&self, vcpu: usize, stop: Stop) {
        if let Some(slot) = lock(&self.finals).get_mut(vcpu) {
            *slot = Some(stop);
        }
    }

    /// The state each vCPU left when its thread ended (`None` while it runs).
    pub fn finals(&self) -> Vec<Option<Stop>> {
        lock(&self.finals).clone()
    }

    /// The serial number of the newest stop so far.
    pub fn stop_serial(&self) -> u64 {
        self.stop_serial.load(Ordering::Relaxed)
    }

    /// Waits until every vCPU has parked, `timeout` passes or `give_up` says so; true when all
    /// are parked.
    pub fn wait_all_stopped(&self, timeout: Duration, give_up: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut stops = lock(&self.stops);
        loop {
            if stops.iter().all(Option::is_some) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || give_up() {
                return false;
            }
            stops = self
                .changed
                .wait_timeout(stops, left.min(Duration::from_millis(50)))
                .map_or_else(|p| p.into_inner().0, |(g, _)| g);
        }
    }

    /// The breakpoint tables, locked. Callers that change them call [`Self::breakpoints_changed`].
    pub fn breakpoints(&self) -> MutexGuard<'_, BreakpointTable> {
        lock(&self.breakpoints)
    }

    /// Tells the vCPUs to reload their guest-debug settings.
    pub fn breakpoints_changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The guest-debug settings generation (see [`Self::breakpoints_changed`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn set_sw_breakpoints_by_kvm(&self, yes: bool) {
        self.sw_breakpoints_by_kvm.store(yes, Ordering::Release);
    }

    /// Whether KVM catches `int3` (`KVM_GUESTDBG_USE_SW_BP`) rather than kvmscope.
    pub fn sw_breakpoints_by_kvm(&self) -> bool {
        self.sw_breakpoints_by_kvm.load(Ordering::Acquire)
    }

    pub fn set_steps_block_irqs(&self, yes: bool) {
        self.steps_block_irqs.store(yes, Ordering::Release);
    }

    /// Whether single steps hold interrupts back (`KVM_GUESTDBG_BLOCKIRQ`).
    pub fn steps_block_irqs(&self) -> bool {
        self.steps_block_irqs.load(Ordering::Acquire)
    }
}

//! The debug controller: pause, step and resume vCPUs, and see where they stopped.
//!
//! Each vCPU thread owns its `VcpuFd`, so the controller never touches one: it raises the pause flag
//! and kicks the threads (signal + `immediate_exit`); each thread parks itself, leaves a snapshot of
//! its registers, and waits for a command on its own channel (Firecracker's and cloud-hypervisor's way).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_regs, kvm_sregs};

use super::exit_breakpoints::{ExitBreakpoint, ExitBreakpoints};
use crate::trace::ExitEvent;
use crate::vmm::kick::Kickable;
use crate::vmm::shared::Shared;

/// What a parked vCPU is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuCommand {
    /// Run on (the pause flag is already down).
    Resume,
    /// Execute one instruction, then park again.
    Step,
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
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Pause => write!(f, "paused"),
            StopReason::Step => write!(f, "stepped"),
            StopReason::ExitBreakpoint(b) => write!(f, "exit breakpoint {b}"),
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
    /// The exit that stopped it (exit breakpoint, step), if any.
    pub event: Option<ExitEvent>,
    /// Counts stops across the run, so a view can tell a new stop from the one it has shown.
    pub serial: u64,
}

/// Debug state shared by the vCPU threads and the controller.
pub struct DebugState {
    pause: AtomicBool,
    any_exit_breakpoint: AtomicBool,
    exit_breakpoints: Mutex<ExitBreakpoints>,
    stops: Mutex<Vec<Option<Stop>>>,
    changed: Condvar,
    commands: Vec<Mutex<Sender<VcpuCommand>>>,
    threads: Mutex<Vec<libc::pthread_t>>,
    stop_serial: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
            changed: Condvar::new(),
            commands: txs.into_iter().map(Mutex::new).collect(),
            threads: Mutex::new(Vec::new()),
            stop_serial: AtomicU64::new(0),
        };
        (state, rxs)
    }

    /// Records the vCPU threads, so they can be kicked.
    pub fn set_threads(&self, threads: Vec<libc::pthread_t>) {
        *lock(&self.threads) = threads;
    }

    /// Whether vCPUs should park.
    pub fn pause_requested(&self) -> bool {
        self.pause.load(Ordering::Acquire)
    }

    /// Raises the pause flag and kicks every vCPU out of the guest.
    pub fn request_pause(&self) {
        self.pause.store(true, Ordering::Release);
        for &t in lock(&self.threads).iter() {
            Kickable(t).kick();
        }
    }

    /// Counts an exit against the exit breakpoints (cheap when there are none).
    pub fn exit_breakpoint_hit(&self, e: &ExitEvent) -> Option<ExitBreakpoint> {
        if !self.any_exit_breakpoint.load(Ordering::Relaxed) {
            return None;
        }
        lock(&self.exit_breakpoints).hit(e)
    }

    /// Publishes (or clears) a vCPU's stop.
    pub fn set_stop(&self, vcpu: usize, stop: Option<Stop>) {
        let mut stops = lock(&self.stops);
        stops[vcpu] = stop.map(|mut s| {
            s.serial = self.stop_serial.fetch_add(1, Ordering::Relaxed) + 1;
            s
        });
        self.changed.notify_all();
    }
}

/// The client side: what the UI and the gdb stub call.
#[derive(Clone)]
pub struct Controller {
    shared: Arc<Shared>,
}

impl Controller {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn debug(&self) -> &DebugState {
        &self.shared.debug
    }

    /// Asks every vCPU to park.
    pub fn pause(&self) {
        self.debug().request_pause();
    }

    /// Lets every parked vCPU run on.
    pub fn resume(&self) {
        let d = self.debug();
        d.pause.store(false, Ordering::Release);
        for (i, tx) in d.commands.iter().enumerate() {
            if lock(&d.stops)[i].is_some() {
                let _ = lock(tx).send(VcpuCommand::Resume);
            }
        }
    }

    /// Single-steps one parked vCPU; the others stay parked.
    pub fn step(&self, vcpu: usize) -> Result<(), String> {
        let d = self.debug();
        if !d.pause_requested() || lock(&d.stops).get(vcpu).is_none_or(Option::is_none) {
            return Err(format!("vCPU {vcpu} is not stopped: pause first"));
        }
        lock(&d.commands[vcpu]).send(VcpuCommand::Step).map_err(|_| "the vCPU has ended".to_string())
    }

    /// Whether the pause flag is up (vCPUs are parked or parking).
    pub fn is_paused(&self) -> bool {
        self.debug().pause_requested()
    }

    /// Every vCPU's stop (`None` while it runs).
    pub fn stops(&self) -> Vec<Option<Stop>> {
        lock(&self.debug().stops).clone()
    }

    /// Waits until every vCPU has parked, or `timeout` passes; true when all are parked.
    pub fn wait_all_stopped(&self, timeout: Duration) -> bool {
        let d = self.debug();
        let deadline = Instant::now() + timeout;
        let mut stops = lock(&d.stops);
        loop {
            if stops.iter().all(Option::is_some) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.shared.is_stopping() {
                return false;
            }
            stops = d
                .changed
                .wait_timeout(stops, left.min(Duration::from_millis(50)))
                .map_or_else(|p| p.into_inner().0, |(g, _)| g);
        }
    }

    /// Adds an exit breakpoint (`io PORT`, `mmio ADDR[-END]`, `reason NAME`, optionally `nth N`).
    pub fn add_exit_breakpoint(&self, text: &str) -> Result<ExitBreakpoint, String> {
        let d = self.debug();
        let mut bps = lock(&d.exit_breakpoints);
        let bp = bps.add(text)?;
        d.any_exit_breakpoint.store(true, Ordering::Relaxed);
        Ok(bp)
    }

    /// Deletes one exit breakpoint, or all; returns how many went.
    pub fn delete_exit_breakpoint(&self, id: Option<u32>) -> usize {
        let d = self.debug();
        let mut bps = lock(&d.exit_breakpoints);
        let n = bps.delete(id);
        d.any_exit_breakpoint.store(!bps.is_empty(), Ordering::Relaxed);
        n
    }

    /// The exit breakpoints, with their hit counts.
    pub fn exit_breakpoints(&self) -> Vec<ExitBreakpoint> {
        lock(&self.debug().exit_breakpoints).list().to_vec()
    }

    /// The shared VM state (memory, counters).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

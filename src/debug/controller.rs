//! The debug controller: pause, step and resume vCPUs, and see where they stopped.
//!
//! Each vCPU thread owns its `VcpuFd`, so the controller never touches one: it raises the pause flag
//! and kicks the threads (signal + `immediate_exit`); each thread parks itself, leaves a snapshot of
//! its registers, and waits for a command on its own channel (Firecracker's and cloud-hypervisor's way).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};

use super::breakpoints::{BreakpointTable, HwKind, HwSlot, SwBreakpoint, WatchKind, Watchpoint};
use super::exit_breakpoints::{ExitBreakpoint, ExitBreakpoints};
use crate::decode::paging::{self, Translation, WalkError};
use crate::decode::{CpuMode, PhysRead};
use crate::sync::lock;
use crate::trace::ExitEvent;
use crate::vmm::kick::Kickable;
use crate::vmm::probe::{HostReport, Mechanism};
use crate::vmm::shared::Shared;
use crate::vmm::vcpu::cpu_mode;

/// What a parked vCPU is told to do.
#[derive(Debug)]
pub enum VcpuCommand {
    /// Run on (the pause flag is already down).
    Resume,
    /// Execute one instruction, then park again.
    Step,
    /// Load these registers; the answer says whether KVM took them.
    SetRegs { regs: Box<kvm_regs>, sregs: Box<kvm_sregs>, reply: Sender<Result<(), String>> },
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
    /// Breakpoints and watchpoints set by a debugger.
    pub breakpoints: Mutex<BreakpointTable>,
    /// Bumped whenever the vCPUs must reload their guest-debug settings.
    pub generation: AtomicU64,
    /// What the host's KVM can do (from the probe), once a debugger needs it.
    pub host: std::sync::OnceLock<HostReport>,
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
            breakpoints: Mutex::new(BreakpointTable::default()),
            generation: AtomicU64::new(0),
            host: std::sync::OnceLock::new(),
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

    /// The per-vCPU stops, for the vCPU threads themselves.
    pub fn stops_ref(&self) -> &Mutex<Vec<Option<Stop>>> {
        &self.stops
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

    /// The host's debug mechanisms, probing once on first use.
    pub fn host(&self) -> Result<&HostReport, String> {
        if let Some(h) = self.debug().host.get() {
            return Ok(h);
        }
        let report = crate::vmm::probe::probe().map_err(|e| e.to_string())?;
        Ok(self.debug().host.get_or_init(|| report))
    }

    /// The CPU mode used to translate addresses: the vCPU's stop (or vCPU 0's).
    fn mode(&self, vcpu: usize) -> Result<CpuMode, String> {
        let stops = self.stops();
        let stop = stops.get(vcpu).cloned().flatten().or_else(|| stops.into_iter().flatten().next());
        stop.map(|s| cpu_mode(&s.sregs)).ok_or_else(|| "the guest is running: stop it first".to_string())
    }

    /// A guest-virtual address through the vCPU's page tables, with every entry on the way.
    pub fn translate(&self, vcpu: usize, gva: u64) -> Result<Result<Translation, WalkError>, String> {
        let mode = self.mode(vcpu)?;
        Ok(paging::translate(&self.shared.mem, &mode, gva))
    }

    /// Reads guest-virtual memory as the guest sees it (planted `int3`s show their original
    /// bytes); returns how many bytes could be read.
    pub fn read_memory(&self, vcpu: usize, gva: u64, buf: &mut [u8]) -> Result<usize, String> {
        let mode = self.mode(vcpu)?;
        let n = paging::read_virt(&self.shared.mem, &mode, gva, buf);
        let bps = lock(&self.debug().breakpoints);
        for bp in bps.sw.values() {
            if bp.gva >= gva && bp.gva < gva + n as u64 {
                buf[(bp.gva - gva) as usize] = bp.original;
            }
        }
        Ok(n)
    }

    /// Writes guest-virtual memory, page by page (keeping planted `int3`s in place).
    pub fn write_memory(&self, vcpu: usize, gva: u64, data: &[u8]) -> Result<(), String> {
        let mode = self.mode(vcpu)?;
        let mut bps = lock(&self.debug().breakpoints);
        for (i, &byte) in data.iter().enumerate() {
            let addr = gva.wrapping_add(i as u64);
            let t = paging::translate(&self.shared.mem, &mode, addr).map_err(|e| e.to_string())?;
            let byte = match bps.sw.get_mut(&t.gpa) {
                Some(bp) => {
                    bp.original = byte;
                    0xcc
                }
                None => byte,
            };
            if !self.shared.write_phys(t.gpa, &[byte]) {
                return Err(format!("{addr:#x} (guest-physical {:#x}) is not RAM", t.gpa));
            }
        }
        Ok(())
    }

    /// Loads registers into a parked vCPU.
    pub fn write_registers(&self, vcpu: usize, regs: kvm_regs, sregs: kvm_sregs) -> Result<(), String> {
        let d = self.debug();
        if lock(&d.stops).get(vcpu).is_none_or(Option::is_none) {
            return Err(format!("vCPU {vcpu} is not stopped"));
        }
        let (tx, rx) = mpsc::channel();
        let tx_cmd = d.commands.get(vcpu).ok_or_else(|| format!("no vCPU {vcpu}"))?;
        lock(tx_cmd)
            .send(VcpuCommand::SetRegs { regs: Box::new(regs), sregs: Box::new(sregs), reply: tx })
            .map_err(|_| "the vCPU has ended")?;
        rx.recv_timeout(Duration::from_secs(5)).map_err(|_| "the vCPU did not answer".to_string())?
    }

    /// Plants a software breakpoint at a guest-virtual address.
    pub fn add_sw_breakpoint(&self, gva: u64) -> Result<(), String> {
        let mech = self.host()?.use_sw_breakpoints;
        if mech == Mechanism::Unavailable {
            return Err("software breakpoints are unavailable on this host (see kvmscope probe)".into());
        }
        let t = self.translate(0, gva)?.map_err(|e| e.to_string())?;
        let mut bps = lock(&self.debug().breakpoints);
        if bps.sw.contains_key(&t.gpa) {
            return Ok(());
        }
        let mut original = [0u8];
        if !self.shared.mem.read_phys(t.gpa, &mut original) || !self.shared.write_phys(t.gpa, &[0xcc]) {
            return Err(format!("{gva:#x} (guest-physical {:#x}) is not RAM", t.gpa));
        }
        bps.sw.insert(t.gpa, SwBreakpoint { gva, gpa: t.gpa, original: original[0] });
        self.debug().generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Removes a software breakpoint, putting the original byte back.
    pub fn remove_sw_breakpoint(&self, gva: u64) -> Result<bool, String> {
        let mut bps = lock(&self.debug().breakpoints);
        let Some(gpa) = bps.sw.values().find(|b| b.gva == gva).map(|b| b.gpa) else { return Ok(false) };
        if let Some(bp) = bps.sw.remove(&gpa) {
            self.shared.write_phys(bp.gpa, &[bp.original]);
        }
        self.debug().generation.fetch_add(1, Ordering::Release);
        Ok(true)
    }

    /// Sets a hardware execution breakpoint (DR0-3).
    pub fn add_hw_breakpoint(&self, gva: u64) -> Result<(), String> {
        if self.host()?.use_hw_breakpoints == Mechanism::Unavailable {
            return Err("hardware breakpoints are unavailable on this host (see kvmscope probe)".into());
        }
        lock(&self.debug().breakpoints).add_hw(HwSlot { gva, kind: HwKind::Exec })?;
        self.debug().generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    pub fn remove_hw_breakpoint(&self, gva: u64) -> bool {
        let removed = lock(&self.debug().breakpoints).remove_hw(HwSlot { gva, kind: HwKind::Exec });
        self.debug().generation.fetch_add(1, Ordering::Release);
        removed
    }

    /// Sets a watchpoint of 1, 2, 4 or 8 bytes, by whichever mechanism this host supports.
    pub fn add_watchpoint(&self, gva: u64, len: u64, kind: WatchKind) -> Result<(), String> {
        if ![1, 2, 4, 8].contains(&len) {
            return Err(format!("watchpoints are 1, 2, 4 or 8 bytes long, not {len}"));
        }
        let host = self.host()?;
        let mech = if kind == WatchKind::Write { host.use_write_watchpoints } else { host.use_access_watchpoints };
        match mech {
            Mechanism::DebugRegisters => {
                lock(&self.debug().breakpoints).add_hw(HwSlot { gva, kind: HwKind::Data { kind, len } })?;
                self.debug().generation.fetch_add(1, Ordering::Release);
                Ok(())
            }
            Mechanism::ReadOnlySlot | Mechanism::UnmappedPage => {
                let t = self.translate(0, gva)?.map_err(|e| e.to_string())?;
                if !self.shared.map.is_ram(t.gpa, len) {
                    return Err(format!("{gva:#x} (guest-physical {:#x}) is not RAM", t.gpa));
                }
                if mech == Mechanism::UnmappedPage {
                    // The page leaves guest memory: code on it could not run.
                    for stop in self.stops().into_iter().flatten() {
                        let mode = cpu_mode(&stop.sregs);
                        let rip = paging::translate(&self.shared.mem, &mode, mode.code_linear(stop.regs.rip));
                        if rip.is_ok_and(|r| r.gpa & !0xfff == t.gpa & !0xfff) {
                            return Err(format!(
                                "{gva:#x}: vCPU {} runs code on that page, and this host watches reads only by \
                                 unmapping the page (see kvmscope probe)",
                                stop.vcpu
                            ));
                        }
                    }
                }
                let mut bps = lock(&self.debug().breakpoints);
                bps.watch.push(Watchpoint { gva, gpa: t.gpa, len, kind });
                let pages = bps.watched_pages();
                self.shared.protect_pages(&pages).inspect_err(|_| {
                    bps.watch.pop();
                })
            }
            _ => Err(format!(
                "{} watchpoints are unavailable on this host: it fires no DR7 watchpoints{} (see kvmscope probe)",
                if kind == WatchKind::Write { "write" } else { "read and access" },
                if kind == WatchKind::Write { " and has no read-only memory slots" } else { "" }
            )),
        }
    }

    /// Removes a watchpoint.
    pub fn remove_watchpoint(&self, gva: u64, len: u64, kind: WatchKind) -> Result<bool, String> {
        let mut bps = lock(&self.debug().breakpoints);
        if bps.remove_hw(HwSlot { gva, kind: HwKind::Data { kind, len } }) {
            self.debug().generation.fetch_add(1, Ordering::Release);
            return Ok(true);
        }
        let Some(i) = bps.watch.iter().position(|w| w.gva == gva && w.len == len && w.kind == kind) else {
            return Ok(false);
        };
        bps.watch.remove(i);
        let pages = bps.watched_pages();
        self.shared.protect_pages(&pages)?;
        Ok(true)
    }

    /// Removes every breakpoint and watchpoint (a debugger left).
    pub fn clear_breakpoints(&self) {
        let mut bps = lock(&self.debug().breakpoints);
        for bp in bps.sw.values() {
            self.shared.write_phys(bp.gpa, &[bp.original]);
        }
        *bps = BreakpointTable::default();
        let _ = self.shared.protect_pages(&[]);
        self.debug().generation.fetch_add(1, Ordering::Release);
    }

    /// Waits until every vCPU is parked with a stop newer than `since`; returns the stop that
    /// says why (a breakpoint, a step, ...), or `None` on timeout.
    pub fn wait_for_stop(&self, since: u64, timeout: Duration) -> Option<Stop> {
        if !self.wait_all_stopped(timeout) {
            return None;
        }
        let stops = self.stops();
        let newest = stops
            .iter()
            .flatten()
            .filter(|s| s.serial > since)
            .max_by_key(|s| (s.reason != StopReason::Pause, s.serial));
        newest.cloned()
    }

    /// The serial number of the newest stop so far.
    pub fn stop_serial(&self) -> u64 {
        self.debug().stop_serial.load(Ordering::Relaxed)
    }
}

//! The debug controller: the one API through which the TUI, the gdb stub and the benches pause,
//! step and resume vCPUs, set breakpoints, and read the state of a running VM.
//!
//! Each vCPU thread owns its `VcpuFd`, so the controller never touches one: it raises the pause flag
//! and kicks the threads (signal + `immediate_exit`); each thread parks itself, leaves a snapshot of
//! its registers, and waits for a command on its own channel (Firecracker's and cloud-hypervisor's way).

use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kvm_bindings::{kvm_regs, kvm_sregs};
use thiserror::Error;

use crate::address_chain::AddressChain;
use crate::debug::breakpoints::{BreakpointError, HwKind, HwSlot, SwBreakpoint, WatchKind, Watchpoint};
use crate::debug::exit_spec::{ExitSpec, SpecError};
use crate::debug::{DebugState, ExitBreakpoint, Stop, StopReason, VcpuCommand};
use crate::decode::page_map::{PageMap, page_map};
use crate::decode::paging::{self, Translation, WalkError};
use crate::decode::regs::{CR0_PE, CR4_PAE, EFER_LMA};
use crate::decode::{CpuMode, PhysRead};
use crate::memory_view::{MemoryMapView, SlotView};
use crate::trace::Counters;
use crate::vmm::host_pages::{host_page, populated};
use crate::vmm::kvm_stats::{KvmCounts, StatsError};
use crate::vmm::probe::{HostReport, Mechanism};
use crate::vmm::shared::Shared;
use crate::vmm::slots::SlotError;
use crate::vmm::{RunEnd, RunningVm, VmError};

/// Why the controller could not do what it was asked.
#[derive(Debug, Error)]
pub enum ControlError {
    #[error("vCPU {0} is not stopped: pause first")]
    NotPaused(usize),
    #[error("vCPU {0} is not stopped")]
    NotStopped(usize),
    #[error("the guest is running: stop it first")]
    Running,
    #[error("no vCPU {0}")]
    NoVcpu(usize),
    #[error("the vCPU has ended")]
    VcpuEnded,
    #[error("the vCPU did not answer")]
    NoAnswer,
    #[error("KVM refused the registers: {0}")]
    Registers(kvm_ioctls::Error),
    #[error(transparent)]
    Walk(#[from] WalkError),
    #[error("{gva:#x} (guest-physical {gpa:#x}) is not RAM")]
    NotRam { gva: u64, gpa: u64 },
    #[error(transparent)]
    Breakpoint(#[from] BreakpointError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Probe(#[from] VmError),
    #[error(
        "where real-mode code runs (below 1 MiB) this host runs int3 itself, so breakpoints there are hardware ones, and all 4 debug registers are in use"
    )]
    RealModeBreakpoints,
    #[error("{0} are unavailable on this host (see kvmscope probe)")]
    Unavailable(&'static str),
    #[error("{what} watchpoints are unavailable on this host: it fires no DR7 watchpoints{also} (see kvmscope probe)")]
    NoWatchpoints { what: &'static str, also: &'static str },
    #[error("watchpoints are 1, 2, 4 or 8 bytes long, not {0}")]
    WatchLength(u64),
    #[error(
        "{gva:#x}: vCPU {vcpu} runs code on that page, and this host watches reads only by unmapping the page \
         (see kvmscope probe)"
    )]
    CodeOnWatchedPage { gva: u64, vcpu: u32 },
    #[error("KVM refused a memory slot: {0}")]
    Slots(#[from] SlotError),
    #[error(transparent)]
    Msr(#[from] crate::vmm::msr::MsrError),
    #[error(transparent)]
    Snapshot(#[from] crate::vmm::snapshot::SnapshotError),
    #[error(transparent)]
    Travel(#[from] crate::vmm::timeline::TravelError),
}

/// Real-mode code runs below this address (1 MiB).
const REAL_MODE_LIMIT: u64 = 0x10_0000;

/// The client side: what the UI and the gdb stub call.
#[derive(Clone)]
pub struct Controller {
    shared: Arc<Shared>,
    /// What the host's KVM can do (from the probe), once a debugger needs it.
    host: Arc<OnceLock<HostReport>>,
}

impl Controller {
    /// The controller of a running VM.
    pub fn new(running: &RunningVm) -> Self {
        Self { shared: running.shared().clone(), host: Arc::default() }
    }

    fn debug(&self) -> &DebugState {
        &self.shared.debug
    }

    /// What the vCPU threads share (for the time-travel side of the controller).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Asks every vCPU to park.
    pub fn pause(&self) {
        self.shared.pause_all();
    }

    /// Lets every parked vCPU run on.
    pub fn resume(&self) {
        self.debug().resume_all();
    }

    /// Single-steps one parked vCPU; the others stay parked.
    pub fn step(&self, vcpu: usize) -> Result<(), ControlError> {
        let d = self.debug();
        if !d.pause_requested() || d.stop_of(vcpu).is_none() {
            return Err(ControlError::NotPaused(vcpu));
        }
        // A stop the guest ran freely to is named by its RAM as well: taken before it changes.
        self.shared.timeline.mark_ram(|| self.ram_digest());
        if d.command(vcpu, VcpuCommand::Step) { Ok(()) } else { Err(ControlError::VcpuEnded) }
    }

    /// Whether the pause flag is up (vCPUs are parked or parking).
    pub fn is_paused(&self) -> bool {
        self.debug().pause_requested()
    }

    /// Every vCPU's stop (`None` while it runs).
    pub fn stops(&self) -> Vec<Option<Stop>> {
        self.debug().stops()
    }

    /// How many vCPUs the VM has.
    pub fn vcpus(&self) -> usize {
        self.debug().vcpus()
    }

    /// Waits until every vCPU has parked, or `timeout` passes; true when all are parked.
    pub fn wait_all_stopped(&self, timeout: Duration) -> bool {
        self.debug().wait_all_stopped(timeout, || self.shared.is_stopping())
    }

    /// Adds an exit breakpoint on the `nth` match of `spec`.
    pub fn add_exit_breakpoint(&self, spec: ExitSpec, nth: u64) -> ExitBreakpoint {
        self.debug().add_exit_breakpoint(spec, nth)
    }

    /// Deletes one exit breakpoint, or all; returns how many went.
    pub fn delete_exit_breakpoint(&self, id: Option<u32>) -> usize {
        self.debug().delete_exit_breakpoint(id)
    }

    /// The exit breakpoints, with their hit counts.
    pub fn exit_breakpoints(&self) -> Vec<ExitBreakpoint> {
        self.debug().exit_breakpoints()
    }

    /// Exact counters, all vCPUs merged.
    pub fn counters(&self) -> Counters {
        self.shared.merged_counters()
    }

    /// What KVM itself has counted (its binary statistics), or why that cannot be read.
    pub fn kvm_counts(&self) -> Result<KvmCounts, StatsError> {
        self.shared.kvm_counts()
    }

    /// Guest memory, to read without stopping the guest (hexdumps, disassembly, page walks).
    pub fn memory(&self) -> &dyn PhysRead {
        &self.shared.ram
    }

    /// Whether the run is ending (or has ended).
    pub fn is_ending(&self) -> bool {
        self.shared.is_stopping()
    }

    /// Keeps the guest's own end as a stop to go back from, instead of ending the run (see
    /// [`crate::vmm::shared::Shared::hold_end`]).
    pub fn hold_guest_end(&self, on: bool) {
        self.shared.hold_end.store(on, std::sync::atomic::Ordering::Release);
    }

    /// The guest's end kept so, once (`None` if it has not ended).
    pub fn take_held_end(&self) -> Option<crate::vmm::outcome::VcpuEnd> {
        crate::sync::lock(&self.shared.held_end).take()
    }

    /// kvmscope's exit status, once the run has ended.
    pub fn end_status(&self) -> Option<i32> {
        self.shared.end_status()
    }

    /// Asks the run's owner to end the run (gdb's kill).
    pub fn end_run(&self, end: RunEnd) {
        self.shared.request_end(end);
    }

    /// The host's debug mechanisms, probing once on first use.
    pub fn host(&self) -> Result<&HostReport, ControlError> {
        if let Some(h) = self.host.get() {
            return Ok(h);
        }
        let report = crate::vmm::probe::probe()?;
        let h = self.host.get_or_init(|| report);
        self.debug().set_sw_breakpoints_by_kvm(h.use_sw_breakpoints == Mechanism::Int3GuestDebug);
        Ok(h)
    }

    /// The state each vCPU left when the run ended (`None` for a vCPU still running).
    pub fn final_states(&self) -> Vec<Option<Stop>> {
        self.debug().finals()
    }

    /// The CPU mode used to translate addresses: the vCPU's stop (or another's), or, once the run
    /// has ended, the state it left.
    fn mode(&self, vcpu: usize) -> Result<CpuMode, ControlError> {
        let pick = |states: Vec<Option<Stop>>| {
            states.get(vcpu).cloned().flatten().or_else(|| states.into_iter().flatten().next())
        };
        let stop = pick(self.stops()).or_else(|| pick(self.final_states()));
        stop.map(|s| CpuMode::from(&s.sregs)).ok_or(ControlError::Running)
    }

    /// A guest-virtual address through the vCPU's page tables, with every entry on the way.
    pub fn translate(&self, vcpu: usize, gva: u64) -> Result<Result<Translation, WalkError>, ControlError> {
        let mode = self.mode(vcpu)?;
        Ok(paging::translate(&self.shared.ram, &mode, gva))
    }

    /// Translates a guest-virtual address that must be mapped.
    fn translate_mapped(&self, vcpu: usize, gva: u64) -> Result<Translation, ControlError> {
        Ok(self.translate(vcpu, gva)??)
    }

    /// A guest-virtual (`virt`) or guest-physical address through every layer down to the host.
    pub fn address_chain(&self, vcpu: usize, addr: u64, virt: bool) -> Result<AddressChain, ControlError> {
        let (gva, steps, page_size, gpa, wide) = if virt {
            let mode = self.mode(vcpu)?;
            let t = paging::translate(&self.shared.ram, &mode, addr)?;
            (Some(addr), t.steps, t.page_size, t.gpa, mode.efer & EFER_LMA != 0 || mode.cr4 & CR4_PAE != 0)
        } else {
            (None, Vec::new(), 4096, addr, false)
        };
        let slots = crate::sync::lock(&self.shared.slots).clone();
        let slot = slots.iter().copied().enumerate().find(|(_, s)| gpa >= s.gpa && gpa - s.gpa < s.len);
        let host = slot.map(|(_, s)| {
            let hva = s.host + (gpa - s.gpa);
            (hva, host_page(hva))
        });
        Ok(AddressChain { gva, steps, wide_entries: wide, page_size, gpa, slot, host })
    }

    /// Every mapping the stopped vCPU's page tables make (QEMU's `info tlb` / `info mem`).
    pub fn page_map(&self, vcpu: usize) -> Result<PageMap, ControlError> {
        Ok(page_map(&self.shared.ram, &self.mode(vcpu)?))
    }

    /// Reads one interval of the dirty log, while it is on; the pages it found.
    pub fn sample_dirty(&self) -> Option<Result<usize, SlotError>> {
        self.shared.dirty_logging().then(|| self.shared.sample_dirty())
    }

    /// The dirty log's history so far, while it is on.
    pub fn dirty(&self) -> Option<crate::vmm::dirty::DirtyTracker> {
        self.shared.dirty_logging().then(|| crate::sync::lock(&self.shared.dirty).clone())
    }

    /// Whether `--dirty-log` keeps dirty logging on for the whole run (read by the session).
    pub fn dirty_log_always(&self) -> bool {
        self.shared.dirty_log_always
    }

    /// Turns dirty logging on or off (the memory screen does while it shows).
    pub fn set_dirty_logging(&self, on: bool) -> Result<(), SlotError> {
        self.shared.set_dirty_logging(on)
    }

    /// Traps exactly these MSRs' guest accesses from now on (`:trap msr`; empty: none).
    pub fn trap_msrs(&self, msrs: &[u32]) -> Result<(), ControlError> {
        Ok(self.shared.trap_msrs(msrs)?)
    }

    /// The MSRs trapped now.
    pub fn trapped_msrs(&self) -> Vec<u32> {
        self.shared.trapped_msrs()
    }

    /// Adds an exit breakpoint on the `nth` match of `spec`; one on an MSR that is not trapped
    /// traps it first (its accesses must exit to be seen), and says so in `trapped`.
    pub fn add_exit_breakpoint_trapping(
        &self,
        spec: ExitSpec,
        nth: u64,
    ) -> Result<(ExitBreakpoint, Option<u32>), ControlError> {
        let mut trapped = None;
        if let ExitSpec::Msr { index, .. } = spec {
            let mut msrs = self.trapped_msrs();
            if !msrs.contains(&index) {
                msrs.push(index);
                msrs.sort_unstable();
                self.trap_msrs(&msrs)?;
                trapped = Some(index);
            }
        }
        Ok((self.add_exit_breakpoint(spec, nth), trapped))
    }

    /// The virtio devices' events, counted (notifications by how they came, requests, errors).
    pub fn device_counters(&self) -> crate::trace::DeviceCounters {
        self.shared.virtio.counters()
    }

    /// Every virtio device's state, for the devices screen and `monitor virtio`.
    pub fn virtio(&self) -> Vec<crate::vmm::virtio::DeviceView> {
        self.shared.virtio.views()
    }

    /// The memory map: slots with what the host populated, devices, the guest's layout, KVM's
    /// mapping counters.
    pub fn memory_map(&self) -> MemoryMapView {
        let slots = crate::sync::lock(&self.shared.slots).clone();
        let slots = slots
            .into_iter()
            .enumerate()
            .map(|(index, slot)| SlotView { index, slot, populated: populated(slot.host, slot.len) })
            .collect();
        MemoryMapView {
            slots,
            ports: self.shared.buses.pio.devices(),
            mmio: self.shared.buses.mmio.devices(),
            layout: self.shared.ram.map.entries(),
            kvm: self.shared.kvm_counts().ok().map(|c| c.vm),
            guest_pages: self.page_map(0).map_err(|_| crate::memory_view::NoPageTables::Running),
            dirty: self.dirty(),
        }
    }

    /// Reads guest-virtual memory as the guest sees it (planted `int3`s show their original
    /// bytes); returns how many bytes could be read.
    pub fn read_memory(&self, vcpu: usize, gva: u64, buf: &mut [u8]) -> Result<usize, ControlError> {
        let mode = self.mode(vcpu)?;
        let n = paging::read_virt(&self.shared.ram, &mode, gva, buf);
        let bps = self.debug().breakpoints();
        for bp in bps.sw_all() {
            if bp.gva >= gva && bp.gva < gva + n as u64 {
                buf[(bp.gva - gva) as usize] = bp.original;
            }
        }
        Ok(n)
    }

    /// Writes guest-virtual memory, all of it or none: every byte's address is translated and
    /// checked first (planted `int3`s stay in place; the byte under one is what changes).
    pub fn write_memory(&self, vcpu: usize, gva: u64, data: &[u8]) -> Result<(), ControlError> {
        let mode = self.mode(vcpu)?;
        let mut gpas = Vec::with_capacity(data.len());
        for i in 0..data.len() {
            let addr = gva.wrapping_add(i as u64);
            let (gpa, _) = paging::gpa_of(&self.shared.ram, &mode, addr)?;
            if !self.shared.ram.map.is_ram(gpa, 1) {
                return Err(ControlError::NotRam { gva: addr, gpa });
            }
            gpas.push(gpa);
        }
        let mut was = vec![0u8; data.len()];
        let same = self.read_memory(vcpu, gva, &mut was).is_ok_and(|n| n == data.len()) && was == data;
        self.change_by_user(same, || {
            let mut bps = self.debug().breakpoints();
            for (&gpa, &byte) in gpas.iter().zip(data) {
                let byte = if bps.replace_original(gpa, byte) { 0xcc } else { byte };
                self.shared.ram.write(gpa, &[byte]);
            }
            Ok(())
        })
    }

    /// Makes a change of the user's to the stopped guest's registers or memory (`same`: one that
    /// changes nothing). Once time travel keeps a history, the history after the present is of a
    /// future that will not come now: it is forgotten with its checkpoints, so that going forward
    /// from here is news — not a path said to have left the history — and a checkpoint of the
    /// changed state is taken, so that going back into the new future starts from it (going
    /// forward again from before it, the change is not made again: that is said).
    fn change_by_user(
        &self,
        same: bool,
        change: impl FnOnce() -> Result<(), ControlError>,
    ) -> Result<(), ControlError> {
        let timeline = &self.shared.timeline;
        if same || !timeline.is_keeping() || timeline.place().steps == crate::vmm::timeline::UNKNOWN {
            return change();
        }
        // Where the guest ran freely to is named by its RAM as it was, before the change.
        let place = self.present();
        change()?;
        timeline.truncate(place.exits);
        crate::sync::lock(&self.shared.checkpoints).drop_from(place.exits, place.steps);
        match self.checkpoint(false) {
            Ok(id) => crate::sync::lock(&self.shared.checkpoints).set_changed(id),
            Err(e) => crate::notice::say(format!("no checkpoint of the changed state: {e}")),
        }
        Ok(())
    }

    /// Loads registers into a parked vCPU.
    pub fn write_registers(&self, vcpu: usize, regs: kvm_regs, sregs: kvm_sregs) -> Result<(), ControlError> {
        let d = self.debug();
        if vcpu >= d.vcpus() {
            return Err(ControlError::NoVcpu(vcpu));
        }
        if d.stop_of(vcpu).is_none() {
            return Err(ControlError::NotStopped(vcpu));
        }
        let same = d.stop_of(vcpu).is_some_and(|s| s.regs == regs && s.sregs == sregs);
        self.change_by_user(same, || {
            let (tx, rx) = mpsc::channel();
            if !d.command(vcpu, VcpuCommand::SetRegs { regs: Box::new(regs), sregs: Box::new(sregs), reply: tx }) {
                return Err(ControlError::VcpuEnded);
            }
            rx.recv_timeout(Duration::from_secs(5))
                .map_err(|_| ControlError::NoAnswer)?
                .map_err(ControlError::Registers)
        })
    }

    /// Plants a software breakpoint at a guest-virtual address. Where the host emulates `int3`
    /// itself in real mode (the guest's own vector table would take it), a breakpoint where
    /// real-mode code can run — below 1 MiB, or anywhere while the guest is in real mode — is a
    /// hardware one instead.
    pub fn add_sw_breakpoint(&self, gva: u64) -> Result<(), ControlError> {
        let mechanism = self.host()?.use_sw_breakpoints;
        if mechanism == Mechanism::Unavailable {
            return Err(ControlError::Unavailable("software breakpoints"));
        }
        let real_mode_code = gva < REAL_MODE_LIMIT || self.mode(0)?.cr0 & CR0_PE == 0;
        if mechanism == Mechanism::Int3EmulationFailure && real_mode_code {
            if self.debug().breakpoints().hw_exec_at(gva) {
                return Ok(());
            }
            return self.add_hw_breakpoint(gva).map_err(|e| match e {
                ControlError::Breakpoint(_) => ControlError::RealModeBreakpoints,
                e => e,
            });
        }
        let t = self.translate_mapped(0, gva)?;
        let mut bps = self.debug().breakpoints();
        if bps.sw_at(t.gpa).is_some() {
            return Ok(());
        }
        let mut original = [0u8];
        if !self.shared.ram.read_phys(t.gpa, &mut original) || !self.shared.ram.write(t.gpa, &[0xcc]) {
            return Err(ControlError::NotRam { gva, gpa: t.gpa });
        }
        bps.insert_sw(SwBreakpoint { gva, gpa: t.gpa, original: original[0] });
        self.debug().breakpoints_changed();
        Ok(())
    }

    /// Removes a software breakpoint, putting the original byte back (or the hardware one that
    /// stood for it in real mode); false when there was none.
    pub fn remove_sw_breakpoint(&self, gva: u64) -> bool {
        let removed = self.debug().breakpoints().remove_sw(gva);
        let Some(bp) = removed else { return self.remove_hw_breakpoint(gva) };
        self.shared.ram.write(bp.gpa, &[bp.original]);
        self.debug().breakpoints_changed();
        true
    }

    /// Sets a hardware execution breakpoint (DR0-3).
    pub fn add_hw_breakpoint(&self, gva: u64) -> Result<(), ControlError> {
        if self.host()?.use_hw_breakpoints == Mechanism::Unavailable {
            return Err(ControlError::Unavailable("hardware breakpoints"));
        }
        self.debug().breakpoints().add_hw(HwSlot { gva, kind: HwKind::Exec })?;
        self.debug().breakpoints_changed();
        Ok(())
    }

    pub fn remove_hw_breakpoint(&self, gva: u64) -> bool {
        let removed = self.debug().breakpoints().remove_hw(HwSlot { gva, kind: HwKind::Exec });
        self.debug().breakpoints_changed();
        removed
    }

    /// Sets a watchpoint of 1, 2, 4 or 8 bytes, by whichever mechanism this host supports.
    pub fn add_watchpoint(&self, gva: u64, len: u64, kind: WatchKind) -> Result<(), ControlError> {
        if ![1, 2, 4, 8].contains(&len) {
            return Err(ControlError::WatchLength(len));
        }
        let host = self.host()?;
        let mech = if kind == WatchKind::Write { host.use_write_watchpoints } else { host.use_access_watchpoints };
        match mech {
            Mechanism::DebugRegisters => {
                self.debug().breakpoints().add_hw(HwSlot { gva, kind: HwKind::Data { kind, len } })?;
                self.debug().breakpoints_changed();
                Ok(())
            }
            Mechanism::ReadOnlySlot | Mechanism::UnmappedPage => {
                let t = self.translate_mapped(0, gva)?;
                if !self.shared.ram.map.is_ram(t.gpa, len) {
                    return Err(ControlError::NotRam { gva, gpa: t.gpa });
                }
                if mech == Mechanism::UnmappedPage {
                    // The page leaves guest memory: code on it could not run.
                    for stop in self.stops().into_iter().flatten() {
                        let mode = CpuMode::from(&stop.sregs);
                        let rip = paging::gpa_of(&self.shared.ram, &mode, mode.code_linear(stop.regs.rip));
                        if rip.is_ok_and(|(gpa, _)| gpa & !0xfff == t.gpa & !0xfff) {
                            return Err(ControlError::CodeOnWatchedPage { gva, vcpu: stop.vcpu });
                        }
                    }
                }
                let mut bps = self.debug().breakpoints();
                bps.add_watch(Watchpoint { gva, gpa: t.gpa, len, kind });
                let pages = bps.watched_pages();
                self.shared.protect_pages(&pages).map_err(|e| {
                    bps.undo_add_watch();
                    e.into()
                })
            }
            _ if kind == WatchKind::Write => {
                Err(ControlError::NoWatchpoints { what: "write", also: " and has no read-only memory slots" })
            }
            _ => Err(ControlError::NoWatchpoints { what: "read and access", also: "" }),
        }
    }

    /// Removes a watchpoint; false when there was none like it.
    pub fn remove_watchpoint(&self, gva: u64, len: u64, kind: WatchKind) -> Result<bool, ControlError> {
        let mut bps = self.debug().breakpoints();
        if bps.remove_hw(HwSlot { gva, kind: HwKind::Data { kind, len } }) {
            self.debug().breakpoints_changed();
            return Ok(true);
        }
        if !bps.remove_watch(gva, len, kind) {
            return Ok(false);
        }
        let pages = bps.watched_pages();
        self.shared.protect_pages(&pages)?;
        Ok(true)
    }

    /// Removes every breakpoint and watchpoint (a debugger left).
    pub fn clear_breakpoints(&self) {
        let mut bps = self.debug().breakpoints();
        for bp in bps.sw_all() {
            self.shared.ram.write(bp.gpa, &[bp.original]);
        }
        *bps = Default::default();
        let _ = self.shared.protect_pages(&[]);
        self.debug().breakpoints_changed();
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
        self.debug().stop_serial()
    }
}

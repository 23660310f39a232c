//! What every vCPU thread of one VM shares: guest memory, the buses, the global exit sequence, the
//! stop flag, the per-vCPU counters, the event sinks and the debug state.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use kvm_ioctls::VmFd;

use super::bus::Buses;
use super::clock::Clock;
use super::dirty::DirtyTracker;
use super::kick::Kickable;
use super::kvm_stats::{KvmCounts, StatsError, VmStats};
use super::memory::GuestRam;
use super::msr::MsrError;
use super::outcome::RunEnd;
use super::slots::{Protection, Slot, SlotError, apply, dirty_pages, layout, log_dirty, register};
use super::snapshot::checkpoints::Checkpoints;
use super::snapshot::every::Every;
use super::virtio::VirtioSet;
use crate::debug::DebugState;
use crate::sink::ExitSink;
use crate::sync::lock;
use crate::trace::Counters;
use crate::trace::stage_times::StageTimes;

/// A value alone on its cache line (two lines: the adjacent-line prefetcher pairs them).
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct OwnLine<T>(pub T);

impl<T> std::ops::Deref for OwnLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// State shared by the vCPU threads and the VM's owner.
pub struct Shared {
    pub ram: GuestRam,
    pub buses: Buses,
    /// The vCPUs' clock (the TSC where it can be one), started with the VM: event timestamps count
    /// from its start.
    pub clock: Clock,
    /// Next exit sequence number (global across vCPUs). Every exit of every vCPU writes it: on a
    /// cache line of its own, so that the flags beside it are not pulled away from the other vCPUs.
    pub seq: OwnLine<AtomicU64>,
    /// Set when the run is ending: vCPU threads leave their loop at the next chance.
    pub stopping: AtomicBool,
    /// The sequence number that ends the run (`--max-exits` after the first), or `u64::MAX`.
    pub max_exits: u64,
    /// `--stacks`: a call stack on one exit in this many.
    pub stacks_every: Option<u64>,
    /// One set of exact counters per vCPU, each written only by its own thread.
    pub counters: Vec<Mutex<Counters>>,
    /// Consumers of every event.
    pub sinks: Vec<Arc<dyn ExitSink>>,
    /// Pause, step, breakpoints and the vCPUs' stops.
    pub debug: DebugState,
    /// The VM, for memory slot changes (watchpoints).
    pub vm: VmFd,
    /// The slots KVM has now.
    pub slots: Mutex<Vec<Slot>>,
    /// The vCPU threads, to kick them out of the guest.
    pub threads: Mutex<Vec<libc::pthread_t>>,
    /// KVM's own counters of this VM, or why there are none.
    pub kvm_stats: Result<VmStats, StatsError>,
    /// The virtio devices, for their views.
    pub virtio: VirtioSet,
    /// KVM sends the MSR filter's denials to userspace (`--trap-msr` and `:trap msr` can work).
    pub msr_exits: bool,
    /// The MSRs trapped now (`--trap-msr`, then `:trap msr` and exit breakpoints on MSRs).
    pub trapped_msrs: Mutex<Vec<u32>>,
    /// `--dirty-log`: dirty-logged for the whole run, read by the session's own thread.
    pub dirty_log_always: bool,
    /// What the dirty log has shown so far.
    pub dirty: Mutex<DirtyTracker>,
    /// Pages dirtied since the views last read the dirty log that were read out of it meanwhile:
    /// by a checkpoint, or with the bitmaps of slots replaced since (a watchpoint set or lifted).
    pub pending_dirty: Mutex<Vec<u64>>,
    /// The dirty log is on for the views (`--dirty-log`, the memory screen).
    pub log_for_views: AtomicBool,
    /// The dirty log is on for the checkpoints (from the first one on).
    pub log_for_checkpoints: AtomicBool,
    /// KVM's manual dirty-log protection is on (see [`super::slots::manual_protect`]).
    pub dirty_manual: bool,
    /// An end asked for from outside the vCPUs (gdb's kill); the run's owner acts on it.
    pub end_request: Mutex<Option<RunEnd>>,
    /// How the run ended, once it has.
    pub ended: OnceLock<RunEnd>,
    /// `--self-profile`: the stage times of the vCPUs whose loops have ended, merged (`None`: the
    /// loops do not time their stages).
    pub stage_times: Option<Mutex<StageTimes>>,
    /// KVM's list of the MSRs that make a vCPU's state (`KVM_GET_MSR_INDEX_LIST`), for checkpoints.
    pub msr_list: Vec<u32>,
    /// KVM models the PIC, IOAPIC, local APIC and PIT (their state is KVM's to save).
    pub irqchip: bool,
    /// The checkpoints taken so far.
    pub checkpoints: Mutex<super::snapshot::checkpoints::Checkpoints>,
    /// Where the VM is in the guest's own exits, and their history once a checkpoint exists.
    pub timeline: super::timeline::Timeline,
    /// The run's machine options, as given (a snapshot names them, to build the machine again).
    pub machine_args: Vec<String>,
    /// How often kvmscope takes checkpoints of its own, once time travel is on: at the lone
    /// vCPU's exits while the guest runs, and at the stops the user holds.
    pub checkpoint_every: Every,
    /// How long the guest has run (vCPU 0's time out of parks), up to vCPU 0's last park or
    /// checkpoint, in ns.
    pub ran_ns: AtomicU64,
    /// Where (exits) and when (in `ran_ns`) the VM last was a checkpoint's: the next of
    /// kvmscope's own is due `checkpoint_every` later.
    pub last_checkpoint_at: AtomicU64,
    pub last_checkpoint_ran: AtomicU64,
    /// Set while the guest goes over its past again: its console output was written already.
    pub output_mutes: Vec<Arc<AtomicBool>>,
    /// Keep the guest's own end (a halt, the debug-exit port, a crash) as a stop to go back
    /// from, instead of ending the run (the TUI, with time travel on and one vCPU).
    pub hold_end: AtomicBool,
    /// The end kept so, until the owner takes it.
    pub held_end: Mutex<Option<super::outcome::VcpuEnd>>,
}

impl Shared {
    /// The guest's running time so far, as of vCPU 0's last park or checkpoint.
    pub fn ran_ns(&self) -> u64 {
        self.ran_ns.load(Ordering::Acquire)
    }

    /// The VM is a checkpoint's at `exits` (one was taken, or put back): kvmscope's next is an
    /// interval from here.
    pub fn checkpoint_placed(&self, exits: u64) {
        self.last_checkpoint_at.store(exits, Ordering::Release);
        self.last_checkpoint_ran.store(self.ran_ns(), Ordering::Release);
    }

    /// Whether one of kvmscope's own checkpoints is due at `position` after `ran_ns` of running:
    /// time travel is on (there was a first checkpoint) and an interval has passed since the VM
    /// was last a checkpoint's.
    pub fn checkpoint_due(&self, position: u64, ran_ns: u64) -> bool {
        let exits = position.saturating_sub(self.last_checkpoint_at.load(Ordering::Acquire));
        let ran = ran_ns.saturating_sub(self.last_checkpoint_ran.load(Ordering::Acquire));
        self.timeline.is_keeping() && self.checkpoint_every.due(exits, std::time::Duration::from_nanos(ran))
    }

    /// Whether the run is ending.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The next exit's sequence number. A lone vCPU is the only writer: a load and a store, where
    /// several need a locked add (a full barrier on every exit).
    pub fn next_seq(&self) -> u64 {
        if self.counters.len() == 1 {
            let seq = self.seq.load(Ordering::Relaxed);
            self.seq.store(seq + 1, Ordering::Relaxed);
            seq
        } else {
            self.seq.fetch_add(1, Ordering::Relaxed)
        }
    }

    /// The counters of one vCPU.
    pub fn counters_of(&self, vcpu: usize) -> MutexGuard<'_, Counters> {
        lock(&self.counters[vcpu])
    }

    /// Raises the pause flag and kicks every vCPU out of the guest, so each parks.
    pub fn pause_all(&self) {
        self.debug.raise_pause();
        for &t in lock(&self.threads).iter() {
            Kickable(t).kick();
        }
    }

    /// Asks the run's owner to end the run.
    pub fn request_end(&self, end: RunEnd) {
        *lock(&self.end_request) = Some(end);
    }

    /// kvmscope's exit status, once the run has ended.
    pub fn end_status(&self) -> Option<i32> {
        self.ended.get().map(RunEnd::status)
    }

    /// Keeps exactly these guest-physical pages from the guest (watchpoints), each as it says.
    pub fn protect_pages(&self, pages: &[(u64, Protection)]) -> Result<(), SlotError> {
        let mut slots = lock(&self.slots);
        let logged = slots.iter().any(|s| s.dirty_log);
        let new = log_dirty(layout(self.ram.host_ranges(), pages), logged);
        if *slots == new {
            return Ok(());
        }
        if logged {
            // The old slots' bitmaps go with them: keep what they logged for the next reading.
            self.keep_logged(dirty_pages(&self.vm, &slots, self.dirty_manual)?);
        }
        apply(&self.vm, &slots, &new)?;
        *slots = new;
        Ok(())
    }

    /// Whether the dirty log is on for the views (`--dirty-log`, the memory screen).
    pub fn dirty_logging(&self) -> bool {
        self.log_for_views.load(Ordering::Acquire)
    }

    /// Turns dirty logging for the views on or off while the guest runs (the slots stay logged
    /// while checkpoints need them).
    pub fn set_dirty_logging(&self, on: bool) -> Result<(), SlotError> {
        self.log_for_views.store(on, Ordering::Release);
        self.relog()
    }

    /// Logs the guest's writes from now on for the checkpoints (KVM's dirty log), so that a
    /// checkpoint or a restore looks only at the pages written since the last one.
    pub fn log_for_checkpoints(&self) -> Result<(), SlotError> {
        self.log_for_checkpoints.store(true, Ordering::Release);
        self.relog()
    }

    /// Registers the RAM slots logged as the views and the checkpoints want them. Turning the
    /// log on starts it empty: what was written before is not in it.
    fn relog(&self) -> Result<(), SlotError> {
        let on = self.dirty_logging() || self.log_for_checkpoints.load(Ordering::Acquire);
        let mut slots = lock(&self.slots);
        let new = log_dirty(slots.clone(), on);
        if *slots == new {
            return Ok(());
        }
        if !on {
            self.keep_logged(dirty_pages(&self.vm, &slots, self.dirty_manual)?);
        }
        register(&self.vm, &new)?;
        *slots = new;
        Ok(())
    }

    /// Pages logged as written and read out of a log: kept for the views' next interval and for
    /// the checkpoints.
    fn keep_logged(&self, pages: Vec<u64>) {
        lock(&self.checkpoints).note_written(&pages);
        if self.dirty_logging() {
            lock(&self.pending_dirty).extend(pages);
        }
    }

    /// The pages written since the last reading: those KVM logged for the guest and those
    /// kvmscope wrote itself (devices, the debugger); `None` when KVM's log could not be read.
    fn read_written(&self) -> Option<Vec<u64>> {
        let slots = lock(&self.slots).clone();
        let mut pages = match slots.iter().any(|s| s.dirty_log) {
            true => dirty_pages(&self.vm, &slots, self.dirty_manual).ok()?,
            false => Vec::new(),
        };
        pages.extend(self.ram.take_written());
        pages.sort_unstable();
        pages.dedup();
        Some(pages)
    }

    /// Reads the pages written since the last reading into `checkpoints` (locked by the caller)
    /// and keeps them for the views' next interval.
    pub fn written_into(&self, checkpoints: &mut Checkpoints) {
        match self.read_written() {
            Some(pages) => {
                checkpoints.note_written(&pages);
                if self.dirty_logging() {
                    lock(&self.pending_dirty).extend(pages);
                }
            }
            // A log that cannot be read: the next checkpoint or restore compares RAM whole.
            None => checkpoints.forget_base(),
        }
    }

    /// Reads the dirty log (one interval's pages, those kvmscope wrote for the guest with them)
    /// into the history; the pages it found.
    pub fn sample_dirty(&self) -> Result<usize, SlotError> {
        let mut pages = dirty_pages(&self.vm, &lock(&self.slots), self.dirty_manual)?;
        pages.extend(self.ram.take_written());
        lock(&self.checkpoints).note_written(&pages);
        // Read out of the log since the last interval (by a checkpoint, with replaced slots).
        pages.append(&mut lock(&self.pending_dirty));
        pages.sort_unstable();
        pages.dedup();
        let n = pages.len();
        lock(&self.dirty).add_interval(pages);
        Ok(n)
    }

    /// Traps exactly these MSRs from now on (an empty list: none).
    pub fn trap_msrs(&self, msrs: &[u32]) -> Result<(), MsrError> {
        if !self.msr_exits {
            return Err(MsrError::Unsupported);
        }
        super::msr::set_traps(&self.vm, msrs)?;
        *lock(&self.trapped_msrs) = msrs.to_vec();
        Ok(())
    }

    /// The MSRs trapped now.
    pub fn trapped_msrs(&self) -> Vec<u32> {
        lock(&self.trapped_msrs).clone()
    }

    /// What KVM itself has counted so far, or why that cannot be read.
    pub fn kvm_counts(&self) -> Result<KvmCounts, StatsError> {
        self.kvm_stats.as_ref().map_err(Clone::clone)?.read()
    }

    /// All vCPUs' counters merged.
    pub fn merged_counters(&self) -> Counters {
        let mut all = Counters::default();
        for i in 0..self.counters.len() {
            all.merge(&self.counters_of(i));
        }
        all
    }
}

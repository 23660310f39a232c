//! The guest's timeline: where the VM is, counted in the guest's own exits (not the debugger's
//! single-step traps and breakpoints, nor the exits a watched page makes), and the instructions
//! single-stepped since the last of them. Once a checkpoint exists it also keeps the history of
//! those exits, so that going back and running forward again is checked exit by exit: if the
//! guest takes another path (an interrupt at another instruction, a clock read), the run stops
//! where it left the history and says so — never a silent wrong answer.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::debug::StopReason;
use crate::sync::lock;
use crate::trace::{Dir, ExitEvent, ExitKind};
use crate::vmm::bus::RAM_DEVICE;

/// Not known: the guest ran freely since its last exit.
pub const UNKNOWN: u64 = u64::MAX;

/// Exits the history keeps at most (32 bytes each); older ones are no longer checked.
const HISTORY: usize = 8 << 20;

/// What identifies an exit along the history, and what a read returned the first time.
#[derive(Debug, Clone, Copy)]
pub struct ExitMark {
    pub vcpu: u32,
    pub reason: &'static str,
    /// The port, MMIO address or MSR (0 for other exits).
    pub at: u64,
    pub rip: u64,
    /// The value a port, MMIO or MSR read gave the guest (a single port read, not `rep ins`).
    pub read: Option<u64>,
}

impl ExitMark {
    pub fn of(e: &ExitEvent) -> Self {
        let (at, read) = match e.kind {
            ExitKind::Io { port, dir: Dir::In, count: 1, data, .. } => (port as u64, Some(data)),
            ExitKind::Io { port, .. } => (port as u64, None),
            ExitKind::Mmio { addr, dir: Dir::In, data, .. } => (addr, Some(data)),
            ExitKind::Mmio { addr, .. } => (addr, None),
            ExitKind::Msr { index, dir: Dir::In, data } => (index as u64, Some(data)),
            ExitKind::Msr { index, .. } => (index as u64, None),
            _ => (0, None),
        };
        Self { vcpu: e.vcpu, reason: e.kind.reason(), at, rip: e.rip, read }
    }

    /// The same exit: the same vCPU, reason, place and instruction (what it read may differ:
    /// going forward again gives it the first value).
    fn same_exit(&self, other: &ExitMark) -> bool {
        (self.vcpu, self.reason, self.at, self.rip) == (other.vcpu, other.reason, other.at, other.rip)
    }
}

impl std::fmt::Display for ExitMark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:#x} at rip {:#x} on vCPU {}", self.reason, self.at, self.rip, self.vcpu)
    }
}

/// Whether an exit is the guest's own doing (the debugger's traps and watched pages are not).
pub fn is_guest_exit(e: &ExitEvent) -> bool {
    !matches!(e.kind, ExitKind::Debug { .. } | ExitKind::Breakpoint { .. }) && e.device != Some(RAM_DEVICE)
}

#[derive(Default)]
struct History {
    /// The position of the first exit kept, less one.
    base: u64,
    exits: VecDeque<ExitMark>,
    /// Each kept exit's sequence number (the views' name for it) and its position, in the order
    /// they happened: going back and forward again gives the same positions new numbers.
    seqs: VecDeque<(u64, u64)>,
}

/// The timeline of one VM.
pub struct Timeline {
    position: AtomicU64,
    /// Instructions single-stepped since the last guest exit, or [`UNKNOWN`].
    steps: AtomicU64,
    /// A guest exit happened since the vCPU last left a park (the step under way made it).
    exited_in_step: AtomicBool,
    /// The vCPU left its last park to run freely (not to step).
    free: AtomicBool,
    /// Keeping the history (a checkpoint exists).
    keeping: AtomicBool,
    /// Stop when the position reaches this ([`UNKNOWN`]: nowhere).
    run_to: AtomicU64,
    history: Mutex<History>,
    /// Why the last going back failed, if it did.
    pub note: Mutex<Option<String>>,
}

impl Timeline {
    pub fn new(position: u64) -> Self {
        Self {
            position: AtomicU64::new(position),
            steps: AtomicU64::new(0),
            exited_in_step: AtomicBool::new(false),
            free: AtomicBool::new(false),
            keeping: AtomicBool::new(false),
            run_to: AtomicU64::new(UNKNOWN),
            history: Mutex::new(History { base: position, ..History::default() }),
            note: Mutex::new(None),
        }
    }

    /// Guest exits along the present history.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// Instructions single-stepped since the last guest exit, or [`UNKNOWN`].
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::Acquire)
    }

    /// Counts one exit (on its vCPU's thread). The stop it calls for, when going forward again
    /// reaches the position asked for or leaves the history.
    pub fn on_exit(&self, e: &ExitEvent) -> Option<StopReason> {
        if !is_guest_exit(e) {
            return None;
        }
        let position = self.position.fetch_add(1, Ordering::AcqRel) + 1;
        self.steps.store(0, Ordering::Release);
        self.exited_in_step.store(true, Ordering::Release);
        let mut stop = None;
        if self.keeping.load(Ordering::Acquire) {
            let mark = ExitMark::of(e);
            let mut h = lock(&self.history);
            if h.seqs.len() == HISTORY {
                h.seqs.pop_front();
            }
            h.seqs.push_back((e.seq, position));
            let end = h.base + h.exits.len() as u64;
            if position <= h.base {
                // Before the history kept: nothing to check against.
            } else if position <= end {
                let at = (position - h.base - 1) as usize;
                let was = h.exits[at];
                if !was.same_exit(&mark) {
                    // Another path from here on: it is the history now.
                    h.exits.truncate(at);
                    h.exits.push_back(mark);
                    stop = Some(StopReason::Diverged { position, was: was.to_string(), now: mark.to_string() });
                }
            } else {
                if h.exits.len() == HISTORY {
                    h.exits.pop_front();
                    h.base += 1;
                }
                h.exits.push_back(mark);
            }
        }
        if stop.is_none() && self.run_to.load(Ordering::Acquire) == position {
            stop = Some(StopReason::Reached(position));
        }
        stop
    }

    /// Going forward again over the history: what exit `e` (about to be counted) read the first
    /// time, when it is the same exit and read something else now — the value to give the guest
    /// instead, so that it takes the same path (a clock, a status register, typed input).
    pub fn first_read(&self, e: &ExitEvent) -> Option<u64> {
        if !self.keeping.load(Ordering::Acquire) || !is_guest_exit(e) {
            return None;
        }
        let mark = ExitMark::of(e);
        let position = self.position() + 1;
        let h = lock(&self.history);
        let was = h.exits.get(position.checked_sub(h.base + 1)? as usize)?;
        (was.same_exit(&mark) && was.read != mark.read).then_some(was.read).flatten()
    }

    /// A single step of the debugger's completed (an exit it made resets the count instead).
    pub fn on_step(&self) {
        if !self.exited_in_step.load(Ordering::Acquire) {
            let s = self.steps.load(Ordering::Acquire);
            if s != UNKNOWN {
                self.steps.store(s + 1, Ordering::Release);
            }
        }
    }

    /// A vCPU leaves a park: to step (`step`) or to run freely (then the steps are not known
    /// until the next exit).
    pub fn on_leave_park(&self, step: bool) {
        self.exited_in_step.store(false, Ordering::Release);
        self.free.store(!step, Ordering::Release);
        if !step {
            self.steps.store(UNKNOWN, Ordering::Release);
        }
    }

    /// The vCPU parks; `at_exit`: right at a guest exit (an exit breakpoint, a position reached).
    /// Elsewhere after running freely (a breakpoint, a pause), the steps since the exit are not
    /// known.
    pub fn on_park(&self, at_exit: bool) {
        if self.free.load(Ordering::Acquire) && !at_exit {
            self.steps.store(UNKNOWN, Ordering::Release);
        }
    }

    /// Starts keeping the history (the first checkpoint).
    pub fn keep_history(&self) {
        if !self.keeping.swap(true, Ordering::AcqRel) {
            let mut h = lock(&self.history);
            h.base = self.position();
            h.exits.clear();
            h.seqs.clear();
        }
    }

    /// The VM is put back at `position`, `steps` instructions after that exit ([`UNKNOWN`]: a
    /// checkpoint the guest ran freely to).
    pub fn set_place(&self, position: u64, steps: u64) {
        self.position.store(position, Ordering::Release);
        self.steps.store(steps, Ordering::Release);
    }

    /// Going forward, stop when the position reaches `position` ([`UNKNOWN`]: do not).
    pub fn run_to(&self, position: u64) {
        self.run_to.store(position, Ordering::Release);
    }

    /// How far the history reaches: the last position it holds.
    pub fn history_end(&self) -> u64 {
        let h = lock(&self.history);
        h.base + h.exits.len() as u64
    }

    /// The position exit number `seq` was made at, if the history kept it.
    pub fn position_of(&self, seq: u64) -> Option<u64> {
        let h = lock(&self.history);
        let i = h.seqs.partition_point(|&(s, _)| s < seq);
        h.seqs.get(i).filter(|&&(s, _)| s == seq).map(|&(_, p)| p)
    }

    /// Forgets the history after `position` (the user chose another future).
    pub fn truncate(&self, position: u64) {
        let mut h = lock(&self.history);
        let keep = position.saturating_sub(h.base) as usize;
        h.exits.truncate(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Dir;

    fn out(port: u16, rip: u64) -> ExitEvent {
        ExitEvent {
            seq: 0,
            vcpu: 0,
            t_ns: 0,
            rip,
            kind: ExitKind::Io { port, dir: Dir::Out, size: 1, count: 1, data: 0 },
            device: None,
            insn: None,
            cost_ns: 0,
        }
    }

    #[test]
    fn positions_count_the_guests_exits_and_steps_since_the_last() {
        let t = Timeline::new(0);
        assert_eq!(t.on_exit(&out(0x80, 1)), None);
        assert_eq!(t.position(), 1);
        let step = ExitEvent { kind: ExitKind::Debug { exception: 1, pc: 0, dr6: 0, dr7: 0 }, ..out(0, 2) };
        t.on_exit(&step);
        assert_eq!(t.position(), 1, "a debugger's trap is not the guest's exit");
        t.on_leave_park(true);
        t.on_step();
        t.on_step();
        assert_eq!(t.steps(), 2);
        // A step whose instruction exits: the exit's count starts again at 0.
        t.on_leave_park(true);
        t.on_exit(&out(0x80, 3));
        t.on_step();
        assert_eq!((t.position(), t.steps()), (2, 0));
        t.on_leave_park(false);
        assert_eq!(t.steps(), UNKNOWN);
        // Running freely: an exit, then a breakpoint after it: how far after is not known.
        t.on_exit(&out(0x80, 4));
        t.on_park(false);
        assert_eq!((t.position(), t.steps()), (3, UNKNOWN));
        // Parked right at an exit (an exit breakpoint): just after it.
        t.on_leave_park(false);
        t.on_exit(&out(0x80, 5));
        t.on_park(true);
        assert_eq!((t.position(), t.steps()), (4, 0));
    }

    #[test]
    fn going_forward_again_is_checked_against_the_history() {
        let t = Timeline::new(0);
        t.keep_history();
        for rip in [10, 20, 30] {
            assert_eq!(t.on_exit(&out(0x80, rip)), None);
        }
        // Back to position 1, asked to stop at 3.
        t.set_place(1, 0);
        t.run_to(3);
        assert_eq!(t.on_exit(&out(0x80, 20)), None);
        assert_eq!(t.on_exit(&out(0x80, 30)), Some(StopReason::Reached(3)));
        // Back again, and this time the guest goes elsewhere at position 2.
        t.set_place(1, 0);
        let diverged = t.on_exit(&out(0x3f8, 21));
        assert!(matches!(diverged, Some(StopReason::Diverged { position: 2, .. })), "{diverged:?}");
        assert_eq!(t.history_end(), 2, "the new path is the history");
    }

    #[test]
    fn going_forward_again_a_read_gets_what_it_read_the_first_time() {
        let t = Timeline::new(0);
        t.keep_history();
        let read =
            |data| ExitEvent { kind: ExitKind::Io { port: 0x71, dir: Dir::In, size: 1, count: 1, data }, ..out(0, 7) };
        t.on_exit(&read(0x26));
        assert_eq!(t.first_read(&read(0x30)), None, "at the end of the history: nothing to give");
        t.set_place(0, 0);
        assert_eq!(t.first_read(&read(0x30)), Some(0x26), "the clock moved on: the first value");
        assert_eq!(t.first_read(&read(0x26)), None, "the same value: nothing to change");
        assert_eq!(t.on_exit(&read(0x26)), None, "and the exit is the same exit");
    }

    #[test]
    fn an_exits_number_names_its_position_on_either_pass() {
        let t = Timeline::new(0);
        t.keep_history();
        for (seq, rip) in [(5, 10), (6, 20), (9, 30)] {
            t.on_exit(&ExitEvent { seq, ..out(0x80, rip) });
        }
        t.set_place(1, 0);
        t.on_exit(&ExitEvent { seq: 12, ..out(0x80, 20) });
        assert_eq!([5, 6, 9, 12, 7].map(|s| t.position_of(s)), [Some(1), Some(2), Some(3), Some(2), None]);
    }
}

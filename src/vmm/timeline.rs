//! The guest's timeline: where the VM is, counted in the guest's own exits (not the debugger's
//! single-step traps and breakpoints, nor the exits a watched page makes), and the instructions
//! single-stepped since the last of them — or since a stop the guest ran freely to, which is
//! named by what it looked like there (its registers and a digest of RAM: a [`Landmark`]).
//!
//! Once a checkpoint exists the timeline also keeps the history of those exits, and of the
//! single steps taken between them, so that going back and running forward again is checked exit
//! by exit and step by step: if the guest takes another path (an interrupt at another
//! instruction, a clock read, a value no exit carries such as `rdtsc`), the run stops where it
//! left the history and says so — never a silent wrong answer.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kvm_bindings::kvm_regs;

use crate::debug::StopReason;
use crate::sync::lock;
use crate::trace::{Dir, ExitEvent, ExitKind};
use crate::vmm::bus::RAM_DEVICE;

/// Not known: the guest is running freely.
pub const UNKNOWN: u64 = u64::MAX;

/// Exits the history keeps at most (48 bytes each); older ones are no longer checked.
const HISTORY: usize = 8 << 20;

/// Single steps the trails keep at most (16 bytes each); the oldest bases' are forgotten first.
const TRAILS: usize = 2 << 20;

/// A stop the guest ran freely to (a breakpoint, a pause): how many instructions after the last
/// exit is not known, so it is named by the state there. Registers alone could repeat (a loop
/// that only writes memory); with the RAM's digest two equal landmarks are the same state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Landmark {
    pub regs: kvm_regs,
    /// The linear address of its instruction (RIP through the code segment's base).
    pub code: u64,
    /// [`crate::vmm::memory::GuestRam::digest`] there, once taken (while the vCPU is parked
    /// there, before it runs on).
    pub ram: Option<u64>,
}

impl Landmark {
    /// The same state: the same registers and, both taken, the same RAM.
    pub fn same_as(&self, other: &Landmark) -> bool {
        self.regs == other.regs && self.ram.is_some() && self.ram == other.ram
    }
}

/// A place on the timeline: after exit `exits` (its instruction finished), or at a landmark the
/// guest ran freely to after it, and then `steps` instructions single-stepped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    pub exits: u64,
    pub mark: Option<Landmark>,
    pub steps: u64,
}

impl Place {
    /// Right after exit `exits`.
    pub fn at_exit(exits: u64) -> Self {
        Self { exits, mark: None, steps: 0 }
    }

    /// `n` instructions after this place.
    pub fn plus(self, n: u64) -> Self {
        Self { steps: self.steps + n, ..self }
    }

    /// Whether this place is known to come no later than `other` (when it cannot be told — a
    /// landmark and a count of steps from the same exit — it is not).
    pub fn known_not_after(&self, other: &Place) -> bool {
        if self.exits != other.exits {
            return self.exits < other.exits;
        }
        match (&self.mark, &other.mark) {
            (None, None) => self.steps <= other.steps,
            (None, Some(_)) => self.steps == 0,
            (Some(a), Some(b)) => a.same_as(b) && self.steps <= other.steps,
            (Some(_), None) => false,
        }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.mark {
            None => write!(f, "after exit {}", self.exits)?,
            Some(m) => write!(f, "at rip {:#x} after exit {}", m.regs.rip, self.exits)?,
        }
        match self.steps {
            0 | UNKNOWN => Ok(()),
            s => write!(f, " + {s} instruction{}", if s == 1 { "" } else { "s" }),
        }
    }
}

/// Why going back in time could not be done; the guest is then where it ended up, which the
/// stop says.
#[derive(Debug, thiserror::Error)]
pub enum TravelError {
    #[error("going back follows one vCPU; this VM has {0}")]
    ManyVcpus(usize),
    #[error("no checkpoint before the present to go back from (--checkpoint-every, :checkpoint, monitor checkpoint)")]
    NoCheckpoint,
    #[error("{0} is before the first checkpoint")]
    BeforeFirstCheckpoint(Box<Place>),
    #[error("pause the guest first (space)")]
    Running,
    #[error("the run ended while going forward again")]
    RunEnded,
    #[error("going forward again took longer than {0} s")]
    TooLong(u64),
    #[error("interrupted by the user at {0}")]
    Cancelled(Box<Place>),
    #[error("cancelled: back where it started ({0})")]
    CancelledBack(Box<Place>),
    #[error("{0}")]
    Diverged(String),
    #[error("going forward again, exit {next} came before the stop at {place}: the guest took another path")]
    LandmarkLost { place: Box<Place>, next: u64 },
    #[error("stepping from {0} did not come back to the present (more than {1} instructions, or another path)")]
    PresentLost(Box<Place>, u64),
    #[error("it is not on the timeline kept (the first checkpoint is at exit {0})")]
    NotKept(u64),
    #[error("the disks could not be taken back with the checkpoint: {0}")]
    Disks(String),
    #[error("checkpoint {0}")]
    Budget(crate::vmm::snapshot::checkpoints::OverBudget),
    #[error("the breakpoint's stop was not found again")]
    StopLost,
    #[error(transparent)]
    Snapshot(#[from] crate::vmm::snapshot::SnapshotError),
    #[error("{0}")]
    Control(String),
}

impl TravelError {
    /// Whether the guest is still where it was before the command (nothing was re-executed).
    pub fn left_in_place(&self) -> bool {
        matches!(
            self,
            TravelError::ManyVcpus(_)
                | TravelError::NoCheckpoint
                | TravelError::Running
                | TravelError::CancelledBack(_)
        )
    }
}

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
    /// A digest of the general registers at the exit and of the value written: a difference
    /// in data no exit carries (a TSC read, a random number) shows at the next exit.
    pub data: u64,
}

/// The digest [`ExitMark::data`] keeps of the registers at an exit and the value it writes.
pub fn data_digest(regs: &kvm_regs, e: &ExitEvent) -> u64 {
    let written = match e.kind {
        ExitKind::Io { dir: Dir::Out, data, .. }
        | ExitKind::Mmio { dir: Dir::Out, data, .. }
        | ExitKind::Msr { dir: Dir::Out, data, .. } => data,
        _ => 0,
    };
    digest(regs, written)
}

/// The general registers and one more word, folded.
fn digest(r: &kvm_regs, more: u64) -> u64 {
    let words = [
        r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15,
        more,
    ];
    words.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, w| (h ^ w).wrapping_mul(0x100_0000_01b3).rotate_left(29))
}

/// Where single steps are counted from: an exit, and the landmark after it (0: none).
type TrailBase = (u64, u64);

/// The base of the steps taken from after exit `exits`, or from `mark` after it.
fn trail_base(exits: u64, mark: Option<&Landmark>) -> TrailBase {
    (exits, mark.map_or(0, |m| digest(&m.regs, m.code ^ m.regs.rip ^ m.regs.rflags) | 1))
}

/// What a single step was seen to end in: a digest of the registers (RIP and flags included),
/// and RIP, to say where it was.
#[derive(Clone, Copy, PartialEq)]
struct StepState {
    digest: u64,
    rip: u64,
}

impl StepState {
    fn of(regs: &kvm_regs) -> Self {
        Self { digest: digest(regs, regs.rip ^ regs.rflags.rotate_left(32)), rip: regs.rip }
    }
}

/// The states single steps were seen to end in, from each exit or landmark they were counted
/// from: going forward again, each step is checked against them, so a path that depends on
/// data no exit carries (a loop on `rdtsc`, a ring a device fills) is caught at the step where
/// it parts, not only at the next exit — or never, when the exit after finds the same registers.
#[derive(Default)]
struct Trails {
    by_base: HashMap<TrailBase, Vec<StepState>>,
    /// Bases in the order their first step was seen, to forget the oldest first.
    order: VecDeque<TrailBase>,
    held: usize,
}

impl Trails {
    /// Step `n` (from 1) from `base` ended in `now`: what it ended in before, when that was
    /// another state (from there on `now` is kept instead: it is the history now).
    fn check(&mut self, base: TrailBase, n: u64, now: StepState) -> Option<StepState> {
        let i = (n - 1) as usize;
        if i == 0 && !self.by_base.contains_key(&base) {
            self.order.push_back(base);
        }
        let trail = match i {
            0 => self.by_base.entry(base).or_default(),
            _ => self.by_base.get_mut(&base)?,
        };
        let was = match trail.get(i) {
            Some(&was) if was == now => return None,
            Some(&was) => {
                self.held -= trail.len() - i;
                trail.truncate(i);
                Some(was)
            }
            None if trail.len() == i => None,
            // Steps before it were forgotten: nothing to check against.
            None => return None,
        };
        trail.push(now);
        self.held += 1;
        while self.held > TRAILS
            && let Some(oldest) = self.order.pop_front()
        {
            self.held -= self.by_base.remove(&oldest).map_or(0, |t| t.len());
        }
        was
    }

    /// Forgets the steps counted from exit `exits` on (a future that is gone).
    fn forget_from(&mut self, exits: u64) {
        let held = &mut self.held;
        self.by_base.retain(|base, trail| {
            let keep = base.0 < exits;
            if !keep {
                *held -= trail.len();
            }
            keep
        });
        self.order.retain(|base| base.0 < exits);
    }
}

impl ExitMark {
    pub fn of(e: &ExitEvent, data: u64) -> Self {
        let (at, read) = match e.kind {
            ExitKind::Io { port, dir: Dir::In, count: 1, data, .. } => (port as u64, Some(data)),
            ExitKind::Io { port, .. } => (port as u64, None),
            ExitKind::Mmio { addr, dir: Dir::In, data, .. } => (addr, Some(data)),
            ExitKind::Mmio { addr, .. } => (addr, None),
            ExitKind::Msr { index, dir: Dir::In, data } => (index as u64, Some(data)),
            ExitKind::Msr { index, .. } => (index as u64, None),
            _ => (0, None),
        };
        Self { vcpu: e.vcpu, reason: e.kind.reason(), at, rip: e.rip, read, data }
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

/// A recording being followed (`replay --exec`): the exits it holds, in the order the guest made
/// them, from `start` on. Each exit made is checked against the one recorded there, and a read
/// gets the value recorded; the first that differs ends the following, said.
pub struct Follow {
    marks: Vec<ExitMark>,
    start: u64,
    /// Where the guest left the recording ([`UNKNOWN`]: it has not).
    left: AtomicU64,
    why: Mutex<Option<String>>,
}

/// How a re-execution went against its recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowVerdict {
    /// The recording's exits.
    pub recorded: u64,
    /// The exits made again.
    pub made: u64,
    /// Where the guest left the recording, and how; `None` while it followed it.
    pub left: Option<(u64, String)>,
    /// The recording's last exit.
    pub last: Option<String>,
}

impl FollowVerdict {
    /// Every exit made as recorded, and as many.
    pub fn exact(&self) -> bool {
        self.left.is_none() && self.made == self.recorded
    }
}

impl std::fmt::Display for FollowVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.left {
            Some((at, why)) => write!(f, "left the recording at exit {at} of {}: {why}", self.recorded),
            None if self.made < self.recorded => {
                write!(f, "the run ended after {} of the recording's {} exits", self.made, self.recorded)
            }
            None => write!(
                f,
                "followed the recording exactly: {} exits, the last {}",
                self.made,
                self.last.as_deref().unwrap_or("none")
            ),
        }
    }
}

impl Follow {
    /// The exit recorded at `position`.
    fn expected(&self, position: u64) -> Option<&ExitMark> {
        self.marks.get(position.checked_sub(self.start + 1)? as usize)
    }

    /// Checks the exit made at `position` (`written`: the value it wrote) against the recording.
    fn check(&self, position: u64, made: &ExitMark, written: u64) {
        if self.left.load(Ordering::Acquire) != UNKNOWN {
            return;
        }
        let why = match self.expected(position) {
            None => format!("the guest made {made}, past the recording's end"),
            Some(was) if !was.same_exit(made) => format!("the recording has {was}; the guest made {made}"),
            Some(was) if was.data != written => format!("{was} wrote {written:#x}; the recording has {:#x}", was.data),
            Some(_) => return,
        };
        crate::notice::say(format!("replay --exec: {why}"));
        *lock(&self.why) = Some(why);
        self.left.store(position - self.start, Ordering::Release);
    }
}

/// The value an exit wrote (0 for one that wrote nothing): what a recording holds of its data.
pub fn written(e: &ExitEvent) -> u64 {
    match e.kind {
        ExitKind::Io { dir: Dir::Out, data, .. }
        | ExitKind::Mmio { dir: Dir::Out, data, .. }
        | ExitKind::Msr { dir: Dir::Out, data, .. } => data,
        _ => 0,
    }
}

/// The guest exits of a recording as a [`Follow`] wants them (their data: the value written).
pub fn recorded_marks<'a>(exits: impl IntoIterator<Item = &'a ExitEvent>) -> Vec<ExitMark> {
    exits.into_iter().filter(|e| is_guest_exit(e)).map(|e| ExitMark::of(e, written(e))).collect()
}

/// Whether an exit counts on the timeline: the guest's own I/O and events. The debugger's traps
/// and watched pages do not, nor an instruction the host could not emulate (kvmscope finishes it,
/// or delivers the exception it raises, or the run ends there): the guest's instruction is
/// counted in steps like any other, so a place "just after an exit" is never one with an
/// exception half delivered.
pub fn is_guest_exit(e: &ExitEvent) -> bool {
    !matches!(e.kind, ExitKind::Debug { .. } | ExitKind::Breakpoint { .. } | ExitKind::InternalError { .. })
        && e.device != Some(RAM_DEVICE)
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
    /// The stop the vCPU ran freely to since the last exit, if it did ([`Self::marked`] says
    /// whether there is one without a lock, on the exit path).
    mark: Mutex<Option<Landmark>>,
    marked: AtomicBool,
    /// Instructions single-stepped since the exit or the mark, or [`UNKNOWN`] while it runs freely.
    steps: AtomicU64,
    /// Going over the past for the debugger (the legs of a reverse command): its exits are not
    /// the guest's news.
    replaying: AtomicBool,
    /// Exits made again going over the past, which the counters and the recording leave out.
    reexecuted: AtomicU64,
    /// A guest exit happened since the vCPU last left a park (the step under way made it).
    exited_in_step: AtomicBool,
    /// The vCPU left its last park to run freely (not to step).
    free: AtomicBool,
    /// Keeping the history (a checkpoint exists).
    keeping: AtomicBool,
    /// The furthest position the guest has reached: exits up to it happened once already.
    reached: AtomicU64,
    /// Exits up to this position happened once already: going forward again, they are not news.
    /// Set only when the VM is put back (not raced by vCPUs exiting side by side, as `reached` is).
    known: AtomicU64,
    /// Stop when the position reaches this ([`UNKNOWN`]: nowhere).
    run_to: AtomicU64,
    /// The position when `run_to` was set: how far going forward has got is counted from it.
    run_from: AtomicU64,
    history: Mutex<History>,
    trails: Mutex<Trails>,
    /// Why the last going back failed, if it did.
    pub note: Mutex<Option<String>>,
    /// The user asked the going back under way to stop where it is.
    pub cancel: AtomicBool,
    /// Where the guest left the history since last asked, if it did: at an exit (steps 0), or
    /// at a step after one. The checkpoints from there on belong to a future that is gone.
    left_at: Mutex<Option<(u64, u64)>>,
    /// The recording followed (`replay --exec`), if one is.
    follow: std::sync::OnceLock<Follow>,
}

impl Timeline {
    pub fn new(position: u64) -> Self {
        Self {
            position: AtomicU64::new(position),
            mark: Mutex::new(None),
            marked: AtomicBool::new(false),
            steps: AtomicU64::new(0),
            replaying: AtomicBool::new(false),
            reexecuted: AtomicU64::new(0),
            exited_in_step: AtomicBool::new(false),
            free: AtomicBool::new(false),
            keeping: AtomicBool::new(false),
            reached: AtomicU64::new(position),
            known: AtomicU64::new(position),
            run_to: AtomicU64::new(UNKNOWN),
            run_from: AtomicU64::new(position),
            history: Mutex::new(History { base: position, ..History::default() }),
            trails: Mutex::new(Trails::default()),
            note: Mutex::new(None),
            cancel: AtomicBool::new(false),
            left_at: Mutex::new(None),
            follow: std::sync::OnceLock::new(),
        }
    }

    /// Follows a recording's exits (`replay --exec`) from the present position on.
    pub fn follow(&self, marks: Vec<ExitMark>) {
        let start = self.position();
        let _ = self.follow.set(Follow { marks, start, left: AtomicU64::new(UNKNOWN), why: Mutex::new(None) });
    }

    /// How the re-execution went against the recording followed, if one is.
    pub fn follow_verdict(&self) -> Option<FollowVerdict> {
        let f = self.follow.get()?;
        let left = match f.left.load(Ordering::Acquire) {
            UNKNOWN => None,
            at => Some((at, lock(&f.why).clone().unwrap_or_default())),
        };
        Some(FollowVerdict {
            recorded: f.marks.len() as u64,
            made: self.reached.load(Ordering::Acquire).saturating_sub(f.start),
            left,
            last: f.marks.last().map(|m| m.to_string()),
        })
    }

    /// Guest exits along the present history.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// Where the VM is (while a vCPU runs freely, `steps` is [`UNKNOWN`]).
    pub fn place(&self) -> Place {
        let mark = *lock(&self.mark);
        Place { exits: self.position(), mark, steps: self.steps.load(Ordering::Acquire) }
    }

    fn set_between(&self, mark: Option<Landmark>, steps: u64) {
        let mut m = lock(&self.mark);
        *m = mark;
        self.marked.store(mark.is_some(), Ordering::Release);
        self.steps.store(steps, Ordering::Release);
    }

    /// The debugger is going over the past (while `on`): the exits are not news.
    pub fn set_replaying(&self, on: bool) {
        self.replaying.store(on, Ordering::Release);
    }

    /// Whether the debugger is going over the past.
    pub fn is_replaying(&self) -> bool {
        self.replaying.load(Ordering::Acquire)
    }

    /// Exits made again going over the past, so far.
    pub fn reexecuted(&self) -> u64 {
        self.reexecuted.load(Ordering::Acquire)
    }

    /// Counts one exit (on its vCPU's thread), `data` its [`data_digest`]: the stop it calls for,
    /// when going forward again reaches the position asked for or leaves the history, and
    /// whether the exit is news — a guest exit at a position never reached before, or the
    /// debugger's own trap outside a reverse command's legs — which the counters, the recording
    /// and the views take (an exit made again going over the past is counted apart).
    pub fn on_exit(&self, e: &ExitEvent, data: u64) -> (Option<StopReason>, bool) {
        if !is_guest_exit(e) {
            return (None, !self.replaying.load(Ordering::Acquire));
        }
        let position = self.position.fetch_add(1, Ordering::AcqRel) + 1;
        self.reached.fetch_max(position, Ordering::AcqRel);
        let mut new = position > self.known.load(Ordering::Acquire);
        if let (true, Some(f)) = (new, self.follow.get()) {
            f.check(position, &ExitMark::of(e, 0), written(e));
        }
        // Stepping, the step ends with this exit; running freely, the guest goes on past it.
        let steps = if self.free.load(Ordering::Acquire) { UNKNOWN } else { 0 };
        if self.marked.load(Ordering::Acquire) {
            self.set_between(None, steps);
        } else {
            self.steps.store(steps, Ordering::Release);
        }
        self.exited_in_step.store(true, Ordering::Release);
        let mut stop = None;
        if self.keeping.load(Ordering::Acquire) {
            let mark = ExitMark::of(e, data);
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
                let diverged = if !was.same_exit(&mark) {
                    Some((was.to_string(), mark.to_string()))
                } else if was.data != mark.data {
                    Some((
                        format!("{was} with other registers or data written"),
                        "the same exit, but the guest's registers or the value written differ (it read something \
                         no exit carries: rdtsc, rdrand, an interrupt's timing)"
                            .to_string(),
                    ))
                } else {
                    None
                };
                if let Some((was_text, now_text)) = diverged {
                    // Another path from here on: it is the history now.
                    h.exits.truncate(at);
                    h.exits.push_back(mark);
                    self.reached.store(position, Ordering::Release);
                    self.known.store(position, Ordering::Release);
                    self.left(position, 0);
                    new = true;
                    stop = Some(StopReason::Diverged { position, was: was_text, now: now_text });
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
        if !new {
            self.reexecuted.fetch_add(1, Ordering::Relaxed);
        }
        (stop, new)
    }

    /// Going forward again over the history: what exit `e` (about to be counted) read the first
    /// time, when it is the same exit and read something else now — the value to give the guest
    /// instead, so that it takes the same path (a clock, a status register, typed input).
    pub fn first_read(&self, e: &ExitEvent) -> Option<u64> {
        let keeping = self.keeping.load(Ordering::Acquire);
        if (!keeping && self.follow.get().is_none()) || !is_guest_exit(e) {
            return None;
        }
        let mark = ExitMark::of(e, 0);
        let position = self.position() + 1;
        let kept = || {
            let h = lock(&self.history);
            h.exits.get(position.checked_sub(h.base + 1)? as usize).copied()
        };
        // Gone over before: what it read then; else what the recording followed says it read.
        let followed = || {
            let f = self.follow.get()?;
            (f.left.load(Ordering::Acquire) == UNKNOWN).then(|| f.expected(position).copied()).flatten()
        };
        let was = keeping.then(kept).flatten().or_else(followed)?;
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

    /// A vCPU leaves a park: to step (`step`) or to run freely (then where it is is not known
    /// until it stops or exits).
    pub fn on_leave_park(&self, step: bool) {
        self.exited_in_step.store(false, Ordering::Release);
        self.free.store(!step, Ordering::Release);
        if !step {
            self.steps.store(UNKNOWN, Ordering::Release);
        }
    }

    /// The vCPU parks with `regs`, its instruction at linear address `code`; `at_exit`: right at
    /// a guest exit (an exit breakpoint, a position reached). Elsewhere after running freely (a
    /// breakpoint, a pause) the place is a new landmark, its RAM digest taken when it is needed.
    /// After a single step, the state is checked against the steps seen from the same exit or
    /// landmark before: the stop to make instead, when the guest parted from them.
    pub fn on_park(&self, at_exit: bool, regs: &kvm_regs, code: u64) -> Option<StopReason> {
        let steps = self.steps.load(Ordering::Acquire);
        if at_exit {
            self.set_between(None, 0);
            return None;
        }
        if self.free.load(Ordering::Acquire) && steps == UNKNOWN {
            self.set_between(Some(Landmark { regs: *regs, code, ram: None }), 0);
            return None;
        }
        if steps == 0 || steps == UNKNOWN || !self.keeping.load(Ordering::Acquire) {
            return None;
        }
        let mark = *lock(&self.mark);
        let position = self.position();
        let now = StepState::of(regs);
        let was = lock(&self.trails).check(trail_base(position, mark.as_ref()), steps, now)?;
        // Another path from here on: the exits after this one are of a future that is gone.
        self.forget_exits_after(position);
        self.left(position, steps);
        let from = match mark {
            Some(m) => format!("the stop at {:#x} that followed it", m.regs.rip),
            None => "that exit".to_string(),
        };
        Some(StopReason::Diverged {
            position,
            was: format!("at rip {:#x} step {steps} after {from}", was.rip),
            now: format!(
                "at rip {:#x} with other registers (something no exit carries reached the guest: rdtsc, rdrand, an \
                 interrupt's timing, memory a device wrote)",
                now.rip
            ),
        })
    }

    /// Sets the digest of RAM at the landmark the vCPU is parked on (steps 0), if it has none.
    pub fn mark_ram(&self, digest: impl FnOnce() -> u64) {
        let mut mark = lock(&self.mark);
        if let Some(m) = mark.as_mut()
            && m.ram.is_none()
            && self.steps.load(Ordering::Acquire) == 0
        {
            m.ram = Some(digest());
        }
    }

    /// Whether the history is kept (there was a first checkpoint: time travel is on).
    pub fn is_keeping(&self) -> bool {
        self.keeping.load(Ordering::Acquire)
    }

    /// Starts keeping the history (the first checkpoint).
    pub fn keep_history(&self) {
        if !self.keeping.swap(true, Ordering::AcqRel) {
            *lock(&self.trails) = Trails::default();
            let mut h = lock(&self.history);
            h.base = self.position();
            h.exits.clear();
            h.seqs.clear();
        }
    }

    /// The VM is put back at `place`.
    pub fn set_place(&self, place: &Place) {
        self.position.store(place.exits, Ordering::Release);
        self.known.store(self.reached.load(Ordering::Acquire), Ordering::Release);
        self.set_between(place.mark, place.steps);
    }

    /// Going forward, stop when the position reaches `position` ([`UNKNOWN`]: do not).
    pub fn run_to(&self, position: u64) {
        self.run_from.store(self.position(), Ordering::Release);
        self.run_to.store(position, Ordering::Release);
    }

    /// While going forward to a position: the exits made so far of those to make.
    pub fn progress(&self) -> Option<(u64, u64)> {
        let to = self.run_to.load(Ordering::Acquire);
        let from = self.run_from.load(Ordering::Acquire);
        (to != UNKNOWN).then(|| (self.position().saturating_sub(from).min(to - from), to.saturating_sub(from)))
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

    /// Where the guest left the history since this was last asked, if it did: the checkpoints
    /// from that exit on are of another future.
    pub fn take_left_at(&self) -> Option<(u64, u64)> {
        lock(&self.left_at).take()
    }

    /// The guest left the history at exit `exits` (`steps` 0) or at step `steps` after it. The
    /// steps seen after that exit go too when the exit itself differs (a step's trail keeps its
    /// steps before the one that differed).
    fn left(&self, exits: u64, steps: u64) {
        let mut left = lock(&self.left_at);
        *left = Some(left.map_or((exits, steps), |was| was.min((exits, steps))));
        lock(&self.trails).forget_from(if steps == 0 { exits } else { exits + 1 });
    }

    /// Forgets the history after `position` (the user chose another future).
    pub fn truncate(&self, position: u64) {
        lock(&self.trails).forget_from(position);
        self.forget_exits_after(position);
    }

    fn forget_exits_after(&self, position: u64) {
        let mut h = lock(&self.history);
        let keep = position.saturating_sub(h.base) as usize;
        h.exits.truncate(keep);
        self.reached.store(position, Ordering::Release);
        self.known.store(position, Ordering::Release);
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

    fn regs(rip: u64) -> kvm_regs {
        kvm_regs { rip, ..Default::default() }
    }

    #[test]
    fn positions_count_the_guests_exits_and_steps_since_the_last() {
        let t = Timeline::new(0);
        assert_eq!(t.on_exit(&out(0x80, 1), 0), (None, true));
        assert_eq!(t.position(), 1);
        let step = ExitEvent { kind: ExitKind::Debug { exception: 1, pc: 0, dr6: 0, dr7: 0 }, ..out(0, 2) };
        t.on_exit(&step, 0);
        assert_eq!(t.position(), 1, "a debugger's trap is not the guest's exit");
        t.on_leave_park(true);
        t.on_step();
        t.on_step();
        assert_eq!(t.place(), Place::at_exit(1).plus(2));
        // A step whose instruction exits: the exit's count starts again at 0.
        t.on_leave_park(true);
        t.on_exit(&out(0x80, 3), 0);
        t.on_step();
        assert_eq!(t.place(), Place::at_exit(2));
        t.on_leave_park(false);
        assert_eq!(t.place().steps, UNKNOWN);
        // Running freely: an exit, then a breakpoint after it: a landmark, steps counted from it.
        t.on_exit(&out(0x80, 4), 0);
        t.on_park(false, &regs(0x44), 0x44);
        let place = t.place();
        assert_eq!((place.exits, place.steps, place.mark.map(|m| m.regs.rip)), (3, 0, Some(0x44)));
        t.mark_ram(|| 7);
        t.on_leave_park(true);
        t.on_step();
        assert_eq!(
            t.place(),
            Place { exits: 3, mark: Some(Landmark { regs: regs(0x44), code: 0x44, ram: Some(7) }), steps: 1 }
        );
        // Parked right at an exit (an exit breakpoint): just after it.
        t.on_leave_park(false);
        t.on_exit(&out(0x80, 5), 0);
        t.on_park(true, &regs(5), 5);
        assert_eq!(t.place(), Place::at_exit(4));
    }

    #[test]
    fn places_are_ordered_only_where_it_is_known() {
        let mark = |rip, ram| Some(Landmark { regs: regs(rip), code: rip, ram: Some(ram) });
        let l = Place { exits: 3, mark: mark(0x10, 1), steps: 2 };
        assert!(Place::at_exit(2).plus(50).known_not_after(&l));
        assert!(Place::at_exit(3).known_not_after(&l), "an exit comes before the stops after it");
        assert!(!Place::at_exit(3).plus(1).known_not_after(&l), "how far the landmark is from the exit is not known");
        assert!(Place { steps: 1, ..l }.known_not_after(&l));
        assert!(!Place { mark: mark(0x10, 2), ..l }.known_not_after(&l), "another RAM: another landmark");
        assert!(!l.known_not_after(&Place::at_exit(3).plus(9)));
    }

    #[test]
    fn going_forward_again_is_checked_against_the_history() {
        let t = Timeline::new(0);
        t.keep_history();
        for rip in [10, 20, 30] {
            assert_eq!(t.on_exit(&out(0x80, rip), rip), (None, true));
        }
        // Back to position 1, asked to stop at 3.
        t.set_place(&Place::at_exit(1));
        t.run_to(3);
        assert_eq!(t.on_exit(&out(0x80, 20), 20), (None, false), "made again: not news");
        assert_eq!(t.on_exit(&out(0x80, 30), 30).0, Some(StopReason::Reached(3)));
        assert_eq!(t.reexecuted(), 2);
        // Back again, and this time the guest goes elsewhere at position 2.
        t.set_place(&Place::at_exit(1));
        let (diverged, new) = t.on_exit(&out(0x3f8, 21), 21);
        assert!(new, "another path: news");
        assert!(matches!(diverged, Some(StopReason::Diverged { position: 2, .. })), "{diverged:?}");
        assert_eq!(t.history_end(), 2, "the new path is the history");
        // The same exit with other data (a TSC read went into a register): said too.
        t.set_place(&Place::at_exit(1));
        let diverged = t.on_exit(&out(0x3f8, 21), 99).0;
        assert!(matches!(&diverged, Some(StopReason::Diverged { position: 2, now, .. }) if now.contains("rdtsc")));
    }

    #[test]
    fn steps_going_forward_again_are_checked_against_the_steps_seen_before() {
        let t = Timeline::new(0);
        t.keep_history();
        t.on_exit(&out(0x80, 10), 0);
        t.on_exit(&out(0x80, 20), 0);
        let step = |rip, rax| {
            t.on_leave_park(true);
            t.on_step();
            t.on_park(false, &kvm_regs { rip, rax, ..Default::default() }, rip)
        };
        // Three steps after exit 2, seen the first time.
        assert_eq!([step(0x21, 1), step(0x22, 2), step(0x23, 3)], [None, None, None]);
        // Back to exit 2: the same steps again, then one that ends elsewhere (a loop on the TSC).
        t.set_place(&Place::at_exit(2));
        assert_eq!(step(0x21, 1), None);
        let parted = step(0x22, 7);
        assert!(
            matches!(&parted, Some(StopReason::Diverged { position: 2, was, now })
                if was.contains("0x22 step 2 after that exit") && now.contains("rdtsc")),
            "{parted:?}"
        );
        assert_eq!(t.history_end(), 2, "the exits after the step are of a future that is gone");
        assert_eq!(t.take_left_at(), Some((2, 2)));
        // The new path is the trail now: going over it again is not a divergence.
        t.set_place(&Place::at_exit(2));
        assert_eq!([step(0x21, 1), step(0x22, 7)], [None, None]);
        // Steps from a stop the guest ran freely to are counted from it, apart.
        t.on_leave_park(false);
        assert_eq!(t.on_park(false, &regs(0x30), 0x30), None, "a landmark");
        assert_eq!(step(0x21, 9), None, "another base: nothing to check against");
        // An exit that differs: the steps seen after the one it replaces are not its steps.
        // (Made by a step: the steps after it are counted from it.)
        t.set_place(&Place::at_exit(1));
        t.on_leave_park(true);
        assert!(matches!(t.on_exit(&out(0x3f8, 20), 0).0, Some(StopReason::Diverged { position: 2, .. })));
        t.on_park(true, &regs(0x30), 0x30);
        assert_eq!(step(0x31, 4), None, "the first step after the new exit 2");
        // Forgotten with the future it was in.
        t.truncate(1);
        t.set_place(&Place::at_exit(2));
        assert_eq!(step(0x21, 5), None);
    }

    #[test]
    fn going_forward_again_a_read_gets_what_it_read_the_first_time() {
        let t = Timeline::new(0);
        t.keep_history();
        let read =
            |data| ExitEvent { kind: ExitKind::Io { port: 0x71, dir: Dir::In, size: 1, count: 1, data }, ..out(0, 7) };
        t.on_exit(&read(0x26), 0);
        assert_eq!(t.first_read(&read(0x30)), None, "at the end of the history: nothing to give");
        t.set_place(&Place::at_exit(0));
        assert_eq!(t.first_read(&read(0x30)), Some(0x26), "the clock moved on: the first value");
        assert_eq!(t.first_read(&read(0x26)), None, "the same value: nothing to change");
        assert_eq!(t.on_exit(&read(0x26), 0).0, None, "and the exit is the same exit");
    }

    #[test]
    fn an_exits_number_names_its_position_on_either_pass() {
        let t = Timeline::new(0);
        t.keep_history();
        for (seq, rip) in [(5, 10), (6, 20), (9, 30)] {
            t.on_exit(&ExitEvent { seq, ..out(0x80, rip) }, 0);
        }
        t.set_place(&Place::at_exit(1));
        t.on_exit(&ExitEvent { seq: 12, ..out(0x80, 20) }, 0);
        assert_eq!([5, 6, 9, 12, 7].map(|s| t.position_of(s)), [Some(1), Some(2), Some(3), Some(2), None]);
    }
}

//! Going forward again, exactly: from a checkpoint put back to a place on the timeline — to its
//! exit (the timeline stops the guest there), to its landmark (a breakpoint of kvmscope's own on
//! the landmark's instruction, until registers and RAM are those it names), then its steps —
//! meeting on the way every stop the user's breakpoints, watchpoints and exit breakpoints make,
//! and every arrival at a breakpoint's address between them (a step landing on one, an exit
//! whose instruction ends on one): what a reverse-continue stops at.

use std::time::{Duration, Instant};

use super::{Place, TravelError};
use crate::controller::Controller;
use crate::debug::{Stop, StopReason};
use crate::sync::lock;
use crate::vmm::live_state;
use crate::vmm::timeline::{Landmark, UNKNOWN};

/// How long one leg of going forward may take before it is given up (gdb's Ctrl-C ends one at
/// once).
const LEG: Duration = Duration::from_secs(300);

/// Single steps taken at most to find an instruction between two exits.
pub(super) const MAX_STEPS: u64 = 4_000_000;

/// Says, for each stop of the user's met on the way, whether to stop there.
pub(super) type OnHit<'a> = &'a mut dyn FnMut(&Stop) -> bool;

/// Sets the timeline's position to stop at, and clears it when dropped (however the walk ends).
struct RunTo<'a>(&'a Controller);

impl<'a> RunTo<'a> {
    fn new(c: &'a Controller, position: u64) -> Self {
        c.shared().timeline.run_to(position);
        Self(c)
    }
}

impl Drop for RunTo<'_> {
    fn drop(&mut self) {
        self.0.shared().timeline.run_to(UNKNOWN);
    }
}

/// A breakpoint of kvmscope's own on a landmark's instruction while it is looked for: a
/// hardware one where a slot is free, else an int3. Removed when dropped.
struct Lookout<'a> {
    c: &'a Controller,
    gva: u64,
    hw: bool,
}

impl<'a> Lookout<'a> {
    /// `None` when the user has a breakpoint there already (it stops the guest as well).
    fn plant(c: &'a Controller, gva: u64) -> Result<Option<Self>, TravelError> {
        if c.breakpoint_at(gva) {
            return Ok(None);
        }
        if c.add_hw_breakpoint(gva).is_ok() {
            return Ok(Some(Self { c, gva, hw: true }));
        }
        c.add_sw_breakpoint(gva)?;
        Ok(Some(Self { c, gva, hw: false }))
    }
}

impl Drop for Lookout<'_> {
    fn drop(&mut self) {
        match self.hw {
            true => self.c.remove_hw_breakpoint(self.gva),
            false => self.c.remove_sw_breakpoint(self.gva),
        };
    }
}

/// Whether `stop` is a watchpoint's: made by the instruction before the place it is at, so it
/// belongs to the way there even where a stop at the place itself does not.
fn is_watch(stop: &Stop) -> bool {
    matches!(stop.reason, StopReason::Watchpoint { .. })
}

/// The linear address of a stop's instruction (what breakpoints are set on).
fn code_of(stop: &Stop) -> u64 {
    crate::decode::CpuMode::from(&stop.sregs).code_linear(stop.regs.rip)
}

impl Controller {
    /// Whether the user has an execution breakpoint at `gva`.
    pub(crate) fn breakpoint_at(&self, gva: u64) -> bool {
        let bps = self.shared().debug.breakpoints();
        bps.hw_exec_at(gva) || bps.sw_all().any(|b| b.gva == gva)
    }

    /// Whether `stop` is one of the user's (`lookout`: the address of kvmscope's own breakpoint
    /// meanwhile): a breakpoint, a watchpoint, an exit breakpoint, or a step that arrived at a
    /// breakpoint's address.
    fn is_users(&self, stop: &Stop, lookout: Option<u64>) -> bool {
        match &stop.reason {
            StopReason::SwBreakpoint(a) | StopReason::HwBreakpoint(a) => Some(*a) != lookout,
            StopReason::Watchpoint { .. } | StopReason::ExitBreakpoint(_) => true,
            StopReason::Step => self.breakpoint_at(code_of(stop)),
            _ => false,
        }
    }

    /// vCPU 0's stop, as an arrival at the breakpoint under it, if the user has one there.
    pub(super) fn arrival(&self) -> Option<Stop> {
        let stop = self.shared().debug.stop_of(0)?;
        let at = code_of(&stop);
        if !self.breakpoint_at(at) {
            return None;
        }
        let hw = self.shared().debug.breakpoints().hw_exec_at(at);
        let reason = if hw { StopReason::HwBreakpoint(at) } else { StopReason::SwBreakpoint(at) };
        Some(Stop { reason, ..stop })
    }

    /// Asks the going back under way to stop where it is (gdb's Ctrl-C).
    pub fn cancel_travel(&self) {
        self.shared().timeline.cancel.store(true, std::sync::atomic::Ordering::Release);
    }

    fn cancelled(&self) -> bool {
        self.shared().timeline.cancel.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits for a stop newer than `since` (the vCPUs may not have left their parks yet when
    /// this starts: an old stop does not count). Cancelled, the guest stops where it is.
    fn next_stop(&self, since: u64) -> Result<Stop, TravelError> {
        let deadline = Instant::now() + LEG;
        loop {
            if self.is_ending() {
                return Err(TravelError::RunEnded);
            }
            if let Some(stop) = self.wait_for_stop(since, Duration::from_millis(20)) {
                return Ok(stop);
            }
            if self.cancelled() || Instant::now() > deadline {
                self.pause();
                if !self.wait_all_stopped(Duration::from_secs(10)) {
                    return Err(TravelError::RunEnded);
                }
                return Err(match self.cancelled() {
                    true => TravelError::Cancelled(Box::new(self.place())),
                    false => TravelError::TooLong(LEG.as_secs()),
                });
            }
        }
    }

    /// Resumes and waits for the next stop.
    fn run_leg(&self) -> Result<Stop, TravelError> {
        if self.cancelled() {
            return Err(TravelError::Cancelled(Box::new(self.place())));
        }
        let since = self.stop_serial();
        self.resume();
        self.next_stop(since)
    }

    /// Single-steps vCPU 0 once; its stop (a step, or an exit breakpoint at the exit the
    /// instruction made: either way exactly one instruction).
    pub(super) fn step_once(&self) -> Result<Stop, TravelError> {
        if self.cancelled() {
            return Err(TravelError::Cancelled(Box::new(self.place())));
        }
        let since = self.stop_serial();
        self.step(0)?;
        let stop = self.next_stop(since)?;
        match stop.reason {
            StopReason::Diverged { .. } => Err(TravelError::Diverged(stop.reason.to_string())),
            _ => Ok(stop),
        }
    }

    /// Runs forward to just after exit `exits` (its instruction finished), through the stops on
    /// the way but one `hit` says to stop at, which it returns; `count_there`: an exit
    /// breakpoint at that exit itself is met too.
    fn forward_to_exit(&self, exits: u64, count_there: bool, hit: OnHit) -> Result<Option<Stop>, TravelError> {
        let timeline = &self.shared().timeline;
        if timeline.position() < exits {
            let _run_to = RunTo::new(self, exits);
            loop {
                let stop = self.run_leg()?;
                match &stop.reason {
                    StopReason::Reached(_) => break,
                    StopReason::Diverged { .. } => return Err(TravelError::Diverged(stop.reason.to_string())),
                    _ => {
                        // An exit breakpoint at that very exit stops the guest in its stead.
                        let there = timeline.position() >= exits;
                        if (!there || count_there) && self.is_users(&stop, None) && hit(&stop) {
                            return Ok(Some(stop));
                        }
                        if there {
                            break;
                        }
                    }
                }
            }
        }
        live_state::settle(self.shared())?;
        timeline.set_place(&Place::at_exit(exits));
        Ok(None)
    }

    /// Whether the stopped vCPU 0 is at `mark`: its registers, and RAM's digest.
    fn is_at(&self, mark: &Landmark) -> bool {
        let here = self.shared().debug.stop_of(0).map(|s| s.regs);
        here == Some(mark.regs) && mark.ram == Some(self.ram_digest())
    }

    /// From after exit `exits`, runs to the landmark `mark` the guest ran freely to the first
    /// time; `count_mark`: a stop of the user's at the landmark itself is met too.
    fn forward_to_mark(
        &self,
        exits: u64,
        mark: &Landmark,
        count_mark: bool,
        hit: OnHit,
    ) -> Result<Option<Stop>, TravelError> {
        let lost = || TravelError::LandmarkLost {
            place: Box::new(Place { exits, mark: Some(*mark), steps: 0 }),
            next: exits + 1,
        };
        if !self.is_at(mark) {
            let lookout = Lookout::plant(self, mark.code)?;
            let lookout_at = lookout.as_ref().map(|l| l.gva);
            let _run_to = RunTo::new(self, exits + 1);
            loop {
                let stop = self.run_leg()?;
                match &stop.reason {
                    StopReason::Reached(_) => return Err(lost()),
                    StopReason::Diverged { .. } => return Err(TravelError::Diverged(stop.reason.to_string())),
                    _ if self.shared().timeline.position() > exits => return Err(lost()),
                    _ => {}
                }
                let users = self.is_users(&stop, lookout_at);
                if stop.regs == mark.regs && self.is_at(mark) {
                    if users && (count_mark || is_watch(&stop)) && hit(&stop) {
                        return Ok(Some(stop));
                    }
                    break;
                }
                if users && hit(&stop) {
                    return Ok(Some(stop));
                }
            }
        }
        self.shared().timeline.set_place(&Place { exits, mark: Some(*mark), steps: 0 });
        Ok(None)
    }

    /// From where the VM is (a place known not after `target`: a checkpoint put back), forward
    /// to `target` exactly. `hit` meets each of the user's stops on the way and says whether to
    /// stop there (that stop is returned); `count_end`: one at `target` itself is met too (where
    /// a search interval ends at a checkpoint, not at the present).
    pub(super) fn reach(&self, target: &Place, count_end: bool, hit: OnHit) -> Result<Option<Stop>, TravelError> {
        let timeline = &self.shared().timeline;
        if timeline.position() < target.exits {
            let beyond = target.mark.is_some() || target.steps > 0;
            if let Some(stop) = self.forward_to_exit(target.exits, beyond || count_end, hit)? {
                return Ok(Some(stop));
            }
            // The exit's instruction may end on a breakpoint: an arrival there, which running
            // freely from the exit would have stopped at.
            if (beyond || count_end)
                && let Some(arrival) = self.arrival()
                && hit(&arrival)
            {
                return Ok(Some(arrival));
            }
        }
        if let Some(mark) = &target.mark {
            let on_it = timeline.place().mark.is_some_and(|m| m.same_as(mark));
            // A stop at the landmark itself is before the target when steps follow it.
            let count_mark = count_end || target.steps > 0;
            if !on_it && let Some(stop) = self.forward_to_mark(target.exits, mark, count_mark, hit)? {
                return Ok(Some(stop));
            }
        }
        let from = timeline.place().steps;
        if from == UNKNOWN || from > target.steps {
            return Err(TravelError::Control(format!("cannot count {target} from {}", timeline.place())));
        }
        for n in from..target.steps {
            let stop = self.step_once()?;
            let last = n + 1 == target.steps;
            if (!last || count_end || is_watch(&stop)) && self.is_users(&stop, None) {
                let stop = match stop.reason {
                    StopReason::Step => self.arrival().unwrap_or(stop),
                    _ => stop,
                };
                if hit(&stop) {
                    return Ok(Some(stop));
                }
            }
        }
        timeline.set_place(target);
        Ok(None)
    }

    /// Goes to `target`: from the newest checkpoint known not after it, forward.
    pub(super) fn go_to(&self, target: &Place) -> Result<(), TravelError> {
        let anchor = lock(&self.shared().checkpoints).anchor_for(target).map(|k| k.id);
        let id = anchor.ok_or_else(|| TravelError::BeforeFirstCheckpoint(Box::new(*target)))?;
        self.put_back(id)?;
        self.reach(target, false, &mut |_| false)?;
        Ok(())
    }
}

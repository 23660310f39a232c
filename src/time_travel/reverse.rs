//! The reverse commands: reverse-stepi (back one instruction), reverse-continue (back to the last
//! stop the breakpoints set now would have made), and "go back to this exit" (the TUI's `b` and
//! `:goto`). Each goes back to a checkpoint and forward again exactly (`forward`); gdb hears of
//! the ends of the history as such, and of a failure in words.

use super::forward::MAX_STEPS;
use super::{Place, TravelError};
use crate::controller::Controller;
use crate::debug::{Stop, StopReason};
use crate::sync::lock;

/// Exits re-executed past which a reverse-stepi keeps a checkpoint where it found its base.
const NEAR: u64 = 1000;

/// While a reverse command goes over the past: the guest's output dropped and its exits not
/// news (see [`crate::vmm::timeline::Timeline::on_exit`]).
pub(super) struct OverThePast<'a>(&'a Controller);

impl<'a> OverThePast<'a> {
    pub(super) fn new(c: &'a Controller) -> Self {
        for m in &c.shared().output_mutes {
            m.store(true, std::sync::atomic::Ordering::Release);
        }
        c.shared().timeline.set_replaying(true);
        Self(c)
    }
}

impl Drop for OverThePast<'_> {
    fn drop(&mut self) {
        for m in &self.0.shared().output_mutes {
            m.store(false, std::sync::atomic::Ordering::Release);
        }
        self.0.shared().timeline.set_replaying(false);
    }
}

impl Controller {
    /// Runs a reverse command: one vCPU, stopped; the last failure forgotten; the guest's past
    /// gone over quietly. A failure is noted (`monitor timeline`) and published as the stop.
    fn going_back<T>(&self, command: impl FnOnce() -> Result<T, TravelError>) -> Result<T, TravelError> {
        match self.vcpus() {
            1 => {}
            n => return Err(TravelError::ManyVcpus(n)),
        }
        if !self.is_paused() || self.stops().first().cloned().flatten().is_none() {
            return Err(TravelError::Running);
        }
        self.prune_future();
        let t = &self.shared().timeline;
        *lock(&t.note) = None;
        t.cancel.store(false, std::sync::atomic::Ordering::Release);
        let result = {
            let _quiet = OverThePast::new(self);
            command()
        };
        if let Err(e) = &result {
            self.travel_failed(e);
        }
        result
    }

    /// Going back failed: vCPU 0 stops where it ended up, saying why (and `monitor timeline` too).
    fn travel_failed(&self, why: &TravelError) {
        let text = why.to_string();
        crate::notice::say(format!("going back: {text}"));
        *lock(&self.shared().timeline.note) = Some(text.clone());
        if !why.left_in_place() {
            self.restate(StopReason::TravelFailed(text));
        }
    }

    /// What the last going back could not do, if it failed.
    pub fn travel_note(&self) -> Option<String> {
        lock(&self.shared().timeline.note).clone()
    }

    /// Publishes vCPU 0's stop again with `reason` (where going back ended up, and why).
    fn restate(&self, reason: StopReason) {
        let d = &self.shared().debug;
        if let Some(stop) = d.stop_of(0) {
            d.set_stop(0, Some(Stop { reason, ..stop }));
        }
    }

    /// The newest checkpoint from which the instruction before `place` can be found: one taken
    /// before it and not at it; its number and place.
    fn anchor_before(&self, place: &Place, exits_before: bool) -> Option<(u32, Place)> {
        let c = lock(&self.shared().checkpoints);
        // The nearest on the timeline, not the last taken: one a reverse-stepi kept in the past
        // comes after those taken while the guest ran on past it.
        let k = match exits_before {
            true => c.newest_among(|k| k.place.exits < place.exits),
            false => c.before(place),
        };
        k.map(|k| (k.id, k.place))
    }

    /// The place of the instruction before `now`: `None` at the start of what the checkpoints
    /// reach. Found by stepping from a checkpoint before it until the present comes again.
    fn place_before(&self, now: &Place) -> Result<Option<Place>, TravelError> {
        if now.steps > 0 {
            return Ok(Some(Place { steps: now.steps - 1, ..*now }));
        }
        // Right after an exit: the instruction that made it, counted from the exit before.
        // At a landmark: from its exit, or from an earlier checkpoint after that exit.
        let after_exit = now.mark.is_none();
        if after_exit && now.exits == 0 {
            return Ok(None);
        }
        let Some((id, anchor)) = self.anchor_before(now, after_exit) else { return Ok(None) };
        self.put_back(id)?;
        let base_exits = if after_exit { now.exits - 1 } else { now.exits };
        let base = match anchor.exits < base_exits {
            true => Place::at_exit(base_exits),
            false => anchor,
        };
        self.reach(&base, false, &mut |_| false)?;
        // Far from the anchor: a checkpoint here, so that going to the instruction found (and
        // the next reverse-stepi) starts here instead of going all that way again.
        if base.exits >= anchor.exits + NEAR {
            let _ = self.checkpoint(false);
        }
        if let Some(mark) = &now.mark
            && base.mark.is_none()
            && base.steps == 0
            && self.shared().debug.stop_of(0).is_some_and(|s| s.regs == mark.regs)
            && mark.ram == Some(self.ram_digest())
        {
            // The landmark is right at its exit: the instruction before is the exit's.
            return self.place_before(&Place::at_exit(now.exits));
        }
        for n in 1..=MAX_STEPS {
            let stop = self.step_once()?;
            let position = self.shared().timeline.position();
            let there = match &now.mark {
                None => position == now.exits,
                Some(mark) => position == now.exits && stop.regs == mark.regs && mark.ram == Some(self.ram_digest()),
            };
            if there {
                return Ok(Some(base.plus(n - 1)));
            }
            if position > now.exits {
                break;
            }
        }
        Err(TravelError::PresentLost(Box::new(base), MAX_STEPS))
    }

    /// Back one instruction (gdb's `reverse-stepi`; the stop is published as a step). Where the
    /// checkpoints reach no further back, the guest stays and the stop says it is the start.
    pub fn reverse_step(&self) -> Result<Place, TravelError> {
        self.going_back(|| self.reverse_step_here())
    }

    fn reverse_step_here(&self) -> Result<Place, TravelError> {
        let now = self.present();
        match self.place_before(&now)? {
            Some(target) => {
                self.go_to(&target)?;
                self.restate(StopReason::Step);
                Ok(target)
            }
            None => {
                // Nothing moved, or the anchor was put back: the present again.
                if self.place() != now {
                    self.go_to(&now)?;
                }
                self.restate(StopReason::TimelineStart(now.exits));
                Ok(now)
            }
        }
    }

    /// Back to the last place before the present where a breakpoint, watchpoint or exit
    /// breakpoint set now would have stopped the guest (gdb's `reverse-continue`); with none,
    /// to the first checkpoint (the stop says it is the start). A watchpoint stops before the
    /// instruction that made the access, as gdb expects going backwards.
    pub fn reverse_continue(&self) -> Result<Place, TravelError> {
        self.going_back(|| {
            let now = self.present();
            // The checkpoints back from the present, each known to come before the one after
            // it: the ends of the intervals searched, newest first.
            let starts: Vec<(u32, Place, bool)> = {
                let c = lock(&self.shared().checkpoints);
                let mut chain = Vec::new();
                let mut end = now;
                while let Some(k) = c.before(&end) {
                    chain.push((k.id, k.place, k.changed));
                    end = k.place;
                }
                chain
            };
            let Some(&(first, _, _)) = starts.last() else { return Err(TravelError::NoCheckpoint) };
            // From each checkpoint back, the user's stops up to the present (or the checkpoint
            // after, a stop at it included): the last of them is the answer.
            let (mut end, mut count_end) = (now, false);
            for &(id, at, changed) in &starts {
                self.put_back(id)?;
                let mut hits = 0u64;
                self.reach(&end, count_end, &mut |_| {
                    hits += 1;
                    false
                })?;
                if hits > 0 {
                    // Again, stopping at the last of them.
                    self.put_back(id)?;
                    let mut seen = 0u64;
                    let stop = self.reach(&end, count_end, &mut |_| {
                        seen += 1;
                        seen == hits
                    })?;
                    let stop = stop.ok_or(TravelError::StopLost)?;
                    if matches!(stop.reason, StopReason::Watchpoint { .. }) {
                        self.reverse_step_here()?;
                    }
                    self.restate(stop.reason);
                    return Ok(self.place());
                }
                if changed {
                    // A state the user changed: going forward from before leads to the state
                    // before the change, not to it. It is itself the stop when a breakpoint is
                    // at its instruction; before it, the search ends short of its place.
                    self.put_back(id)?;
                    if let Some(arrival) = self.arrival() {
                        self.restate(arrival.reason);
                        return Ok(self.place());
                    }
                }
                (end, count_end) = (at, !changed);
            }
            self.put_back(first)?;
            let place = self.place();
            self.restate(StopReason::TimelineStart(place.exits));
            Ok(place)
        })
    }

    /// Back to just after exit `exits` (its instruction finished). Cancelled ([`Self::cancel_travel`]:
    /// the TUI's Esc), the VM goes back where it was before instead.
    pub fn go_back_to_exit(&self, exits: u64) -> Result<(), TravelError> {
        self.going_back(|| {
            let before = self.present();
            let reason = self.shared().debug.stop_of(0).map(|s| s.reason);
            match self.go_to(&Place::at_exit(exits)) {
                Ok(()) => {
                    self.restate(StopReason::Reached(exits));
                    Ok(())
                }
                Err(TravelError::Cancelled(_)) => {
                    self.shared().timeline.cancel.store(false, std::sync::atomic::Ordering::Release);
                    self.go_to(&before)?;
                    if let Some(reason) = reason {
                        self.restate(reason);
                    }
                    Err(TravelError::CancelledBack(Box::new(before)))
                }
                Err(e) => Err(e),
            }
        })
    }

    /// While a command goes back: the exits it has made again of those it must make to reach
    /// its target from the checkpoint it started from.
    pub fn travel_progress(&self) -> Option<(u64, u64)> {
        self.shared().timeline.progress()
    }

    /// The TUI's "go back to here": to just after the exit the views number `seq`, where it
    /// is on the timeline kept; the place reached.
    pub fn go_back_to(&self, seq: u64) -> Result<Place, TravelError> {
        if !self.is_paused() {
            return Err(TravelError::Running);
        }
        let Some(exits) = self.shared().timeline.position_of(seq) else {
            return Err(match lock(&self.shared().checkpoints).list().first() {
                Some(c) => TravelError::NotKept(c.seq()),
                None => TravelError::NoCheckpoint,
            });
        };
        self.go_back_to_exit(exits)?;
        Ok(self.place())
    }
}

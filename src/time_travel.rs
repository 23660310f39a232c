//! Going back in time, the controller's side: checkpoints taken and restored while the guest is
//! stopped (`:checkpoint`, `monitor checkpoint`), snapshots written to a file, and the timeline
//! position they are placed on (exits since the VM started, along the present history).

use std::path::Path;

use crate::controller::{ControlError, Controller};
use crate::debug::{Stop, StopReason};
use crate::sync::lock;
use crate::vmm::live_state;
use crate::vmm::snapshot::SnapshotError;
use crate::vmm::snapshot::file::{self, SnapshotHeader};
use crate::vmm::timeline::UNKNOWN;

/// One checkpoint as the views list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    pub id: u32,
    /// Exits since the VM started when it was taken.
    pub position: u64,
    pub t_ns: u64,
    pub manual: bool,
    /// Bytes it keeps of its own (the pages where it differs from the next).
    pub size: u64,
}

/// The checkpoints, and what they hold in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointList {
    pub checkpoints: Vec<CheckpointInfo>,
    pub bytes: u64,
    pub budget: u64,
    pub thinned: u64,
    /// Bytes the writable disks' undo logs keep for them.
    pub disk_undo: u64,
}

impl std::fmt::Display for CheckpointList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::vmm::memory::human_size;
        if self.checkpoints.is_empty() {
            return write!(f, "no checkpoints (:checkpoint or monitor checkpoint takes one)");
        }
        for c in &self.checkpoints {
            writeln!(
                f,
                "#{:<3} at exit {:<10} {:>10.6}s  {:<9} {}",
                c.id,
                c.position,
                c.t_ns as f64 / 1e9,
                if c.manual { "taken" } else { "automatic" },
                human_size(c.size)
            )?;
        }
        write!(
            f,
            "{} held of a {} budget{}{}",
            human_size(self.bytes),
            human_size(self.budget),
            if self.thinned > 0 { format!(", {} older thinned away", self.thinned) } else { String::new() },
            if self.disk_undo > 0 {
                format!("; the disks' undo logs {}", human_size(self.disk_undo))
            } else {
                String::new()
            }
        )
    }
}

impl Controller {
    /// Where the VM is on its timeline: exits since it started, along the present history.
    pub fn position(&self) -> u64 {
        self.shared().timeline.position()
    }

    /// Takes a checkpoint of the stopped VM (`manual`: the user asked); its number.
    pub fn checkpoint(&self, manual: bool) -> Result<u32, ControlError> {
        let shared = self.shared();
        let (machine, seq, t_ns) = live_state::capture_machine(shared)?;
        let planted = live_state::planted_originals(shared);
        shared.timeline.keep_history();
        let place = (seq, shared.timeline.steps());
        let mut checkpoints = lock(&shared.checkpoints);
        // SAFETY: every vCPU is parked and the virtio workers settled (capture_machine).
        let ram = unsafe { shared.ram.slices() };
        let id = checkpoints.add(place, t_ns, manual, machine, &ram);
        for (gpa, byte) in planted {
            checkpoints.poke_newest(gpa, byte);
        }
        checkpoints.mark_disks(id, shared.virtio.mark_disks());
        // Thinning may have dropped the oldest: the disks need not go back further than what is left.
        if let Some(oldest) = checkpoints.list().first() {
            shared.virtio.forget_disks_before(&oldest.disks);
        }
        Ok(id)
    }

    /// At a stop the user holds: takes a checkpoint of kvmscope's own when there is none yet or
    /// the newest is [`crate::vmm::snapshot::checkpoints::AUTO_EVERY`] exits back or more, so that
    /// going back is never far from one. `None` when none was due.
    pub fn auto_checkpoint(&self) -> Option<Result<u32, ControlError>> {
        let shared = self.shared();
        let every = shared.checkpoint_every;
        if every == 0 || self.is_ending() {
            return None;
        }
        let newest = lock(&shared.checkpoints).list().last().map(|c| c.seq);
        let due = newest.is_none_or(|at| shared.timeline.position() >= at + every);
        due.then(|| self.checkpoint(false))
    }

    /// The checkpoints kept.
    pub fn checkpoints(&self) -> CheckpointList {
        let c = lock(&self.shared().checkpoints);
        CheckpointList {
            checkpoints: c
                .list()
                .iter()
                .map(|k| CheckpointInfo { id: k.id, position: k.seq, t_ns: k.t_ns, manual: k.manual, size: k.size() })
                .collect(),
            bytes: c.size(),
            budget: c.budget,
            thinned: c.thinned,
            disk_undo: self.shared().virtio.disk_undo_bytes(),
        }
    }

    /// Puts the stopped VM back in checkpoint `id`'s state; the checkpoints after it are
    /// dropped (running on makes another future). Its position.
    pub fn restore_checkpoint(&self, id: u32) -> Result<u64, ControlError> {
        let shared = self.shared();
        let position = self.put_back(id)?;
        lock(&shared.checkpoints).truncate_after(id);
        shared.timeline.truncate(position);
        Ok(position)
    }

    /// Writes the stopped VM's whole state to `path`; the bytes written.
    pub fn snapshot(&self, path: &Path) -> Result<u64, ControlError> {
        let shared = self.shared();
        let (machine, seq, t_ns) = live_state::capture_machine(shared)?;
        let header = SnapshotHeader {
            kvmscope: env!("CARGO_PKG_VERSION").to_string(),
            machine_args: shared.machine_args.clone(),
            mem_size: shared.ram.map.size(),
            cpus: self.vcpus() as u32,
            disks: disks_of(&shared.machine_args),
            seq,
            t_ns,
            ram: shared.ram.host_ranges().iter().map(|&(gpa, len, _)| (gpa, len)).collect(),
        };
        // RAM is written from where it is, with the guest's own bytes under kvmscope's int3s
        // for the while.
        let planted = live_state::planted_originals(shared);
        for &(gpa, byte) in &planted {
            shared.ram.write(gpa, &[byte]);
        }
        // SAFETY: every vCPU is parked and the virtio workers settled (capture_machine).
        let written = file::write(path, &header, &machine, &unsafe { shared.ram.slices() });
        for &(gpa, _) in &planted {
            shared.ram.write(gpa, &[0xcc]);
        }
        Ok(written.map_err(SnapshotError::from)?)
    }

    /// Puts the state a snapshot file holds into this VM (built from the same options), before
    /// its vCPUs first run or while they are stopped.
    pub fn restore_snapshot(&self, path: &Path) -> Result<u64, ControlError> {
        let snap = file::read(path).map_err(SnapshotError::from)?;
        live_state::restore_with(self.shared(), &snap.machine, |guest| {
            // SAFETY: every vCPU is parked and the virtio workers settled (restore_with).
            match snap.write_ram(&mut unsafe { guest.slices_mut() }) {
                true => Ok(()),
                false => Err(crate::vmm::snapshot::memory_mismatch(guest, &snap.header)),
            }
        })?;
        let seq = snap.header.seq;
        self.shared().timeline.set_place(seq, 0);
        self.shared().timeline.truncate(seq);
        Ok(seq)
    }
}

/// The disk images named in machine options (`--disk FILE[,ro]`).
pub fn disks_of(args: &[String]) -> Vec<std::path::PathBuf> {
    let disks = crate::machine_args::values_of(args, "--disk");
    disks.iter().map(|v| std::path::PathBuf::from(v.strip_suffix(",ro").unwrap_or(v))).collect()
}

/// How long one leg of going back may take (running forward from a checkpoint).
const LEG: std::time::Duration = std::time::Duration::from_secs(120);

/// Single steps taken at most to find an instruction between two exits.
const MAX_STEPS: u64 = 1_000_000;

/// A place on the timeline: guest exits since the start, and instructions single-stepped since
/// the last of them ([`UNKNOWN`]: the guest ran freely since).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub exits: u64,
    pub steps: u64,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.steps {
            0 => write!(f, "exit {}", self.exits),
            UNKNOWN => write!(f, "after exit {}", self.exits),
            s => write!(f, "exit {} + {s} instruction{}", self.exits, if s == 1 { "" } else { "s" }),
        }
    }
}

fn travel(what: impl Into<String>) -> ControlError {
    ControlError::TimeTravel(what.into())
}

impl Controller {
    /// Where the VM is: exits and steps since the last.
    pub fn place(&self) -> Place {
        let t = &self.shared().timeline;
        Place { exits: t.position(), steps: t.steps() }
    }

    /// Going back follows one vCPU: the order of several is not the guest's to repeat.
    fn one_vcpu(&self) -> Result<(), ControlError> {
        match self.vcpus() {
            1 => Ok(()),
            n => Err(travel(format!("going back follows one vCPU; this VM has {n}"))),
        }
    }

    /// Puts the VM in checkpoint `id`'s state, keeping what came after it; its position.
    fn put_back(&self, id: u32) -> Result<u64, ControlError> {
        let shared = self.shared();
        let (place, disks) = {
            let c = lock(&shared.checkpoints);
            let k = c.get(id).ok_or(SnapshotError::NoCheckpoint(id))?;
            live_state::restore_with(shared, &k.machine, |guest| {
                // SAFETY: every vCPU is parked and the virtio workers settled (restore_with).
                let mut ram = unsafe { guest.slices_mut() };
                c.restore_into(id, &mut ram).map(|_| ()).ok_or(SnapshotError::NoCheckpoint(id))
            })?;
            ((k.seq, k.steps), k.disks.clone())
        };
        shared
            .virtio
            .rewind_disks(&disks)
            .map_err(|e| travel(format!("the disks could not be taken back with the checkpoint: {e}")))?;
        shared.timeline.set_place(place.0, place.1);
        Ok(place.0)
    }

    /// The checkpoint to count `place` from (`Checkpoints::anchor_for`), as (id, its place).
    fn anchor_for(&self, place: Place) -> Option<(u32, Place)> {
        let c = lock(&self.shared().checkpoints);
        c.anchor_for(place.exits, place.steps).map(|k| (k.id, Place { exits: k.seq, steps: k.steps }))
    }

    /// Waits for a stop newer than `since` (the vCPUs may not have left their parks yet when
    /// this starts: an old stop does not count).
    fn next_stop(&self, since: u64) -> Result<Stop, ControlError> {
        let deadline = std::time::Instant::now() + LEG;
        loop {
            if self.is_ending() {
                return Err(travel("the run ended while going forward again"));
            }
            if let Some(stop) = self.wait_for_stop(since, std::time::Duration::from_millis(20)) {
                return Ok(stop);
            }
            if std::time::Instant::now() > deadline {
                return Err(travel("going forward again took too long"));
            }
        }
    }

    /// Resumes and waits for the next stop.
    fn run_leg(&self) -> Result<Stop, ControlError> {
        let since = self.stop_serial();
        self.resume();
        self.next_stop(since)
    }

    /// Runs forward to just after exit `exits` (its instruction finished), through the other
    /// stops on the way but the one `on_stop` says to stop at (it sees each: a breakpoint of the
    /// user's), which it returns. Leaving the history is an error that says where.
    fn forward_to(&self, exits: u64, mut on_stop: impl FnMut(&Stop) -> bool) -> Result<Option<Stop>, ControlError> {
        let timeline = &self.shared().timeline;
        if timeline.position() < exits {
            timeline.run_to(exits);
            let result = loop {
                let stop = match self.run_leg() {
                    Ok(s) => s,
                    Err(e) => break Err(e),
                };
                match &stop.reason {
                    StopReason::Reached(_) => break Ok(None),
                    StopReason::Diverged { .. } => break Err(travel(stop.reason.to_string())),
                    _ if on_stop(&stop) => break Ok(Some(stop)),
                    _ => {}
                }
            };
            timeline.run_to(UNKNOWN);
            if !matches!(result, Ok(None)) {
                return result;
            }
        }
        live_state::settle(self.shared())?;
        self.shared().timeline.set_place(exits, 0);
        Ok(None)
    }

    /// Single-steps vCPU 0 once; its stop.
    fn step_once(&self) -> Result<Stop, ControlError> {
        let since = self.stop_serial();
        self.step(0)?;
        self.next_stop(since)
    }

    /// Goes to the anchor `place` is counted from; that anchor's place.
    fn go_to_anchor(&self, place: Place) -> Result<Place, ControlError> {
        let Some((id, at)) = self.anchor_for(place) else {
            return Err(travel(format!("{place} is before the first checkpoint")));
        };
        self.put_back(id)?;
        if at.exits < place.exits {
            self.forward_to(place.exits, |_| false)?;
            return Ok(Place { exits: place.exits, steps: 0 });
        }
        Ok(at)
    }

    /// Goes to `place`: from its anchor, forward to its exit, then its steps.
    fn go_to(&self, place: Place) -> Result<(), ControlError> {
        let at = self.go_to_anchor(place)?;
        for _ in at.steps..place.steps {
            self.step_once()?;
        }
        Ok(())
    }

    /// From the anchor `place` is counted from, the place of the instruction before the first
    /// stop `reached` says is the one: the place to go back to.
    fn place_before(&self, place: Place, mut reached: impl FnMut(&Stop, Place) -> bool) -> Result<Place, ControlError> {
        let at = self.go_to_anchor(place)?;
        for n in 1..=MAX_STEPS {
            let stop = self.step_once()?;
            let now = self.place();
            if reached(&stop, now) {
                return Ok(Place { exits: at.exits, steps: at.steps + n - 1 });
            }
            if now.exits > place.exits + 1 {
                break;
            }
        }
        Err(travel(format!(
            "stepping from {at} did not come back to the present (more than {MAX_STEPS} instructions, or another path)"
        )))
    }

    /// Going back failed: vCPU 0 stops where it ended up, saying why (and `monitor timeline` too).
    pub fn travel_failed(&self, why: &str) {
        crate::notice::say(format!("going back: {why}"));
        *lock(&self.shared().timeline.note) = Some(why.to_string());
        self.restate(StopReason::TravelFailed(why.to_string()));
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

    /// The guest's output dropped until the guard goes: it is going over its past again.
    fn replaying(&self) -> Muted<'_> {
        for m in &self.shared().output_mutes {
            m.store(true, std::sync::atomic::Ordering::Release);
        }
        Muted(self)
    }

    /// gdb's `reverse-stepi`: back one instruction. The stop is published as a step; where the
    /// checkpoints reach no further back, as the start of the log (the guest stays where it is).
    pub fn reverse_step(&self) -> Result<Place, ControlError> {
        self.one_vcpu()?;
        let _muted = self.replaying();
        *lock(&self.shared().timeline.note) = None;
        let now = self.place();
        let present = self.stops().first().cloned().flatten().map(|s| s.regs);
        let target = match now.steps {
            s if s != UNKNOWN && s > 0 => Some(Place { exits: now.exits, steps: s - 1 }),
            // Just after an exit: the instruction that made it, counted from the exit before.
            0 if now.exits == 0 => None,
            0 => {
                let from = Place { exits: now.exits - 1, steps: UNKNOWN };
                self.anchor_for(from)
                    .map(|_| self.place_before(from, |_, place| place.exits == now.exits))
                    .transpose()?
            }
            // After running freely: count the instructions from the anchor before it.
            _ => {
                let from = Place { exits: now.exits, steps: UNKNOWN };
                let is_present = |stop: &Stop, place: Place| place.exits == now.exits && Some(stop.regs) == present;
                self.anchor_for(from).map(|_| self.place_before(from, is_present)).transpose()?
            }
        };
        match target {
            Some(target) => {
                self.go_to(target)?;
                self.shared().timeline.set_place(target.exits, target.steps);
                self.restate(StopReason::Step);
                Ok(target)
            }
            None => {
                self.restate(StopReason::TimelineStart(now.exits));
                Ok(now)
            }
        }
    }

    /// gdb's `reverse-continue`: back to the last place before the present where a breakpoint or
    /// watchpoint set now stops the guest; with none, to the first checkpoint.
    pub fn reverse_continue(&self) -> Result<Place, ControlError> {
        self.one_vcpu()?;
        let _muted = self.replaying();
        *lock(&self.shared().timeline.note) = None;
        let now = self.place();
        let present = self.stops().first().cloned().flatten().map(|s| s.regs);
        let starts: Vec<(u32, u64)> = lock(&self.shared().checkpoints)
            .list()
            .iter()
            .rev()
            .filter(|c| c.seq <= now.exits)
            .map(|c| (c.id, c.seq))
            .collect();
        if starts.is_empty() {
            return Err(travel("no checkpoint before the present to go back from"));
        }
        // From each checkpoint back, the stops the breakpoints set now make up to the present
        // (or the checkpoint after): the last of them is the answer.
        let mut end = now;
        for &(id, at) in &starts {
            self.put_back(id)?;
            let mut hits = 0u64;
            let is_end = |stop: &Stop| end == now && Some(stop.regs) == present;
            let stopped_at_end = self.forward_to(end.exits, |stop| {
                if is_end(stop) {
                    return true;
                }
                hits += 1;
                false
            })?;
            // After the end's exit, up to the end itself (a breakpoint the guest ran freely to).
            if stopped_at_end.is_none() && end.steps == UNKNOWN {
                self.shared().timeline.run_to(end.exits + 1);
                let result = loop {
                    match self.run_leg() {
                        Ok(stop) if matches!(stop.reason, StopReason::Reached(_) | StopReason::Diverged { .. }) => {
                            break Ok(());
                        }
                        Ok(stop) if is_end(&stop) => break Ok(()),
                        Ok(_) => hits += 1,
                        Err(e) => break Err(e),
                    }
                };
                self.shared().timeline.run_to(UNKNOWN);
                result?;
            }
            if hits > 0 {
                // Again, stopping at the last of them.
                self.put_back(id)?;
                let mut seen = 0u64;
                let stop = self.forward_to(end.exits + 1, |_| {
                    seen += 1;
                    seen == hits
                })?;
                let stop = stop.ok_or_else(|| travel("the breakpoint's stop was not found again"))?;
                if matches!(stop.reason, StopReason::Watchpoint { .. }) {
                    // Going backwards a watchpoint is crossed at the access: the stop is before
                    // the instruction that made it (gdb sees the value change across it).
                    self.reverse_step()?;
                }
                self.restate(stop.reason);
                return Ok(self.place());
            }
            end = Place { exits: at, steps: 0 };
        }
        let (first, _) = *starts.last().unwrap_or(&(0, 0));
        self.put_back(first)?;
        let place = self.place();
        self.restate(StopReason::TimelineStart(place.exits));
        Ok(place)
    }

    /// Back to just after exit `exits` (its instruction finished).
    pub fn go_back_to_exit(&self, exits: u64) -> Result<(), ControlError> {
        self.one_vcpu()?;
        let _muted = self.replaying();
        *lock(&self.shared().timeline.note) = None;
        if let Err(e) = self.go_to(Place { exits, steps: 0 }) {
            self.travel_failed(&e.to_string());
            return Err(e);
        }
        self.restate(StopReason::Reached(exits));
        Ok(())
    }

    /// The TUI's "go back to here": to just after the exit the views number `seq`, where it
    /// is on the timeline kept; the place reached.
    pub fn go_back_to(&self, seq: u64) -> Result<Place, ControlError> {
        if !self.is_paused() {
            return Err(travel("pause the guest first (space)"));
        }
        let Some(exits) = self.shared().timeline.position_of(seq) else {
            let why = match lock(&self.shared().checkpoints).list().first() {
                Some(c) => format!("it is not on the timeline kept (the first checkpoint is at exit {})", c.seq),
                None => "there is no checkpoint to go back from (--checkpoint-every, :checkpoint)".to_string(),
            };
            return Err(travel(why));
        };
        self.go_back_to_exit(exits)?;
        Ok(self.place())
    }
}

/// Output is dropped while this lives (see [`Controller::replaying`]).
struct Muted<'a>(&'a Controller);

impl Drop for Muted<'_> {
    fn drop(&mut self) {
        for m in &self.0.shared().output_mutes {
            m.store(false, std::sync::atomic::Ordering::Release);
        }
    }
}

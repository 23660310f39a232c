//! Going back in time, the controller's side: checkpoints taken and restored while the guest is
//! stopped (`:checkpoint`, `monitor checkpoint`), snapshots written to a file, and the timeline
//! place they are put on. Going forward again exactly to a place is `forward`; the reverse
//! commands built on it (reverse-stepi, reverse-continue, "go back to this exit") are `reverse`.

mod forward;
mod reverse;

use std::path::Path;

use crate::controller::{ControlError, Controller};
use crate::sync::lock;
use crate::vmm::live_state;
use crate::vmm::snapshot::SnapshotError;
use crate::vmm::snapshot::every::Every;
use crate::vmm::snapshot::file::{self, SnapshotHeader};
pub use crate::vmm::timeline::{Landmark, Place, TravelError};

impl From<ControlError> for TravelError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Travel(t) => t,
            ControlError::Snapshot(s) => TravelError::Snapshot(s),
            other => TravelError::Control(other.to_string()),
        }
    }
}

/// One checkpoint as the views list it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    pub id: u32,
    /// Where on the timeline it was taken.
    pub place: Place,
    pub t_ns: u64,
    pub manual: bool,
    /// It holds a state the user changed (registers or memory written in gdb).
    pub changed: bool,
    /// Bytes it keeps of its own (the pages where it differs from the next).
    pub size: u64,
}

impl CheckpointInfo {
    /// Exits since the VM started when it was taken.
    pub fn position(&self) -> u64 {
        self.place.exits
    }
}

/// The checkpoints, and what they hold in all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointList {
    pub checkpoints: Vec<CheckpointInfo>,
    pub bytes: u64,
    pub budget: u64,
    pub thinned: u64,
    /// Bytes the writable disks' undo logs keep for them.
    pub disk_undo: u64,
    /// Why the last checkpoint kvmscope tried to take while the guest ran was not kept.
    pub refused: Option<String>,
}

/// Checkpoints listed one per line up to this many; past it the automatic ones in the middle are
/// summed up in one line (a guest running for a minute has a thousand).
const LISTED: usize = 12;

impl std::fmt::Display for CheckpointList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::vmm::memory::{data_size, human_size};
        if self.checkpoints.is_empty() {
            write!(f, "no checkpoints (:checkpoint or monitor checkpoint takes one)")?;
        }
        let row = |f: &mut std::fmt::Formatter<'_>, c: &CheckpointInfo| {
            writeln!(
                f,
                "#{:<3} {:<34} {:>10.6}s  {:<9} {}",
                c.id,
                c.place.to_string(),
                c.t_ns as f64 / 1e9,
                match (c.changed, c.manual) {
                    (true, _) => "changed",
                    (false, true) => "taken",
                    (false, false) => "automatic",
                },
                data_size(c.size)
            )
        };
        let n = self.checkpoints.len();
        // The oldest, the ones the user took, and the newest few, whole; the rest summed up.
        let shown =
            |i: usize, c: &CheckpointInfo| n <= LISTED || i == 0 || i + LISTED / 2 >= n || c.manual || c.changed;
        let mut skipped: Vec<&CheckpointInfo> = Vec::new();
        for (i, c) in self.checkpoints.iter().enumerate() {
            if shown(i, c) {
                summed_up(f, &skipped)?;
                skipped.clear();
                row(f, c)?;
            } else {
                skipped.push(c);
            }
        }
        if n > 0 {
            write!(
                f,
                "{n} checkpoint{}: {} held of a {} budget{}{}",
                if n == 1 { "" } else { "s" },
                data_size(self.bytes),
                human_size(self.budget),
                if self.thinned > 0 { format!(", {} older thinned away", self.thinned) } else { String::new() },
                if self.disk_undo > 0 {
                    format!("; the disks' undo logs {}", data_size(self.disk_undo))
                } else {
                    String::new()
                }
            )?;
        }
        if let Some(why) = &self.refused {
            write!(f, "\nthe last taken while running was not kept: {why}")?;
        }
        Ok(())
    }
}

/// One line for automatic checkpoints left out of the list: how many, how far apart, how large.
fn summed_up(f: &mut std::fmt::Formatter<'_>, skipped: &[&CheckpointInfo]) -> std::fmt::Result {
    let (Some(first), Some(last)) = (skipped.first(), skipped.last()) else { return Ok(()) };
    let n = skipped.len() as u64;
    let bytes: u64 = skipped.iter().map(|c| c.size).sum();
    writeln!(
        f,
        "     … {n} automatic from exit {} to {}, one every {} exits / {:.1} ms on average, {}",
        first.position(),
        last.position(),
        last.position().saturating_sub(first.position()) / n.saturating_sub(1).max(1),
        (last.t_ns.saturating_sub(first.t_ns)) as f64 / 1e6 / n.saturating_sub(1).max(1) as f64,
        crate::vmm::memory::data_size(bytes)
    )
}

impl Controller {
    /// Where the VM is on its timeline: exits since it started, along the present history.
    pub fn position(&self) -> u64 {
        self.shared().timeline.position()
    }

    /// Exits the guest made again going over its past (counted and recorded once, the first time).
    pub fn reexecuted(&self) -> u64 {
        self.shared().timeline.reexecuted()
    }

    /// Where the VM is: exits, the stop it ran freely to since the last, steps since.
    pub fn place(&self) -> Place {
        self.shared().timeline.place()
    }

    /// Where the stopped VM is, with the RAM digest of the landmark it stands on taken if it had
    /// none: a place that can be found again.
    pub(crate) fn present(&self) -> Place {
        let t = &self.shared().timeline;
        t.mark_ram(|| self.ram_digest());
        t.place()
    }

    /// A digest of guest RAM as the guest sees it (its own bytes under kvmscope's int3s), for
    /// the stopped VM (see [`crate::vmm::memory::GuestRam::digest`]); 0 while it runs.
    pub fn ram_digest(&self) -> u64 {
        let shared = self.shared();
        if self.stops().iter().any(Option::is_none) {
            return 0;
        }
        shared.virtio.settle();
        // SAFETY: every vCPU is parked and the virtio workers settled.
        unsafe { shared.ram.digest(&live_state::planted_originals(shared)) }
    }

    /// Forgets the checkpoints of a future the guest has left (it took another path since).
    pub(crate) fn prune_future(&self) {
        live_state::prune_future(self.shared());
    }

    /// Takes a checkpoint of the stopped VM (`manual`: the user asked); its number.
    pub fn checkpoint(&self, manual: bool) -> Result<u32, ControlError> {
        let (machine, _, t_ns) = live_state::capture_machine(self.shared())?;
        let place = self.present();
        Ok(live_state::keep_checkpoint(self.shared(), machine, place, t_ns, manual).map_err(TravelError::Budget)?)
    }

    /// At a stop the user holds: takes a checkpoint of kvmscope's own when there is none yet or
    /// the newest is an interval back (`--checkpoint-every`), so that going back is never far
    /// from one. `None` when none was due.
    pub fn auto_checkpoint(&self) -> Option<Result<u32, ControlError>> {
        let shared = self.shared();
        if shared.checkpoint_every == Every::Off || self.is_ending() {
            return None;
        }
        let none_yet = lock(&shared.checkpoints).list().is_empty();
        let due = none_yet || shared.checkpoint_due(shared.timeline.position(), shared.ran_ns());
        due.then(|| self.checkpoint(false))
    }

    /// The checkpoints kept.
    pub fn checkpoints(&self) -> CheckpointList {
        self.prune_future();
        let c = lock(&self.shared().checkpoints);
        // In timeline order (one kept going back comes after the later ones taken before it).
        let mut in_order: Vec<_> = c.list().iter().collect();
        in_order.sort_by_key(|k| (k.place.exits, k.id));
        CheckpointList {
            checkpoints: in_order
                .into_iter()
                .map(|k| CheckpointInfo {
                    id: k.id,
                    place: k.place,
                    t_ns: k.t_ns,
                    manual: k.manual,
                    changed: k.changed,
                    size: c.own_size(k.id),
                })
                .collect(),
            bytes: c.size(),
            budget: c.budget,
            thinned: c.thinned,
            disk_undo: self.shared().virtio.disk_undo_bytes(),
            refused: c.refused.clone(),
        }
    }

    /// Puts the stopped VM back in checkpoint `id`'s state; the checkpoints after it are
    /// dropped (running on makes another future). Its place.
    pub fn restore_checkpoint(&self, id: u32) -> Result<Place, ControlError> {
        self.prune_future();
        let shared = self.shared();
        let place = self.put_back(id)?;
        lock(&shared.checkpoints).keep_not_after(id);
        shared.timeline.truncate(place.exits);
        Ok(place)
    }

    /// Puts the VM in checkpoint `id`'s state, keeping what came after it; its place. One whose
    /// disk marks were lost is reached from a checkpoint before it, going forward (the guest
    /// writes its disks again on the way), and marked again there.
    pub(crate) fn put_back(&self, id: u32) -> Result<Place, ControlError> {
        let shared = self.shared();
        let (lost, changed) = {
            let c = lock(&shared.checkpoints);
            let k = c.get(id).ok_or(SnapshotError::NoCheckpoint(id))?;
            (k.disks.is_none(), k.changed)
        };
        if lost && changed {
            // Going forward from before it would not make the user's change again.
            return Err(TravelError::Control(format!(
                "checkpoint {id} holds a state you changed, and its disks went back to before it since"
            ))
            .into());
        }
        if lost {
            let place = lock(&shared.checkpoints).get(id).map(|k| k.place).ok_or(SnapshotError::NoCheckpoint(id))?;
            let _quiet = reverse::OverThePast::new(self);
            self.go_to(&place)?;
            let marks = shared.virtio.mark_disks();
            lock(&shared.checkpoints).mark_disks(id, marks);
            return Ok(place);
        }
        let (place, disks, hits) = {
            let mut c = lock(&shared.checkpoints);
            let k = c.get(id).ok_or(SnapshotError::NoCheckpoint(id))?;
            let (machine, kept) =
                (k.machine.clone(), (k.place, k.disks.clone().unwrap_or_default(), k.exit_hits.clone()));
            live_state::restore_with(shared, &machine, |guest| {
                // What was written since the last checkpoint or restore decides what is put back.
                shared.written_into(&mut c);
                // SAFETY: every vCPU is parked and the virtio workers settled (restore_with).
                let mut ram = unsafe { guest.slices_mut() };
                c.restore_into(id, &mut ram).map(|_| ()).ok_or(SnapshotError::NoCheckpoint(id))
            })?;
            kept
        };
        shared.virtio.rewind_disks(&disks).map_err(|e| TravelError::Disks(e.to_string()))?;
        lock(&shared.checkpoints).lose_disk_marks_after(&place);
        // An exit breakpoint's Nth match is counted along the timeline: its count goes back too.
        shared.debug.set_exit_breakpoint_hits(&hits);
        shared.timeline.set_place(&place);
        shared.checkpoint_placed(place.exits);
        Ok(place)
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
        // RAM was written whole, past every log.
        let mut checkpoints = lock(&self.shared().checkpoints);
        self.shared().written_into(&mut checkpoints);
        checkpoints.forget_base();
        drop(checkpoints);
        let seq = snap.header.seq;
        self.shared().timeline.set_place(&Place::at_exit(seq));
        self.shared().timeline.truncate(seq);
        Ok(seq)
    }
}

/// The disk images named in machine options (`--disk FILE[,ro]`).
pub fn disks_of(args: &[String]) -> Vec<std::path::PathBuf> {
    let disks = crate::machine_args::values_of(args, "--disk");
    disks.iter().map(|v| std::path::PathBuf::from(v.strip_suffix(",ro").unwrap_or(v))).collect()
}

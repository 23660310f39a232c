//! Going back in time, the controller's side: checkpoints taken and restored while the guest is
//! stopped (`:checkpoint`, `monitor checkpoint`), snapshots written to a file, and the timeline
//! position they are placed on (exits since the VM started, along the present history).

use std::path::Path;
use std::sync::atomic::Ordering;

use crate::controller::{ControlError, Controller};
use crate::sync::lock;
use crate::vmm::snapshot::file::{self, SnapshotHeader};
use crate::vmm::snapshot::{self, SnapshotError};

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
            "{} held of a {} budget{}",
            human_size(self.bytes),
            human_size(self.budget),
            if self.thinned > 0 { format!(", {} older thinned away", self.thinned) } else { String::new() }
        )
    }
}

impl Controller {
    /// Where the VM is on its timeline: exits since it started, along the present history.
    pub fn position(&self) -> u64 {
        self.shared().position()
    }

    /// Takes a checkpoint of the stopped VM (`manual`: the user asked); its number.
    pub fn checkpoint(&self, manual: bool) -> Result<u32, ControlError> {
        let shared = self.shared();
        let state = snapshot::capture(shared)?;
        let position = state.seq - shared.timeline_offset.load(Ordering::Acquire);
        Ok(lock(&shared.checkpoints).add(position, state.t_ns, manual, state.machine, state.ram))
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
        }
    }

    /// Puts the stopped VM back in checkpoint `id`'s state; the checkpoints after it are
    /// dropped (running on makes another future). Its position.
    pub fn restore_checkpoint(&self, id: u32) -> Result<u64, ControlError> {
        let shared = self.shared();
        let (machine, ram, position) = {
            let c = lock(&shared.checkpoints);
            let k = c.get(id).ok_or(SnapshotError::NoCheckpoint(id))?;
            let ram = c.ram_of(id).ok_or(SnapshotError::NoCheckpoint(id))?;
            (k.machine.clone(), ram, k.seq)
        };
        snapshot::restore(shared, &machine, &ram)?;
        lock(&shared.checkpoints).truncate_after(id);
        self.move_to(position);
        Ok(position)
    }

    /// Places the present on the timeline at `position` (after a restore).
    fn move_to(&self, position: u64) {
        let shared = self.shared();
        let seq = shared.seq.load(Ordering::Acquire);
        shared.timeline_offset.store(seq.saturating_sub(position), Ordering::Release);
    }

    /// Writes the stopped VM's whole state to `path`; the bytes written.
    pub fn snapshot(&self, path: &Path) -> Result<u64, ControlError> {
        let shared = self.shared();
        let state = snapshot::capture(shared)?;
        let position = state.seq - shared.timeline_offset.load(Ordering::Acquire);
        let header = SnapshotHeader {
            kvmscope: env!("CARGO_PKG_VERSION").to_string(),
            machine_args: shared.machine_args.clone(),
            mem_size: shared.ram.map.size(),
            cpus: self.vcpus() as u32,
            disks: disks_of(&shared.machine_args),
            seq: position,
            t_ns: state.t_ns,
            ram: shared.ram.host_ranges().iter().map(|&(gpa, len, _)| (gpa, len)).collect(),
        };
        Ok(file::write(path, &header, &state).map_err(SnapshotError::from)?)
    }

    /// Puts the state a snapshot file holds into this VM (built from the same options), before
    /// its vCPUs first run or while they are stopped.
    pub fn restore_snapshot(&self, path: &Path) -> Result<u64, ControlError> {
        let (header, state) = file::read(path).map_err(SnapshotError::from)?;
        snapshot::restore(self.shared(), &state.machine, &state.ram)?;
        self.move_to(header.seq);
        Ok(header.seq)
    }
}

/// The disk images named in machine options (`--disk FILE[,ro]`).
pub fn disks_of(args: &[String]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = match a.strip_prefix("--disk=") {
            Some(v) => Some(v.to_string()),
            None if a == "--disk" => it.next().cloned(),
            None => None,
        };
        if let Some(v) = value {
            out.push(std::path::PathBuf::from(v.strip_suffix(",ro").unwrap_or(&v)));
        }
    }
    out
}

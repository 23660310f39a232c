//! Recordings anyone can re-execute (rr's record and replay, for a whole VM). `run --record FILE
//! --replayable` also writes into the recording the VM's starting state — a snapshot taken before
//! the guest's first instruction — and the files its machine was built from (the image, initrd
//! and disks, as they were then). `replay FILE --exec` unpacks them, builds the same machine from
//! them anywhere, puts the state back and runs the guest again, every value an exit read answered
//! from the recording: the guest follows it exit for exit, and where it leaves it, that is said.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{ReadError, Record, TraceReader};
use crate::vmm::snapshot::file::SnapshotHeader;
use crate::vmm::timeline::{ExitMark, recorded_marks};

/// Bytes of a file per record.
const PIECE: usize = 1 << 20;

/// Bytes of files a recording carries at most (a disk bigger than that is not carried).
pub const MAX_CARRIED: u64 = 1 << 30;

/// The name the starting state is carried under.
const SNAPSHOT: &str = "snapshot";

/// The machine options whose values are files a replayable recording carries.
const FILE_OPTIONS: [&str; 4] = ["--kernel", "--image", "--initrd", "--disk"];

/// Why a recording cannot be made replayable, or re-executed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayableError {
    #[error("--replayable: {0}")]
    Refused(String),
    #[error("--replayable: reading {path}: {source}")]
    Read { path: PathBuf, source: crate::files::FileError },
    #[error(transparent)]
    Recording(#[from] ReadError),
    #[error("{0} is not a replayable recording (record it with run --record FILE --replayable)")]
    NotReplayable(PathBuf),
    #[error("{path}: {what}")]
    Damaged { path: PathBuf, what: String },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The files of machine options `args` that a replayable recording carries, as given.
fn carried_paths(args: &[String]) -> Vec<String> {
    let mut paths = Vec::new();
    for name in FILE_OPTIONS {
        for v in crate::machine_args::values_of(args, name) {
            paths.push(v.strip_suffix(",ro").unwrap_or(&v).to_string());
        }
    }
    paths
}

/// Whether a machine of options `args` can be recorded to be re-executed: said before it is built.
pub fn check(args: &[String]) -> Result<(), ReplayableError> {
    if !crate::machine_args::values_of(args, "--net").is_empty() {
        return Err(ReplayableError::Refused(
            "what a network card receives is not recorded: a run with --net cannot be re-executed".into(),
        ));
    }
    let mut carried = 0;
    for path in carried_paths(args) {
        let meta = std::fs::metadata(&path).map_err(|e| ReplayableError::Refused(format!("{path}: {e}")))?;
        carried += meta.len();
    }
    if carried > MAX_CARRIED {
        return Err(ReplayableError::Refused(format!(
            "the image, initrd and disks come to {} (a recording carries {} at most)",
            crate::vmm::memory::data_size(carried),
            crate::vmm::memory::human_size(MAX_CARRIED)
        )));
    }
    Ok(())
}

/// The records that carry the starting state `snapshot` and the files of machine options `args`.
pub fn file_records(snapshot: &[u8], args: &[String]) -> Result<Vec<Record>, ReplayableError> {
    check(args)?;
    let mut files = vec![(SNAPSHOT.to_string(), snapshot.to_vec())];
    let mut carried = snapshot.len() as u64;
    for path in carried_paths(args) {
        let read = crate::files::read_regular(Path::new(&path), "file", MAX_CARRIED - carried.min(MAX_CARRIED));
        let bytes = read.map_err(|source| ReplayableError::Read { path: path.clone().into(), source })?;
        carried += bytes.len() as u64;
        files.push((path, bytes));
    }
    let mut records = Vec::new();
    for (name, bytes) in files {
        let total = bytes.len() as u64;
        let pieces: Vec<&[u8]> = if bytes.is_empty() { vec![&[][..]] } else { bytes.chunks(PIECE).collect() };
        let mut offset = 0;
        for piece in pieces {
            records.push(Record::File { name: name.clone(), offset, total, bytes: piece.to_vec() });
            offset += piece.len() as u64;
        }
    }
    Ok(records)
}

/// A replayable recording unpacked to be run again.
pub struct Unpacked {
    /// Where its files were written (removed with it).
    pub dir: PathBuf,
    /// The starting state, and its header.
    pub snapshot: PathBuf,
    pub header: SnapshotHeader,
    /// The machine options, with the files' paths now those unpacked.
    pub machine_args: Vec<String>,
    /// Its guest exits, in order.
    pub marks: Vec<ExitMark>,
    /// How the recorded run ended: its status and name.
    pub end: Option<(i32, String)>,
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A file being put together from its pieces.
#[derive(Default)]
struct Assembly {
    total: u64,
    bytes: Vec<u8>,
}

/// Reads a replayable recording: its files written under a directory of their own, its exits
/// and its end.
pub fn unpack(trace: &Path) -> Result<Unpacked, ReplayableError> {
    let mut reader = TraceReader::open(trace)?;
    if !reader.header.replayable {
        return Err(ReplayableError::NotReplayable(trace.to_path_buf()));
    }
    let damaged = |what: String| ReplayableError::Damaged { path: trace.to_path_buf(), what };
    let mut files: BTreeMap<String, Assembly> = BTreeMap::new();
    let mut exits = Vec::new();
    let mut end = None;
    while let Some((_, records)) = reader.next_chunk()? {
        for r in records {
            match r {
                Record::File { name, offset, total, bytes } => {
                    let f = files.entry(name.clone()).or_default();
                    let fits = offset == f.bytes.len() as u64 && offset + bytes.len() as u64 <= total.min(MAX_CARRIED);
                    if !fits || (f.total != 0 && f.total != total) {
                        return Err(damaged(format!("the piece of {name} at {offset} does not follow the one before")));
                    }
                    f.total = total;
                    f.bytes.extend_from_slice(&bytes);
                }
                Record::Exit(e) => exits.push(e),
                Record::End { status, name, .. } => end = Some((status, name)),
                _ => {}
            }
        }
    }
    if let Some((name, f)) = files.iter().find(|(_, f)| f.bytes.len() as u64 != f.total) {
        return Err(damaged(format!("{name} ends after {} of its {} bytes", f.bytes.len(), f.total)));
    }
    let dir = std::env::temp_dir().join(format!("kvmscope-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| ReplayableError::Write { path: dir.clone(), source })?;
    match write_files(&dir, files, &damaged) {
        Ok((snapshot, header, machine_args)) => {
            Ok(Unpacked { dir, snapshot, header, machine_args, marks: recorded_marks(&exits), end })
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

/// Writes a recording's `files` under `dir`: the starting state's path and header, and its
/// machine options with the files' paths now those written.
fn write_files(
    dir: &Path,
    mut files: BTreeMap<String, Assembly>,
    damaged: &dyn Fn(String) -> ReplayableError,
) -> Result<(PathBuf, SnapshotHeader, Vec<String>), ReplayableError> {
    let write = |path: &Path, bytes: &[u8]| {
        std::fs::write(path, bytes).map_err(|source| ReplayableError::Write { path: path.to_path_buf(), source })
    };
    let snapshot_path = dir.join(SNAPSHOT);
    let snapshot = files.remove(SNAPSHOT).ok_or_else(|| damaged("it carries no starting state".into()))?;
    write(&snapshot_path, &snapshot.bytes)?;
    let header = crate::vmm::snapshot::file::read_header(&snapshot_path)
        .map_err(|e| damaged(format!("its starting state: {e}")))?;
    // Each file the machine was built from, under a name of its own, in its options' place.
    let mut moved = BTreeMap::new();
    for (i, (name, f)) in files.into_iter().enumerate() {
        let base = Path::new(&name).file_name().map_or("file".into(), |n| n.to_string_lossy().into_owned());
        let path = dir.join(format!("{i}-{base}"));
        write(&path, &f.bytes)?;
        moved.insert(name, path.display().to_string());
    }
    for path in carried_paths(&header.machine_args) {
        if !moved.contains_key(&path) {
            return Err(damaged(format!("it does not carry {path}, which its machine was built from")));
        }
    }
    let machine_args = header
        .machine_args
        .iter()
        .map(|a| {
            let (file, ro) = a.strip_suffix(",ro").map_or((a.as_str(), ""), |f| (f, ",ro"));
            moved.get(file).map_or(a.clone(), |p| format!("{p}{ro}"))
        })
        .collect();
    Ok((snapshot_path, header, machine_args))
}

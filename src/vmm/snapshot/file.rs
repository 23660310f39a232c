//! A snapshot file: one VM state on disk, to start a VM from (`run --restore FILE`).
//!
//! Layout: the magic `KVMSCOPE-SNAPSHOT` and a NUL, the format version (u32, little-endian), then
//! sections, each `kind` (u8), `length` (u64), CRC-32 of the payload (u32), payload:
//! 1 the header (JSON: kvmscope's version, the machine's options, where on the timeline),
//! 2 the machine state (JSON: vCPUs, in-kernel chips, devices), 3 a run of RAM pages that are not
//! all zeros (u64 guest-physical start, then the bytes; the header lists RAM's ranges, and what no
//! section covers is zeros), 255 the end. A file that ends early, a CRC that does not match, or
//! another format version is refused with the section and offset named.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::MachineState;
#[cfg(test)]
use super::RamImage;
use super::checkpoints::RamSlices;

const MAGIC: &[u8; 18] = b"KVMSCOPE-SNAPSHOT\0";
/// The format this build writes and reads.
pub const VERSION: u32 = 1;

const HEADER: u8 = 1;
const MACHINE: u8 = 2;
const RAM: u8 = 3;
const END: u8 = 255;

/// Largest JSON section read (the machine state of 64 vCPUs is well under it).
const MAX_JSON: u64 = 64 << 20;

/// What a snapshot says of the machine it came from: what to build to restore it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub kvmscope: String,
    /// The `run` options that shape the machine, as given (`--kernel FILE`, `--mem 256M`, ...).
    pub machine_args: Vec<String>,
    pub mem_size: u64,
    pub cpus: u32,
    /// The disk images the machine had (`--disk`), which must be there to restore it.
    pub disks: Vec<PathBuf>,
    /// The exit sequence number and time it was taken at.
    pub seq: u64,
    pub t_ns: u64,
    /// Guest RAM's ranges, as (guest-physical start, length).
    #[serde(default)]
    pub ram: Vec<(u64, u64)>,
}

/// Pages of RAM a section is cut into: zero pages are left out.
const PAGE: usize = 4096;
static ZEROS: [u8; PAGE] = [0; PAGE];

/// The runs of pages of `bytes` (at `gpa`) that are not all zeros, as (start, bytes).
fn nonzero_runs(gpa: u64, bytes: &[u8]) -> Vec<(u64, &[u8])> {
    let mut runs = Vec::new();
    let mut start: Option<usize> = None;
    let pages = bytes.len().div_ceil(PAGE);
    for i in 0..=pages {
        // A slice comparison is a memcmp, fast in every build.
        let zero = i == pages || {
            let page = &bytes[i * PAGE..((i + 1) * PAGE).min(bytes.len())];
            page == &ZEROS[..page.len()]
        };
        match (zero, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                runs.push((gpa + (s * PAGE) as u64, &bytes[s * PAGE..(i * PAGE).min(bytes.len())]));
                start = None;
            }
            _ => {}
        }
    }
    runs
}

/// Why a snapshot file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a kvmscope snapshot", path.display())]
    NotSnapshot { path: PathBuf },
    #[error("{}: snapshot format version {found}; this kvmscope reads version {VERSION}", path.display())]
    Version { path: PathBuf, found: u32 },
    #[error("{}: damaged at byte {offset} ({what})", path.display())]
    Damaged { path: PathBuf, offset: u64, what: String },
}

/// Writes `machine` and `ram` with `header` to `path` (through a temporary file beside it,
/// renamed at the end: a snapshot is whole or not there). RAM is read where it is, not copied.
pub fn write(path: &Path, header: &SnapshotHeader, machine: &MachineState, ram: &RamSlices) -> Result<u64, FileError> {
    let io = |source| FileError::Io { path: path.to_path_buf(), source };
    // Whole or not there; what is at the path must be a regular file (a device, a FIFO is
    // refused: `monitor snapshot /dev/null` must not replace /dev/null).
    let mut output = crate::files::Output::create(path, "snapshot", &[]).map_err(|e| match e {
        crate::files::FileError::Io { source, .. } => io(source),
        other => io(std::io::Error::other(other.to_string())),
    })?;
    let mut out = BufWriter::with_capacity(1 << 20, output.file());
    let mut written = 0u64;
    let mut section = |out: &mut BufWriter<&mut std::fs::File>, kind: u8, parts: &[&[u8]]| -> std::io::Result<()> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let mut crc = crc32fast::Hasher::new();
        parts.iter().for_each(|p| crc.update(p));
        out.write_all(&[kind])?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(&crc.finalize().to_le_bytes())?;
        for p in parts {
            out.write_all(p)?;
        }
        written += 13 + len;
        Ok(())
    };
    let result = (|| {
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        section(&mut out, HEADER, &[&serde_json::to_vec(header)?])?;
        section(&mut out, MACHINE, &[&serde_json::to_vec(machine)?])?;
        for &(gpa, bytes) in ram {
            for (at, run) in nonzero_runs(gpa, bytes) {
                section(&mut out, RAM, &[&at.to_le_bytes(), run])?;
            }
        }
        section(&mut out, END, &[])?;
        out.flush()
    })();
    drop(out);
    result.map_err(io)?;
    output.commit().map_err(|e| io(std::io::Error::other(e.to_string())))?;
    Ok(written + MAGIC.len() as u64 + 4)
}

/// Reads only the header of the snapshot at `path` (to build the machine before reading RAM).
pub fn read_header(path: &Path) -> Result<SnapshotHeader, FileError> {
    let mut r = SectionReader::open(path)?;
    let (kind, payload) = r.next()?;
    if kind != HEADER {
        return Err(r.damaged("the header is not the first section"));
    }
    serde_json::from_slice(&payload).map_err(|e| r.damaged(&format!("header: {e}")))
}

/// A snapshot as read: RAM as the runs of pages that are not zeros.
pub struct Snapshot {
    pub header: SnapshotHeader,
    pub machine: MachineState,
    runs: Vec<(u64, Vec<u8>)>,
}

impl Snapshot {
    /// Writes the snapshot's RAM into `ram` (the ranges its header lists): its runs, and zeros
    /// elsewhere — only the pages that differ are written, so a fresh VM's untouched RAM stays
    /// untouched. False when the ranges are not the snapshot's.
    pub fn write_ram(&self, ram: &mut [(u64, &mut [u8])]) -> bool {
        let same = ram.len() == self.header.ram.len()
            && ram.iter().zip(&self.header.ram).all(|((a, x), (b, len))| a == b && x.len() as u64 == *len);
        if !same {
            return false;
        }
        let mut runs = self.runs.iter().peekable();
        for (gpa, bytes) in ram.iter_mut() {
            for (i, page) in bytes.chunks_mut(PAGE).enumerate() {
                let at = *gpa + (i * PAGE) as u64;
                while runs.peek().is_some_and(|(s, b)| s + b.len() as u64 <= at) {
                    runs.next();
                }
                let want = match runs.peek() {
                    Some((s, b)) if *s <= at => &b[(at - s) as usize..][..page.len()],
                    _ => &ZEROS[..page.len()],
                };
                if *page != *want {
                    page.copy_from_slice(want);
                }
            }
        }
        true
    }

    /// The snapshot's RAM, whole (for the tests to compare).
    #[cfg(test)]
    pub fn ram(&self) -> RamImage {
        let mut image: RamImage = self.header.ram.iter().map(|&(gpa, len)| (gpa, vec![0u8; len as usize])).collect();
        let mut view: Vec<(u64, &mut [u8])> = image.iter_mut().map(|(g, b)| (*g, &mut b[..])).collect();
        self.write_ram(&mut view);
        image
    }
}

/// Reads the snapshot at `path`, every section checked.
pub fn read(path: &Path) -> Result<Snapshot, FileError> {
    let mut r = SectionReader::open(path)?;
    let mut header: Option<SnapshotHeader> = None;
    let mut machine: Option<MachineState> = None;
    let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
    loop {
        let (kind, payload) = r.next()?;
        match kind {
            HEADER => header = Some(serde_json::from_slice(&payload).map_err(|e| r.damaged(&format!("header: {e}")))?),
            MACHINE => {
                machine = Some(serde_json::from_slice(&payload).map_err(|e| r.damaged(&format!("machine state: {e}")))?)
            }
            RAM => {
                let ranges = header.as_ref().map(|h| h.ram.as_slice()).unwrap_or_default();
                if payload.len() < 8 + PAGE || (payload.len() - 8) % PAGE != 0 {
                    return Err(r.damaged("a RAM section that is not whole pages"));
                }
                let mut payload = payload;
                let gpa = u64::from_le_bytes(payload[..8].try_into().unwrap_or_default());
                payload.drain(..8);
                let end = gpa.checked_add(payload.len() as u64);
                let inside = end.is_some_and(|end| ranges.iter().any(|&(s, l)| gpa >= s && end <= s + l));
                let ordered = runs.last().is_none_or(|(s, b)| s + b.len() as u64 <= gpa);
                if !inside || !ordered || gpa % PAGE as u64 != 0 {
                    return Err(r.damaged(&format!("RAM at {gpa:#x} outside the machine's RAM or out of order")));
                }
                runs.push((gpa, payload));
            }
            END => break,
            other => return Err(r.damaged(&format!("unknown section kind {other}"))),
        }
    }
    let header = header.ok_or_else(|| r.damaged("no header"))?;
    let machine = machine.ok_or_else(|| r.damaged("no machine state"))?;
    Ok(Snapshot { header, machine, runs })
}

/// Reads sections one by one, checking each.
struct SectionReader {
    path: PathBuf,
    input: BufReader<std::fs::File>,
    offset: u64,
    len: u64,
}

impl SectionReader {
    fn open(path: &Path) -> Result<Self, FileError> {
        let io = |source| FileError::Io { path: path.to_path_buf(), source };
        // A regular file: a FIFO or a device is refused at once, never waited on.
        let file =
            crate::files::open_regular(path, "snapshot").map_err(|e| io(std::io::Error::other(e.to_string())))?;
        let len = file.metadata().map_err(io)?.len();
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut head = [0u8; 22];
        if input.read_exact(&mut head).is_err() || &head[..18] != MAGIC {
            return Err(FileError::NotSnapshot { path: path.to_path_buf() });
        }
        let found = u32::from_le_bytes(head[18..22].try_into().unwrap_or_default());
        if found != VERSION {
            return Err(FileError::Version { path: path.to_path_buf(), found });
        }
        Ok(Self { path: path.to_path_buf(), input, offset: 22, len })
    }

    fn damaged(&self, what: &str) -> FileError {
        FileError::Damaged { path: self.path.clone(), offset: self.offset, what: what.to_string() }
    }

    /// The next section's kind and payload, its length and CRC checked.
    fn next(&mut self) -> Result<(u8, Vec<u8>), FileError> {
        let mut head = [0u8; 13];
        self.input.read_exact(&mut head).map_err(|_| self.damaged("the file ends before its end section"))?;
        let kind = head[0];
        let len = u64::from_le_bytes(head[1..9].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(head[9..13].try_into().unwrap_or_default());
        let left = self.len.saturating_sub(self.offset + 13);
        if len > left || (kind != RAM && len > MAX_JSON) {
            return Err(self.damaged(&format!("a section of {len} bytes where {left} are left")));
        }
        let mut payload = vec![0u8; len as usize];
        self.input.read_exact(&mut payload).map_err(|_| self.damaged("the file ends inside a section"))?;
        if crc32fast::hash(&payload) != crc {
            return Err(self.damaged(&format!("section kind {kind}: its checksum does not match")));
        }
        self.offset += 13 + len;
        Ok((kind, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> (SnapshotHeader, MachineState, RamImage) {
        let header = SnapshotHeader {
            kvmscope: "test".into(),
            machine_args: vec!["--kernel".into(), "x.elf".into()],
            mem_size: 8192,
            cpus: 1,
            disks: Vec::new(),
            seq: 42,
            t_ns: 7,
            ram: vec![(0, 3 * 4096), (0x10_0000, 4096)],
        };
        let machine = MachineState { vcpus: Vec::new(), chips: None, devices: Vec::new() };
        let mut low = vec![0u8; 3 * 4096];
        low[5000] = 1;
        let ram = vec![(0, low), (0x10_0000, vec![2u8; 4096])];
        (header, machine, ram)
    }

    fn slices(ram: &RamImage) -> Vec<(u64, &[u8])> {
        ram.iter().map(|(g, b)| (*g, &b[..])).collect()
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("kvmscope-snap-{}-{name}", std::process::id()))
    }

    #[test]
    fn a_snapshot_reads_back_as_written() {
        let (header, machine, ram) = state();
        let path = temp("ok");
        write(&path, &header, &machine, &slices(&ram)).unwrap();
        let s = read(&path).unwrap();
        assert_eq!(s.header, header);
        assert_eq!(s.ram(), ram);
        // Into RAM that holds something else: every page as it was.
        let mut other: RamImage = ram.iter().map(|(g, b)| (*g, vec![9u8; b.len()])).collect();
        let mut view: Vec<(u64, &mut [u8])> = other.iter_mut().map(|(g, b)| (*g, &mut b[..])).collect();
        assert!(s.write_ram(&mut view));
        assert_eq!(other, ram);
        assert_eq!(read_header(&path).unwrap(), header);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn only_pages_that_are_not_zeros_are_written() {
        let mut b = vec![0u8; 8 * 4096];
        b[5000] = 1;
        b[7 * 4096] = 2;
        let runs: Vec<(u64, usize)> = nonzero_runs(0x1000, &b).iter().map(|(a, x)| (*a, x.len())).collect();
        assert_eq!(runs, vec![(0x2000, 4096), (0x8000, 4096)]);
    }

    #[test]
    fn damage_of_every_kind_is_named() {
        let (header, machine, ram) = state();
        let path = temp("bad");
        write(&path, &header, &machine, &slices(&ram)).unwrap();
        let good = std::fs::read(&path).unwrap();
        // Truncated anywhere past the magic: damaged, with the offset.
        for cut in [30, 200, good.len() - 5] {
            std::fs::write(&path, &good[..cut]).unwrap();
            assert!(matches!(read(&path), Err(FileError::Damaged { .. })), "cut at {cut}");
        }
        // A bit flipped in RAM: its section's checksum.
        let mut flipped = good.clone();
        let at = good.len() - 30;
        flipped[at] ^= 0x10;
        std::fs::write(&path, &flipped).unwrap();
        let e = read(&path).err().unwrap().to_string();
        assert!(e.contains("checksum does not match"), "{e}");
        // Another version, and not a snapshot at all.
        let mut newer = good.clone();
        newer[18] = 9;
        std::fs::write(&path, &newer).unwrap();
        assert!(read(&path).err().unwrap().to_string().contains("snapshot format version 9"));
        std::fs::write(&path, b"hello").unwrap();
        assert!(matches!(read(&path), Err(FileError::NotSnapshot { .. })));
        let _ = std::fs::remove_file(path);
    }
}

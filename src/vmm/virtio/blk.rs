//! virtio-blk on a raw image file (`--disk FILE[,ro]`): requests IN, OUT, FLUSH and GET_ID; a FLUSH
//! is an `fdatasync`, so what the guest flushed is on the host's disk before the guest hears so.
//! Every request is checked against the spec's shape (header the device reads, data in the right
//! direction, a status byte at the end) and the disk's size; a bad one fails with IOERR, not the VMM.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::vmm::memory::Mem;
use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use vmm_sys_util::ioctl_ior_nr;

use super::chain::{Desc, read_buffer, write_buffer};
use super::undo::UndoLog;
use super::{Completion, VirtioDevice};
use crate::sync::lock;

/// Bytes per sector, as the spec counts them.
const SECTOR: u64 = 512;
/// The queue's size (Linux takes what the device offers).
const QUEUE_SIZE: u16 = 256;
/// Data one request may carry at most; a larger one fails with IOERR.
const MAX_REQUEST: u64 = 16 << 20;
/// `VIRTIO_BLK_ID_BYTES`.
const ID_BYTES: usize = 20;

/// A disk as `--disk` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: PathBuf,
    pub read_only: bool,
}

impl DiskSpec {
    /// `FILE` or `FILE,ro`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (path, read_only) = match text.rsplit_once(',') {
            Some((p, "ro")) => (p, true),
            Some((p, "rw")) => (p, false),
            Some((_, other)) => return Err(format!("--disk {text}: unknown option {other:?} (expected ro or rw)")),
            None => (text, false),
        };
        if path.is_empty() {
            return Err("--disk needs a file name".into());
        }
        Ok(Self { path: PathBuf::from(path), read_only })
    }
}

/// Why a `--disk` cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("--disk {}: {source}", path.display())]
    Open { path: PathBuf, source: std::io::Error },
    #[error("--disk {}: is {kind}; a disk is a regular file or a block device", path.display())]
    NotADisk { path: PathBuf, kind: &'static str },
    #[error("--disk {}: cannot read the block device's size: {source}", path.display())]
    Size { path: PathBuf, source: std::io::Error },
    #[error("--disk {}: another process has it open{} (an advisory lock, as QEMU takes)", path.display(), if *writing { " for writing" } else { "" })]
    Locked { path: PathBuf, writing: bool },
    #[error("--disk {}: given twice, once writable: one image cannot be two disks that write", path.display())]
    Twice { path: PathBuf },
}

/// Why a request failed (its status is IOERR or UNSUPP).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("length {0} is not a whole number of sectors")]
    PartialSector(u64),
    #[error("length {0} is above the {MAX_REQUEST}-byte limit")]
    TooLong(u64),
    #[error("sectors {sector}+{count} beyond the disk's {sectors}")]
    BeyondDisk { sector: u64, count: u64, sectors: u64 },
    /// A read (`true`) needs buffers the device writes; a write, buffers it reads.
    #[error("a {} request with a buffer the device cannot {}", if *.0 { "read" } else { "write" }, if *.0 { "write" } else { "read" })]
    Direction(bool),
    #[error("write to a read-only disk")]
    ReadOnly,
    #[error("buffer {addr:#x}+{len:#x} is not guest RAM")]
    NotRam { addr: u64, len: u64 },
    #[error("host {what}: {source}")]
    Host { what: &'static str, source: std::io::Error },
    #[error("GET_ID without a buffer the device can write")]
    NoIdBuffer,
    #[error("unsupported request type {0}")]
    Unsupported(u32),
    #[error("no readable 16-byte request header")]
    NoHeader,
}

ioctl_ior_nr!(BLKGETSIZE64, 0x12, 114, u64);

/// A virtio block device.
pub struct Block {
    file: File,
    read_only: bool,
    sectors: u64,
    /// Bytes past the last whole sector, which the guest does not see.
    tail: u64,
    id: Vec<u8>,
    /// The image's (device, inode): the same file given twice is found by it.
    pub identity: (u64, u64),
    /// What writes overwrite, kept for going back to a checkpoint (writable disks).
    undo: Option<Arc<Mutex<UndoLog>>>,
}

/// What the request header says.
struct Header {
    kind: u32,
    sector: u64,
}

impl Block {
    /// Opens the image (read-only when asked): a regular file, or a block device (its size read
    /// from the device), locked against another process that would write it (shared when
    /// read-only, exclusive when writable). Opened without waiting on a FIFO.
    pub fn open(spec: &DiskSpec) -> Result<Self, DiskError> {
        let path = spec.path.clone();
        let open_err = |source| DiskError::Open { path: path.clone(), source };
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(!spec.read_only);
        let file = crate::files::open_nonblocking(&path, &mut options, "--disk").map_err(|e| match e {
            crate::files::FileError::Io { source, .. } => open_err(source),
            other => open_err(std::io::Error::other(other.to_string())),
        })?;
        let meta = file.metadata().map_err(open_err)?;
        let kind = meta.file_type();
        let len = if kind.is_file() {
            meta.len()
        } else if kind.is_block_device() {
            let mut size = 0u64;
            // SAFETY: BLKGETSIZE64 writes one u64 to the pointer, which lives across the call.
            let r = unsafe { vmm_sys_util::ioctl::ioctl_with_mut_ref(&file, BLKGETSIZE64(), &mut size) };
            if r < 0 {
                return Err(DiskError::Size { path, source: std::io::Error::last_os_error() });
            }
            size
        } else {
            return Err(DiskError::NotADisk { path, kind: crate::files::kind_of(&meta) });
        };
        let mode = if spec.read_only { libc::LOCK_SH } else { libc::LOCK_EX };
        // SAFETY: flock on the descriptor `file` owns.
        if unsafe { libc::flock(file.as_raw_fd(), mode | libc::LOCK_NB) } != 0 {
            return Err(DiskError::Locked { path, writing: spec.read_only });
        }
        let name = spec.path.file_name().map_or(Path::new("disk").as_os_str(), |n| n).to_string_lossy();
        let id = name.as_bytes()[..name.len().min(ID_BYTES)].to_vec();
        let identity = (meta.dev(), meta.ino());
        Ok(Self {
            file,
            read_only: spec.read_only,
            sectors: len / SECTOR,
            tail: len % SECTOR,
            id,
            identity,
            undo: None,
        })
    }

    /// The disk's undo log (made on first asking): what its writes overwrite, from the first mark.
    pub fn undo_log(&mut self) -> std::io::Result<Arc<Mutex<UndoLog>>> {
        if let Some(undo) = &self.undo {
            return Ok(undo.clone());
        }
        let undo = Arc::new(Mutex::new(UndoLog::new(self.file.try_clone()?)));
        self.undo = Some(undo.clone());
        Ok(undo)
    }

    /// Capacity in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Bytes at the end of the image, short of a sector, that the guest does not see.
    pub fn tail(&self) -> u64 {
        self.tail
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    fn header(chain: &[Desc], mem: &Mem) -> Option<Header> {
        let first = chain.first().filter(|d| !d.device_writes() && d.len >= 16)?;
        let mut h = [0u8; 16];
        read_buffer(mem, first, &mut h).then(|| Header {
            kind: u32::from_le_bytes(h[0..4].try_into().unwrap()),
            sector: u64::from_le_bytes(h[8..16].try_into().unwrap()),
        })
    }

    /// The data buffers: everything between the header descriptor and the status byte, as
    /// (address, length, device writes it).
    fn data(chain: &[Desc]) -> Vec<(u64, u64, bool)> {
        let mut v: Vec<(u64, u64, bool)> = Vec::new();
        let last = chain.len() - 1;
        for (i, d) in chain.iter().enumerate() {
            let (mut addr, mut len) = (d.addr, d.len as u64);
            if i == 0 {
                // The header's descriptor may carry data after its 16 bytes.
                addr += 16;
                len = len.saturating_sub(16);
            }
            if i == last {
                len = len.saturating_sub(1);
            }
            if len > 0 {
                v.push((addr, len, d.device_writes()));
            }
        }
        v
    }

    fn execute(&mut self, h: &Header, data: &[(u64, u64, bool)], mem: &Mem) -> Result<u32, RequestError> {
        let total: u64 = data.iter().map(|d| d.1).sum();
        let check_range = |total: u64| -> Result<(), RequestError> {
            if total % SECTOR != 0 {
                return Err(RequestError::PartialSector(total));
            }
            if total > MAX_REQUEST {
                return Err(RequestError::TooLong(total));
            }
            match h.sector.checked_add(total / SECTOR) {
                Some(end) if end <= self.sectors => Ok(()),
                _ => Err(RequestError::BeyondDisk { sector: h.sector, count: total / SECTOR, sectors: self.sectors }),
            }
        };
        let host = |what| move |source| RequestError::Host { what, source };
        match h.kind {
            VIRTIO_BLK_T_IN => {
                if data.iter().any(|d| !d.2) {
                    return Err(RequestError::Direction(true));
                }
                check_range(total)?;
                let mut offset = h.sector * SECTOR;
                for &(addr, len, _) in data {
                    let mut buf = vec![0u8; len as usize];
                    self.file.read_exact_at(&mut buf, offset).map_err(host("read"))?;
                    if !write_buffer(mem, addr, &buf) {
                        return Err(RequestError::NotRam { addr, len });
                    }
                    offset += len;
                }
                Ok(total as u32)
            }
            VIRTIO_BLK_T_OUT => {
                if self.read_only {
                    return Err(RequestError::ReadOnly);
                }
                if data.iter().any(|d| d.2) {
                    return Err(RequestError::Direction(false));
                }
                check_range(total)?;
                let mut offset = h.sector * SECTOR;
                for &(addr, len, _) in data {
                    let mut buf = vec![0u8; len as usize];
                    let d = Desc { addr, len: len as u32, flags: 0, next: 0 };
                    if !read_buffer(mem, &d, &mut buf) {
                        return Err(RequestError::NotRam { addr, len });
                    }
                    if let Some(undo) = &self.undo {
                        lock(undo).before_write(offset, len).map_err(host("read for the undo log"))?;
                    }
                    self.file.write_all_at(&buf, offset).map_err(host("write"))?;
                    offset += len;
                }
                Ok(0)
            }
            VIRTIO_BLK_T_FLUSH => {
                self.file.sync_data().map_err(host("fdatasync"))?;
                Ok(0)
            }
            VIRTIO_BLK_T_GET_ID => {
                let Some(&(addr, len, true)) = data.first() else {
                    return Err(RequestError::NoIdBuffer);
                };
                let mut id = [0u8; ID_BYTES];
                id[..self.id.len()].copy_from_slice(&self.id);
                let n = (len as usize).min(ID_BYTES);
                write_buffer(mem, addr, &id[..n]);
                Ok(n as u32)
            }
            other => Err(RequestError::Unsupported(other)),
        }
    }
}

/// A request type by name.
fn kind_name(kind: u32) -> String {
    match kind {
        VIRTIO_BLK_T_IN => "read".into(),
        VIRTIO_BLK_T_OUT => "write".into(),
        VIRTIO_BLK_T_FLUSH => "flush".into(),
        VIRTIO_BLK_T_GET_ID => "get-id".into(),
        VIRTIO_BLK_T_DISCARD => "discard".into(),
        VIRTIO_BLK_T_WRITE_ZEROES => "write-zeroes".into(),
        other => format!("type {other}"),
    }
}

impl VirtioDevice for Block {
    fn device_id(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn features(&self) -> u64 {
        let mut f = 1 << VIRTIO_BLK_F_FLUSH | 1 << VIRTIO_BLK_F_SEG_MAX | 1 << VIRTIO_BLK_F_BLK_SIZE;
        if self.read_only {
            f |= 1 << VIRTIO_BLK_F_RO;
        }
        f
    }

    fn queue_sizes(&self) -> &'static [u16] {
        &[QUEUE_SIZE]
    }

    fn queue_name(&self, _queue: u16) -> &'static str {
        "requestq"
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // capacity, size_max, seg_max, geometry, blk_size (struct virtio_blk_config).
        let mut config = [0u8; 24];
        config[0..8].copy_from_slice(&self.sectors.to_le_bytes());
        config[12..16].copy_from_slice(&(QUEUE_SIZE as u32 - 2).to_le_bytes());
        config[20..24].copy_from_slice(&(SECTOR as u32).to_le_bytes());
        let start = (offset as usize).min(config.len());
        let n = data.len().min(config.len() - start);
        data[..n].copy_from_slice(&config[start..start + n]);
    }

    fn describe(&self, _queue: u16, chain: &[Desc], mem: &Mem) -> String {
        match Self::header(chain, mem) {
            Some(h) => {
                let len: u64 = Self::data(chain).iter().map(|d| d.1).sum();
                match h.kind {
                    VIRTIO_BLK_T_IN | VIRTIO_BLK_T_OUT => {
                        format!("{} sector {} len {len}", kind_name(h.kind), h.sector)
                    }
                    k => kind_name(k),
                }
            }
            None => "no readable request header".into(),
        }
    }

    fn about(&self) -> Option<String> {
        let bytes = self.sectors * SECTOR;
        let rw = if self.read_only { "read-only" } else { "read-write" };
        Some(format!("{} sectors ({}), {rw}", self.sectors, crate::vmm::memory::human_size(bytes)))
    }

    fn handle(&mut self, _queue: u16, chain: &[Desc], mem: &Mem) -> Completion {
        let Some(status) = chain.last().filter(|d| d.device_writes() && d.len >= 1) else {
            let problem = Some("request without a device-writable status byte at its end".to_string());
            return Completion { written: 0, status: "no status byte".into(), problem };
        };
        let status_addr = status.addr + status.len as u64 - 1;
        let result = match Self::header(chain, mem) {
            Some(h) => self.execute(&h, &Self::data(chain), mem),
            None => Err(RequestError::NoHeader),
        };
        let (code, done) = match result {
            Ok(n) => (VIRTIO_BLK_S_OK, Completion::ok(n + 1)),
            Err(why @ RequestError::Unsupported(_)) => {
                (VIRTIO_BLK_S_UNSUPP, Completion { written: 1, status: format!("UNSUPP: {why}"), problem: None })
            }
            // The host failed, not the driver: no driver error event.
            Err(why @ RequestError::Host { .. }) => {
                (VIRTIO_BLK_S_IOERR, Completion { written: 1, status: format!("IOERR: {why}"), problem: None })
            }
            Err(why) => (
                VIRTIO_BLK_S_IOERR,
                Completion { written: 1, status: format!("IOERR: {why}"), problem: Some(why.to_string()) },
            ),
        };
        write_buffer(mem, status_addr, &[code as u8]);
        done
    }
}

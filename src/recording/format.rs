//! The trace file format.
//!
//! ```text
//! header:  "KVMSCOPE-TRACE\0\0" | version u16 | len u32 | JSON (TraceHeader) | crc32 u32
//! chunks:  "CHNK" | payload len u32 | record count u32 | crc u32 | payload
//! ```
//! The chunk's CRC-32 covers its length, its record count and its payload (version 2 on); in
//! version 1 traces, still read, it covers the payload alone. Version 3 added device events and
//! call stacks; version 4 the breakpoint exit kind; version 5 network frames; version 6 the files
//! a replayable recording carries (its starting state, the guest's image, initrd and disks);
//! version 7 the index a finished recording ends with (`trailer`: "KIDX" frame, JSON, footer).
//! All integers little-endian. A payload is a run of records, each a type byte and varint fields;
//! an exit stores its sequence number and time as the difference from the chunk's previous exit.
//! Instructions and device names are defined inline the first time a chunk uses them and referred
//! to by index after that, so every chunk decodes on its own: a recording cut short or damaged is
//! readable up to its last good chunk.

use serde::{Deserialize, Serialize};

use kvm_bindings::kvm_sregs;

use crate::debug::{Stop, StopReason};
use crate::decode::regs;
use crate::sync::lock;
use crate::trace::device::SNAPLEN;
use crate::trace::{DeviceEvent, DeviceEventKind, Dir, ExitEvent, ExitKind, FrameDir, Insn, NotifyPath, StackSample};
use crate::vmm::kvm_stats::{KvmCounts, Reading, StatKind};

/// The file's first bytes.
pub const MAGIC: &[u8; 16] = b"KVMSCOPE-TRACE\0\0";
/// The format version this kvmscope writes, and the newest it reads (it reads every older one).
/// Version 3 added device events; version 4 the breakpoint exit kind; version 5 network frames;
/// version 6 files; version 7 the index a finished recording ends with (see `trailer`).
pub const VERSION: u16 = 7;
/// A chunk's first bytes.
pub const CHUNK_MAGIC: &[u8; 4] = b"CHNK";
/// Bytes of a chunk's framing before the payload.
pub const CHUNK_HEADER: usize = 16;
/// Largest payload a reader accepts (a writer flushes long before).
pub const MAX_CHUNK: usize = 16 << 20;

/// What the recording is of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceHeader {
    pub kvmscope_version: String,
    pub host_kernel: String,
    /// KVM capabilities that matter, as (name, value).
    pub kvm_caps: Vec<(String, i32)>,
    pub guest_image: String,
    /// SHA-256 of the guest image, hex.
    pub guest_sha256: String,
    /// kvmscope's command line.
    pub command_line: Vec<String>,
    /// Seconds since the Unix epoch when the run started.
    pub start_unix_secs: u64,
    pub vcpus: u32,
    /// The host's name (`uname -n`); empty in recordings made before it was kept.
    #[serde(default)]
    pub host_name: String,
    /// It carries its starting state and files, to be re-executed (`run --replayable`).
    #[serde(default)]
    pub replayable: bool,
}

/// One record of a trace.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Exit(ExitEvent),
    /// Guest console output at `t_ns`.
    Console {
        t_ns: u64,
        bytes: Vec<u8>,
    },
    /// A debug stop, with the registers.
    Stop(StopRecord),
    /// How the run ended.
    End {
        t_ns: u64,
        status: i32,
        name: String,
        detail: String,
    },
    /// What KVM had counted itself at `t_ns` (its binary statistics; vCPUs added up).
    Kvm {
        t_ns: u64,
        counts: KvmCounts,
    },
    /// A virtio device's queue event.
    Device(DeviceEvent),
    /// A sampled guest call stack (`--stacks`).
    Stack(StackSample),
    /// What KVM's tracepoints had counted at `t_ns` (`--kernel-events`): per event, and (in the
    /// last sample) the busiest guest RIPs.
    Kernel {
        t_ns: u64,
        by_event: Vec<(String, u64)>,
        by_rip: Vec<(u64, u64)>,
    },
    /// The pages the guest dirtied in the interval ending at `t_ns` (`--dirty-log`).
    Dirty {
        t_ns: u64,
        pages: u64,
    },
    /// A piece of a file a replayable recording carries (`run --replayable`): `bytes` at
    /// `offset` of the file `name`, `total` bytes long.
    File {
        name: String,
        offset: u64,
        total: u64,
        bytes: Vec<u8>,
    },
}

impl Record {
    /// When it happened, nanoseconds into the run (call stacks and files have no time of their own).
    pub fn time(&self) -> Option<u64> {
        match self {
            Record::Exit(e) => Some(e.t_ns),
            Record::Stop(s) => Some(s.t_ns),
            Record::Device(d) => Some(d.t_ns),
            Record::Console { t_ns, .. }
            | Record::End { t_ns, .. }
            | Record::Kvm { t_ns, .. }
            | Record::Kernel { t_ns, .. }
            | Record::Dirty { t_ns, .. } => Some(*t_ns),
            Record::Stack(_) | Record::File { .. } => None,
        }
    }

    /// Whether a replay shows it: console output, a stop, a device event, a call stack, the end
    /// (not exits, which it reads as it goes, nor counters and files).
    pub fn is_event(&self) -> bool {
        match self {
            Record::Console { .. } | Record::Stop(_) | Record::Device(_) | Record::Stack(_) | Record::End { .. } => {
                true
            }
            Record::Exit(_)
            | Record::Kvm { .. }
            | Record::Kernel { .. }
            | Record::Dirty { .. }
            | Record::File { .. } => false,
        }
    }
}

/// A debug stop as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRecord {
    pub t_ns: u64,
    pub vcpu: u32,
    pub reason: String,
    /// rax rbx rcx rdx rsi rdi rbp rsp r8..r15 rip rflags.
    pub regs: [u64; 18],
    /// cr0 cr2 cr3 cr4 efer cs.base, and cs.db / cs.l.
    pub sys: [u64; 6],
    pub cs_db: bool,
    pub cs_l: bool,
}

impl StopRecord {
    /// A stop as recorded at `t_ns`.
    pub fn of(stop: &Stop, t_ns: u64) -> Self {
        let (r, s) = (&stop.regs, &stop.sregs);
        let g = regs::general(r);
        let mut all = [0u64; 18];
        all[..16].copy_from_slice(&g);
        (all[16], all[17]) = (r.rip, r.rflags);
        StopRecord {
            t_ns,
            vcpu: stop.vcpu,
            reason: stop.reason.to_string(),
            regs: all,
            sys: [s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.cs.base],
            cs_db: s.cs.db != 0,
            cs_l: s.cs.l != 0,
        }
    }

    /// The stop as the registers pane shows it (what was not recorded is zero). The recorded time
    /// orders stops as the serial number does in a live run.
    pub fn to_stop(&self) -> Stop {
        let general: [u64; 16] = std::array::from_fn(|i| self.regs[i]);
        let regs = regs::from_general(&general, self.regs[16], self.regs[17]);
        let [cr0, cr2, cr3, cr4, efer, cs_base] = self.sys;
        let mut sregs = kvm_sregs { cr0, cr2, cr3, cr4, efer, ..Default::default() };
        sregs.cs.base = cs_base;
        sregs.cs.db = u8::from(self.cs_db);
        sregs.cs.l = u8::from(self.cs_l);
        Stop {
            vcpu: self.vcpu,
            reason: StopReason::Pause,
            regs,
            sregs,
            fpu: Default::default(),
            event: None,
            serial: self.t_ns,
        }
    }
}

/// Why a trace could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a kvmscope trace file (it does not start with the trace magic)")]
    NotATrace,
    #[error("trace format version {0} is newer than this kvmscope reads ({VERSION}); upgrade kvmscope")]
    NewerVersion(u16),
    #[error("damaged at byte offset {offset}: {what}")]
    Damaged { offset: u64, what: String },
}

/// A chunk as it sits in a file, its frame then its records: a recording written without a run
/// (the tests' long recordings).
pub fn encode_chunk(records: &[Record]) -> Vec<u8> {
    let mut enc = ChunkEncoder::default();
    records.iter().for_each(|r| enc.push(r));
    let mut bytes = ChunkFrame::of(&enc.payload, enc.records).encode().to_vec();
    bytes.extend_from_slice(&enc.payload);
    bytes
}

/// The framing of the file header: magic, version, length, JSON, CRC.
pub fn encode_header(header: &TraceHeader) -> Vec<u8> {
    let json = serde_json::to_vec(header).unwrap_or_default();
    let mut head = MAGIC.to_vec();
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&(json.len() as u32).to_le_bytes());
    head.extend_from_slice(&json);
    head.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
    head
}

/// Parses a header from the start of a file's bytes: (header, its length, the format version).
pub fn parse_header(bytes: &[u8]) -> Result<(TraceHeader, usize, u16), FormatError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(FormatError::NotATrace);
    }
    let damaged = |what: &str| FormatError::Damaged { offset: MAGIC.len() as u64, what: what.into() };
    let fixed = bytes.get(16..22).ok_or_else(|| damaged("the header is cut short"))?;
    let version = u16::from_le_bytes([fixed[0], fixed[1]]);
    if version > VERSION {
        return Err(FormatError::NewerVersion(version));
    }
    if version == 0 {
        return Err(damaged("format version 0"));
    }
    let len = header_json_len(bytes).unwrap_or(0);
    if len > MAX_CHUNK {
        return Err(damaged("the header is implausibly long"));
    }
    let json = bytes.get(22..22 + len).ok_or_else(|| damaged("the header is cut short"))?;
    let crc = bytes.get(22 + len..26 + len).ok_or_else(|| damaged("the header is cut short"))?;
    if crc32fast::hash(json) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(damaged("the header's checksum does not match"));
    }
    let mut header: TraceHeader =
        serde_json::from_slice(json).map_err(|e| damaged(&format!("the header is not valid: {e}")))?;
    // Its words are printed: safe for a terminal, whatever the file holds.
    for text in [&mut header.guest_image, &mut header.host_kernel, &mut header.kvmscope_version]
        .into_iter()
        .chain(header.command_line.iter_mut())
    {
        *text = crate::out::printable(text);
    }
    Ok((header, 26 + len, version))
}

/// Bytes of the header before its JSON.
pub const HEADER_FIXED: usize = 22;

/// The length of the header's JSON, from its first [`HEADER_FIXED`] bytes.
pub fn header_json_len(fixed: &[u8]) -> Option<usize> {
    let b = fixed.get(18..22)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// A chunk's framing: "CHNK", payload length, record count, CRC-32 of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkFrame {
    pub len: usize,
    pub records: u32,
    pub crc: u32,
}

impl ChunkFrame {
    /// The frame of `payload` holding `records` records, in the current format version.
    pub fn of(payload: &[u8], records: u32) -> Self {
        Self { len: payload.len(), records, crc: Self::crc(payload, records, VERSION) }
    }

    /// The chunk's checksum in format `version`: from version 2 on it covers length and count too.
    fn crc(payload: &[u8], records: u32, version: u16) -> u32 {
        if version < 2 {
            return crc32fast::hash(payload);
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&(payload.len() as u32).to_le_bytes());
        h.update(&records.to_le_bytes());
        h.update(payload);
        h.finalize()
    }

    pub fn encode(&self) -> [u8; CHUNK_HEADER] {
        let mut head = [0u8; CHUNK_HEADER];
        head[..4].copy_from_slice(CHUNK_MAGIC);
        head[4..8].copy_from_slice(&(self.len as u32).to_le_bytes());
        head[8..12].copy_from_slice(&self.records.to_le_bytes());
        head[12..16].copy_from_slice(&self.crc.to_le_bytes());
        head
    }

    /// Reads a frame; the error says what is wrong with it.
    pub fn parse(head: &[u8; CHUNK_HEADER]) -> Result<Self, FrameError> {
        if &head[..4] != CHUNK_MAGIC {
            return Err(FrameError::NoChunk);
        }
        let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let frame = Self { len: word(4) as usize, records: word(8), crc: word(12) };
        if frame.len > MAX_CHUNK {
            return Err(FrameError::Length(frame.len));
        }
        // Every record takes at least two bytes: a count beyond that is damage, not an allocation.
        if frame.records as usize > frame.len / 2 {
            return Err(FrameError::Records { len: frame.len, records: frame.records });
        }
        Ok(frame)
    }

    /// Whether `payload` is what this frame describes, in a trace of format `version`.
    pub fn checks(&self, payload: &[u8], version: u16) -> bool {
        payload.len() == self.len && Self::crc(payload, self.records, version) == self.crc
    }
}

/// What is wrong with a chunk's framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("no chunk starts here")]
    NoChunk,
    #[error("chunk length {0} is implausible")]
    Length(usize),
    #[error("chunk of {len} bytes claims {records} records")]
    Records { len: usize, records: u32 },
}

/// Why a chunk's payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record runs past the chunk")]
    PastChunk,
    #[error("varint longer than 10 bytes")]
    LongVarint,
    #[error("value out of range")]
    OutOfRange,
    #[error("list of {0} values")]
    LongList(usize),
    #[error("unknown record type {0}")]
    RecordType(u8),
    #[error("unknown exit kind {0}")]
    ExitKind(u8),
    #[error("device reference {0} before its definition")]
    DeviceRef(usize),
    #[error("instruction reference {0} before its definition")]
    InsnRef(usize),
    #[error("instruction of {0} bytes")]
    LongInsn(usize),
    #[error("bad {0} in a device event")]
    Field(&'static str),
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Encodes records into one chunk payload, with the chunk's dictionaries.
#[derive(Default)]
pub struct ChunkEncoder {
    pub payload: Vec<u8>,
    pub records: u32,
    insns: Vec<std::sync::Arc<Insn>>,
    devices: Vec<&'static str>,
    /// The previous exit's sequence number and time: exits store the difference.
    prev: (u64, u64),
}

/// Record types, as the type byte says.
const T_EXIT: u8 = 1;
const T_CONSOLE: u8 = 2;
const T_STOP: u8 = 3;
const T_END: u8 = 4;
const T_KVM: u8 = 5;
const T_DEVICE: u8 = 6;
const T_STACK: u8 = 7;
const T_KERNEL: u8 = 8;
const T_DIRTY: u8 = 9;
const T_FILE: u8 = 10;

/// The exit kinds in the order of their tag bytes: one list for the encoder and the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum KindTag {
    Io,
    Mmio,
    Hlt,
    Shutdown,
    InternalError,
    FailEntry,
    SystemEvent,
    Debug,
    Hypercall,
    Msr,
    IoapicEoi,
    MemoryFault,
    Intr,
    Unknown,
    Other,
    Breakpoint,
}

impl KindTag {
    const ALL: [KindTag; 16] = [
        KindTag::Io,
        KindTag::Mmio,
        KindTag::Hlt,
        KindTag::Shutdown,
        KindTag::InternalError,
        KindTag::FailEntry,
        KindTag::SystemEvent,
        KindTag::Debug,
        KindTag::Hypercall,
        KindTag::Msr,
        KindTag::IoapicEoi,
        KindTag::MemoryFault,
        KindTag::Intr,
        KindTag::Unknown,
        KindTag::Other,
        KindTag::Breakpoint,
    ];

    fn from_byte(b: u8) -> Option<Self> {
        Self::ALL.get(b as usize).copied()
    }
}

/// Encodes a device event (the decoder's `device_event` reads it back).
fn device_event(p: &mut Vec<u8>, d: &DeviceEvent) {
    p.push(T_DEVICE);
    put_varint(p, d.t_ns);
    put_bytes(p, d.device.as_bytes());
    put_varint(p, d.queue.map_or(0, |q| q as u64 + 1));
    match &d.kind {
        DeviceEventKind::Notify { path, count } => {
            p.push(0);
            p.push(u8::from(*path == NotifyPath::Ioeventfd));
            put_varint(p, *count as u64);
        }
        DeviceEventKind::Taken { head, request } => {
            p.push(1);
            put_varint(p, *head as u64);
            put_bytes(p, request.as_bytes());
        }
        DeviceEventKind::Completed { head, written, latency_ns, status } => {
            p.push(2);
            put_varint(p, *head as u64);
            put_varint(p, *written as u64);
            put_varint(p, *latency_ns);
            put_bytes(p, status.as_bytes());
        }
        DeviceEventKind::Interrupt => p.push(3),
        DeviceEventKind::Error { problem } => {
            p.push(4);
            put_bytes(p, problem.as_bytes());
        }
        DeviceEventKind::Frame { dir, len, bytes } => {
            p.push(5);
            p.push(u8::from(*dir == FrameDir::Tx));
            put_varint(p, *len as u64);
            put_bytes(p, bytes);
        }
        DeviceEventKind::Dropped { dir, len, why } => {
            p.push(6);
            p.push(u8::from(*dir == FrameDir::Tx));
            put_varint(p, *len as u64);
            put_bytes(p, why.as_bytes());
        }
    }
}

impl ChunkEncoder {
    /// Starts a new chunk (the dictionaries start over).
    pub fn reset(&mut self) {
        self.payload.clear();
        self.records = 0;
        self.insns.clear();
        self.devices.clear();
        self.prev = (0, 0);
    }

    pub fn push(&mut self, r: &Record) {
        self.records += 1;
        match r {
            Record::Exit(e) => self.exit(e),
            Record::Console { t_ns, bytes } => {
                self.payload.push(T_CONSOLE);
                put_varint(&mut self.payload, *t_ns);
                put_bytes(&mut self.payload, bytes);
            }
            Record::Stop(s) => {
                let p = &mut self.payload;
                p.push(T_STOP);
                put_varint(p, s.t_ns);
                put_varint(p, s.vcpu as u64);
                put_bytes(p, s.reason.as_bytes());
                for v in s.regs.iter().chain(s.sys.iter()) {
                    put_varint(p, *v);
                }
                p.push(u8::from(s.cs_db) | (u8::from(s.cs_l) << 1));
            }
            Record::Kvm { t_ns, counts } => {
                let p = &mut self.payload;
                p.push(T_KVM);
                put_varint(p, *t_ns);
                for reading in [&counts.vcpus, &counts.vm] {
                    put_varint(p, reading.len() as u64);
                    for (name, kind, v) in reading {
                        put_bytes(p, name.as_bytes());
                        p.push(*kind as u8);
                        put_varint(p, *v);
                    }
                }
            }
            Record::Device(d) => device_event(&mut self.payload, d),
            Record::Dirty { t_ns, pages } => {
                self.payload.push(T_DIRTY);
                put_varint(&mut self.payload, *t_ns);
                put_varint(&mut self.payload, *pages);
            }
            Record::File { name, offset, total, bytes } => {
                let p = &mut self.payload;
                p.push(T_FILE);
                put_bytes(p, name.as_bytes());
                put_varint(p, *offset);
                put_varint(p, *total);
                put_bytes(p, bytes);
            }
            Record::Kernel { t_ns, by_event, by_rip } => {
                let p = &mut self.payload;
                p.push(T_KERNEL);
                put_varint(p, *t_ns);
                put_varint(p, by_event.len() as u64);
                for (name, n) in by_event {
                    put_bytes(p, name.as_bytes());
                    put_varint(p, *n);
                }
                put_varint(p, by_rip.len() as u64);
                for (rip, n) in by_rip {
                    put_varint(p, *rip);
                    put_varint(p, *n);
                }
            }
            Record::Stack(s) => {
                let p = &mut self.payload;
                p.push(T_STACK);
                put_varint(p, s.seq);
                put_varint(p, s.vcpu as u64);
                put_bytes(p, s.reason.as_bytes());
                put_varint(p, s.frames.len() as u64);
                for f in &s.frames {
                    put_varint(p, *f);
                }
            }
            Record::End { t_ns, status, name, detail } => {
                let p = &mut self.payload;
                p.push(T_END);
                put_varint(p, *t_ns);
                put_varint(p, zigzag(*status as i64));
                put_bytes(p, name.as_bytes());
                put_bytes(p, detail.as_bytes());
            }
        }
    }

    fn exit(&mut self, e: &ExitEvent) {
        let p = &mut self.payload;
        p.push(T_EXIT);
        put_varint(p, zigzag(e.seq.wrapping_sub(self.prev.0) as i64));
        put_varint(p, e.vcpu as u64);
        put_varint(p, zigzag(e.t_ns.wrapping_sub(self.prev.1) as i64));
        self.prev = (e.seq, e.t_ns);
        put_varint(p, e.rip);
        put_varint(p, e.cost_ns);
        match e.device {
            None => put_varint(p, 0),
            Some(d) => match self.devices.iter().position(|x| *x == d) {
                Some(i) => put_varint(p, i as u64 + 1),
                None => {
                    put_varint(p, self.devices.len() as u64 + 1);
                    put_bytes(p, d.as_bytes());
                    self.devices.push(d);
                }
            },
        }
        match &e.insn {
            None => put_varint(p, 0),
            Some(insn) => match self.insns.iter().position(|x| std::sync::Arc::ptr_eq(x, insn) || **x == **insn) {
                Some(i) => put_varint(p, i as u64 + 1),
                None => {
                    put_varint(p, self.insns.len() as u64 + 1);
                    put_varint(p, insn.addr);
                    put_bytes(p, &insn.bytes);
                    put_bytes(p, insn.text.as_bytes());
                    self.insns.push(insn.clone());
                }
            },
        }
        let dir = |d: Dir| u64::from(d == Dir::Out);
        match &e.kind {
            ExitKind::Io { port, dir: d, size, count, data } => {
                p.push(KindTag::Io as u8);
                for v in [*port as u64, dir(*d), *size as u64, *count as u64, *data] {
                    put_varint(p, v);
                }
            }
            ExitKind::Mmio { addr, dir: d, len, data } => {
                p.push(KindTag::Mmio as u8);
                for v in [*addr, dir(*d), *len as u64, *data] {
                    put_varint(p, v);
                }
            }
            ExitKind::Hlt => p.push(KindTag::Hlt as u8),
            ExitKind::Shutdown => p.push(KindTag::Shutdown as u8),
            ExitKind::InternalError { suberror, data } => {
                p.push(KindTag::InternalError as u8);
                put_varint(p, *suberror as u64);
                put_varint(p, data.len() as u64);
                data.iter().for_each(|v| put_varint(p, *v));
            }
            ExitKind::FailEntry { reason, cpu } => {
                p.push(KindTag::FailEntry as u8);
                put_varint(p, *reason);
                put_varint(p, *cpu as u64);
            }
            ExitKind::SystemEvent { kind, data } => {
                p.push(KindTag::SystemEvent as u8);
                put_varint(p, *kind as u64);
                put_varint(p, data.len() as u64);
                data.iter().for_each(|v| put_varint(p, *v));
            }
            ExitKind::Debug { exception, pc, dr6, dr7 } => {
                p.push(KindTag::Debug as u8);
                for v in [*exception as u64, *pc, *dr6, *dr7] {
                    put_varint(p, v);
                }
            }
            ExitKind::Hypercall { nr } => {
                p.push(KindTag::Hypercall as u8);
                put_varint(p, *nr);
            }
            ExitKind::Msr { index, dir: d, data } => {
                p.push(KindTag::Msr as u8);
                for v in [*index as u64, dir(*d), *data] {
                    put_varint(p, v);
                }
            }
            ExitKind::IoapicEoi { vector } => {
                p.push(KindTag::IoapicEoi as u8);
                put_varint(p, *vector as u64);
            }
            ExitKind::MemoryFault { gpa, size, flags } => {
                p.push(KindTag::MemoryFault as u8);
                for v in [*gpa, *size, *flags] {
                    put_varint(p, v);
                }
            }
            ExitKind::Intr => p.push(KindTag::Intr as u8),
            ExitKind::Unknown { hardware_reason } => {
                p.push(KindTag::Unknown as u8);
                put_varint(p, *hardware_reason);
            }
            ExitKind::Other { code } => {
                p.push(KindTag::Other as u8);
                put_varint(p, *code as u64);
            }
            ExitKind::Breakpoint { gva, via } => {
                p.push(KindTag::Breakpoint as u8);
                put_varint(p, *gva);
                put_varint(p, *via as u64);
            }
        }
    }
}

/// Distinct device names kept at most: a real VM has a handful; past this (a crafted recording
/// naming a new device per exit) further names read as [`OTHER_DEVICE`].
const MAX_DEVICE_NAMES: usize = 4096;

/// What a device name past [`MAX_DEVICE_NAMES`] reads as.
pub const OTHER_DEVICE: &str = "(more device names than kvmscope keeps)";

/// Device names as `'static` strings: the known ones map to kvmscope's own, others are leaked once
/// per distinct name (a trace holds a handful), found by hash, at most `cap` of them.
struct Interner {
    names: std::collections::HashSet<&'static str>,
    cap: usize,
}

impl Interner {
    fn new(cap: usize) -> Self {
        let known = ["serial", "debug-exit", "post", crate::vmm::bus::RAM_DEVICE, OTHER_DEVICE];
        Self { names: known.into_iter().collect(), cap }
    }

    fn intern(&mut self, name: &str) -> &'static str {
        if let Some(n) = self.names.get(name) {
            return n;
        }
        if self.names.len() >= self.cap {
            return OTHER_DEVICE;
        }
        let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
        self.names.insert(leaked);
        leaked
    }
}

/// The process's device names (see [`Interner`]).
fn intern(name: &str) -> &'static str {
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<Interner>> = OnceLock::new();
    lock(NAMES.get_or_init(|| Mutex::new(Interner::new(MAX_DEVICE_NAMES)))).intern(name)
}

/// Decodes the records of one chunk payload.
pub struct ChunkDecoder<'a> {
    buf: &'a [u8],
    pos: usize,
    insns: Vec<std::sync::Arc<Insn>>,
    devices: Vec<&'static str>,
    prev: (u64, u64),
}

impl<'a> ChunkDecoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0, insns: Vec::new(), devices: Vec::new(), prev: (0, 0) }
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::PastChunk)?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::LongVarint)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.varint()? as usize;
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or(DecodeError::PastChunk)?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    /// A string of the recording, safe to print (a crafted file cannot drive a terminal).
    fn string(&mut self) -> Result<String, DecodeError> {
        Ok(crate::out::printable(&String::from_utf8_lossy(self.bytes()?)))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError::OutOfRange)
    }

    fn dir(&mut self) -> Result<Dir, DecodeError> {
        Ok(if self.varint()? == 0 { Dir::In } else { Dir::Out })
    }

    fn reading(&mut self) -> Result<Reading, DecodeError> {
        let n = self.varint()? as usize;
        if n > 4096 {
            return Err(DecodeError::LongList(n));
        }
        (0..n)
            .map(|_| {
                let name = self.string()?;
                let kind = match self.byte()? {
                    0 => StatKind::Cumulative,
                    1 => StatKind::Instant,
                    _ => StatKind::Peak,
                };
                Ok((name, kind, self.varint()?))
            })
            .collect()
    }

    fn list(&mut self) -> Result<Vec<u64>, DecodeError> {
        let n = self.varint()? as usize;
        if n > 64 {
            return Err(DecodeError::LongList(n));
        }
        (0..n).map(|_| self.varint()).collect()
    }

    /// The next record; `None` at the end of the payload.
    pub fn next_record(&mut self) -> Result<Option<Record>, DecodeError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        match self.byte()? {
            T_EXIT => self.exit().map(|e| Some(Record::Exit(e))),
            T_CONSOLE => {
                let t_ns = self.varint()?;
                Ok(Some(Record::Console { t_ns, bytes: self.bytes()?.to_vec() }))
            }
            T_STOP => {
                let t_ns = self.varint()?;
                let vcpu = self.u32()?;
                let reason = self.string()?;
                let mut regs = [0u64; 18];
                for r in regs.iter_mut() {
                    *r = self.varint()?;
                }
                let mut sys = [0u64; 6];
                for r in sys.iter_mut() {
                    *r = self.varint()?;
                }
                let flags = self.byte()?;
                Ok(Some(Record::Stop(StopRecord {
                    t_ns,
                    vcpu,
                    reason,
                    regs,
                    sys,
                    cs_db: flags & 1 != 0,
                    cs_l: flags & 2 != 0,
                })))
            }
            T_END => {
                let t_ns = self.varint()?;
                let status = unzigzag(self.varint()?) as i32;
                Ok(Some(Record::End { t_ns, status, name: self.string()?, detail: self.string()? }))
            }
            T_KVM => {
                let t_ns = self.varint()?;
                let (vcpus, vm) = (self.reading()?, self.reading()?);
                Ok(Some(Record::Kvm { t_ns, counts: KvmCounts { vm, vcpus } }))
            }
            T_DEVICE => self.device_event().map(|d| Some(Record::Device(d))),
            T_DIRTY => Ok(Some(Record::Dirty { t_ns: self.varint()?, pages: self.varint()? })),
            T_FILE => {
                let name = self.string()?;
                let (offset, total) = (self.varint()?, self.varint()?);
                Ok(Some(Record::File { name, offset, total, bytes: self.bytes()?.to_vec() }))
            }
            T_KERNEL => {
                let t_ns = self.varint()?;
                let events = self.varint()? as usize;
                if events > 1024 {
                    return Err(DecodeError::LongList(events));
                }
                let by_event = (0..events).map(|_| Ok((self.string()?, self.varint()?))).collect::<Result<_, _>>()?;
                let rips = self.varint()? as usize;
                if rips > crate::vmm::kernel_events::RECORDED_RIPS {
                    return Err(DecodeError::LongList(rips));
                }
                let by_rip = (0..rips).map(|_| Ok((self.varint()?, self.varint()?))).collect::<Result<_, _>>()?;
                Ok(Some(Record::Kernel { t_ns, by_event, by_rip }))
            }
            T_STACK => {
                let (seq, vcpu, reason) = (self.varint()?, self.u32()?, self.string()?);
                let n = self.varint()? as usize;
                if n > crate::decode::stack::MAX_DEPTH + 1 {
                    return Err(DecodeError::LongList(n));
                }
                let frames = (0..n).map(|_| self.varint()).collect::<Result<_, _>>()?;
                Ok(Some(Record::Stack(StackSample { seq, vcpu, reason, frames })))
            }
            t => Err(DecodeError::RecordType(t)),
        }
    }

    fn frame_dir(&mut self) -> Result<FrameDir, DecodeError> {
        match self.byte()? {
            0 => Ok(FrameDir::Rx),
            1 => Ok(FrameDir::Tx),
            _ => Err(DecodeError::Field("frame direction")),
        }
    }

    /// A device event: time, device, queue (0: none, else index + 1), kind tag, the kind's fields.
    fn device_event(&mut self) -> Result<DeviceEvent, DecodeError> {
        let t_ns = self.varint()?;
        let device = self.string()?;
        let queue = match self.varint()? {
            0 => None,
            q => Some(u16::try_from(q - 1).map_err(|_| DecodeError::Field("device queue"))?),
        };
        let head = |d: &mut Self| u16::try_from(d.varint()?).map_err(|_| DecodeError::Field("chain head"));
        let kind = match self.byte()? {
            0 => {
                let path = if self.byte()? == 0 { NotifyPath::Trapped } else { NotifyPath::Ioeventfd };
                DeviceEventKind::Notify { path, count: self.u32()? }
            }
            1 => DeviceEventKind::Taken { head: head(self)?, request: self.string()? },
            2 => DeviceEventKind::Completed {
                head: head(self)?,
                written: self.u32()?,
                latency_ns: self.varint()?,
                status: self.string()?,
            },
            3 => DeviceEventKind::Interrupt,
            4 => DeviceEventKind::Error { problem: self.string()? },
            5 => {
                let (dir, len) = (self.frame_dir()?, self.u32()?);
                let bytes = self.bytes()?;
                if bytes.len() > SNAPLEN || bytes.len() > len as usize {
                    return Err(DecodeError::Field("frame length"));
                }
                DeviceEventKind::Frame { dir, len, bytes: bytes.to_vec() }
            }
            6 => DeviceEventKind::Dropped { dir: self.frame_dir()?, len: self.u32()?, why: self.string()? },
            _ => return Err(DecodeError::Field("device event kind")),
        };
        Ok(DeviceEvent { t_ns, device, queue, kind })
    }

    fn exit(&mut self) -> Result<ExitEvent, DecodeError> {
        let seq = self.prev.0.wrapping_add(unzigzag(self.varint()?) as u64);
        let vcpu = self.u32()?;
        let t_ns = self.prev.1.wrapping_add(unzigzag(self.varint()?) as u64);
        self.prev = (seq, t_ns);
        let rip = self.varint()?;
        let cost_ns = self.varint()?;
        let device = match self.varint()? as usize {
            0 => None,
            i if i <= self.devices.len() => Some(self.devices[i - 1]),
            i if i == self.devices.len() + 1 => {
                let name = intern(&self.string()?);
                self.devices.push(name);
                Some(name)
            }
            i => return Err(DecodeError::DeviceRef(i)),
        };
        let insn = match self.varint()? as usize {
            0 => None,
            i if i <= self.insns.len() => Some(self.insns[i - 1].clone()),
            i if i == self.insns.len() + 1 => {
                let addr = self.varint()?;
                let bytes = self.bytes()?.to_vec();
                if bytes.len() > 15 {
                    return Err(DecodeError::LongInsn(bytes.len()));
                }
                let text = self.string()?;
                let insn = std::sync::Arc::new(Insn { addr, bytes, text });
                self.insns.push(insn.clone());
                Some(insn)
            }
            i => return Err(DecodeError::InsnRef(i)),
        };
        let small = |v: u64| u8::try_from(v).map_err(|_| DecodeError::OutOfRange);
        let tag = self.byte()?;
        let kind = match KindTag::from_byte(tag).ok_or(DecodeError::ExitKind(tag))? {
            KindTag::Io => ExitKind::Io {
                port: u16::try_from(self.varint()?).map_err(|_| DecodeError::OutOfRange)?,
                dir: self.dir()?,
                size: small(self.varint()?)?,
                count: self.u32()?,
                data: self.varint()?,
            },
            KindTag::Mmio => ExitKind::Mmio {
                addr: self.varint()?,
                dir: self.dir()?,
                len: small(self.varint()?)?,
                data: self.varint()?,
            },
            KindTag::Hlt => ExitKind::Hlt,
            KindTag::Shutdown => ExitKind::Shutdown,
            KindTag::InternalError => ExitKind::InternalError { suberror: self.u32()?, data: self.list()? },
            KindTag::FailEntry => ExitKind::FailEntry { reason: self.varint()?, cpu: self.u32()? },
            KindTag::SystemEvent => ExitKind::SystemEvent { kind: self.u32()?, data: self.list()? },
            KindTag::Debug => {
                ExitKind::Debug { exception: self.u32()?, pc: self.varint()?, dr6: self.varint()?, dr7: self.varint()? }
            }
            KindTag::Hypercall => ExitKind::Hypercall { nr: self.varint()? },
            KindTag::Msr => ExitKind::Msr { index: self.u32()?, dir: self.dir()?, data: self.varint()? },
            KindTag::IoapicEoi => ExitKind::IoapicEoi { vector: small(self.varint()?)? },
            KindTag::MemoryFault => {
                ExitKind::MemoryFault { gpa: self.varint()?, size: self.varint()?, flags: self.varint()? }
            }
            KindTag::Intr => ExitKind::Intr,
            KindTag::Unknown => ExitKind::Unknown { hardware_reason: self.varint()? },
            KindTag::Other => ExitKind::Other { code: self.u32()? },
            KindTag::Breakpoint => ExitKind::Breakpoint { gva: self.varint()?, via: self.u32()? },
        };
        Ok(ExitEvent { seq, vcpu, t_ns, rip, kind, device, insn, cost_ns })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #[test]
    fn device_names_are_found_by_hash_and_bounded() {
        let mut names = Interner::new(8);
        let serial = names.intern("serial");
        assert!(std::ptr::eq(serial, names.intern("serial")), "the same name, the same string");
        let mine: Vec<&str> = (0..20).map(|i| names.intern(&format!("dev{i}"))).collect();
        assert_eq!(mine[0], "dev0");
        assert_eq!(mine[19], OTHER_DEVICE, "past the bound, names are not kept");
        assert_eq!(names.names.len(), 8);
    }

    use std::sync::Arc;

    use super::*;

    pub fn sample_events() -> Vec<ExitEvent> {
        let insn = Arc::new(Insn { addr: 0x1000, bytes: vec![0xee], text: "out dx,al".into() });
        let kinds = vec![
            ExitKind::Io { port: 0x3f8, dir: Dir::Out, size: 1, count: 1, data: 0x41 },
            ExitKind::Mmio { addr: 0xd000_0000, dir: Dir::In, len: 8, data: u64::MAX },
            ExitKind::Hlt,
            ExitKind::Shutdown,
            ExitKind::InternalError { suberror: 1, data: vec![1, 2, 3] },
            ExitKind::FailEntry { reason: 0x80000021, cpu: 1 },
            ExitKind::SystemEvent { kind: 2, data: vec![7] },
            ExitKind::Debug { exception: 1, pc: 0x1234, dr6: 0xffff0ff1, dr7: 0x400 },
            ExitKind::Hypercall { nr: 9 },
            ExitKind::Msr { index: 0xc000_0080, dir: Dir::Out, data: 0x500 },
            ExitKind::IoapicEoi { vector: 33 },
            ExitKind::MemoryFault { gpa: 1, size: 2, flags: 3 },
            ExitKind::Intr,
            ExitKind::Unknown { hardware_reason: 77 },
            ExitKind::Other { code: 42 },
        ];
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| ExitEvent {
                seq: i as u64,
                vcpu: (i % 2) as u32,
                t_ns: 1000 * i as u64,
                rip: 0xffff_8000_0000_0000 + i as u64,
                kind,
                device: if i % 3 == 0 { Some("serial") } else { None },
                insn: if i % 2 == 0 { Some(insn.clone()) } else { None },
                cost_ns: 1500 + i as u64,
            })
            .collect()
    }

    #[test]
    fn every_record_round_trips() {
        let mut records: Vec<Record> = sample_events().into_iter().map(Record::Exit).collect();
        records.push(Record::Console { t_ns: 5, bytes: b"hello\n".to_vec() });
        records.push(Record::Stop(StopRecord {
            t_ns: 9,
            vcpu: 1,
            reason: "paused".into(),
            regs: [7; 18],
            sys: [0x11, 0, 0x1000, 0x20, 0x500, 0],
            cs_db: false,
            cs_l: true,
        }));
        records.push(Record::End { t_ns: 10, status: -3, name: "halted".into(), detail: "vCPU 0 halted".into() });
        let vcpus = vec![("exits".to_string(), StatKind::Cumulative, 236), ("pages".into(), StatKind::Instant, 3)];
        let vm = vec![("mmu_cache_miss".to_string(), StatKind::Peak, 4)];
        records.push(Record::Kvm { t_ns: 11, counts: KvmCounts { vm, vcpus } });
        for (queue, kind) in [
            (Some(0), DeviceEventKind::Notify { path: NotifyPath::Ioeventfd, count: 3 }),
            (Some(0), DeviceEventKind::Taken { head: 7, request: "read sector 2 len 4096".into() }),
            (Some(0), DeviceEventKind::Completed { head: 7, written: 4097, latency_ns: 12_345, status: "ok".into() }),
            (Some(1), DeviceEventKind::Interrupt),
            (None, DeviceEventKind::Error { problem: "queue size 3 refused".into() }),
            (Some(1), DeviceEventKind::Frame { dir: FrameDir::Tx, len: 60, bytes: vec![0xff; 60] }),
            (Some(0), DeviceEventKind::Dropped { dir: FrameDir::Rx, len: 1514, why: "no receive buffers".into() }),
        ] {
            records.push(Record::Device(DeviceEvent { t_ns: 12, device: "virtio-blk0".into(), queue, kind }));
        }
        let frames = vec![0xffff_ffff_8100_1234, 0xffff_ffff_8100_0042];
        records.push(Record::Stack(StackSample { seq: 9, vcpu: 1, reason: "io".into(), frames }));
        let by_event = vec![("kvm_pio".to_string(), 7), ("kvm_emulate_insn".to_string(), 70)];
        records.push(Record::Kernel { t_ns: 13, by_event, by_rip: vec![(0x100000, 5)] });
        records.push(Record::Dirty { t_ns: 14, pages: 16 });
        records.push(Record::File { name: "snapshot".into(), offset: 4, total: 7, bytes: vec![1, 2, 3] });
        let mut enc = ChunkEncoder::default();
        records.iter().for_each(|r| enc.push(r));
        assert_eq!(enc.records as usize, records.len());
        let mut dec = ChunkDecoder::new(&enc.payload);
        let mut back = Vec::new();
        while let Some(r) = dec.next_record().unwrap() {
            back.push(r);
        }
        assert_eq!(back, records);
        // The instruction is stored once and referred to after.
        let once = enc.payload.windows(9).filter(|w| w == b"out dx,al").count();
        assert_eq!(once, 1);
    }

    #[test]
    fn damaged_payloads_are_errors_not_panics() {
        let mut enc = ChunkEncoder::default();
        sample_events().iter().for_each(|e| enc.push(&Record::Exit(e.clone())));
        for cut in 0..enc.payload.len() {
            let mut dec = ChunkDecoder::new(&enc.payload[..cut]);
            while let Ok(Some(_)) = dec.next_record() {}
        }
        for i in 0..enc.payload.len() {
            let mut p = enc.payload.clone();
            p[i] ^= 0xff;
            let mut dec = ChunkDecoder::new(&p);
            for _ in 0..100 {
                match dec.next_record() {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
    }
}

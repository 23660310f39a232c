//! The trace file format.
//!
//! ```text
//! header:  "KVMSCOPE-TRACE\0\0" | version u16 | len u32 | JSON (TraceHeader) | crc32 u32
//! chunks:  "CHNK" | payload len u32 | record count u32 | crc32(payload) u32 | payload
//! ```
//! All integers little-endian. A payload is a run of records, each a type byte and varint fields;
//! an exit stores its sequence number and time as the difference from the chunk's previous exit.
//! Instructions and device names are defined inline the first time a chunk uses them and referred
//! to by index after that, so every chunk decodes on its own: a recording cut short or damaged is
//! readable up to its last good chunk.

use serde::{Deserialize, Serialize};

use crate::sync::lock;
use crate::trace::{Dir, ExitEvent, ExitKind, Insn};

/// The file's first bytes.
pub const MAGIC: &[u8; 16] = b"KVMSCOPE-TRACE\0\0";
/// The format version this kvmscope writes and reads.
pub const VERSION: u16 = 1;
/// A chunk's first bytes.
pub const CHUNK_MAGIC: &[u8; 4] = b"CHNK";
/// Bytes of a chunk's framing before the payload.
pub const CHUNK_HEADER: usize = 16;
/// Largest payload a reader accepts (a writer flushes long before).
pub const MAX_CHUNK: usize = 16 << 20;

/// What the recording is of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

const T_EXIT: u8 = 1;
const T_CONSOLE: u8 = 2;
const T_STOP: u8 = 3;
const T_END: u8 = 4;

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
                p.push(0);
                for v in [*port as u64, dir(*d), *size as u64, *count as u64, *data] {
                    put_varint(p, v);
                }
            }
            ExitKind::Mmio { addr, dir: d, len, data } => {
                p.push(1);
                for v in [*addr, dir(*d), *len as u64, *data] {
                    put_varint(p, v);
                }
            }
            ExitKind::Hlt => p.push(2),
            ExitKind::Shutdown => p.push(3),
            ExitKind::InternalError { suberror, data } => {
                p.push(4);
                put_varint(p, *suberror as u64);
                put_varint(p, data.len() as u64);
                data.iter().for_each(|v| put_varint(p, *v));
            }
            ExitKind::FailEntry { reason, cpu } => {
                p.push(5);
                put_varint(p, *reason);
                put_varint(p, *cpu as u64);
            }
            ExitKind::SystemEvent { kind, data } => {
                p.push(6);
                put_varint(p, *kind as u64);
                put_varint(p, data.len() as u64);
                data.iter().for_each(|v| put_varint(p, *v));
            }
            ExitKind::Debug { exception, pc, dr6, dr7 } => {
                p.push(7);
                for v in [*exception as u64, *pc, *dr6, *dr7] {
                    put_varint(p, v);
                }
            }
            ExitKind::Hypercall { nr } => {
                p.push(8);
                put_varint(p, *nr);
            }
            ExitKind::Msr { index, dir: d, data } => {
                p.push(9);
                for v in [*index as u64, dir(*d), *data] {
                    put_varint(p, v);
                }
            }
            ExitKind::IoapicEoi { vector } => {
                p.push(10);
                put_varint(p, *vector as u64);
            }
            ExitKind::MemoryFault { gpa, size, flags } => {
                p.push(11);
                for v in [*gpa, *size, *flags] {
                    put_varint(p, v);
                }
            }
            ExitKind::Intr => p.push(12),
            ExitKind::Unknown { hardware_reason } => {
                p.push(13);
                put_varint(p, *hardware_reason);
            }
            ExitKind::Other { code } => {
                p.push(14);
                put_varint(p, *code as u64);
            }
        }
    }
}

/// Device names as `'static` strings: the known ones map to kvmscope's own, others are leaked once
/// per distinct name (a trace holds a handful).
fn intern(name: &str) -> &'static str {
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<Vec<&'static str>>> = OnceLock::new();
    let names = NAMES.get_or_init(|| Mutex::new(vec!["serial", "debug-exit", "post", crate::vmm::bus::RAM_DEVICE]));
    let mut names = lock(names);
    if let Some(n) = names.iter().find(|n| **n == name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.push(leaked);
    leaked
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

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.buf.get(self.pos).ok_or("record runs past the chunk")?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.varint()? as usize;
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or("field runs past the chunk")?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    fn string(&mut self) -> Result<String, String> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    fn u32(&mut self) -> Result<u32, String> {
        u32::try_from(self.varint()?).map_err(|_| "value out of range".to_string())
    }

    fn dir(&mut self) -> Result<Dir, String> {
        Ok(if self.varint()? == 0 { Dir::In } else { Dir::Out })
    }

    fn list(&mut self) -> Result<Vec<u64>, String> {
        let n = self.varint()? as usize;
        if n > 64 {
            return Err(format!("list of {n} values"));
        }
        (0..n).map(|_| self.varint()).collect()
    }

    /// The next record; `None` at the end of the payload.
    pub fn next_record(&mut self) -> Result<Option<Record>, String> {
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
            t => Err(format!("unknown record type {t}")),
        }
    }

    fn exit(&mut self) -> Result<ExitEvent, String> {
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
            i => return Err(format!("device reference {i} before its definition")),
        };
        let insn = match self.varint()? as usize {
            0 => None,
            i if i <= self.insns.len() => Some(self.insns[i - 1].clone()),
            i if i == self.insns.len() + 1 => {
                let addr = self.varint()?;
                let bytes = self.bytes()?.to_vec();
                if bytes.len() > 15 {
                    return Err(format!("instruction of {} bytes", bytes.len()));
                }
                let text = self.string()?;
                let insn = std::sync::Arc::new(Insn { addr, bytes, text });
                self.insns.push(insn.clone());
                Some(insn)
            }
            i => return Err(format!("instruction reference {i} before its definition")),
        };
        let small = |v: u64| u8::try_from(v).map_err(|_| "value out of range".to_string());
        let kind = match self.byte()? {
            0 => ExitKind::Io {
                port: u16::try_from(self.varint()?).map_err(|_| "port out of range")?,
                dir: self.dir()?,
                size: small(self.varint()?)?,
                count: self.u32()?,
                data: self.varint()?,
            },
            1 => ExitKind::Mmio {
                addr: self.varint()?,
                dir: self.dir()?,
                len: small(self.varint()?)?,
                data: self.varint()?,
            },
            2 => ExitKind::Hlt,
            3 => ExitKind::Shutdown,
            4 => ExitKind::InternalError { suberror: self.u32()?, data: self.list()? },
            5 => ExitKind::FailEntry { reason: self.varint()?, cpu: self.u32()? },
            6 => ExitKind::SystemEvent { kind: self.u32()?, data: self.list()? },
            7 => {
                ExitKind::Debug { exception: self.u32()?, pc: self.varint()?, dr6: self.varint()?, dr7: self.varint()? }
            }
            8 => ExitKind::Hypercall { nr: self.varint()? },
            9 => ExitKind::Msr { index: self.u32()?, dir: self.dir()?, data: self.varint()? },
            10 => ExitKind::IoapicEoi { vector: small(self.varint()?)? },
            11 => ExitKind::MemoryFault { gpa: self.varint()?, size: self.varint()?, flags: self.varint()? },
            12 => ExitKind::Intr,
            13 => ExitKind::Unknown { hardware_reason: self.varint()? },
            14 => ExitKind::Other { code: self.u32()? },
            k => return Err(format!("unknown exit kind {k}")),
        };
        Ok(ExitEvent { seq, vcpu, t_ns, rip, kind, device, insn, cost_ns })
    }
}

#[cfg(test)]
mod tests {
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

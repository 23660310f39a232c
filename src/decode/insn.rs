//! Instruction decoding with iced-x86, cached so each distinct instruction is formatted once.

use std::sync::Arc;

use iced_x86::{
    Decoder, DecoderOptions, Formatter, Instruction, InstructionInfoFactory, IntelFormatter, Mnemonic, OpAccess,
    OpKind, Register,
};
use kvm_bindings::{kvm_regs, kvm_sregs};
use rustc_hash::FxHashMap;

use super::paging::{CpuMode, PageMemo, PhysRead, gpa_of, read_virt};
use crate::trace::{Dir, ExitKind, Insn};

/// Longest x86 instruction.
pub const MAX_INSN_LEN: usize = 15;
/// Cached instructions kept per decoder before the cache starts over.
const CACHE_LIMIT: usize = 1 << 16;

/// Decodes one instruction from raw bytes; `None` when the bytes are not a valid instruction.
pub fn decode_bytes(bytes: &[u8], bitness: u32, addr: u64) -> Option<Insn> {
    let mut decoder = Decoder::with_ip(bitness, bytes, addr, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        return None;
    }
    Some(Insn { addr, bytes: bytes[..insn.len()].to_vec(), text: format_insn(&insn) })
}

/// Decodes consecutive instructions from `bytes` (for code views): (address, instruction) pairs, an
/// undecodable byte shown as `(bad)`.
pub fn decode_many(bytes: &[u8], bitness: u32, addr: u64) -> Vec<Insn> {
    let mut out = Vec::new();
    let mut decoder = Decoder::with_ip(bitness, bytes, addr, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    while decoder.can_decode() {
        let pos = decoder.position();
        decoder.decode_out(&mut insn);
        let len = insn.len().max(1);
        let text = if insn.is_invalid() { "(bad)".to_string() } else { format_insn(&insn) };
        let end = (pos + len).min(bytes.len());
        out.push(Insn { addr: addr + pos as u64, bytes: bytes[pos..end].to_vec(), text });
        if insn.is_invalid() {
            decoder.set_position(pos + 1).ok();
            decoder.set_ip(addr + pos as u64 + 1);
        }
    }
    out
}

fn format_insn(insn: &Instruction) -> String {
    let mut formatter = IntelFormatter::new();
    formatter.options_mut().set_space_after_operand_separator(false);
    let mut text = String::new();
    formatter.format(insn, &mut text);
    text
}

/// The vCPU's registers at an exit. A candidate instruction must agree with the exit under them:
/// its port (an immediate, or DX) is the exit's port; its memory operand's address, computed from
/// these registers and translated through the guest's page tables, is the exit's address.
#[derive(Clone, Copy)]
pub struct ExitRegs<'a> {
    pub regs: &'a kvm_regs,
    pub sregs: &'a kvm_sregs,
}

impl ExitRegs<'_> {
    /// A register's value as iced asks for it: a general register at its width, a segment
    /// register's base (zero for CS/DS/ES/SS in 64-bit code, as the CPU takes it).
    fn value(&self, reg: Register, long: bool) -> Option<u64> {
        let r = self.regs;
        let s = self.sregs;
        let seg = |base: u64| Some(if long { 0 } else { base });
        let full = match reg.full_register() {
            Register::RAX => r.rax,
            Register::RBX => r.rbx,
            Register::RCX => r.rcx,
            Register::RDX => r.rdx,
            Register::RSI => r.rsi,
            Register::RDI => r.rdi,
            Register::RBP => r.rbp,
            Register::RSP => r.rsp,
            Register::R8 => r.r8,
            Register::R9 => r.r9,
            Register::R10 => r.r10,
            Register::R11 => r.r11,
            Register::R12 => r.r12,
            Register::R13 => r.r13,
            Register::R14 => r.r14,
            Register::R15 => r.r15,
            Register::RIP => r.rip,
            Register::ES => return seg(s.es.base),
            Register::CS => return seg(s.cs.base),
            Register::SS => return seg(s.ss.base),
            Register::DS => return seg(s.ds.base),
            Register::FS => return Some(s.fs.base),
            Register::GS => return Some(s.gs.base),
            _ => return None,
        };
        Some(if reg.is_gpr8() && matches!(reg, Register::AH | Register::BH | Register::CH | Register::DH) {
            (full >> 8) & 0xff
        } else {
            match reg.size() {
                1 => full & 0xff,
                2 => full & 0xffff,
                4 => full & 0xffff_ffff,
                _ => full,
            }
        })
    }
}

/// Decodes the instruction behind an exit, remembering each distinct (address, bytes, mode, exit
/// class) it has seen so a loop that exits a million times is decoded once.
///
/// Where RIP points at an exit depends on the host: VT-x KVM leaves it on a port instruction and an
/// MMIO read, but past an MMIO write; an emulating KVM (PVM) leaves it past every port instruction.
/// So for port and MMIO exits the candidates are the instruction at RIP and every instruction that
/// ends exactly at RIP; one is taken only if it agrees with the exit (same direction and size, and
/// under the exit's registers the same port or the same guest-physical address). Where the
/// registers cannot settle it (an address that does not translate), the position that worked last
/// for that kind of exit is preferred. A settled answer is kept for its (RIP, bytes, exit class):
/// one host leaves RIP in one place for one kind of exit, so the same RIP and bytes mean the same
/// instruction again.
pub struct InsnDecoder {
    cache: FxHashMap<CacheKey, Option<Arc<Insn>>>,
    /// The last exit's instruction: a loop exits from the same one again and again.
    last: Option<LastExit>,
    /// Where that instruction's page is, for reading its bytes again without a walk.
    code_page: PageMemo,
    info: InstructionInfoFactory,
    /// Per exit class: whether RIP was last found past the instruction.
    rip_after: FxHashMap<ExitClass, bool>,
}

impl Default for InsnDecoder {
    /// A decoder, warmed up: iced builds its tables on first use (about 2 ms), which would
    /// otherwise be counted in the first exit's cost.
    fn default() -> Self {
        let mut info = InstructionInfoFactory::new();
        for bitness in [16, 32, 64] {
            let mut decoder = Decoder::with_ip(bitness, &[0x89, 0x48, 0x50], 0, DecoderOptions::NONE);
            let insn = decoder.decode();
            let _ = (format_insn(&insn), info.info(&insn).used_memory().len());
        }
        Self {
            cache: FxHashMap::default(),
            last: None,
            code_page: PageMemo::default(),
            info,
            rip_after: FxHashMap::default(),
        }
    }
}

/// The instruction the last exit was found to come from, and what that exit was.
struct LastExit {
    rip: u64,
    bitness: u32,
    class: ExitClass,
    insn: Arc<Insn>,
    /// The instruction's bytes, zero-padded: compared whole, with no call.
    bytes: [u8; MAX_INSN_LEN + 1],
}

/// What an exit says about the instruction that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ExitClass {
    Io { port: u16, dir: Dir, size: u8 },
    Mmio { dir: Dir, len: u8 },
    AtRip,
}

impl ExitClass {
    fn of(kind: &ExitKind) -> Self {
        match *kind {
            ExitKind::Io { port, dir, size, .. } => ExitClass::Io { port, dir, size },
            ExitKind::Mmio { dir, len, .. } => ExitClass::Mmio { dir, len },
            _ => ExitClass::AtRip,
        }
    }

    /// The key for the learned RIP position (ports differ only in the operand).
    fn position_key(self) -> ExitClass {
        match self {
            ExitClass::Io { dir, size, .. } => ExitClass::Io { port: 0, dir, size },
            other => other,
        }
    }

    /// Where RIP is expected before anything is learned: VT-x/AMD-V behaviour.
    fn default_after(self) -> bool {
        matches!(self, ExitClass::Mmio { dir: Dir::Out, .. })
    }
}

/// How well a candidate instruction agrees with an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fit {
    /// It cannot have made the exit (another direction, size, port or address).
    No,
    /// It could have: the right kind of access, but its address could not be worked out.
    Unsure,
    /// It could have, had the host split its access: the exit's address, but a wider operand
    /// (a 16-byte store exits as two 8-byte writes).
    Split,
    /// It did: the exit's port, or the exit's guest-physical address and length, under the
    /// exit's registers (and for a `mov` store, the value it writes).
    Yes,
}

/// A candidate instruction, where it lies relative to RIP, and how well it fits the exit.
struct Candidate {
    insn: Insn,
    behind_rip: bool,
    fit: Fit,
}

type CacheKey = (u64, u32, ExitClass, [u8; 2 * MAX_INSN_LEN]);

impl InsnDecoder {
    /// The instruction at `rip` in the vCPU's current mode, or `None` if unmapped or undecodable.
    pub fn decode_at(&mut self, mem: &dyn PhysRead, mode: &CpuMode, rip: u64) -> Option<Arc<Insn>> {
        let mut bytes = [0u8; MAX_INSN_LEN];
        let n = read_virt(mem, mode, mode.code_linear(rip), &mut bytes);
        decode_bytes(&bytes[..n], mode.bitness(), rip).map(Arc::new)
    }

    /// The instruction that made the exit `kind`, with the vCPU's registers `at` that exit.
    pub fn decode_exit<M: PhysRead + ?Sized>(
        &mut self,
        mem: &M,
        mode: &CpuMode,
        at: ExitRegs,
        kind: &ExitKind,
    ) -> Option<Arc<Insn>> {
        let rip = at.regs.rip;
        let class = ExitClass::of(kind);
        let bitness = mode.bitness();
        // The same exit as the last one, and that instruction's bytes still there (code can
        // change: they are read every time): the same instruction, without reading the window.
        if let Some(last) = self.last.as_ref().filter(|l| (l.rip, l.bitness, l.class) == (rip, bitness, class)) {
            let mut now = [0u8; MAX_INSN_LEN + 1];
            let linear = mode.code_linear(last.insn.addr);
            if self.code_page.read(mem, mode, linear, &mut now[..last.insn.bytes.len()]) && now == last.bytes {
                return Some(last.insn.clone());
            }
        }
        // Up to 15 bytes before RIP (fewer at the start of a mapping) and 15 from RIP.
        let mut window = [0u8; 2 * MAX_INSN_LEN];
        let linear = mode.code_linear(rip);
        let mut before = 0;
        let mut after = read_virt(mem, mode, linear.wrapping_sub(MAX_INSN_LEN as u64), &mut window);
        if after >= MAX_INSN_LEN {
            after -= MAX_INSN_LEN;
        } else {
            // The bytes before RIP are not all mapped: take what there is.
            window = [0u8; 2 * MAX_INSN_LEN];
            after = read_virt(mem, mode, linear, &mut window[MAX_INSN_LEN..]);
            before = MAX_INSN_LEN;
            if class != ExitClass::AtRip {
                let mut back = [0u8; MAX_INSN_LEN];
                for want in (1..MAX_INSN_LEN).rev() {
                    if read_virt(mem, mode, linear.wrapping_sub(want as u64), &mut back[..want]) == want {
                        window[MAX_INSN_LEN - want..MAX_INSN_LEN].copy_from_slice(&back[..want]);
                        before = MAX_INSN_LEN - want;
                        break;
                    }
                }
            }
        }
        let key = (rip, bitness, class, window);
        if let Some(hit) = self.cache.get(&key) {
            let hit = hit.clone();
            self.remember(rip, bitness, class, &hit);
            return hit;
        }
        let at_rip = decode_bytes(&window[MAX_INSN_LEN..MAX_INSN_LEN + after], bitness, rip);
        let (found, settled) = if class == ExitClass::AtRip {
            (at_rip, true)
        } else {
            let mut candidates: Vec<Candidate> =
                at_rip.into_iter().map(|insn| self.candidate(insn, false, mem, mode, at, kind)).collect();
            candidates.extend(self.ending_at(&window[before..MAX_INSN_LEN], bitness, rip, mem, mode, at, kind));
            candidates.retain(|c| c.fit > Fit::No);
            let best = candidates.iter().map(|c| c.fit).max();
            candidates.retain(|c| Some(c.fit) == best);
            let pos = class.position_key();
            let prefer_behind = *self.rip_after.get(&pos).unwrap_or(&pos.default_after());
            // Shortest first among those behind RIP (the candidates come in that order).
            let pick = candidates.iter().position(|c| c.behind_rip == prefer_behind).or(if candidates.is_empty() {
                None
            } else {
                Some(0)
            });
            let settled = best == Some(Fit::Yes);
            let found = pick.map(|i| candidates.swap_remove(i)).map(|c| {
                // Learn where RIP lies only from an exit the registers settled.
                if settled {
                    self.rip_after.insert(pos, c.behind_rip);
                }
                c.insn
            });
            (found, settled)
        };
        let found = found.map(Arc::new);
        // An answer the registers did not settle is not kept: the next exit may settle it.
        if settled {
            if self.cache.len() >= CACHE_LIMIT {
                self.cache.clear();
            }
            self.cache.insert(key, found.clone());
            self.remember(rip, bitness, class, &found);
        } else {
            self.last = None;
        }
        found
    }

    /// Keeps `found` as the last exit's instruction (an undecodable one is looked up each time).
    fn remember(&mut self, rip: u64, bitness: u32, class: ExitClass, found: &Option<Arc<Insn>>) {
        self.last = found.clone().map(|insn| {
            let mut bytes = [0u8; MAX_INSN_LEN + 1];
            bytes[..insn.bytes.len()].copy_from_slice(&insn.bytes);
            LastExit { rip, bitness, class, insn, bytes }
        });
    }

    /// Every instruction in `bytes` that ends exactly at `end`, shortest first, with its fit.
    #[allow(clippy::too_many_arguments)]
    fn ending_at<M: PhysRead + ?Sized>(
        &mut self,
        bytes: &[u8],
        bitness: u32,
        end: u64,
        mem: &M,
        mode: &CpuMode,
        at: ExitRegs,
        kind: &ExitKind,
    ) -> Vec<Candidate> {
        (1..=bytes.len())
            .filter_map(|len| {
                let insn = decode_bytes(&bytes[bytes.len() - len..], bitness, end - len as u64)?;
                (insn.bytes.len() == len).then(|| self.candidate(insn, true, mem, mode, at, kind))
            })
            .collect()
    }

    fn candidate<M: PhysRead + ?Sized>(
        &mut self,
        insn: Insn,
        behind_rip: bool,
        mem: &M,
        mode: &CpuMode,
        at: ExitRegs,
        kind: &ExitKind,
    ) -> Candidate {
        let fit = self.fit(&insn, mem, mode, at, kind);
        Candidate { insn, behind_rip, fit }
    }

    /// How well `insn` agrees with the exit `kind` under the exit's registers.
    fn fit<M: PhysRead + ?Sized>(
        &mut self,
        insn: &Insn,
        mem: &M,
        mode: &CpuMode,
        at: ExitRegs,
        kind: &ExitKind,
    ) -> Fit {
        let bitness = mode.bitness();
        let mut decoder = Decoder::with_ip(bitness, &insn.bytes, insn.addr, DecoderOptions::NONE);
        let i = decoder.decode();
        match *kind {
            ExitKind::Io { port, dir, size, .. } => io_fit(&i, port, dir, size as usize, at),
            ExitKind::Mmio { addr, dir, len, data } => {
                let info = self.info.info(&i);
                let writes_reg = |reg: Register| {
                    reg != Register::None
                        && info.used_registers().iter().any(|u| {
                            u.register().full_register() == reg.full_register()
                                && matches!(
                                    u.access(),
                                    OpAccess::Write
                                        | OpAccess::CondWrite
                                        | OpAccess::ReadWrite
                                        | OpAccess::ReadCondWrite
                                )
                        })
                };
                let long = bitness == 64;
                let mut fit = Fit::No;
                for m in info.used_memory() {
                    let dir_ok = match dir {
                        Dir::In => matches!(
                            m.access(),
                            OpAccess::Read | OpAccess::CondRead | OpAccess::ReadWrite | OpAccess::ReadCondWrite
                        ),
                        Dir::Out => matches!(
                            m.access(),
                            OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
                        ),
                    };
                    // A `rep` string operation's operand has no fixed size.
                    let size = m.memory_size().size() as u64;
                    if !dir_ok || (size != 0 && size < len as u64) {
                        continue;
                    }
                    let size = if size == 0 { len as u64 } else { size };
                    let gpa = m
                        .try_virtual_address(0, |reg, _, _| at.value(reg, long))
                        .map(|va| if long { va } else { va & 0xffff_ffff })
                        .and_then(|linear| gpa_of(mem, mode, linear).ok());
                    let Some((gpa, _)) = gpa else {
                        fit = fit.max(Fit::Unsure);
                        continue;
                    };
                    // The access lies in the operand; an instruction that moves its own address
                    // register (push, stos, movs ...) may show it one step on, when RIP is past.
                    let slack = if writes_reg(m.base()) || writes_reg(m.index()) { size } else { 0 };
                    if addr.wrapping_sub(gpa.wrapping_sub(slack)) >= size + 2 * slack {
                        continue;
                    }
                    if dir == Dir::Out && !stores(&i, data, len, at, long) {
                        continue;
                    }
                    fit = fit.max(if size == len as u64 { Fit::Yes } else { Fit::Split });
                }
                fit
            }
            _ => Fit::Yes,
        }
    }

    /// How many distinct exits are cached.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// Whether a store could have written `data` (`len` bytes): a `mov` writes its source register's
/// or immediate's value; other instructions are not checked.
fn stores(i: &Instruction, data: u64, len: u8, at: ExitRegs, long: bool) -> bool {
    if i.mnemonic() != Mnemonic::Mov || i.op_count() != 2 {
        return true;
    }
    let mask = if len >= 8 { u64::MAX } else { (1u64 << (len * 8)) - 1 };
    let value = match i.op1_kind() {
        OpKind::Register => at.value(i.op1_register(), long),
        OpKind::Immediate8 | OpKind::Immediate16 | OpKind::Immediate32 | OpKind::Immediate32to64 => {
            Some(i.immediate(1))
        }
        _ => None,
    };
    value.is_none_or(|v| v & mask == data & mask)
}

/// How well a port instruction agrees with a port exit: direction, size, and the port in its
/// immediate or in DX.
fn io_fit(i: &Instruction, port: u16, dir: Dir, size: usize, at: ExitRegs) -> Fit {
    let dx = at.regs.rdx as u16;
    let (reg_op, imm_op) = match (i.mnemonic(), dir) {
        (Mnemonic::In, Dir::In) => (0, 1),
        (Mnemonic::Out, Dir::Out) => (1, 0),
        (Mnemonic::Insb | Mnemonic::Outsb, _) => return string_io(i, dir, size == 1, dx == port),
        (Mnemonic::Insw | Mnemonic::Outsw, _) => return string_io(i, dir, size == 2, dx == port),
        (Mnemonic::Insd | Mnemonic::Outsd, _) => return string_io(i, dir, size == 4, dx == port),
        _ => return Fit::No,
    };
    let port_ok = match i.op_kind(imm_op) {
        OpKind::Immediate8 => i.immediate8() as u16 == port,
        _ => dx == port,
    };
    if port_ok && i.op_register(reg_op).size() == size { Fit::Yes } else { Fit::No }
}

/// Whether a string port instruction moves data in `dir`, of the right size, through the port.
fn string_io(i: &Instruction, dir: Dir, size_ok: bool, port_ok: bool) -> Fit {
    let is_in = matches!(i.mnemonic(), Mnemonic::Insb | Mnemonic::Insw | Mnemonic::Insd);
    if is_in == (dir == Dir::In) && size_ok && port_ok { Fit::Yes } else { Fit::No }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::paging::tests::Flat;

    #[test]
    fn decodes_in_each_bitness() {
        assert_eq!(decode_bytes(&[0xee], 32, 0).unwrap().text, "out dx,al");
        assert_eq!(decode_bytes(&[0xe6, 0xf4], 16, 0).unwrap().text, "out 0F4h,al");
        let mov = decode_bytes(&[0x48, 0x89, 0x03, 0x90], 64, 0x1000).unwrap();
        assert_eq!((mov.text.as_str(), mov.bytes.len()), ("mov [rbx],rax", 3));
        assert_eq!(mov.hex(), "48 89 03");
        // The same bytes mean something else in 32-bit code.
        assert_eq!(decode_bytes(&[0x48], 32, 0).unwrap().text, "dec eax");
    }

    #[test]
    fn invalid_bytes_are_none_and_decode_many_skips_them() {
        assert!(decode_bytes(&[0x0f, 0x0b][..1], 64, 0).is_none());
        let many = decode_many(&[0x90, 0xf4, 0x06, 0x90], 64, 0x10);
        let texts: Vec<_> = many.iter().map(|i| (i.addr, i.text.as_str())).collect();
        assert_eq!(texts, vec![(0x10, "nop"), (0x11, "hlt"), (0x12, "(bad)"), (0x13, "nop")]);
    }

    fn io(port: u16, dir: Dir, size: u8) -> ExitKind {
        ExitKind::Io { port, dir, size, count: 1, data: 0 }
    }

    fn mmio(addr: u64, dir: Dir, len: u8) -> ExitKind {
        ExitKind::Mmio { addr, dir, len, data: 0 }
    }

    /// Registers at an exit: `rip`, and the general registers `set` changes.
    fn regs(rip: u64, set: impl FnOnce(&mut kvm_regs)) -> kvm_regs {
        let mut r = kvm_regs { rip, rsp: 0x8000, ..Default::default() };
        set(&mut r);
        r
    }

    /// Decodes `kind` at `r` in 32-bit flat protected mode.
    fn decode(d: &mut InsnDecoder, mem: &Flat, r: &kvm_regs, kind: &ExitKind) -> Option<(u64, String)> {
        let mode = CpuMode { cr0: 1, cs_db: true, ..Default::default() };
        let sregs = kvm_sregs::default();
        d.decode_exit(mem, &mode, ExitRegs { regs: r, sregs: &sregs }, kind).map(|i| (i.addr, i.text.clone()))
    }

    fn code(at: usize, bytes: &[u8]) -> Flat {
        let mut mem = Flat(vec![0x90; 0x2000]);
        mem.0[at..at + bytes.len()].copy_from_slice(bytes);
        mem
    }

    #[test]
    fn exit_instruction_found_at_or_before_rip() {
        // 0x1000: mov dx,0x3f8 (66 ba f8 03) ; 0x1004: out dx,al (ee) ; 0x1005: in al,dx (ec) ;
        // 0x1006: mov [ebx],eax (89 03) ; 0x1008: nop
        let mut mem = code(0x1000, &[0x66, 0xba, 0xf8, 0x03, 0xee, 0xec, 0x89, 0x03]);
        let mut d = InsnDecoder::default();
        let dx = |rip| regs(rip, |r| r.rdx = 0x3f8);
        // RIP on the instruction (VT-x style).
        let at = decode(&mut d, &mem, &dx(0x1004), &io(0x3f8, Dir::Out, 1));
        assert_eq!(at, Some((0x1004, "out dx,al".into())));
        // RIP past it (emulating KVM): the next instruction is `in`, which cannot make an `out` exit.
        let past = decode(&mut d, &mem, &dx(0x1005), &io(0x3f8, Dir::Out, 1));
        assert_eq!(past, Some((0x1004, "out dx,al".into())));
        // Wrong size: `out dx,al` cannot make a 4-byte exit, and nothing else can.
        assert_eq!(decode(&mut d, &mem, &dx(0x1004), &io(0x3f8, Dir::Out, 4)), None);
        // MMIO write with RIP past the store.
        let store = mmio(0xd000_0000, Dir::Out, 4);
        let st = regs(0x1008, |r| r.rbx = 0xd000_0000);
        assert_eq!(decode(&mut d, &mem, &st, &store), Some((0x1006, "mov [ebx],eax".into())));
        // Cached: the same exit again gives the same Arc.
        let mode = CpuMode { cr0: 1, cs_db: true, ..Default::default() };
        let sregs = kvm_sregs::default();
        let first = d.decode_exit(&mem, &mode, ExitRegs { regs: &st, sregs: &sregs }, &store).unwrap();
        let again = d.decode_exit(&mem, &mode, ExitRegs { regs: &st, sregs: &sregs }, &store).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        // Self-modifying code: new bytes at the same address decode anew.
        mem.0[0x1004] = 0xe6; // out imm8,al needs a second byte: e6 ec = out 0ECh,al
        let imm = decode(&mut d, &mem, &dx(0x1004), &io(0xec, Dir::Out, 1));
        assert_eq!(imm, Some((0x1004, "out 0ECh,al".into())));
        assert_eq!(decode(&mut d, &mem, &dx(0x1004), &io(0x80, Dir::Out, 1)), None, "port must match");
        // Unmapped RIP: nothing.
        assert!(d.decode_at(&mem, &mode, 0x9000).is_none());
        assert_eq!(d.decode_at(&mem, &mode, 0x1006).unwrap().text, "mov [ebx],eax");
    }

    #[test]
    fn an_mmio_write_is_the_instruction_whose_address_is_the_exits() {
        // The virtio guest's queue notify: 0x10024f: 89 48 50  mov [eax+0x50],ecx, RIP past it.
        // Its last byte alone, 50, is `push eax`: also a 4-byte write that ends at RIP.
        let mut mem = Flat(vec![0x90; 0x10_1000]);
        mem.0[0x10_024f..0x10_0252].copy_from_slice(&[0x89, 0x48, 0x50]);
        let notify = regs(0x10_0252, |r| (r.rax, r.rsp) = (0xd000_0000, 0x8000));
        let mut d = InsnDecoder::default();
        let got = decode(&mut d, &mem, &notify, &mmio(0xd000_0050, Dir::Out, 4));
        assert_eq!(got, Some((0x10_024f, "mov [eax+50h],ecx".into())));
        // The same bytes when the push made the write (the stack in the device's page, ESP already
        // moved on): the push, one byte before RIP.
        let pushed = regs(0x10_0252, |r| (r.rax, r.rsp) = (0x1234, 0xd000_0ffc));
        let got = decode(&mut InsnDecoder::default(), &mem, &pushed, &mmio(0xd000_0ffc, Dir::Out, 4));
        assert_eq!(got, Some((0x10_0251, "push eax".into())));
        // And when neither could have written there, no instruction rather than a wrong one.
        let neither = regs(0x10_0252, |r| (r.rax, r.rsp) = (0x5000, 0x8000));
        assert_eq!(decode(&mut InsnDecoder::default(), &mem, &neither, &mmio(0xd000_0050, Dir::Out, 4)), None);
    }

    /// Decodes `kind` at `r` in 64-bit mode (identity paging is not needed: the test memory is
    /// read as physical when paging is off).
    fn decode64(d: &mut InsnDecoder, mem: &Flat, r: &kvm_regs, kind: &ExitKind) -> Option<(u64, String)> {
        let mode = CpuMode { cr0: 1, efer: crate::decode::regs::EFER_LMA, cs_l: true, ..Default::default() };
        let sregs = kvm_sregs::default();
        d.decode_exit(mem, &mode, ExitRegs { regs: r, sregs: &sregs }, kind).map(|i| (i.addr, i.text.clone()))
    }

    #[test]
    fn an_mmio_access_is_the_instruction_of_its_size_whatever_a_shorter_suffix_decodes_to() {
        let base = 0xd000_0000u64;
        let with = |r: &mut kvm_regs| (r.rbx, r.rax, r.r8) = (base, 0x1122_3344_5566_7788, 0x99aa_bbcc_ddee_ff00);
        // (bytes before RIP, exit direction and length, data, the instruction it must be).
        let cases: &[(&[u8], Dir, u8, u64, &str)] = &[
            (&[0x88, 0x03], Dir::Out, 1, 0x88, "mov [rbx],al"),
            (&[0x66, 0x89, 0x03], Dir::Out, 2, 0x7788, "mov [rbx],ax"),
            (&[0x89, 0x03], Dir::Out, 4, 0x5566_7788, "mov [rbx],eax"),
            (&[0x48, 0x89, 0x03], Dir::Out, 8, 0x1122_3344_5566_7788, "mov [rbx],rax"),
            (&[0x44, 0x89, 0x03], Dir::Out, 4, 0xddee_ff00, "mov [rbx],r8d"),
            (&[0x66, 0x44, 0x89, 0x03], Dir::Out, 2, 0xff00, "mov [rbx],r8w"),
            (&[0x66, 0xc7, 0x03, 0x34, 0x12], Dir::Out, 2, 0x1234, "mov word ptr [rbx],1234h"),
            (&[0x8a, 0x03], Dir::In, 1, 0, "mov al,[rbx]"),
            (&[0x66, 0x8b, 0x03], Dir::In, 2, 0, "mov ax,[rbx]"),
            (&[0x8b, 0x03], Dir::In, 4, 0, "mov eax,[rbx]"),
            (&[0x48, 0x8b, 0x03], Dir::In, 8, 0, "mov rax,[rbx]"),
            (&[0x66, 0x67, 0x8b, 0x03], Dir::In, 2, 0, "mov ax,[ebx]"),
        ];
        for &(bytes, dir, len, data, want) in cases {
            let mem = code(0x1000, bytes);
            let rip = 0x1000 + bytes.len() as u64;
            let kind = ExitKind::Mmio { addr: base, dir, len, data };
            let got = decode64(&mut InsnDecoder::default(), &mem, &regs(rip, with), &kind);
            assert_eq!(got, Some((0x1000, want.into())), "{bytes:02x?}, {len} bytes {dir:?}");
        }
    }

    #[test]
    fn an_mmio_read_at_rip_is_not_taken_for_the_read_before_it() {
        // 0x1000: mov eax,[ebx] (8b 03) ; 0x1002: mov ecx,[esi+10h] (8b 4e 10) ; 0x1005: nop.
        // Both are 4-byte reads. First a read exit that leaves RIP past its instruction (RIP
        // 0x1005, only the second can have made it), so that the decoder tries behind RIP first;
        // then a read with RIP on the second, where the first also ends at RIP.
        let mem = code(0x1000, &[0x8b, 0x03, 0x8b, 0x4e, 0x10]);
        let mut d = InsnDecoder::default();
        let past = regs(0x1005, |r| (r.rbx, r.rsi) = (0x5000, 0xd000_0000));
        let got = decode(&mut d, &mem, &past, &mmio(0xd000_0010, Dir::In, 4));
        assert_eq!(got, Some((0x1002, "mov ecx,[esi+10h]".into())));
        let on = regs(0x1002, |r| (r.rbx, r.rsi) = (0x5000, 0xd000_0000));
        let got = decode(&mut d, &mem, &on, &mmio(0xd000_0010, Dir::In, 4));
        assert_eq!(got, Some((0x1002, "mov ecx,[esi+10h]".into())));
        // And the first, when it is the one whose address is the exit's.
        let first = regs(0x1002, |r| (r.rbx, r.rsi) = (0xd000_0000, 0x5000));
        let got = decode(&mut InsnDecoder::default(), &mem, &first, &mmio(0xd000_0000, Dir::In, 4));
        assert_eq!(got, Some((0x1000, "mov eax,[ebx]".into())));
    }

    #[test]
    fn a_port_exit_is_the_instruction_that_names_its_port() {
        // 0x1000: out 0EEh,al (e6 ee). Its second byte alone is `out dx,al`, which also ends at RIP.
        let mem = code(0x1000, &[0xe6, 0xee]);
        let dx = regs(0x1002, |r| r.rdx = 0x3f8);
        let got = decode(&mut InsnDecoder::default(), &mem, &dx, &io(0xee, Dir::Out, 1));
        assert_eq!(got, Some((0x1000, "out 0EEh,al".into())));
        // With DX = 0x3f8 and a jump into the middle, the exit on 0x3f8 is the `out dx,al`.
        let got = decode(&mut InsnDecoder::default(), &mem, &dx, &io(0x3f8, Dir::Out, 1));
        assert_eq!(got, Some((0x1001, "out dx,al".into())));
        // `in al,dx` (ec) at RIP with DX elsewhere cannot be an exit on port 0x60.
        let mem = code(0x1000, &[0xe4, 0x60, 0xec]);
        let r = regs(0x1002, |r| r.rdx = 0x3f8);
        let got = decode(&mut InsnDecoder::default(), &mem, &r, &io(0x60, Dir::In, 1));
        assert_eq!(got, Some((0x1000, "in al,60h".into())));
    }

    #[test]
    fn string_and_stack_writes_agree_with_their_moved_registers() {
        // 0x1000: stosd (ab): EDI already 4 past the address when RIP is past it.
        let mem = code(0x1000, &[0xab]);
        let r = regs(0x1001, |r| r.rdi = 0xd000_0104);
        let got = decode(&mut InsnDecoder::default(), &mem, &r, &mmio(0xd000_0100, Dir::Out, 4));
        assert_eq!(got, Some((0x1000, "stosd [edi]".into())));
        // Too far off for one step: not it.
        let r = regs(0x1001, |r| r.rdi = 0xd000_0200);
        assert_eq!(decode(&mut InsnDecoder::default(), &mem, &r, &mmio(0xd000_0100, Dir::Out, 4)), None);
    }
}

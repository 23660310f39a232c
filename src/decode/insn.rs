//! Instruction decoding with iced-x86, cached so each distinct instruction is formatted once.

use std::sync::Arc;

use iced_x86::{
    Decoder, DecoderOptions, Formatter, Instruction, InstructionInfoFactory, IntelFormatter, Mnemonic, OpAccess, OpKind,
};
use rustc_hash::FxHashMap;

use super::paging::{CpuMode, PageMemo, PhysRead, read_virt};
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

/// Decodes the instruction behind an exit, remembering each distinct (address, bytes, mode, exit
/// class) it has seen so a loop that exits a million times is decoded once.
///
/// Where RIP points at an exit depends on the host: VT-x KVM leaves it on a port instruction and an
/// MMIO read, but past an MMIO write; an emulating KVM (PVM) leaves it past every port instruction.
/// So for port and MMIO exits the instruction at RIP is taken only if it could have made that exit
/// (same direction, size, port); otherwise the instruction that ends exactly at RIP and could have
/// made it is taken. The position that worked last for each kind of exit is tried first.
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
    fn default() -> Self {
        Self {
            cache: FxHashMap::default(),
            last: None,
            code_page: PageMemo::default(),
            info: InstructionInfoFactory::new(),
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

type CacheKey = (u64, u32, ExitClass, [u8; 2 * MAX_INSN_LEN]);

impl InsnDecoder {
    /// The instruction at `rip` in the vCPU's current mode, or `None` if unmapped or undecodable.
    pub fn decode_at(&mut self, mem: &dyn PhysRead, mode: &CpuMode, rip: u64) -> Option<Arc<Insn>> {
        let mut bytes = [0u8; MAX_INSN_LEN];
        let n = read_virt(mem, mode, mode.code_linear(rip), &mut bytes);
        decode_bytes(&bytes[..n], mode.bitness(), rip).map(Arc::new)
    }

    /// The instruction that made the exit `kind` with the vCPU at `rip`.
    pub fn decode_exit<M: PhysRead + ?Sized>(
        &mut self,
        mem: &M,
        mode: &CpuMode,
        rip: u64,
        kind: &ExitKind,
    ) -> Option<Arc<Insn>> {
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
        let at_rip = || decode_bytes(&window[MAX_INSN_LEN..MAX_INSN_LEN + after], bitness, rip);
        let found = if class == ExitClass::AtRip {
            at_rip()
        } else {
            let here = at_rip().filter(|i| self.could_make(i, bitness, class));
            let behind = self.ending_at(&window[before..MAX_INSN_LEN], bitness, rip, class);
            let pos = class.position_key();
            let prefer_after = *self.rip_after.get(&pos).unwrap_or(&pos.default_after());
            match (here, behind) {
                (Some(h), None) => {
                    self.rip_after.insert(pos, false);
                    Some(h)
                }
                (None, Some(b)) => {
                    self.rip_after.insert(pos, true);
                    Some(b)
                }
                (Some(h), Some(b)) => Some(if prefer_after { b } else { h }),
                (None, None) => None,
            }
        };
        let found = found.map(Arc::new);
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(key, found.clone());
        self.remember(rip, bitness, class, &found);
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

    /// The shortest instruction in `bytes` that ends exactly at `end` and could have made the exit.
    fn ending_at(&mut self, bytes: &[u8], bitness: u32, end: u64, class: ExitClass) -> Option<Insn> {
        (1..=bytes.len()).find_map(|len| {
            let start = bytes.len() - len;
            let insn = decode_bytes(&bytes[start..], bitness, end - len as u64)?;
            (insn.bytes.len() == len && self.could_make(&insn, bitness, class)).then_some(insn)
        })
    }

    /// Whether `insn` could have caused an exit of `class`.
    fn could_make(&mut self, insn: &Insn, bitness: u32, class: ExitClass) -> bool {
        let mut decoder = Decoder::with_ip(bitness, &insn.bytes, insn.addr, DecoderOptions::NONE);
        let i = decoder.decode();
        match class {
            ExitClass::AtRip => true,
            ExitClass::Io { port, dir, size } => {
                let size = size as usize;
                let (reg_op, imm_op) = match (i.mnemonic(), dir) {
                    (Mnemonic::In, Dir::In) => (0, 1),
                    (Mnemonic::Out, Dir::Out) => (1, 0),
                    (Mnemonic::Insb | Mnemonic::Outsb, _) => return string_io(&i, dir) && size == 1,
                    (Mnemonic::Insw | Mnemonic::Outsw, _) => return string_io(&i, dir) && size == 2,
                    (Mnemonic::Insd | Mnemonic::Outsd, _) => return string_io(&i, dir) && size == 4,
                    _ => return false,
                };
                let port_ok = i.op_kind(imm_op) != OpKind::Immediate8 || i.immediate8() as u16 == port;
                port_ok && i.op_register(reg_op).size() == size
            }
            ExitClass::Mmio { dir, len } => self.info.info(&i).used_memory().iter().any(|m| {
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
                dir_ok && m.memory_size().size() >= len as usize
            }),
        }
    }

    /// How many distinct exits are cached.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// Whether a string port instruction moves data in `dir`.
fn string_io(i: &Instruction, dir: Dir) -> bool {
    let is_in = matches!(i.mnemonic(), Mnemonic::Insb | Mnemonic::Insw | Mnemonic::Insd);
    is_in == (dir == Dir::In)
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

    #[test]
    fn exit_instruction_found_at_or_before_rip() {
        // 0x1000: mov dx,0x3f8 (66 ba f8 03) ; 0x1004: out dx,al (ee) ; 0x1005: in al,dx (ec) ;
        // 0x1006: mov [ebx],eax (89 03) ; 0x1008: nop
        let mut mem = Flat(vec![0x90; 0x2000]);
        mem.0[0x1000..0x1008].copy_from_slice(&[0x66, 0xba, 0xf8, 0x03, 0xee, 0xec, 0x89, 0x03]);
        let mode = CpuMode { cr0: 1, cs_db: true, ..Default::default() };
        let mut d = InsnDecoder::default();
        // RIP on the instruction (VT-x style).
        let at = d.decode_exit(&mem, &mode, 0x1004, &io(0x3f8, Dir::Out, 1)).unwrap();
        assert_eq!((at.addr, at.text.as_str()), (0x1004, "out dx,al"));
        // RIP past it (emulating KVM): the next instruction is `in`, which cannot make an `out` exit.
        let past = d.decode_exit(&mem, &mode, 0x1005, &io(0x3f8, Dir::Out, 1)).unwrap();
        assert_eq!((past.addr, past.text.as_str()), (0x1004, "out dx,al"));
        // Wrong size: `out dx,al` cannot make a 4-byte exit, and nothing else can.
        assert!(d.decode_exit(&mem, &mode, 0x1004, &io(0x3f8, Dir::Out, 4)).is_none());
        // MMIO write with RIP past the store.
        let store = ExitKind::Mmio { addr: 0xd000_0000, dir: Dir::Out, len: 4, data: 0 };
        let st = d.decode_exit(&mem, &mode, 0x1008, &store).unwrap();
        assert_eq!((st.addr, st.text.as_str()), (0x1006, "mov [ebx],eax"));
        // Cached: the same exit again gives the same Arc.
        let again = d.decode_exit(&mem, &mode, 0x1008, &store).unwrap();
        assert!(Arc::ptr_eq(&st, &again));
        // Self-modifying code: new bytes at the same address decode anew.
        mem.0[0x1004] = 0xe6; // out imm8,al needs a second byte: e6 ec = out 0ECh,al
        let imm = d.decode_exit(&mem, &mode, 0x1004, &io(0xec, Dir::Out, 1)).unwrap();
        assert_eq!(imm.text, "out 0ECh,al");
        assert!(d.decode_exit(&mem, &mode, 0x1004, &io(0x80, Dir::Out, 1)).is_none(), "port must match");
        // Unmapped RIP: nothing.
        assert!(d.decode_at(&mem, &mode, 0x9000).is_none());
        assert_eq!(d.decode_at(&mem, &mode, 0x1006).unwrap().text, "mov [ebx],eax");
    }
}

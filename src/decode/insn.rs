//! Instruction decoding with iced-x86, cached so each distinct instruction is formatted once.

use std::collections::HashMap;
use std::sync::Arc;

use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter};

use super::paging::{CpuMode, PhysRead, read_virt};
use crate::trace::Insn;

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

/// Decodes the instruction at a guest RIP, remembering each distinct (address, bytes, mode) it has
/// seen so a loop that exits a million times is formatted once.
#[derive(Default)]
pub struct InsnDecoder {
    cache: HashMap<(u64, u32, [u8; MAX_INSN_LEN]), Arc<Insn>>,
}

impl InsnDecoder {
    /// The instruction at `rip` in the vCPU's current mode, or `None` if unmapped or undecodable.
    pub fn decode_at(&mut self, mem: &dyn PhysRead, mode: &CpuMode, rip: u64) -> Option<Arc<Insn>> {
        let addr = mode.code_linear(rip);
        let mut bytes = [0u8; MAX_INSN_LEN];
        let n = read_virt(mem, mode, addr, &mut bytes);
        if n == 0 {
            return None;
        }
        let bitness = mode.bitness();
        let key = (rip, bitness, bytes);
        if let Some(hit) = self.cache.get(&key) {
            return Some(hit.clone());
        }
        let insn = Arc::new(decode_bytes(&bytes[..n], bitness, rip)?);
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(key, insn.clone());
        Some(insn)
    }

    /// How many distinct instructions are cached.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
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

    #[test]
    fn decoder_reads_guest_memory_and_caches() {
        let mut mem = Flat(vec![0x90; 0x2000]);
        mem.0[0x1000] = 0xec; // in al,dx
        let mode = CpuMode { cr0: 1, cs_db: true, ..Default::default() };
        let mut d = InsnDecoder::default();
        let a = d.decode_at(&mem, &mode, 0x1000).unwrap();
        let b = d.decode_at(&mem, &mode, 0x1000).unwrap();
        assert_eq!(a.text, "in al,dx");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(d.cached(), 1);
        // Self-modifying code: new bytes at the same address decode anew.
        mem.0[0x1000] = 0xee;
        assert_eq!(d.decode_at(&mem, &mode, 0x1000).unwrap().text, "out dx,al");
        // The last bytes of memory: fewer than 15 readable still decode.
        mem.0[0x1fff] = 0xf4;
        assert_eq!(d.decode_at(&mem, &mode, 0x1fff).unwrap().text, "hlt");
        assert!(d.decode_at(&mem, &mode, 0x9000).is_none());
    }
}

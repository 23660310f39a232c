//! Where a single step must end when the host's single-step trap cannot be trusted to: after an
//! instruction that reloads RFLAGS (`iret`, `popf` — the trap flag the host set is replaced, and
//! the trap comes an instruction late or never), and at the handler of an exception kvmscope
//! delivers itself (stepping through the delivery would push the trap flag into the guest's
//! exception frame). The step then ends at a hardware breakpoint on that address.

use iced_x86::{Decoder, DecoderOptions, Mnemonic};
use kvm_bindings::{kvm_regs, kvm_sregs};

use crate::decode::paging::read_virt;
use crate::decode::{CpuMode, PhysRead};

/// Reads a little-endian word of `len` bytes at linear address `at`.
fn word<M: PhysRead + ?Sized>(mem: &M, mode: &CpuMode, at: u64, len: usize) -> Option<u64> {
    let mut b = [0u8; 8];
    (read_virt(mem, mode, at, &mut b[..len]) == len).then(|| u64::from_le_bytes(b))
}

/// The linear address the instruction at RIP continues at, when it reloads RFLAGS: `iret`'s
/// return address (a return to the same privilege level's flat code), or the instruction after
/// `popf`. `None` for any other instruction.
pub fn after_flags_reload<M: PhysRead + ?Sized>(mem: &M, regs: &kvm_regs, sregs: &kvm_sregs) -> Option<u64> {
    let mode = CpuMode::from(sregs);
    let bits = mode.bitness();
    let at = mode.code_linear(regs.rip);
    let mut bytes = [0u8; 15];
    let n = read_virt(mem, &mode, at, &mut bytes);
    let insn = Decoder::with_ip(bits, &bytes[..n], regs.rip, DecoderOptions::NONE).decode();
    let stack = |off: u64| match bits {
        64 => regs.rsp.wrapping_add(off),
        32 => sregs.ss.base.wrapping_add((regs.rsp as u32).wrapping_add(off as u32) as u64) & 0xffff_ffff,
        _ => sregs.ss.base.wrapping_add((regs.rsp as u16).wrapping_add(off as u16) as u64),
    };
    match insn.mnemonic() {
        Mnemonic::Popf | Mnemonic::Popfd | Mnemonic::Popfq => Some(mode.code_linear(insn.next_ip())),
        Mnemonic::Iretq => word(mem, &mode, stack(0), 8),
        Mnemonic::Iretd if bits == 64 => word(mem, &mode, stack(0), 8),
        Mnemonic::Iretd => Some(mode.cs_base.wrapping_add(word(mem, &mode, stack(0), 4)?) & 0xffff_ffff),
        Mnemonic::Iret => {
            let ip = word(mem, &mode, stack(0), 2)?;
            let cs = word(mem, &mode, stack(2), 2)?;
            Some(if bits == 16 && mode.cr0 & 1 == 0 { (cs << 4) + ip } else { mode.cs_base + ip })
        }
        _ => None,
    }
}

/// The linear address of the handler of exception `vector`: the IDT's gate (flat code segments
/// assumed in protected mode), or the real-mode vector table's entry.
pub fn handler_of<M: PhysRead + ?Sized>(mem: &M, sregs: &kvm_sregs, vector: u8) -> Option<u64> {
    let mode = CpuMode::from(sregs);
    let base = sregs.idt.base;
    let v = vector as u64;
    match mode.bitness() {
        _ if mode.cr0 & 1 == 0 => {
            let ip = word(mem, &mode, base + v * 4, 2)?;
            let cs = word(mem, &mode, base + v * 4 + 2, 2)?;
            Some((cs << 4) + ip)
        }
        _ if mode.efer & crate::decode::regs::EFER_LMA != 0 => {
            let low = word(mem, &mode, base + v * 16, 2)?;
            let mid = word(mem, &mode, base + v * 16 + 6, 2)?;
            let high = word(mem, &mode, base + v * 16 + 8, 4)?;
            Some(low | mid << 16 | high << 32)
        }
        _ => {
            let low = word(mem, &mode, base + v * 8, 2)?;
            let high = word(mem, &mode, base + v * 8 + 6, 2)?;
            Some(low | high << 16)
        }
    }
}

//! Finishing in userspace the few instructions an emulating host's KVM (PVM) cannot run at CPL0 and
//! that are simple and safe to complete here: `clac`, `stac`, `popcnt`, `cmpxchg16b`, `fwait`. Each
//! is done as the CPU would — registers, flags and memory through the guest's page tables, the x87
//! state through `KVM_GET_FPU` — and RIP moves past it, or the exception the CPU would raise is
//! raised. Anything else stays an emulation failure, reported with the decoded instruction.

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};

use super::memory::GuestRam;
use crate::decode::CpuMode;
use crate::decode::paging::{read_virt, translate};

const RFLAGS_AC: u64 = 1 << 18;
/// The arithmetic flags popcnt and cmpxchg16b define.
const RFLAGS_ARITH: u64 = 0x8d5; // CF PF AF ZF SF OF
const RFLAGS_ZF: u64 = 1 << 6;

/// Which instructions kvmscope finishes.
pub fn completes(mnemonic: Mnemonic) -> bool {
    matches!(mnemonic, Mnemonic::Clac | Mnemonic::Stac | Mnemonic::Popcnt | Mnemonic::Cmpxchg16b | Mnemonic::Wait)
}

/// How a completed instruction ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Completion {
    /// Done: these are the registers after it.
    Done(kvm_regs),
    /// It raises this exception (a fault: RIP stays on it).
    Fault(u8),
}

/// #NM, device not available.
const NM: u8 = 7;
/// #MF, x87 floating-point error.
const MF: u8 = 16;
const CR0_MP: u64 = 1 << 1;
const CR0_TS: u64 = 1 << 3;
/// FSW's error summary: an unmasked x87 exception is pending.
const FSW_ES: u16 = 1 << 7;

/// `fwait`: #NM when CR0.TS and CR0.MP say the x87 state is not the task's, #MF when an unmasked
/// exception is pending, else nothing.
fn fwait(sregs: &kvm_sregs, fpu: Option<kvm_fpu>) -> Option<Option<u8>> {
    if sregs.cr0 & (CR0_TS | CR0_MP) == CR0_TS | CR0_MP {
        return Some(Some(NM));
    }
    Some((fpu?.fsw & FSW_ES != 0).then_some(MF))
}

fn gpr(regs: &mut kvm_regs, full: Register) -> Option<&mut u64> {
    Some(match full {
        Register::RAX => &mut regs.rax,
        Register::RBX => &mut regs.rbx,
        Register::RCX => &mut regs.rcx,
        Register::RDX => &mut regs.rdx,
        Register::RSI => &mut regs.rsi,
        Register::RDI => &mut regs.rdi,
        Register::RBP => &mut regs.rbp,
        Register::RSP => &mut regs.rsp,
        Register::R8 => &mut regs.r8,
        Register::R9 => &mut regs.r9,
        Register::R10 => &mut regs.r10,
        Register::R11 => &mut regs.r11,
        Register::R12 => &mut regs.r12,
        Register::R13 => &mut regs.r13,
        Register::R14 => &mut regs.r14,
        Register::R15 => &mut regs.r15,
        _ => return None,
    })
}

/// The value of a general register of any width.
fn read_reg(regs: &mut kvm_regs, r: Register) -> Option<u64> {
    let v = *gpr(regs, r.full_register())?;
    Some(match r.size() {
        8 => v,
        4 => v & 0xffff_ffff,
        2 => v & 0xffff,
        _ => return None,
    })
}

/// Writes a general register as the CPU does: 32-bit writes zero-extend, 16-bit writes merge.
fn write_reg(regs: &mut kvm_regs, r: Register, value: u64) -> Option<()> {
    let size = r.size();
    let slot = gpr(regs, r.full_register())?;
    *slot = match size {
        8 => value,
        4 => value & 0xffff_ffff,
        2 => (*slot & !0xffff) | (value & 0xffff),
        _ => return None,
    };
    Some(())
}

/// The linear address of the instruction's memory operand.
fn address(i: &Instruction, regs: &mut kvm_regs, sregs: &kvm_sregs) -> Option<u64> {
    let mut a = i.memory_displacement64();
    if i.memory_base() != Register::None && i.memory_base() != Register::RIP && i.memory_base() != Register::EIP {
        a = a.wrapping_add(read_reg(regs, i.memory_base())?);
    }
    if i.memory_index() != Register::None {
        a = a.wrapping_add(read_reg(regs, i.memory_index())?.wrapping_mul(i.memory_index_scale() as u64));
    }
    a = a.wrapping_add(match i.memory_segment() {
        Register::FS => sregs.fs.base,
        Register::GS => sregs.gs.base,
        _ => 0,
    });
    Some(a)
}

fn read_mem(ram: &GuestRam, mode: &CpuMode, addr: u64, buf: &mut [u8]) -> Option<()> {
    (read_virt(ram, mode, addr, buf) == buf.len()).then_some(())
}

fn write_mem(ram: &GuestRam, mode: &CpuMode, addr: u64, data: &[u8]) -> Option<()> {
    for (k, b) in data.iter().enumerate() {
        let t = translate(ram, mode, addr.wrapping_add(k as u64)).ok()?;
        ram.write(t.gpa, &[*b]).then_some(())?;
    }
    Some(())
}

/// Completes the instruction at RIP if it is one kvmscope finishes (`fpu` reads the x87 state when
/// one needs it), or `None`.
pub fn complete(
    ram: &GuestRam,
    mode: &CpuMode,
    regs: &kvm_regs,
    sregs: &kvm_sregs,
    fpu: &dyn Fn() -> Option<kvm_fpu>,
) -> Option<Completion> {
    let mut bytes = [0u8; 15];
    let n = read_virt(ram, mode, mode.code_linear(regs.rip), &mut bytes);
    let i = Decoder::with_ip(mode.bitness(), &bytes[..n], regs.rip, DecoderOptions::NONE).decode();
    if i.is_invalid() || !completes(i.mnemonic()) {
        return None;
    }
    let mut r = *regs;
    match i.mnemonic() {
        Mnemonic::Wait => {
            if let Some(vector) = fwait(sregs, fpu())? {
                return Some(Completion::Fault(vector));
            }
        }
        Mnemonic::Clac => r.rflags &= !RFLAGS_AC,
        Mnemonic::Stac => r.rflags |= RFLAGS_AC,
        Mnemonic::Popcnt => {
            let dst = i.op0_register();
            let size = dst.size();
            let src = match i.op1_kind() {
                OpKind::Register => read_reg(&mut r, i.op1_register())?,
                OpKind::Memory => {
                    let mut b = [0u8; 8];
                    read_mem(ram, mode, address(&i, &mut r, sregs)?, &mut b[..size])?;
                    u64::from_le_bytes(b)
                }
                _ => return None,
            };
            let count = src.count_ones() as u64;
            write_reg(&mut r, dst, count)?;
            r.rflags &= !RFLAGS_ARITH;
            if src == 0 {
                r.rflags |= RFLAGS_ZF;
            }
        }
        Mnemonic::Cmpxchg16b => {
            let addr = address(&i, &mut r, sregs)?;
            let mut m = [0u8; 16];
            read_mem(ram, mode, addr, &mut m)?;
            let lo = u64::from_le_bytes(m[..8].try_into().ok()?);
            let hi = u64::from_le_bytes(m[8..].try_into().ok()?);
            if lo == r.rax && hi == r.rdx {
                let mut new = r.rbx.to_le_bytes().to_vec();
                new.extend_from_slice(&r.rcx.to_le_bytes());
                write_mem(ram, mode, addr, &new)?;
                r.rflags |= RFLAGS_ZF;
            } else {
                (r.rax, r.rdx) = (lo, hi);
                r.rflags &= !RFLAGS_ZF;
            }
        }
        _ => return None,
    }
    r.rip = regs.rip.wrapping_add(i.len() as u64);
    Some(Completion::Done(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fwait_raises_what_the_cpu_would() {
        let mut sregs = kvm_sregs { cr0: 0x11, ..Default::default() };
        let fpu = |fsw: u16| Some(kvm_fpu { fsw, ..Default::default() });
        assert_eq!(fwait(&sregs, fpu(0)), Some(None), "nothing pending: it just ends");
        assert_eq!(fwait(&sregs, fpu(FSW_ES | 0x4)), Some(Some(MF)), "a pending unmasked exception: #MF");
        sregs.cr0 |= CR0_TS | CR0_MP;
        assert_eq!(fwait(&sregs, fpu(0)), Some(Some(NM)), "the x87 state is not the task's: #NM");
        sregs.cr0 &= !CR0_MP;
        assert_eq!(fwait(&sregs, fpu(0)), Some(None), "TS without MP: fwait does not trap");
        assert_eq!(fwait(&sregs, None), None, "no x87 state to look at: not completed");
    }
}

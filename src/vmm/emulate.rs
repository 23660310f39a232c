//! Finishing in userspace the few instructions an emulating host's KVM (PVM) cannot run at CPL0 and
//! that are simple and safe to complete here: `clac`, `stac`, `popcnt`, `cmpxchg16b`, the x87/SSE
//! control instructions `fwait`, `fnclex`, `fldcw`, `fnstsw`, `ldmxcsr`, `stmxcsr`, the segment
//! checks `lsl`, `lar`, `verr`, `verw` (Linux reads its CPU number with `lsl`, the NMI backtrace
//! path among others), and a 32-bit kernel's `iretd` from an interrupt at its own privilege (the
//! host's emulator does `iret` in real mode only). Each is done as the CPU would — registers, flags and memory through the guest's page
//! tables, the x87/SSE control state through `KVM_GET_XSAVE`/`KVM_SET_XSAVE` — and RIP moves past
//! it, or the exception the CPU would raise is raised. Anything else stays an emulation failure,
//! reported with the decoded instruction.

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use kvm_bindings::{kvm_regs, kvm_sregs, kvm_xsave};

use super::memory::GuestRam;
use crate::decode::CpuMode;
use crate::decode::paging::{gpa_of, read_virt};

const RFLAGS_AC: u64 = 1 << 18;
/// The arithmetic flags popcnt and cmpxchg16b define.
const RFLAGS_ARITH: u64 = 0x8d5; // CF PF AF ZF SF OF
const RFLAGS_ZF: u64 = 1 << 6;

/// Which instructions kvmscope finishes.
pub fn completes(mnemonic: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        mnemonic,
        Clac | Stac
            | Popcnt
            | Cmpxchg16b
            | Wait
            | Fnclex
            | Fldcw
            | Fnstsw
            | Ldmxcsr
            | Stmxcsr
            | Iretd
            | Lsl
            | Lar
            | Verr
            | Verw
    )
}

/// How a completed instruction ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Completion {
    /// Done: these are the registers after it, and the x87/SSE control state when it changed that.
    Done(kvm_regs, Option<X87Sse>),
    /// It raises this exception (a fault: RIP stays on it; #GP with error code 0).
    Fault(u8),
}

/// The x87/SSE control state these instructions read and write. It comes from the XSAVE area's
/// legacy (FXSAVE-format) region: `KVM_GET_FPU` would be simpler, but it does not carry MXCSR.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct X87Sse {
    pub fcw: u16,
    pub fsw: u16,
    pub mxcsr: u32,
    /// The MXCSR bits the CPU accepts (0 in the area means the default, 0xffbf).
    pub mxcsr_mask: u32,
}

/// The XSAVE header's XSTATE_BV (at byte 512): which components the area holds.
const XSTATE_BV: usize = 512 / 4;
/// XSTATE_BV's x87 and SSE bits: set when kvmscope writes the control words, so KVM takes them.
const XSTATE_X87_SSE: u32 = 0b11;

impl X87Sse {
    /// Reads the control state from an XSAVE area (FCW and FSW in its first word, MXCSR at byte 24).
    pub fn read(area: &kvm_xsave) -> X87Sse {
        let r = &area.region;
        X87Sse { fcw: r[0] as u16, fsw: (r[0] >> 16) as u16, mxcsr: r[6], mxcsr_mask: r[7] }
    }

    /// Writes the control state into an XSAVE area, everything else in it left as it was.
    pub fn write(&self, area: &mut kvm_xsave) {
        area.region[0] = self.fcw as u32 | (self.fsw as u32) << 16;
        area.region[6] = self.mxcsr;
        area.region[XSTATE_BV] |= XSTATE_X87_SSE;
    }

    fn mxcsr_valid(&self) -> u32 {
        if self.mxcsr_mask == 0 { 0xffbf } else { self.mxcsr_mask }
    }
}

/// #UD, invalid opcode.
const UD: u8 = 6;
/// #NM, device not available.
const NM: u8 = 7;
/// #GP, general protection.
pub const GP: u8 = 13;
/// #MF, x87 floating-point error.
const MF: u8 = 16;
const CR0_MP: u64 = 1 << 1;
const CR0_EM: u64 = 1 << 2;
const CR0_TS: u64 = 1 << 3;
const CR4_OSFXSR: u64 = 1 << 9;
/// FSW's error summary: an unmasked x87 exception is pending.
const FSW_ES: u16 = 1 << 7;
/// What fnclex clears: the exception flags, the stack fault, the error summary and busy.
const FSW_EXCEPTIONS: u16 = 0x80ff;

/// EFLAGS bits `iretd` restores at CPL0 (CF PF AF ZF SF TF IF DF OF IOPL NT RF AC ID; VM excluded).
const EFLAGS_IRET: u64 = 0x0025_7fd5;
const EFLAGS_NT: u64 = 1 << 14;
const EFLAGS_VM: u64 = 1 << 17;

/// A 32-bit `iretd` at CPL0 back to CPL0 with the same code segment: EIP, CS and EFLAGS popped from
/// the stack. A task return (NT), a return to another privilege, code segment or to virtual-8086
/// mode is left to the host (not completed).
fn iretd(ram: &GuestRam, mode: &CpuMode, regs: &mut kvm_regs, sregs: &kvm_sregs) -> Option<()> {
    if mode.bitness() != 32 || sregs.cs.selector & 3 != 0 || regs.rflags & EFLAGS_NT != 0 {
        return None;
    }
    let esp = regs.rsp & 0xffff_ffff;
    let mut frame = [0u8; 12];
    read_mem(ram, mode, sregs.ss.base.wrapping_add(esp) & 0xffff_ffff, &mut frame)?;
    let word = |i: usize| u32::from_le_bytes(frame[i * 4..i * 4 + 4].try_into().unwrap()) as u64;
    let (eip, cs, eflags) = (word(0), word(1) & 0xffff, word(2));
    if cs != sregs.cs.selector as u64 || eflags & EFLAGS_VM != 0 {
        return None;
    }
    regs.rip = eip;
    regs.rflags = (regs.rflags & !EFLAGS_IRET) | (eflags & EFLAGS_IRET) | 0x2;
    regs.rsp = (regs.rsp & !0xffff_ffff) | (esp.wrapping_add(12) & 0xffff_ffff);
    Some(())
}

/// A segment descriptor as `lsl`, `lar`, `verr` and `verw` see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Descriptor {
    /// The descriptor's high dword: access rights and flags.
    high: u32,
    low: u32,
}

impl Descriptor {
    /// S: a code or data segment (not a system one).
    fn code_or_data(&self) -> bool {
        self.high & (1 << 12) != 0
    }
    fn kind(&self) -> u32 {
        (self.high >> 8) & 0xf
    }
    fn dpl(&self) -> u64 {
        ((self.high >> 13) & 3) as u64
    }
    fn code(&self) -> bool {
        self.code_or_data() && self.kind() & 8 != 0
    }
    fn conforming(&self) -> bool {
        self.code() && self.kind() & 4 != 0
    }
    /// Readable: data always, code when its R bit is set.
    fn readable(&self) -> bool {
        self.code_or_data() && (!self.code() || self.kind() & 2 != 0)
    }
    fn writable(&self) -> bool {
        self.code_or_data() && !self.code() && self.kind() & 2 != 0
    }
    /// The limit in bytes: the 20-bit field, scaled by 4 KiB when G is set.
    fn limit(&self) -> u32 {
        let raw = (self.low & 0xffff) | (self.high & 0x000f_0000);
        if self.high & (1 << 23) != 0 { (raw << 12) | 0xfff } else { raw }
    }
}

/// The descriptor a selector names, if the check instructions may look at it: in its table (GDT,
/// or LDT with TI set), not the null selector, and — outside conforming code — at a privilege the
/// current one and the selector's RPL may see (DPL >= CPL, DPL >= RPL). In 64-bit mode a system
/// descriptor is 16 bytes, its upper half's type 0. `system_ok` says which system types the
/// instruction takes.
fn descriptor(
    ram: &GuestRam,
    mode: &CpuMode,
    sregs: &kvm_sregs,
    selector: u64,
    system_ok: impl Fn(u32) -> bool,
) -> Option<Descriptor> {
    let long = mode.efer & crate::decode::regs::EFER_LMA != 0;
    let index = selector & !7;
    let (base, limit) = if selector & 4 != 0 {
        if sregs.ldt.unusable != 0 || sregs.ldt.present == 0 {
            return None;
        }
        (sregs.ldt.base, sregs.ldt.limit as u64)
    } else {
        if index == 0 {
            return None;
        }
        (sregs.gdt.base, sregs.gdt.limit as u64)
    };
    if index + 7 > limit {
        return None;
    }
    let mut b = [0u8; 8];
    read_mem(ram, mode, base.wrapping_add(index), &mut b)?;
    let d = Descriptor {
        low: u32::from_le_bytes(b[..4].try_into().ok()?),
        high: u32::from_le_bytes(b[4..].try_into().ok()?),
    };
    if !d.code_or_data() {
        if !system_ok(d.kind()) {
            return None;
        }
        if long {
            if index + 15 > limit {
                return None;
            }
            let mut upper = [0u8; 8];
            read_mem(ram, mode, base.wrapping_add(index + 8), &mut upper)?;
            if (u32::from_le_bytes(upper[4..].try_into().ok()?) >> 8) & 0x1f != 0 {
                return None;
            }
        }
    }
    let cpl = (sregs.cs.selector & 3) as u64;
    if !d.conforming() && (d.dpl() < cpl || d.dpl() < selector & 3) {
        return None;
    }
    Some(d)
}

/// The system descriptor types `lar` (`lsl` when `limit`) takes: legacy TSSes, LDT, gates; in
/// 64-bit mode the LDT, the 64-bit TSSes and (for `lar`) call gates.
fn system_types(long: bool, limit: bool) -> impl Fn(u32) -> bool {
    move |t| match (long, limit) {
        (false, false) => matches!(t, 1..=5 | 9 | 0xb | 0xc),
        (false, true) => matches!(t, 1..=3 | 9 | 0xb),
        (true, false) => matches!(t, 2 | 9 | 0xb | 0xc),
        (true, true) => matches!(t, 2 | 9 | 0xb),
    }
}

/// `lsl`, `lar`, `verr` or `verw`: ZF says whether the selector passed the instruction's checks;
/// `lsl` and `lar` then load the limit or the access rights (a 16-bit destination the low word,
/// a 32- or 64-bit one the 32-bit value, zero-extended).
fn segment_check(i: &Instruction, ram: &GuestRam, mode: &CpuMode, r: &mut kvm_regs, sregs: &kvm_sregs) -> Option<()> {
    let source = if matches!(i.mnemonic(), Mnemonic::Verr | Mnemonic::Verw) { 0 } else { 1 };
    let selector = match i.op_kind(source) {
        OpKind::Register => read_reg(r, i.op_register(source))? & 0xffff,
        OpKind::Memory => {
            let mut m = [0u8; 2];
            read_mem(ram, mode, address(i, r, sregs)?, &mut m)?;
            u16::from_le_bytes(m) as u64
        }
        _ => return None,
    };
    let long = mode.efer & crate::decode::regs::EFER_LMA != 0;
    let found = match i.mnemonic() {
        Mnemonic::Lsl => descriptor(ram, mode, sregs, selector, system_types(long, true)).map(|d| d.limit()),
        Mnemonic::Lar => {
            descriptor(ram, mode, sregs, selector, system_types(long, false)).map(|d| d.high & 0x00ff_ff00)
        }
        Mnemonic::Verr => descriptor(ram, mode, sregs, selector, |_| false).filter(Descriptor::readable).map(|_| 0),
        _ => descriptor(ram, mode, sregs, selector, |_| false).filter(Descriptor::writable).map(|_| 0),
    };
    match found {
        Some(value) => {
            if matches!(i.mnemonic(), Mnemonic::Lsl | Mnemonic::Lar) {
                let dst = i.op0_register();
                let value = if dst.size() == 2 { value as u64 & 0xffff } else { value as u64 };
                write_reg(r, dst, value)?;
            }
            r.rflags |= RFLAGS_ZF;
        }
        None => r.rflags &= !RFLAGS_ZF,
    }
    Some(())
}

/// Whether an x87 instruction other than fwait may run: #NM when CR0.EM or CR0.TS is set.
fn x87_usable(sregs: &kvm_sregs) -> Result<(), u8> {
    if sregs.cr0 & (CR0_EM | CR0_TS) != 0 { Err(NM) } else { Ok(()) }
}

/// Whether an SSE control instruction may run: #UD without CR4.OSFXSR or with CR0.EM, #NM with TS.
fn sse_usable(sregs: &kvm_sregs) -> Result<(), u8> {
    if sregs.cr0 & CR0_EM != 0 || sregs.cr4 & CR4_OSFXSR == 0 {
        return Err(UD);
    }
    if sregs.cr0 & CR0_TS != 0 { Err(NM) } else { Ok(()) }
}

/// `ldmxcsr`: MXCSR from memory; #GP(0) when it sets a reserved bit.
fn ldmxcsr(fpu: &mut X87Sse, value: u32) -> Result<(), u8> {
    if value & !fpu.mxcsr_valid() != 0 {
        return Err(GP);
    }
    fpu.mxcsr = value;
    Ok(())
}

/// `fwait`: #NM when CR0.TS and CR0.MP say the x87 state is not the task's, #MF when an unmasked
/// exception is pending, else nothing.
fn fwait(sregs: &kvm_sregs, fpu: Option<X87Sse>) -> Option<Option<u8>> {
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
        let (gpa, _) = gpa_of(ram, mode, addr.wrapping_add(k as u64)).ok()?;
        ram.write(gpa, &[*b]).then_some(())?;
    }
    Some(())
}

/// Completes the instruction at RIP if it is one kvmscope finishes (`fpu` reads the x87/SSE control
/// state when one needs it), or `None`.
pub fn complete(
    ram: &GuestRam,
    mode: &CpuMode,
    regs: &kvm_regs,
    sregs: &kvm_sregs,
    fpu: &dyn Fn() -> Option<X87Sse>,
) -> Option<Completion> {
    let mut bytes = [0u8; 15];
    let n = read_virt(ram, mode, mode.code_linear(regs.rip), &mut bytes);
    let i = Decoder::with_ip(mode.bitness(), &bytes[..n], regs.rip, DecoderOptions::NONE).decode();
    if i.is_invalid() || !completes(i.mnemonic()) {
        return None;
    }
    let mut r = *regs;
    let mut new_fpu = None;
    match i.mnemonic() {
        Mnemonic::Iretd => {
            iretd(ram, mode, &mut r, sregs)?;
            // RIP is where the frame said, not past the iretd.
            return Some(Completion::Done(r, None));
        }
        Mnemonic::Wait => {
            if let Some(vector) = fwait(sregs, fpu())? {
                return Some(Completion::Fault(vector));
            }
        }
        Mnemonic::Lsl | Mnemonic::Lar | Mnemonic::Verr | Mnemonic::Verw => segment_check(&i, ram, mode, &mut r, sregs)?,
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
        Mnemonic::Fnclex | Mnemonic::Fldcw | Mnemonic::Fnstsw | Mnemonic::Ldmxcsr | Mnemonic::Stmxcsr => {
            let sse = matches!(i.mnemonic(), Mnemonic::Ldmxcsr | Mnemonic::Stmxcsr);
            if let Err(vector) = if sse { sse_usable(sregs) } else { x87_usable(sregs) } {
                return Some(Completion::Fault(vector));
            }
            let mut f = fpu()?;
            let addr = || address(&i, &mut { r }, sregs);
            let mut m = [0u8; 4];
            match i.mnemonic() {
                Mnemonic::Fnclex => f.fsw &= !FSW_EXCEPTIONS,
                Mnemonic::Fldcw => {
                    read_mem(ram, mode, addr()?, &mut m[..2])?;
                    // Bits 6, 7 and 13-15 of the control word do not exist: reading them gives 0x40.
                    f.fcw = (u16::from_le_bytes([m[0], m[1]]) & 0x1f3f) | 0x40;
                }
                Mnemonic::Ldmxcsr => {
                    read_mem(ram, mode, addr()?, &mut m)?;
                    if let Err(vector) = ldmxcsr(&mut f, u32::from_le_bytes(m)) {
                        return Some(Completion::Fault(vector));
                    }
                }
                Mnemonic::Fnstsw if i.op0_kind() == OpKind::Register => write_reg(&mut r, Register::AX, f.fsw as u64)?,
                Mnemonic::Fnstsw => write_mem(ram, mode, addr()?, &f.fsw.to_le_bytes())?,
                _ => write_mem(ram, mode, addr()?, &f.mxcsr.to_le_bytes())?,
            }
            new_fpu = matches!(i.mnemonic(), Mnemonic::Fnclex | Mnemonic::Fldcw | Mnemonic::Ldmxcsr).then_some(f);
        }
        _ => return None,
    }
    r.rip = regs.rip.wrapping_add(i.len() as u64);
    Some(Completion::Done(r, new_fpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: u64 = 0x1000;
    const DATA: u64 = 0x2000;

    /// Runs `code` at 0x1000 in 32-bit protected mode (paging off, CR4.OSFXSR set) with `data` at
    /// 0x2000 and this x87/SSE state: how it completes, and the data after it.
    fn run(code: &[u8], data: &[u8], cr0: u64, fpu: X87Sse) -> (Option<Completion>, Vec<u8>) {
        let ram = GuestRam::new(crate::vmm::memory::MIN_MEM).unwrap();
        ram.write(CODE, code);
        ram.write(DATA, data);
        let sregs = kvm_sregs { cr0, cr4: CR4_OSFXSR, ..Default::default() };
        let mode = CpuMode { cr0, cr4: CR4_OSFXSR, cs_db: true, ..Default::default() };
        let regs = kvm_regs { rip: CODE, ..Default::default() };
        let done = complete(&ram, &mode, &regs, &sregs, &|| Some(fpu));
        let mut after = vec![0; data.len()];
        read_mem(&ram, &mode, DATA, &mut after).unwrap();
        (done, after)
    }

    const PE_ET: u64 = 0x11;

    /// Runs one segment check at 0x1000 in 32-bit protected mode at CPL `cpl`, over a GDT at
    /// 0x3000: null, flat code (0x08), flat data (0x10), read-only data of DPL 3 with a byte limit
    /// of 0x1234 (0x18), execute-only code (0x20), a 32-bit TSS (0x28), data of DPL 0 (0x30).
    fn check(code: &[u8], eax: u64, cpl: u16) -> (u64, bool) {
        let ram = GuestRam::new(crate::vmm::memory::MIN_MEM).unwrap();
        let gdt: [u64; 7] = [
            0,
            0x00cf_9b00_0000_ffff,
            0x00cf_9300_0000_ffff,
            0x0000_f100_0000_1234,
            0x0000_9800_0000_0fff,
            0x0000_8b00_0000_0067,
            0x0000_9300_0000_00ff,
        ];
        ram.write(0x3000, &gdt.iter().flat_map(|d| d.to_le_bytes()).collect::<Vec<u8>>());
        ram.write(CODE, code);
        let mut sregs = kvm_sregs { cr0: PE_ET, ..Default::default() };
        (sregs.gdt.base, sregs.gdt.limit, sregs.cs.selector) = (0x3000, 7 * 8 - 1, 0x08 | cpl);
        let mode = CpuMode { cr0: PE_ET, cs_db: true, ..Default::default() };
        let regs = kvm_regs { rip: CODE, rax: eax, rcx: 0xdead, rflags: 0x2, ..Default::default() };
        match complete(&ram, &mode, &regs, &sregs, &|| None) {
            Some(Completion::Done(r, None)) => {
                assert_eq!(r.rip, CODE + code.len() as u64);
                (r.rcx, r.rflags & RFLAGS_ZF != 0)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn segment_limits_rights_and_access_are_checked_as_the_cpu_does() {
        const LSL: [u8; 3] = [0x0f, 0x03, 0xc8]; // lsl ecx,eax
        const LAR: [u8; 3] = [0x0f, 0x02, 0xc8]; // lar ecx,eax
        const VERR: [u8; 3] = [0x0f, 0x00, 0xe0]; // verr ax
        const VERW: [u8; 3] = [0x0f, 0x00, 0xe8]; // verw ax
        assert_eq!(check(&LSL, 0x18, 0), (0x1234, true), "a byte-granular limit");
        assert_eq!(check(&LSL, 0x10, 0), (0xffff_ffff, true), "a page-granular one");
        assert_eq!(check(&LSL, 0x28, 0), (0x67, true), "a TSS's");
        assert_eq!(check(&LAR, 0x18, 0), (0x0000_f100, true));
        assert_eq!(check(&LAR, 0x08, 0), (0x00cf_9b00, true));
        assert_eq!(check(&LSL, 0x00, 0), (0xdead, false), "the null selector: ZF clear, nothing loaded");
        assert_eq!(check(&LSL, 0x38, 0), (0xdead, false), "beyond the GDT's limit");
        assert_eq!(check(&LSL, 0x30, 3), (0xdead, false), "DPL 0 seen from CPL 3");
        assert_eq!(check(&LSL, 0x33, 0), (0xdead, false), "DPL 0 under RPL 3");
        assert_eq!(check(&LSL, 0x1b, 3), (0x1234, true), "DPL 3 seen from CPL 3");
        assert!(check(&VERR, 0x18, 0).1, "read-only data is readable");
        assert!(!check(&VERW, 0x18, 0).1, "and not writable");
        assert!(check(&VERW, 0x10, 0).1);
        assert!(!check(&VERR, 0x20, 0).1, "execute-only code is not readable");
        assert!(check(&VERR, 0x08, 0).1, "readable code is");
        assert!(!check(&VERR, 0x28, 0).1, "a TSS is not a segment to read");
        // `lsl cx,ax`: a 16-bit destination takes the low word.
        assert_eq!(check(&[0x66, 0x0f, 0x03, 0xc8], 0x10, 0), (0xffff, true));
    }
    const LDMXCSR: [u8; 7] = [0x0f, 0xae, 0x15, 0x00, 0x20, 0x00, 0x00];
    const STMXCSR: [u8; 7] = [0x0f, 0xae, 0x1d, 0x00, 0x20, 0x00, 0x00];
    const FLDCW: [u8; 6] = [0xd9, 0x2d, 0x00, 0x20, 0x00, 0x00];
    const FNCLEX: [u8; 2] = [0xdb, 0xe2];
    const FNSTSW_AX: [u8; 2] = [0xdf, 0xe0];
    const FNSTSW_M16: [u8; 6] = [0xdd, 0x3d, 0x00, 0x20, 0x00, 0x00];

    fn done(c: Option<Completion>) -> (u64, X87Sse) {
        match c {
            Some(Completion::Done(regs, fpu)) => (regs.rip - CODE, fpu.expect("the x87/SSE state changed")),
            other => panic!("not done: {other:?}"),
        }
    }

    #[test]
    fn the_sse_control_register_is_loaded_and_stored() {
        let (c, _) = run(&LDMXCSR, &0x7f80u32.to_le_bytes(), PE_ET, X87Sse::default());
        let (len, fpu) = done(c);
        assert_eq!((len, fpu.mxcsr), (7, 0x7f80));
        let (c, _) = run(&LDMXCSR, &0x1_0000u32.to_le_bytes(), PE_ET, X87Sse::default());
        assert_eq!(c, Some(Completion::Fault(GP)), "a reserved MXCSR bit: #GP(0)");
        let (c, _) = run(&LDMXCSR, &0x0040u32.to_le_bytes(), PE_ET, X87Sse::default());
        assert_eq!(c, Some(Completion::Fault(GP)), "DAZ where the CPU has none (mask 0xffbf): #GP(0)");
        let (c, _) =
            run(&LDMXCSR, &0x0040u32.to_le_bytes(), PE_ET, X87Sse { mxcsr_mask: 0xffff, ..Default::default() });
        assert_eq!(done(c).1.mxcsr, 0x40, "DAZ where MXCSR_MASK has it");
        let (c, data) = run(&STMXCSR, &[0; 4], PE_ET, X87Sse { mxcsr: 0x1fa0, ..Default::default() });
        assert!(matches!(c, Some(Completion::Done(r, None)) if r.rip == CODE + 7), "{c:?}");
        assert_eq!(data, 0x1fa0u32.to_le_bytes());
        let (c, _) = run(&LDMXCSR, &0x1f80u32.to_le_bytes(), PE_ET | CR0_TS, X87Sse::default());
        assert_eq!(c, Some(Completion::Fault(NM)), "CR0.TS: #NM");
        let (c, _) = run(&LDMXCSR, &0x1f80u32.to_le_bytes(), PE_ET | CR0_EM, X87Sse::default());
        assert_eq!(c, Some(Completion::Fault(UD)), "CR0.EM: #UD");
    }

    #[test]
    fn the_x87_control_word_loads_and_exceptions_clear() {
        let (c, _) = run(&FLDCW, &0xff7fu16.to_le_bytes(), PE_ET, X87Sse::default());
        let (len, fpu) = done(c);
        assert_eq!((len, fpu.fcw), (6, 0x1f7f), "reserved bits read as the CPU gives them");
        let (c, _) = run(&FNCLEX, &[], PE_ET, X87Sse { fsw: 0xb8a5, ..Default::default() });
        let (len, fpu) = done(c);
        assert_eq!((len, fpu.fsw), (2, 0x3800), "flags, stack fault, summary and busy cleared; TOP kept");
        let (c, _) = run(&FNCLEX, &[], PE_ET | CR0_TS, X87Sse::default());
        assert_eq!(c, Some(Completion::Fault(NM)));
        let status = X87Sse { fsw: 0x3885, ..Default::default() };
        let (c, _) = run(&FNSTSW_AX, &[], PE_ET, status);
        assert!(matches!(c, Some(Completion::Done(r, None)) if r.rax == 0x3885 && r.rip == CODE + 2), "{c:?}");
        let (c, data) = run(&FNSTSW_M16, &[0; 2], PE_ET, status);
        assert!(matches!(c, Some(Completion::Done(r, None)) if r.rip == CODE + 6), "{c:?}");
        assert_eq!(data, [0x85, 0x38]);
    }

    #[test]
    fn iretd_returns_from_an_interrupt_at_the_same_privilege() {
        let ram = GuestRam::new(crate::vmm::memory::MIN_MEM).unwrap();
        ram.write(CODE, &[0xcf]);
        let frame = [0x1234u32, 0x10, 0x202].iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<_>>();
        ram.write(DATA, &frame);
        let mut sregs = kvm_sregs { cr0: PE_ET, ..Default::default() };
        sregs.cs.selector = 0x10;
        let mode = CpuMode { cr0: PE_ET, cs_db: true, ..Default::default() };
        let regs = kvm_regs { rip: CODE, rsp: DATA, rflags: 0x2, ..Default::default() };
        let done = complete(&ram, &mode, &regs, &sregs, &|| None);
        let Some(Completion::Done(r, None)) = done else { panic!("{done:?}") };
        assert_eq!((r.rip, r.rsp, r.rflags), (0x1234, DATA + 12, 0x202), "EIP, ESP and EFLAGS (IF) back");
        sregs.cs.selector = 0x08;
        assert_eq!(complete(&ram, &mode, &regs, &sregs, &|| None), None, "another code segment: the host's");
        sregs.cs.selector = 0x10;
        let nested = kvm_regs { rflags: 0x2 | EFLAGS_NT, ..regs };
        assert_eq!(complete(&ram, &mode, &nested, &sregs, &|| None), None, "a task return: the host's");
    }

    #[test]
    fn the_control_state_is_read_from_and_written_to_the_xsave_legacy_region() {
        let mut area = kvm_xsave::default();
        area.region[0] = 0x0000_037f;
        area.region[1] = 0xabcd;
        area.region[6] = 0x1f80;
        area.region[7] = 0xffff;
        area.region[8] = 0x1234;
        let mut state = X87Sse::read(&area);
        assert_eq!(state, X87Sse { fcw: 0x37f, fsw: 0, mxcsr: 0x1f80, mxcsr_mask: 0xffff });
        state.fsw = 0x3800;
        state.mxcsr = 0x7f80;
        state.write(&mut area);
        assert_eq!((area.region[0], area.region[6]), (0x3800_037f, 0x7f80));
        assert_eq!((area.region[1], area.region[7], area.region[8]), (0xabcd, 0xffff, 0x1234), "the rest kept");
        assert_eq!(area.region[XSTATE_BV] & XSTATE_X87_SSE, XSTATE_X87_SSE, "KVM told the x87/SSE state is there");
    }

    #[test]
    fn fwait_raises_what_the_cpu_would() {
        let mut sregs = kvm_sregs { cr0: 0x11, ..Default::default() };
        let fpu = |fsw: u16| Some(X87Sse { fsw, ..Default::default() });
        assert_eq!(fwait(&sregs, fpu(0)), Some(None), "nothing pending: it just ends");
        assert_eq!(fwait(&sregs, fpu(FSW_ES | 0x4)), Some(Some(MF)), "a pending unmasked exception: #MF");
        sregs.cr0 |= CR0_TS | CR0_MP;
        assert_eq!(fwait(&sregs, fpu(0)), Some(Some(NM)), "the x87 state is not the task's: #NM");
        sregs.cr0 &= !CR0_MP;
        assert_eq!(fwait(&sregs, fpu(0)), Some(None), "TS without MP: fwait does not trap");
        assert_eq!(fwait(&sregs, None), None, "no x87 state to look at: not completed");
    }
}

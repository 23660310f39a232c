//! x86 register conventions kvmscope uses in more than one place: the control-register bits, the
//! general-register order (gdb's, and the recording's).

use kvm_bindings::kvm_regs;

pub const CR0_PE: u64 = 1;
pub const CR0_ET: u64 = 1 << 4;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PSE: u64 = 1 << 4;
pub const CR4_PAE: u64 = 1 << 5;
pub const CR4_LA57: u64 = 1 << 12;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;
pub const RFLAGS_IF: u64 = 1 << 9;

/// The general registers in gdb's x86-64 order: rax rbx rcx rdx rsi rdi rbp rsp r8..r15.
pub fn general(r: &kvm_regs) -> [u64; 16] {
    [r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15]
}

/// Registers from the general registers in [`general`]'s order, with `rip` and `rflags`.
pub fn from_general(v: &[u64; 16], rip: u64, rflags: u64) -> kvm_regs {
    kvm_regs {
        rax: v[0],
        rbx: v[1],
        rcx: v[2],
        rdx: v[3],
        rsi: v[4],
        rdi: v[5],
        rbp: v[6],
        rsp: v[7],
        r8: v[8],
        r9: v[9],
        r10: v[10],
        r11: v[11],
        r12: v[12],
        r13: v[13],
        r14: v[14],
        r15: v[15],
        rip,
        rflags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn general_registers_round_trip_in_gdb_order() {
        let v: [u64; 16] = std::array::from_fn(|i| i as u64 * 0x11);
        let r = from_general(&v, 0x1000, 0x202);
        assert_eq!((r.rax, r.rsp, r.r8, r.r15, r.rip), (0, 0x77, 0x88, 0xff, 0x1000));
        assert_eq!(general(&r), v);
    }
}

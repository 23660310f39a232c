//! The CPU state a loaded image starts in: segments, control registers, and for protected and long
//! mode a GDT, identity-mapped page tables and a small stack in the boot area (see `layout`).

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};

use super::layout::{BOOT_AREA_END, GDT_ADDR, PD_ADDR, PDPT_ADDR, PML4_ADDR};
use super::loader::{BootMode, BootSetup};
use super::memory::GuestRam;
use crate::decode::regs::{CR0_ET, CR0_PE, CR0_PG, CR4_PAE, EFER_LMA, EFER_LME};

/// Selectors in kvmscope's GDT.
pub const CODE64_SEL: u16 = 0x08;
pub const CODE32_SEL: u16 = 0x10;
pub const DATA_SEL: u16 = 0x18;
pub const TSS_SEL: u16 = 0x20;

const GDT: [u64; 5] = [
    0,
    0x00af_9b00_0000_ffff, // 0x08: 64-bit code
    0x00cf_9b00_0000_ffff, // 0x10: 32-bit code, flat
    0x00cf_9300_0000_ffff, // 0x18: data, flat
    0x0080_8b00_0000_0067, // 0x20: 32-bit TSS (busy), base 0
];

fn segment(selector: u16, type_: u8, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Writes the GDT and, for long mode, the page tables into the boot area.
pub fn write_boot_tables(ram: &GuestRam, mode: BootMode) -> bool {
    let gdt: Vec<u8> = GDT.iter().flat_map(|e| e.to_le_bytes()).collect();
    let mut ok = ram.write(GDT_ADDR, &gdt);
    if mode == BootMode::Long {
        ok &= ram.write(PML4_ADDR, &(PDPT_ADDR | 3).to_le_bytes());
        for i in 0..4u64 {
            let pd = PD_ADDR + i * 0x1000;
            ok &= ram.write(PDPT_ADDR + i * 8, &(pd | 3).to_le_bytes());
            let entries: Vec<u8> = (0..512u64).flat_map(|j| (((i * 512 + j) << 21) | 0x83).to_le_bytes()).collect();
            ok &= ram.write(pd, &entries);
        }
    }
    ok
}

/// Sets `sregs` and `regs` for entry as `boot` says, starting from KVM's reset state in `sregs`.
pub fn entry_state(boot: &BootSetup, sregs: &mut kvm_sregs) -> kvm_regs {
    let mut regs =
        kvm_regs { rflags: 0x2, rip: boot.entry, rax: boot.rax, rbx: boot.rbx, rsi: boot.rsi, ..Default::default() };
    match boot.mode {
        BootMode::Real => {
            // CS:IP with IP < 64 KiB; the other segments equal CS; SP = 0 (wraps to the segment's top).
            let sel = ((boot.entry >> 4) & 0xf000) as u16;
            for s in [&mut sregs.cs, &mut sregs.ds, &mut sregs.es, &mut sregs.fs, &mut sregs.gs, &mut sregs.ss] {
                s.selector = sel;
                s.base = (sel as u64) << 4;
                s.limit = 0xffff;
            }
            regs.rip = boot.entry - ((sel as u64) << 4);
            sregs.cr0 = CR0_ET;
        }
        BootMode::Protected | BootMode::Long => {
            let long = boot.mode == BootMode::Long;
            sregs.cs = if long { segment(CODE64_SEL, 0xb, true) } else { segment(CODE32_SEL, 0xb, false) };
            let data = segment(DATA_SEL, 0x3, false);
            (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
            sregs.tr = kvm_segment { limit: 0x67, type_: 0xb, s: 0, db: 0, g: 0, selector: TSS_SEL, ..data };
            sregs.gdt.base = GDT_ADDR;
            sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
            sregs.cr0 = CR0_PE | CR0_ET;
            if long {
                sregs.cr3 = PML4_ADDR;
                sregs.cr4 |= CR4_PAE;
                sregs.cr0 |= CR0_PG;
                sregs.efer |= EFER_LME | EFER_LMA;
            }
            regs.rsp = BOOT_AREA_END;
        }
    }
    regs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::paging::{CpuMode, translate};

    #[test]
    fn identity_map_covers_ram_and_mmio_hole() {
        let ram = GuestRam::new(64 << 20).unwrap();
        assert!(write_boot_tables(&ram, BootMode::Long));
        let boot = BootSetup {
            format: "elf64",
            mode: BootMode::Long,
            entry: 0x10_0000,
            rax: 0,
            rbx: 0,
            rsi: 0,
            loaded: vec![],
            kernel_version: None,
        };
        let mut sregs = kvm_sregs::default();
        let regs = entry_state(&boot, &mut sregs);
        assert_eq!(regs.rip, 0x10_0000);
        let mode = CpuMode::from(&sregs);
        assert_eq!(mode.bitness(), 64);
        for addr in [0x1234, 0x10_0000, 0xd000_0000, 0xffff_f000] {
            assert_eq!(translate(&ram, &mode, addr).unwrap().gpa, addr);
        }
        assert!(translate(&ram, &mode, 1 << 32).is_err());
    }

    #[test]
    fn real_mode_splits_entry_into_cs_and_ip() {
        let boot = BootSetup {
            format: "raw",
            mode: BootMode::Real,
            entry: 0x1_7c00,
            rax: 0,
            rbx: 0,
            rsi: 0,
            loaded: vec![],
            kernel_version: None,
        };
        let mut sregs = kvm_sregs::default();
        let regs = entry_state(&boot, &mut sregs);
        assert_eq!((sregs.cs.selector, sregs.cs.base, regs.rip), (0x1000, 0x1_0000, 0x7c00));
    }
}

//! Every mapping of a vCPU's page tables, as QEMU's `info tlb` (each page or large page: virtual →
//! physical, its flags) and `info mem` (ranges merged by protection) show them, in every paging mode
//! the walker knows: 32-bit (with 4 MiB pages), PAE, 4- and 5-level long mode (2 MiB, 1 GiB pages).
//! A guest controls its tables, so the walk stops after [`MAX_MAPPINGS`] and says so.

use std::fmt::Write as _;

use super::paging::{CpuMode, PhysRead};
use super::regs::{CR0_PG, CR4_LA57, CR4_PAE, CR4_PSE, EFER_LMA};

/// The most mappings listed (a Linux guest maps a few hundred thousand pages at most).
pub const MAX_MAPPINGS: usize = 1 << 20;

const PRESENT: u64 = 1;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// One mapped page or large page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub virt: u64,
    pub phys: u64,
    pub size: u64,
    /// The leaf entry.
    pub entry: u64,
    /// Writable, user-accessible and executable through every level.
    pub writable: bool,
    pub user: bool,
    pub executable: bool,
}

/// The mappings in address order, and whether the list was cut at [`MAX_MAPPINGS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageMap {
    /// Paging is off: no tables, every linear address is its own guest-physical address.
    pub paging_off: bool,
    pub mappings: Vec<Mapping>,
    pub truncated: bool,
    /// Addresses are printed with 16 hex digits in long mode, 8 otherwise.
    pub wide: bool,
}

struct Walker<'a> {
    mem: &'a dyn PhysRead,
    out: PageMap,
    /// 8-byte entries (PAE, long mode) or 4-byte ones.
    wide_entries: bool,
    /// The virtual-address width for sign extension (48 or 57), 0 outside long mode.
    bits: u32,
}

impl Walker<'_> {
    fn entry(&self, addr: u64) -> Option<u64> {
        if self.wide_entries { self.mem.read_u64(addr) } else { self.mem.read_u32(addr).map(u64::from) }
    }

    fn push(&mut self, virt: u64, entry: u64, size: u64, (w, u, x): (bool, bool, bool)) {
        if self.out.mappings.len() >= MAX_MAPPINGS {
            self.out.truncated = true;
            return;
        }
        let virt = if self.bits > 0 { ((virt as i64) << (64 - self.bits) >> (64 - self.bits)) as u64 } else { virt };
        let phys = if self.wide_entries {
            entry & ADDR_MASK & !(size - 1)
        } else if size == 4 << 20 {
            (entry & 0xffc0_0000) | (((entry >> 13) & 0xff) << 32)
        } else {
            entry & 0xffff_f000
        };
        self.out.mappings.push(Mapping { virt, phys, size, entry, writable: w, user: u, executable: x });
    }

    /// Walks one table and what it points to.
    fn table(&mut self, t: Table, perm: (bool, bool, bool)) {
        let size = if self.wide_entries { 8 } else { 4 };
        for i in 0..t.entries {
            if self.out.truncated {
                return;
            }
            let Some(e) = self.entry(t.addr + i * size) else { return };
            if e & PRESENT == 0 {
                continue;
            }
            let virt = t.base + (i << t.shift);
            let perm = if t.restricts {
                (perm.0 && e & RW != 0, perm.1 && e & US != 0, perm.2 && (!self.wide_entries || e & NX == 0))
            } else {
                perm
            };
            if t.below == 0 || (t.large && e & PS != 0) {
                self.push(virt, e, 1 << t.shift, perm);
            } else {
                let addr = if self.wide_entries { e & ADDR_MASK } else { e & 0xffff_f000 };
                let (entries, shift) = if self.wide_entries { (512, t.shift - 9) } else { (1024, t.shift - 10) };
                let large = self.wide_entries && (shift == 21 || shift == 30);
                self.table(
                    Table { addr, base: virt, shift, entries, below: t.below - 1, large, restricts: true },
                    perm,
                );
            }
        }
    }
}

/// One page table to walk: where it is, the address its first entry maps, how much each entry maps
/// (`1 << shift`), how many entries, how many levels of tables follow, whether a PS entry here
/// maps a large page, and whether its entries' RW, US and NX bits restrict what they map (not in
/// PAE's four PDPTEs, where those bits are reserved).
#[derive(Debug, Clone, Copy)]
struct Table {
    addr: u64,
    base: u64,
    shift: u32,
    entries: u64,
    below: u32,
    large: bool,
    restricts: bool,
}

/// Every mapping `mode`'s page tables make; empty when paging is off.
pub fn page_map(mem: &dyn PhysRead, mode: &CpuMode) -> PageMap {
    let long = mode.efer & EFER_LMA != 0;
    let mut w = Walker { mem, out: PageMap { wide: long, ..Default::default() }, wide_entries: true, bits: 0 };
    if mode.cr0 & CR0_PG == 0 {
        w.out.paging_off = true;
        return w.out;
    }
    let all = (true, true, true);
    if long {
        let la57 = mode.cr4 & CR4_LA57 != 0;
        w.bits = if la57 { 57 } else { 48 };
        let (shift, levels) = if la57 { (48, 4) } else { (39, 3) };
        let top = Table {
            addr: mode.cr3 & ADDR_MASK,
            base: 0,
            shift,
            entries: 512,
            below: levels,
            large: false,
            restricts: true,
        };
        w.table(top, all);
    } else if mode.cr4 & CR4_PAE != 0 {
        let pdpt = Table {
            addr: mode.cr3 & 0xffff_ffe0,
            base: 0,
            shift: 30,
            entries: 4,
            below: 2,
            large: false,
            restricts: false,
        };
        w.table(pdpt, all);
    } else {
        w.wide_entries = false;
        let pse = mode.cr4 & CR4_PSE != 0;
        let pd = Table {
            addr: mode.cr3 & 0xffff_f000,
            base: 0,
            shift: 22,
            entries: 1024,
            below: 1,
            large: pse,
            restricts: true,
        };
        w.table(pd, all);
    }
    w.out
}

impl PageMap {
    fn addr(&self, a: u64) -> String {
        if self.wide { format!("{a:016x}") } else { format!("{a:08x}") }
    }

    /// QEMU's `info tlb`: `virt: phys XGPDACTUW` per page.
    pub fn info_tlb(&self) -> String {
        let mut out = String::with_capacity(self.mappings.len() * 45);
        for m in &self.mappings {
            self.tlb_line(m, &mut out);
            out.push('\n');
        }
        if self.truncated {
            let _ = writeln!(out, "(cut at {MAX_MAPPINGS} mappings)");
        }
        out
    }

    /// One `info tlb` line (no newline) onto `out`. Written digit by digit: a Linux guest has
    /// hundreds of thousands, and `format!` would take most of a frame for them.
    pub fn tlb_line(&self, m: &Mapping, out: &mut String) {
        let digits = if self.wide { 16 } else { 8 };
        let hex = |out: &mut String, v: u64| {
            for i in (0..digits).rev() {
                out.push(char::from(b"0123456789abcdef"[(v >> (i * 4)) as usize & 0xf]));
            }
        };
        hex(out, m.virt);
        out.push_str(": ");
        hex(out, m.phys);
        out.push(' ');
        let e = m.entry;
        out.push(if self.wide && e & NX != 0 { 'X' } else { '-' });
        let flags = [
            (1 << 8, 'G'),
            (PS, 'P'),
            (1 << 6, 'D'),
            (1 << 5, 'A'),
            (1 << 4, 'C'),
            (1 << 3, 'T'),
            (US, 'U'),
            (RW, 'W'),
        ];
        for (bit, c) in flags {
            out.push(if e & bit != 0 { c } else { '-' });
        }
    }

    /// QEMU's `info mem`: `start-end size urw` for each run of virtually contiguous pages with the
    /// same protection.
    pub fn info_mem(&self) -> String {
        let mut out = String::new();
        let mut run: Option<(u64, u64, (bool, bool))> = None;
        let flush = |run: Option<(u64, u64, (bool, bool))>, out: &mut String| {
            if let Some((start, end, (user, write))) = run {
                let (u, w) = (if user { 'u' } else { '-' }, if write { 'w' } else { '-' });
                let _ = writeln!(out, "{}-{} {} {u}r{w}", self.addr(start), self.addr(end), self.addr(end - start));
            }
        };
        for m in &self.mappings {
            let prot = (m.user, m.writable);
            match run {
                Some((start, end, p)) if end == m.virt && p == prot => run = Some((start, end + m.size, p)),
                _ => {
                    flush(run, &mut out);
                    run = Some((m.virt, m.virt.wrapping_add(m.size), prot));
                }
            }
        }
        flush(run, &mut out);
        if self.truncated {
            let _ = writeln!(out, "(cut at {MAX_MAPPINGS} mappings)");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::paging::tests::Flat;

    fn long_mode(cr3: u64) -> CpuMode {
        CpuMode { cr0: 0x8000_0011, cr3, cr4: CR4_PAE, efer: EFER_LMA | (1 << 8), cs_l: true, ..Default::default() }
    }

    #[test]
    fn long_mode_maps_list_pages_large_pages_and_merged_ranges() {
        let mut mem = Flat(vec![0; 0x10000]);
        // PML4[0] -> PDPT at 0x2000; PML4[511] (the higher half) -> PDPT at 0x5000.
        mem.put64(0x1000, 0x2000 | 7);
        mem.put64(0x1000 + 511 * 8, 0x5000 | 3);
        // PDPT[0] -> PD at 0x3000; PD[0] a 2 MiB page at 0 (writable, user), PD[1] -> PT at 0x4000.
        mem.put64(0x2000, 0x3000 | 7);
        mem.put64(0x3000, 0x87);
        mem.put64(0x3008, 0x4000 | 7);
        // PT[0], PT[1]: 4 KiB pages, user, read-only, the second not executable.
        mem.put64(0x4000, 0x10_0000 | 5);
        mem.put64(0x4008, 0x10_1000 | 5 | NX);
        // Higher half: a 1 GiB page at PDPT[510], kernel only, global.
        mem.put64(0x5000 + 510 * 8, 0x4000_0000 | 0x183);
        let map = page_map(&mem, &long_mode(0x1000));
        let m = &map.mappings;
        assert_eq!(m.len(), 4);
        assert_eq!((m[0].virt, m[0].phys, m[0].size), (0, 0, 2 << 20));
        assert_eq!((m[1].virt, m[1].phys, m[1].size, m[1].writable), (0x20_0000, 0x10_0000, 4096, false));
        assert!(!m[2].executable && m[1].executable);
        assert_eq!((m[3].virt, m[3].phys, m[3].size), (0xffff_ffff_8000_0000, 0x4000_0000, 1 << 30));
        let tlb = map.info_tlb();
        assert!(tlb.contains("0000000000201000: 0000000000101000 X------U-"), "{tlb}");
        assert!(tlb.contains("ffffffff80000000: 0000000040000000 -GP-----W"), "{tlb}");
        let mem_ranges = map.info_mem();
        assert!(mem_ranges.starts_with("0000000000000000-0000000000200000 0000000000200000 urw\n"), "{mem_ranges}");
        assert!(mem_ranges.contains("0000000000200000-0000000000202000 0000000000002000 ur-"), "{mem_ranges}");
        assert!(mem_ranges.contains("ffffffff80000000-ffffffffc0000000 0000000040000000 -rw"), "{mem_ranges}");
    }

    #[test]
    fn thirty_two_bit_paging_with_4_mib_pages() {
        let mut mem = Flat(vec![0; 0x4000]);
        // PDE[0] -> PT at 0x2000 with one page; PDE[768] a 4 MiB page at 0xc00000 (PSE).
        mem.put32(0x1000, 0x2000 | 3);
        mem.put32(0x1000 + 768 * 4, 0xc0_0000 | 0x83);
        mem.put32(0x2000 + 4, 0x5000 | 1);
        let mode = CpuMode { cr0: 0x8000_0011, cr3: 0x1000, cr4: CR4_PSE, cs_db: true, ..Default::default() };
        let map = page_map(&mem, &mode);
        assert_eq!(map.mappings.len(), 2);
        assert_eq!((map.mappings[0].virt, map.mappings[0].phys, map.mappings[0].size), (0x1000, 0x5000, 4096));
        assert_eq!(
            (map.mappings[1].virt, map.mappings[1].phys, map.mappings[1].size),
            (0xc000_0000, 0xc0_0000, 4 << 20)
        );
        assert!(map.info_tlb().contains("c0000000: 00c00000 --P-----W"), "{}", map.info_tlb());
    }

    #[test]
    fn pae_paging_takes_no_permissions_from_the_pdptes() {
        let mut mem = Flat(vec![0; 0x5000]);
        // PDPT (32-byte aligned, 4 entries; only P may be set) at 0x1020: [0] -> PD at 0x2000,
        // [3] -> PD at 0x3000. PD[1]: a 2 MiB page, user, writable; PD(3)[0] -> PT at 0x4000 with a
        // kernel page, not executable.
        mem.put64(0x1020, 0x2000 | 1);
        mem.put64(0x1020 + 3 * 8, 0x3000 | 1);
        mem.put64(0x2008, 0x60_0000 | 0x87);
        mem.put64(0x3000, 0x4000 | 3);
        mem.put64(0x4000 + 5 * 8, 0x7000 | 3 | NX);
        let mode = CpuMode { cr0: 0x8000_0011, cr3: 0x1020, cr4: CR4_PAE, cs_db: true, ..Default::default() };
        let map = page_map(&mem, &mode);
        let m = &map.mappings;
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].virt, m[0].phys, m[0].size, m[0].writable, m[0].user),
            (0x20_0000, 0x60_0000, 2 << 20, true, true)
        );
        assert_eq!(
            (m[1].virt, m[1].phys, m[1].size, m[1].writable, m[1].user),
            (0xc000_5000, 0x7000, 4096, true, false)
        );
        assert!(!m[1].executable);
        let ranges = map.info_mem();
        assert!(ranges.contains("00200000-00400000 00200000 urw"), "{ranges}");
        assert!(ranges.contains("c0005000-c0006000 00001000 -rw"), "{ranges}");
    }

    #[test]
    fn five_level_paging_sign_extends_from_bit_56() {
        let mut mem = Flat(vec![0; 0x5000]);
        // PML5[256] (bit 56 set) -> PML4 at 0x2000; PML4[0] -> PDPT at 0x3000; PDPT[1] a 1 GiB page.
        mem.put64(0x1000 + 256 * 8, 0x2000 | 3);
        mem.put64(0x2000, 0x3000 | 3);
        mem.put64(0x3008, 0x8000_0000 | 0x83);
        let mut mode = long_mode(0x1000);
        mode.cr4 |= CR4_LA57;
        let map = page_map(&mem, &mode);
        assert_eq!(map.mappings.len(), 1);
        let m = map.mappings[0];
        assert_eq!((m.virt, m.phys, m.size), (0xff00_0000_4000_0000, 0x8000_0000, 1 << 30));
        assert!(map.info_tlb().starts_with("ff00000040000000: 0000000080000000 --P-----W"), "{}", map.info_tlb());
    }

    #[test]
    fn a_hostile_table_that_maps_everything_is_cut() {
        // Every PML4, PDPT, PD and PT entry points back at the same table: 512^4 pages.
        let mut mem = Flat(vec![0; 0x2000]);
        for i in 0..512 {
            mem.put64(0x1000 + i * 8, 0x1000 | 3);
        }
        let map = page_map(&mem, &long_mode(0x1000));
        assert!(map.truncated);
        assert_eq!(map.mappings.len(), MAX_MAPPINGS);
    }
}

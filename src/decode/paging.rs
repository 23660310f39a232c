//! Guest page walks: real mode, unpaged protected mode, 32-bit paging (with 4 MiB pages), PAE, and
//! 4- or 5-level long mode paging (with 2 MiB and 1 GiB pages).

use kvm_bindings::kvm_sregs;
use thiserror::Error;

/// Reads guest-physical memory. Implemented by the guest memory map; tests use plain buffers.
pub trait PhysRead {
    /// Fills `buf` from guest-physical `gpa`; false when any byte is not backed by RAM.
    fn read_phys(&self, gpa: u64, buf: &mut [u8]) -> bool;

    /// Reads a little-endian u64 (false when unbacked).
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read_phys(gpa, &mut b).then(|| u64::from_le_bytes(b))
    }

    /// Reads a little-endian u32 (false when unbacked).
    fn read_u32(&self, gpa: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        self.read_phys(gpa, &mut b).then(|| u32::from_le_bytes(b))
    }
}

use super::regs::{CR0_PE, CR0_PG, CR4_LA57, CR4_PAE, CR4_PSE, EFER_LMA};

const PRESENT: u64 = 1;
const PAGE_SIZE_BIT: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The parts of a vCPU's state that decide how it translates addresses and decodes code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CpuMode {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub cs_base: u64,
    /// CS.D: default operand size 32 (protected mode).
    pub cs_db: bool,
    /// CS.L: 64-bit code segment.
    pub cs_l: bool,
}

impl CpuMode {
    /// Code size in bits: 16, 32 or 64.
    pub fn bitness(&self) -> u32 {
        if self.cr0 & CR0_PE == 0 {
            16
        } else if self.efer & EFER_LMA != 0 && self.cs_l {
            64
        } else if self.cs_db {
            32
        } else {
            16
        }
    }

    /// The linear address of the instruction at `rip` (CS base added outside 64-bit code).
    pub fn code_linear(&self, rip: u64) -> u64 {
        match self.bitness() {
            64 => rip,
            32 => self.cs_base.wrapping_add(rip & 0xffff_ffff) & 0xffff_ffff,
            _ => self.cs_base.wrapping_add(rip & 0xffff),
        }
    }

    /// Short name of the paging mode, as shown to users.
    pub fn paging_name(&self) -> &'static str {
        if self.cr0 & CR0_PE == 0 {
            "real"
        } else if self.cr0 & CR0_PG == 0 {
            "protected, no paging"
        } else if self.efer & EFER_LMA != 0 {
            if self.cr4 & CR4_LA57 != 0 { "long, 5-level" } else { "long, 4-level" }
        } else if self.cr4 & CR4_PAE != 0 {
            "PAE"
        } else {
            "32-bit"
        }
    }
}

/// The CPU mode a vCPU's system registers describe.
impl From<&kvm_sregs> for CpuMode {
    fn from(s: &kvm_sregs) -> Self {
        CpuMode {
            cr0: s.cr0,
            cr3: s.cr3,
            cr4: s.cr4,
            efer: s.efer,
            cs_base: s.cs.base,
            cs_db: s.cs.db != 0,
            cs_l: s.cs.l != 0,
        }
    }
}

/// One page-table entry read on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkStep {
    /// Level name: PML5, PML4, PDPT, PD, PT (or PDE/PTE for 32-bit paging).
    pub level: &'static str,
    /// Guest-physical address of the entry.
    pub entry_addr: u64,
    /// The entry's value.
    pub entry: u64,
}

/// A successful translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    pub gva: u64,
    pub gpa: u64,
    /// Size of the page that maps it (4 KiB when paging is off, as the unit of contiguity).
    pub page_size: u64,
    /// The entries read, top level first; empty when paging is off.
    pub steps: Vec<WalkStep>,
}

/// Why a guest-virtual address has no guest-physical address.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WalkError {
    /// address {gva:#x} is not mapped: {level} entry at {entry_addr:#x} is {entry:#x} (not present)
    #[error("address {gva:#x} is not mapped: {level} entry at {entry_addr:#x} is {entry:#x} (not present)")]
    NotPresent { gva: u64, level: &'static str, entry_addr: u64, entry: u64 },
    /// the page table entry at {entry_addr:#x} is outside guest RAM
    #[error("address {gva:#x}: the {level} entry at {entry_addr:#x} is outside guest RAM")]
    TableOutsideRam { gva: u64, level: &'static str, entry_addr: u64 },
    /// address {gva:#x} is not canonical
    #[error("address {gva:#x} is not canonical")]
    NonCanonical { gva: u64 },
    /// address {gva:#x} is beyond the 32-bit linear address space of a vCPU outside long mode
    #[error("address {gva:#x} is not mapped: the vCPU is not in long mode (32-bit addresses only)")]
    Beyond32Bits { gva: u64 },
}

/// Translates a linear address through the guest's current paging mode, with the entries read.
pub fn translate<M: PhysRead + ?Sized>(mem: &M, mode: &CpuMode, gva: u64) -> Result<Translation, WalkError> {
    let mut steps = Vec::new();
    let (gpa, page_size) = walk_mode(mem, mode, gva, &mut steps)?;
    Ok(Translation { gva, gpa, page_size, steps })
}

/// The guest-physical address of `gva` and the size of the page that maps it, without keeping the
/// entries read: the exit path reads code this way on every exit, and must not allocate.
pub fn gpa_of<M: PhysRead + ?Sized>(mem: &M, mode: &CpuMode, gva: u64) -> Result<(u64, u64), WalkError> {
    walk_mode(mem, mode, gva, &mut NoSteps)
}

/// Where a walk puts the entries it reads.
trait Steps {
    fn push(&mut self, step: WalkStep);
}

impl Steps for Vec<WalkStep> {
    fn push(&mut self, step: WalkStep) {
        Vec::push(self, step);
    }
}

/// A walk whose entries nobody looks at.
struct NoSteps;

impl Steps for NoSteps {
    fn push(&mut self, _: WalkStep) {}
}

/// Walks the tables of `mode` for `gva`: (gpa, page size), the entries read pushed top level first.
fn walk_mode<M: PhysRead + ?Sized>(
    mem: &M,
    mode: &CpuMode,
    gva: u64,
    steps: &mut impl Steps,
) -> Result<(u64, u64), WalkError> {
    if mode.efer & EFER_LMA == 0 && gva > u32::MAX as u64 {
        return Err(WalkError::Beyond32Bits { gva });
    }
    if mode.cr0 & CR0_PE == 0 {
        return Ok((gva & 0x1f_ffff, 4096));
    }
    if mode.cr0 & CR0_PG == 0 {
        return Ok((gva & 0xffff_ffff, 4096));
    }
    if mode.efer & EFER_LMA != 0 {
        let la57 = mode.cr4 & CR4_LA57 != 0;
        let bits = if la57 { 57 } else { 48 };
        let sign = (gva as i64) << (64 - bits) >> (64 - bits);
        if sign as u64 != gva {
            return Err(WalkError::NonCanonical { gva });
        }
        let levels: &[(&'static str, u32)] = if la57 {
            &[("PML5", 48), ("PML4", 39), ("PDPT", 30), ("PD", 21), ("PT", 12)]
        } else {
            &[("PML4", 39), ("PDPT", 30), ("PD", 21), ("PT", 12)]
        };
        return walk(mem, gva, mode.cr3 & ADDR_MASK, levels, steps, |level, shift| {
            (level == "PDPT" || level == "PD") && shift > 12
        });
    }
    let gva = gva & 0xffff_ffff;
    if mode.cr4 & CR4_PAE != 0 {
        let pdpte_addr = (mode.cr3 & 0xffff_ffe0) + ((gva >> 30) & 3) * 8;
        let pdpte = mem.read_u64(pdpte_addr).ok_or(WalkError::TableOutsideRam {
            gva,
            level: "PDPT",
            entry_addr: pdpte_addr,
        })?;
        if pdpte & PRESENT == 0 {
            return Err(WalkError::NotPresent { gva, level: "PDPT", entry_addr: pdpte_addr, entry: pdpte });
        }
        steps.push(WalkStep { level: "PDPT", entry_addr: pdpte_addr, entry: pdpte });
        return walk(mem, gva, pdpte & ADDR_MASK, &[("PD", 21), ("PT", 12)], steps, |level, _| level == "PD");
    }
    // 32-bit paging: 4-byte entries; 4 MiB pages when CR4.PSE.
    let pse = mode.cr4 & CR4_PSE != 0;
    let pde_addr = (mode.cr3 & 0xffff_f000) + ((gva >> 22) & 0x3ff) * 4;
    let pde =
        mem.read_u32(pde_addr).ok_or(WalkError::TableOutsideRam { gva, level: "PDE", entry_addr: pde_addr })? as u64;
    if pde & PRESENT == 0 {
        return Err(WalkError::NotPresent { gva, level: "PDE", entry_addr: pde_addr, entry: pde });
    }
    steps.push(WalkStep { level: "PDE", entry_addr: pde_addr, entry: pde });
    if pse && pde & PAGE_SIZE_BIT != 0 {
        let base = (pde & 0xffc0_0000) | (((pde >> 13) & 0xff) << 32);
        return Ok((base | (gva & 0x3f_ffff), 4 << 20));
    }
    let pte_addr = (pde & 0xffff_f000) + ((gva >> 12) & 0x3ff) * 4;
    let pte =
        mem.read_u32(pte_addr).ok_or(WalkError::TableOutsideRam { gva, level: "PTE", entry_addr: pte_addr })? as u64;
    steps.push(WalkStep { level: "PTE", entry_addr: pte_addr, entry: pte });
    if pte & PRESENT == 0 {
        return Err(WalkError::NotPresent { gva, level: "PTE", entry_addr: pte_addr, entry: pte });
    }
    Ok(((pte & 0xffff_f000) | (gva & 0xfff), 4096))
}

/// Walks 8-byte-entry tables from `table`, one level per `(name, shift)`; `large(name, shift)` says
/// whether a PS bit at that level ends the walk with a large page.
fn walk<M: PhysRead + ?Sized>(
    mem: &M,
    gva: u64,
    mut table: u64,
    levels: &[(&'static str, u32)],
    steps: &mut impl Steps,
    large: impl Fn(&str, u32) -> bool,
) -> Result<(u64, u64), WalkError> {
    for &(level, shift) in levels {
        let entry_addr = table + ((gva >> shift) & 0x1ff) * 8;
        let entry = mem.read_u64(entry_addr).ok_or(WalkError::TableOutsideRam { gva, level, entry_addr })?;
        steps.push(WalkStep { level, entry_addr, entry });
        if entry & PRESENT == 0 {
            return Err(WalkError::NotPresent { gva, level, entry_addr, entry });
        }
        let page_size = 1u64 << shift;
        if shift == 12 || (entry & PAGE_SIZE_BIT != 0 && large(level, shift)) {
            let base = entry & ADDR_MASK & !(page_size - 1);
            return Ok((base | (gva & (page_size - 1)), page_size));
        }
        table = entry & ADDR_MASK;
    }
    unreachable!("the last level always has shift 12")
}

/// Reads `buf.len()` bytes at linear address `gva`, translating each page; returns how many bytes
/// could be read before the first unmapped or unbacked byte.
pub fn read_virt<M: PhysRead + ?Sized>(mem: &M, mode: &CpuMode, gva: u64, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let addr = gva.wrapping_add(done as u64);
        let Ok((gpa, page_size)) = gpa_of(mem, mode, addr) else { break };
        let in_page = (page_size - (gpa & (page_size - 1))) as usize;
        let in_page = in_page.min(4096 - (addr as usize & 0xfff)).max(1);
        let n = in_page.min(buf.len() - done);
        if !mem.read_phys(gpa, &mut buf[done..done + n]) {
            break;
        }
        done += n;
    }
    done
}

/// Levels in the deepest walk (5-level paging).
const MAX_LEVELS: usize = 5;

/// One page's translation remembered with the table entries it was read from, for code read at
/// the same place exit after exit. The entries are read again and compared, not walked: while each
/// holds the value it had, a walk would read the same entries and come to the same page, so the
/// answer is a walk's; when any differs (the guest remapped the page), it walks again.
#[derive(Debug, Default)]
pub struct PageMemo {
    page: Option<MemoPage>,
}

#[derive(Debug)]
struct MemoPage {
    /// What the translation depends on besides the entries: the paging registers and the page.
    cr0: u64,
    cr3: u64,
    cr4: u64,
    efer: u64,
    linear_page: u64,
    gpa_page: u64,
    /// The entries read, as (address, value); 4-byte entries under 32-bit paging.
    entries: [(u64, u64); MAX_LEVELS],
    levels: usize,
    wide: bool,
}

/// The entries a walk reads, kept for [`PageMemo`].
#[derive(Default)]
struct Entries {
    entries: [(u64, u64); MAX_LEVELS],
    levels: usize,
}

impl Steps for Entries {
    fn push(&mut self, step: WalkStep) {
        if let Some(slot) = self.entries.get_mut(self.levels) {
            *slot = (step.entry_addr, step.entry);
            self.levels += 1;
        }
    }
}

impl MemoPage {
    /// Whether this is the translation of `gva`'s page under `mode`, its entries unchanged.
    fn holds<M: PhysRead + ?Sized>(&self, mem: &M, mode: &CpuMode, gva: u64) -> bool {
        (self.cr0, self.cr3, self.cr4, self.efer, self.linear_page)
            == (mode.cr0, mode.cr3, mode.cr4, mode.efer, gva & !0xfff)
            && self.entries[..self.levels].iter().all(|&(addr, value)| {
                let now = if self.wide { mem.read_u64(addr) } else { mem.read_u32(addr).map(u64::from) };
                now == Some(value)
            })
    }
}

impl PageMemo {
    /// The guest-physical address of linear `gva`, as [`gpa_of`] finds it.
    pub fn gpa_of<M: PhysRead + ?Sized>(&mut self, mem: &M, mode: &CpuMode, gva: u64) -> Result<u64, WalkError> {
        if let Some(page) = self.page.as_ref().filter(|p| p.holds(mem, mode, gva)) {
            return Ok(page.gpa_page | (gva & 0xfff));
        }
        self.page = None;
        let mut read = Entries::default();
        let (gpa, _) = walk_mode(mem, mode, gva, &mut read)?;
        let paging_32 = mode.cr0 & CR0_PG != 0 && mode.efer & EFER_LMA == 0 && mode.cr4 & CR4_PAE == 0;
        self.page = Some(MemoPage {
            cr0: mode.cr0,
            cr3: mode.cr3,
            cr4: mode.cr4,
            efer: mode.efer,
            linear_page: gva & !0xfff,
            gpa_page: gpa & !0xfff,
            entries: read.entries,
            levels: read.levels,
            wide: !paging_32,
        });
        Ok(gpa)
    }

    /// Reads all of `buf` at linear `gva`, or says it could not (false); as [`read_virt`] does,
    /// through the memo while `buf` lies in one page.
    pub fn read<M: PhysRead + ?Sized>(&mut self, mem: &M, mode: &CpuMode, gva: u64, buf: &mut [u8]) -> bool {
        if (gva & 0xfff) + buf.len() as u64 > 4096 {
            return read_virt(mem, mode, gva, buf) == buf.len();
        }
        self.gpa_of(mem, mode, gva).is_ok_and(|gpa| mem.read_phys(gpa, buf))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Flat guest memory for tests.
    pub struct Flat(pub Vec<u8>);

    impl PhysRead for Flat {
        fn read_phys(&self, gpa: u64, buf: &mut [u8]) -> bool {
            let Some(end) = (gpa as usize).checked_add(buf.len()) else { return false };
            match self.0.get(gpa as usize..end) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
    }

    impl Flat {
        pub fn put64(&mut self, at: u64, v: u64) {
            self.0[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
        }
        pub fn put32(&mut self, at: u64, v: u32) {
            self.0[at as usize..at as usize + 4].copy_from_slice(&v.to_le_bytes());
        }
    }

    fn long_mode(cr3: u64) -> CpuMode {
        CpuMode { cr0: CR0_PE | CR0_PG, cr3, cr4: CR4_PAE, efer: EFER_LMA | (1 << 8), cs_l: true, ..Default::default() }
    }

    #[test]
    fn real_and_unpaged_modes_are_identity() {
        let mem = Flat(vec![0; 0x1000]);
        let real = CpuMode::default();
        assert_eq!(translate(&mem, &real, 0x7c00).unwrap().gpa, 0x7c00);
        assert_eq!(real.bitness(), 16);
        let prot = CpuMode { cr0: CR0_PE, cs_db: true, ..Default::default() };
        assert_eq!(translate(&mem, &prot, 0x10_0000).unwrap().gpa, 0x10_0000);
        assert!(matches!(translate(&mem, &prot, 1 << 40), Err(WalkError::Beyond32Bits { .. })));
        assert_eq!(prot.bitness(), 32);
        let real_cs = CpuMode { cs_base: 0xf0000, ..Default::default() };
        assert_eq!(real_cs.code_linear(0x1_fff0), 0xffff0);
    }

    /// 4-level tables at CR3 0x1000 mapping a 4 KiB, a 2 MiB and a 1 GiB page.
    fn long_mode_tables() -> Flat {
        let mut mem = Flat(vec![0; 0x10000]);
        // PML4[0] -> PDPT at 0x2000; PDPT[0] -> PD at 0x3000; PDPT[1] = 1 GiB page at 0x4000_0000.
        mem.put64(0x1000, 0x2000 | 3);
        mem.put64(0x2000, 0x3000 | 3);
        mem.put64(0x2008, 0x4000_0000 | 0x83);
        // PD[0] -> PT at 0x4000; PD[1] = 2 MiB page at 0x60_0000.
        mem.put64(0x3000, 0x4000 | 3);
        mem.put64(0x3008, 0x60_0000 | 0x83);
        // PT[5] -> 0x9000.
        mem.put64(0x4000 + 5 * 8, 0x9000 | 3);
        mem
    }

    #[test]
    fn long_mode_4k_2m_and_1g_pages() {
        let mem = long_mode_tables();
        let m = long_mode(0x1000);
        assert_eq!(m.bitness(), 64);
        let t = translate(&mem, &m, 0x5123).unwrap();
        assert_eq!((t.gpa, t.page_size, t.steps.len()), (0x9123, 4096, 4));
        assert_eq!(t.steps[3].level, "PT");
        let t = translate(&mem, &m, 0x20_0000 + 0x1234).unwrap();
        assert_eq!((t.gpa, t.page_size), (0x60_1234, 2 << 20));
        let t = translate(&mem, &m, 0x4000_0000 + 0x12_3456).unwrap();
        assert_eq!((t.gpa, t.page_size), (0x4012_3456, 1 << 30));
        match translate(&mem, &m, 0x6000) {
            Err(WalkError::NotPresent { level: "PT", .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(translate(&mem, &m, 0x0000_8000_0000_0000), Err(WalkError::NonCanonical { .. })));
        // The exit path's walk, which keeps no entries, finds the same, errors included.
        for gva in [0x5123, 0x20_1234, 0x4012_3456, 0x6000, 0x0000_8000_0000_0000] {
            let full = translate(&mem, &m, gva).map(|t| (t.gpa, t.page_size));
            assert_eq!(gpa_of(&mem, &m, gva), full, "{gva:#x}");
        }
    }

    #[test]
    fn page_table_outside_ram_is_an_error_not_a_panic() {
        let mut mem = Flat(vec![0; 0x2000]);
        mem.put64(0x1000, 0xdead_0000 | 3);
        let r = translate(&mem, &long_mode(0x1000), 0x1000);
        assert!(matches!(r, Err(WalkError::TableOutsideRam { level: "PDPT", .. })), "{r:?}");
    }

    #[test]
    fn pae_and_32bit_paging() {
        let mut mem = Flat(vec![0; 0x10000]);
        // PAE: PDPT at 0x1000, PDPT[3] -> PD at 0x2000, PD[0] = 2 MiB page at 0x20_0000.
        mem.put64(0x1000 + 3 * 8, 0x2000 | 1);
        mem.put64(0x2000, 0x20_0000 | 0x83);
        let pae = CpuMode { cr0: CR0_PE | CR0_PG, cr3: 0x1000, cr4: CR4_PAE, cs_db: true, ..Default::default() };
        let t = translate(&mem, &pae, 0xc000_0042).unwrap();
        assert_eq!(t.gpa, 0x20_0042);
        assert_eq!(t.steps.iter().map(|s| s.level).collect::<Vec<_>>(), ["PDPT", "PD"]);
        // 32-bit: PD at 0x3000, PDE[1] -> PT at 0x4000, PTE[2] -> 0x7000; PDE[2] = 4 MiB page.
        mem.put32(0x3000 + 4, 0x4000 | 3);
        mem.put32(0x4000 + 8, 0x7000 | 3);
        mem.put32(0x3000 + 8, 0x80_0000 | 0x83);
        let p32 = CpuMode { cr0: CR0_PE | CR0_PG, cr3: 0x3000, cr4: CR4_PSE, cs_db: true, ..Default::default() };
        assert_eq!(translate(&mem, &p32, 0x40_2abc).unwrap().gpa, 0x7abc);
        let t = translate(&mem, &p32, 0x80_1234).unwrap();
        assert_eq!((t.gpa, t.page_size), (0x80_1234, 4 << 20));
        assert!(translate(&mem, &p32, 0xc0_0000).is_err());
    }

    #[test]
    fn page_memo_answers_as_a_walk_and_sees_the_guest_remap() {
        let mut mem = long_mode_tables();
        mem.put64(0x4000 + 6 * 8, 0xa000 | 3);
        let m = long_mode(0x1000);
        let mut memo = PageMemo::default();
        for gva in [0x5123, 0x5ff0, 0x6008, 0x5000, 0x7000, 0x20_1234, 0x4012_3456, 0x0000_8000_0000_0000] {
            assert_eq!(memo.gpa_of(&mem, &m, gva), gpa_of(&mem, &m, gva).map(|g| g.0), "{gva:#x}");
        }
        assert_eq!(memo.gpa_of(&mem, &m, 0x5123), Ok(0x9123));
        // The guest points the PTE elsewhere (no CR3 write, as after an INVLPG): a new walk.
        mem.put64(0x4000 + 5 * 8, 0xb000 | 3);
        assert_eq!(memo.gpa_of(&mem, &m, 0x5123), Ok(0xb123));
        // ... or an upper level: the PD entry now points at another PT, where page 5 is absent.
        mem.put64(0x3000, 0x8000 | 3);
        assert!(matches!(memo.gpa_of(&mem, &m, 0x5123), Err(WalkError::NotPresent { level: "PT", .. })));
        mem.put64(0x3000, 0x4000 | 3);
        // Another CR3 with other tables, and the page unmapped there.
        let other = long_mode(0x8000);
        assert!(memo.gpa_of(&mem, &other, 0x5123).is_err());
        assert_eq!(memo.gpa_of(&mem, &m, 0x5123), Ok(0xb123));
        let mut buf = [0u8; 4];
        mem.0[0xb123..0xb127].copy_from_slice(&[1, 2, 3, 4]);
        assert!(memo.read(&mem, &m, 0x5123, &mut buf));
        assert_eq!(buf, [1, 2, 3, 4]);
        // Across a page boundary it reads as read_virt does: page 7 is unmapped.
        assert!(!memo.read(&mem, &m, 0x6ffe, &mut buf));
    }

    #[test]
    fn page_memo_under_32bit_paging_rereads_4_byte_entries() {
        let mut mem = Flat(vec![0; 0x10000]);
        mem.put32(0x3000 + 4, 0x4000 | 3);
        mem.put32(0x4000 + 8, 0x7000 | 3);
        // The word after the PTE is another entry: a memo that read 8 bytes would see it change.
        mem.put32(0x4000 + 12, 0x5000 | 3);
        let p32 = CpuMode { cr0: CR0_PE | CR0_PG, cr3: 0x3000, cs_db: true, ..Default::default() };
        let mut memo = PageMemo::default();
        assert_eq!(memo.gpa_of(&mem, &p32, 0x40_2abc), Ok(0x7abc));
        mem.put32(0x4000 + 12, 0x6000 | 3);
        assert_eq!(memo.gpa_of(&mem, &p32, 0x40_2abc), Ok(0x7abc));
        mem.put32(0x4000 + 8, 0x8000 | 3);
        assert_eq!(memo.gpa_of(&mem, &p32, 0x40_2abc), Ok(0x8abc));
        // Unpaged: nothing to re-read, the same identity.
        let prot = CpuMode { cr0: CR0_PE, cs_db: true, ..Default::default() };
        assert_eq!(memo.gpa_of(&mem, &prot, 0x10_0042), Ok(0x10_0042));
        assert_eq!(memo.gpa_of(&mem, &prot, 0x10_0042), Ok(0x10_0042));
    }

    #[test]
    fn read_virt_crosses_pages_and_stops_at_a_hole() {
        let mut mem = Flat(vec![0; 0x10000]);
        mem.put64(0x1000, 0x2000 | 3);
        mem.put64(0x2000, 0x3000 | 3);
        mem.put64(0x3000, 0x4000 | 3);
        // Virtual page 0 -> 0x8000, page 1 -> 0x6000, page 2 unmapped.
        mem.put64(0x4000, 0x8000 | 3);
        mem.put64(0x4008, 0x6000 | 3);
        mem.0[0x8ffe] = 0xaa;
        mem.0[0x8fff] = 0xbb;
        mem.0[0x6000] = 0xcc;
        let m = long_mode(0x1000);
        let mut buf = [0u8; 3];
        assert_eq!(read_virt(&mem, &m, 0xffe, &mut buf), 3);
        assert_eq!(buf, [0xaa, 0xbb, 0xcc]);
        let mut buf = [0u8; 8];
        assert_eq!(read_virt(&mem, &m, 0x1ffc, &mut buf), 4);
    }
}

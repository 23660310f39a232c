//! The walk of a Linux guest's whole page-table map (what `info mem`, `info tlb` and the memory
//! screen show), in milliseconds, against the floor of reading every entry of the same tables once.
//!
//! The tables are built in guest RAM the shape a booted x86-64 Linux gives them, at its worst for a
//! walker: the direct map of 512 MiB at 0xffff888000000000 in 4 KiB pages (as with rodata and
//! debug_pagealloc splitting it), the kernel image at 0xffffffff81000000 in 4 KiB pages with text,
//! rodata and data protections, vmemmap in 2 MiB pages, and a few fixmap pages: about 140,000
//! mappings. `cargo bench --bench page_walk` prints the median and minimum of each over the rounds,
//! and what the memory screen spends making its lines of that map (`info tlb` form) once a second.

use std::time::Instant;

use kvmscope::decode::page_map::page_map;
use kvmscope::decode::paging::{CpuMode, PhysRead};
use kvmscope::memory_view::MemoryMapView;
use kvmscope::ui::panes::memmap::MemMapPane;
use kvmscope::vmm::memory::GuestRam;

const ROUNDS: usize = 11;
const P: u64 = 1; // present
const RW: u64 = 1 << 1;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const NX: u64 = 1 << 63;
const TABLE: u64 = P | RW;

/// Page tables, allocated one 4 KiB page at a time from 16 MiB up.
struct Builder<'a> {
    ram: &'a GuestRam,
    next: u64,
    tables: Vec<u64>,
}

impl Builder<'_> {
    fn table(&mut self) -> u64 {
        let t = self.next;
        self.next += 4096;
        self.tables.push(t);
        t
    }

    fn get(&self, addr: u64) -> u64 {
        self.ram.read_u64(addr).unwrap()
    }

    /// The table the entry at `slot` points to, made when missing.
    fn child(&mut self, slot: u64) -> u64 {
        match self.get(slot) {
            0 => {
                let t = self.table();
                self.ram.write(slot, &(t | TABLE).to_le_bytes());
                t
            }
            e => e & 0x000f_ffff_ffff_f000,
        }
    }

    /// Maps `virt` to `phys` with a leaf at `level` (1: 4 KiB, 2: 2 MiB) and `flags`.
    fn map(&mut self, pml4: u64, virt: u64, phys: u64, level: u32, flags: u64) {
        let mut t = pml4;
        for l in (level + 1..=4).rev() {
            t = self.child(t + ((virt >> (12 + 9 * (l - 1))) & 511) * 8);
        }
        let slot = t + ((virt >> (12 + 9 * (level - 1))) & 511) * 8;
        let leaf = if level > 1 { PS } else { 0 };
        self.ram.write(slot, &(phys | flags | leaf | P).to_le_bytes());
    }
}

/// A Linux-shaped map; the mode to walk it and every table page.
fn linux_tables(ram: &GuestRam) -> (CpuMode, Vec<u64>) {
    let mut b = Builder { ram, next: 16 << 20, tables: Vec::new() };
    let pml4 = b.table();
    for page in 0..(512u64 << 20) >> 12 {
        b.map(pml4, 0xffff_8880_0000_0000 + (page << 12), page << 12, 1, RW | G | NX);
    }
    for page in 0..(32u64 << 20) >> 12 {
        let flags = match page {
            p if p < 4096 => G,      // text: read, execute
            p if p < 6144 => G | NX, // rodata
            _ => RW | G | NX,        // data, bss
        };
        b.map(pml4, 0xffff_ffff_8100_0000 + (page << 12), (16 << 20) + (page << 12), 1, flags);
    }
    for chunk in 0..8u64 {
        b.map(pml4, 0xffff_ea00_0000_0000 + (chunk << 21), (64 << 20) + (chunk << 21), 2, RW | G | NX);
    }
    for page in 0..16u64 {
        b.map(pml4, 0xffff_ffff_ff5f_0000 + (page << 12), 0xfee0_0000 + (page << 12), 1, RW | G | NX);
    }
    let mode = CpuMode { cr0: 0x8000_0011, cr3: pml4, cr4: 0x20, efer: 0x500, cs_l: true, ..Default::default() };
    (mode, b.tables)
}

/// Milliseconds `f` takes.
fn ms(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0])
}

fn main() {
    let ram = GuestRam::new(1 << 30).unwrap();
    let (mode, tables) = linux_tables(&ram);
    let map = page_map(&ram, &mode);
    let (mem_lines, tlb_lines) = (map.info_mem().lines().count(), map.info_tlb().lines().count());
    let (mut floor, mut walk, mut mem, mut tlb) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut pane = Vec::new();
    let view = MemoryMapView {
        slots: Vec::new(),
        ports: Vec::new(),
        mmio: Vec::new(),
        layout: Vec::new(),
        kvm: None,
        guest_pages: Ok(map.clone()),
        dirty: None,
    };
    let symbols = Default::default();
    for _ in 0..ROUNDS {
        // The floor: every entry of every table read once, through the same guest-memory reads.
        floor.push(ms(|| {
            let sum = tables
                .iter()
                .flat_map(|t| (0..512).map(move |i| t + i * 8))
                .fold(0u64, |s, a| s.wrapping_add(ram.read_u64(a).unwrap()));
            std::hint::black_box(sum);
        }));
        walk.push(ms(|| {
            std::hint::black_box(page_map(&ram, &mode));
        }));
        mem.push(ms(|| {
            std::hint::black_box(page_map(&ram, &mode).info_mem());
        }));
        tlb.push(ms(|| {
            std::hint::black_box(page_map(&ram, &mode).info_tlb());
        }));
        pane.push(ms(|| {
            std::hint::black_box(MemMapPane::lines(&view, &[], true, &symbols));
        }));
    }
    let ((f_med, f_min), (w_med, w_min)) = (stats(floor), stats(walk));
    let ((m_med, m_min), (t_med, t_min)) = (stats(mem), stats(tlb));
    println!(
        "page walk of a Linux-shaped map: {} mappings in {} tables; info mem {mem_lines} lines, info tlb {tlb_lines}",
        map.mappings.len(),
        tables.len()
    );
    println!("  ({ROUNDS} rounds)                                  median ms     min ms");
    println!("  floor (read every entry once)              {f_med:>10.2} {f_min:>10.2}");
    println!("  walk (page_map)                            {w_med:>10.2} {w_min:>10.2}");
    println!("  walk + info mem                            {m_med:>10.2} {m_min:>10.2}");
    println!("  walk + info tlb                            {t_med:>10.2} {t_min:>10.2}");
    let (p_med, p_min) = stats(pane);
    println!("  memory screen's lines (info tlb form)      {p_med:>10.2} {p_min:>10.2}");
    println!("  ratio walk / floor                         {:>10.2} {:>10.2}", w_med / f_med, w_min / f_min);
    println!("  ratio walk + info tlb / floor              {:>10.2} {:>10.2}", t_med / f_med, t_min / f_min);
}

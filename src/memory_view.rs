//! The VM's memory as KVM and kvmscope have laid it out, for the memory-map screen: every memory
//! slot (where it is, on the host too, read-only or not, how much of it the host has populated and
//! how much in huge pages), every device range on the two buses, the guest's memory map with its
//! holes, and KVM's own counters of how it maps guest memory (pages_4k/2m/1g and its MMU counters).

use crate::vmm::kvm_stats::Reading;
use crate::vmm::memory::MapEntry;
use crate::vmm::slots::Slot;

/// One memory slot and what the host has of it.
/// Why the memory map has no page tables to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoPageTables {
    #[error("the guest is running: pause it to read its page tables")]
    Running,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotView {
    pub index: usize,
    pub slot: Slot,
    /// 4 KiB pages the host has populated, and of them in huge pages (`None` where not visible).
    pub populated: Result<(u64, Option<u64>), crate::vmm::host_pages::PagemapError>,
}

impl MemoryMapView {
    /// QEMU's `info mtree`: the memory address space (RAM slots, MMIO devices) and the I/O one.
    pub fn mtree(&self) -> String {
        let mut out = String::from("address-space: memory\n");
        let mut memory: Vec<(u64, u64, String)> = self
            .slots
            .iter()
            .map(|s| {
                let kind = if s.slot.readonly { "romd" } else { "ram" };
                (s.slot.gpa, s.slot.gpa + s.slot.len - 1, format!("(prio 0, {kind}): slot {}", s.index))
            })
            .collect();
        memory.extend(self.mmio.iter().map(|(n, b, l)| (*b, b + l - 1, format!("(prio 1, i/o): {n}"))));
        memory.sort();
        for (start, end, what) in memory {
            out.push_str(&format!("  {start:016x}-{end:016x} {what}\n"));
        }
        out.push_str("\naddress-space: I/O\n  0000000000000000-000000000000ffff (prio 0, i/o): io\n");
        for (name, base, len) in &self.ports {
            out.push_str(&format!("    {base:016x}-{:016x} (prio 1, i/o): {name}\n", base + len - 1));
        }
        out
    }
}

/// The whole map at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryMapView {
    pub slots: Vec<SlotView>,
    /// Port and MMIO devices as (name, base, length).
    pub ports: Vec<(&'static str, u64, u64)>,
    pub mmio: Vec<(&'static str, u64, u64)>,
    /// The guest's memory map (RAM and reserved ranges, the holes between them).
    pub layout: Vec<MapEntry>,
    /// KVM's VM statistics (`pages_4k`, `pages_2m`, `pages_1g`, `mmu_*` ...), where it has them.
    pub kvm: Option<Reading>,
    /// The stopped vCPU's page tables (every mapping), or why not (the guest runs).
    pub guest_pages: Result<crate::decode::page_map::PageMap, NoPageTables>,
    /// The dirty log's history (`--dirty-log`).
    pub dirty: Option<crate::vmm::dirty::DirtyTracker>,
}

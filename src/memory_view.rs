//! The VM's memory as KVM and kvmscope have laid it out, for the memory-map screen: every memory
//! slot (where it is, on the host too, read-only or not, how much of it the host has populated and
//! how much in huge pages), every device range on the two buses, the guest's memory map with its
//! holes, and KVM's own counters of how it maps guest memory (pages_4k/2m/1g and its MMU counters).

use crate::vmm::kvm_stats::Reading;
use crate::vmm::memory::MapEntry;
use crate::vmm::slots::Slot;

/// One memory slot and what the host has of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotView {
    pub index: usize,
    pub slot: Slot,
    /// 4 KiB pages the host has populated, and of them in huge pages (`None` where not visible).
    pub populated: Result<(u64, Option<u64>), String>,
}

/// The whole map at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryMapView {
    pub slots: Vec<SlotView>,
    /// Port and MMIO devices as (name, base, length).
    pub ports: Vec<(&'static str, u64, u64)>,
    pub mmio: Vec<(&'static str, u64, u64)>,
    /// The guest's memory map (RAM and reserved ranges, the holes between them).
    pub layout: Vec<MapEntry>,
    /// KVM's VM statistics (`pages_4k`, `pages_2m`, `pages_1g`, `mmu_*` ...), where it has them.
    pub kvm: Option<Reading>,
}

//! Where kvmscope puts things in guest-physical memory before the guest runs. The loaders keep
//! images out of the boot area; `boot_cpu` fills it.
//!
//! Boot area (protected and long mode): GDT at 0x500, PML4 at 0x1000, PDPT at 0x2000, four page
//! directories at 0x3000-0x6fff mapping the first 4 GiB with 2 MiB pages, stack below 0x8000.

/// Start of the area kvmscope uses for the GDT, page tables and a boot stack (protected and long mode).
pub const BOOT_AREA_START: u64 = 0x500;
/// End of that area; also the initial stack pointer.
pub const BOOT_AREA_END: u64 = 0x8000;

pub const GDT_ADDR: u64 = 0x500;
pub const PML4_ADDR: u64 = 0x1000;
pub const PDPT_ADDR: u64 = 0x2000;
pub const PD_ADDR: u64 = 0x3000;
/// The identity map covers guest-physical 0..4 GiB (RAM and the MMIO hole).
pub const IDENTITY_MAP_END: u64 = 1 << 32;

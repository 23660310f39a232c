//! Linux (and other) kernels with a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY), booted the way
//! Firecracker and cloud-hypervisor boot an uncompressed vmlinux: segments at their physical
//! addresses, a `hvm_start_info` with the memory map, command line and initrd, and entry in 32-bit
//! flat protected mode with EBX = the start info. It skips the decompressor, which matters where
//! guest code is emulated.

use std::path::Path;

use super::elf::Elf;
use super::{BootMode, BootSetup, LoaderError, place, place_initrd, write_cmdline};
use crate::vmm::memory::{GuestRam, RegionKind};

/// `hvm_start_info` and what it points to live in the boot area.
const START_INFO: u64 = 0x6000;
const MODLIST: u64 = 0x6040;
const MEMMAP: u64 = 0x6080;
const CMDLINE: u64 = 0x7000;
const CMDLINE_MAX: usize = 0x1000;
const START_INFO_MAGIC: u32 = 0x336e_c578;

/// Writes (or rewrites) the kernel command line.
pub fn set_cmdline(ram: &GuestRam, path: &Path, cmdline: &str) -> Result<(), LoaderError> {
    write_cmdline(ram, path, CMDLINE, CMDLINE_MAX, cmdline)
}

/// Loads a PVH kernel (and an initrd as its first module).
pub fn load(
    path: &Path,
    bytes: &[u8],
    elf: &Elf,
    entry: u64,
    ram: &GuestRam,
    cmdline: &str,
    initrd: Option<&Path>,
) -> Result<BootSetup, LoaderError> {
    let mut loaded = Vec::new();
    for s in &elf.segments {
        let data = &bytes[s.offset as usize..(s.offset + s.filesz) as usize];
        loaded.push(place(path, ram, s.paddr, data, s.memsz, true)?);
    }
    set_cmdline(ram, path, cmdline)?;
    let mut modules = 0u32;
    if let Some(initrd) = initrd {
        let kernel_end = loaded.iter().map(|r| r.1).max().unwrap_or(0);
        let (at, end) = place_initrd(initrd, ram, kernel_end)?;
        let mut entry = Vec::new();
        for v in [at, end - at, 0, 0] {
            entry.extend_from_slice(&v.to_le_bytes());
        }
        ram.write(MODLIST, &entry);
        modules = 1;
        loaded.push((at, end));
    }
    let mut memmap = Vec::new();
    let entries = ram.map.entries();
    for e in &entries {
        memmap.extend_from_slice(&e.start.to_le_bytes());
        memmap.extend_from_slice(&e.len.to_le_bytes());
        let kind: u32 = if e.kind == RegionKind::Ram { 1 } else { 2 };
        memmap.extend_from_slice(&kind.to_le_bytes());
        memmap.extend_from_slice(&0u32.to_le_bytes());
    }
    ram.write(MEMMAP, &memmap);
    let mut info = Vec::new();
    info.extend_from_slice(&START_INFO_MAGIC.to_le_bytes());
    info.extend_from_slice(&1u32.to_le_bytes()); // version
    info.extend_from_slice(&0u32.to_le_bytes()); // flags
    info.extend_from_slice(&modules.to_le_bytes());
    for v in [if modules > 0 { MODLIST } else { 0 }, CMDLINE, 0, MEMMAP] {
        info.extend_from_slice(&v.to_le_bytes());
    }
    info.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    info.extend_from_slice(&0u32.to_le_bytes());
    ram.write(START_INFO, &info);
    Ok(BootSetup { format: "pvh", mode: BootMode::Protected, entry, rax: 0, rbx: START_INFO, rsi: 0, loaded })
}

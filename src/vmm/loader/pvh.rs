//! Linux (and other) kernels with a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY), booted the way
//! Firecracker and cloud-hypervisor boot an uncompressed vmlinux: segments at their physical
//! addresses, a `hvm_start_info` with the memory map, command line and initrd, and entry in 32-bit
//! flat protected mode with EBX = the start info. It skips the decompressor, which matters where
//! guest code is emulated. The structures are linux-loader's.

use std::path::Path;

use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};

use super::elf::Elf;
use super::{
    BootMode, BootSetup, E820_RAM, E820_RESERVED, LoaderError, place, place_initrd, write_boot_struct, write_cmdline,
};
use crate::vmm::memory::{GuestRam, RegionKind};

/// `hvm_start_info` and what it points to live in the boot area.
const START_INFO: u64 = 0x6000;
const MODLIST: u64 = 0x6040;
const MEMMAP: u64 = 0x6080;
const CMDLINE: u64 = 0x7000;
const CMDLINE_MAX: usize = 0x1000;
/// `hvm_start_info.magic`.
const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

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
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        cmdline_paddr: CMDLINE,
        memmap_paddr: MEMMAP,
        rsdp_paddr: crate::vmm::acpi::RSDP_ADDR,
        ..Default::default()
    };
    if let Some(initrd) = initrd {
        let kernel_end = loaded.iter().map(|r| r.1).max().unwrap_or(0);
        let (at, end) = place_initrd(initrd, ram, kernel_end)?;
        let module = hvm_modlist_entry { paddr: at, size: end - at, ..Default::default() };
        write_boot_struct(ram, path, MODLIST, module)?;
        (info.nr_modules, info.modlist_paddr) = (1, MODLIST);
        loaded.push((at, end));
    }
    let entries = ram.map.entries();
    for (i, e) in entries.iter().enumerate() {
        let type_ = if e.kind == RegionKind::Ram { E820_RAM } else { E820_RESERVED };
        let entry = hvm_memmap_table_entry { addr: e.start, size: e.len, type_, reserved: 0 };
        let at = MEMMAP + (i * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
        write_boot_struct(ram, path, at, entry)?;
    }
    info.memmap_entries = entries.len() as u32;
    write_boot_struct(ram, path, START_INFO, info)?;
    Ok(BootSetup {
        format: "pvh",
        mode: BootMode::Protected,
        entry,
        rax: 0,
        rbx: START_INFO,
        rsi: 0,
        loaded,
        kernel_version: None,
    })
}

//! 64-bit ELF kernels without a multiboot header: loaded at their physical addresses and entered in
//! long mode at `e_entry`, on kvmscope's GDT and identity-mapped page tables.

use std::path::Path;

use super::elf::Elf;
use super::{BootMode, BootSetup, LoaderError, invalid, place};
use crate::vmm::memory::GuestRam;

/// Loads every `PT_LOAD` segment at its `p_paddr`.
pub fn load(path: &Path, bytes: &[u8], elf: &Elf, ram: &GuestRam) -> Result<BootSetup, LoaderError> {
    let mut loaded = Vec::new();
    for s in &elf.segments {
        let data = &bytes[s.offset as usize..(s.offset + s.filesz) as usize];
        loaded.push(place(path, ram, s.paddr, data, s.memsz, true)?);
    }
    let entry = elf.virt_to_phys(elf.entry);
    if entry >= crate::vmm::layout::IDENTITY_MAP_END {
        return Err(invalid(path, format!("entry point {entry:#x} is above the identity-mapped 4 GiB")));
    }
    if !loaded.iter().any(|&(s, e)| (s..e).contains(&entry)) {
        return Err(invalid(path, format!("entry point {entry:#x} is outside the loaded segments")));
    }
    Ok(BootSetup { format: "elf64", mode: BootMode::Long, entry, rax: 0, rbx: 0, rsi: 0, loaded, kernel_version: None })
}

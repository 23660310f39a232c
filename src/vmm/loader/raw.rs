//! Raw binaries: copied to `--load`, entered at `--entry` in the mode the user names.

use std::path::Path;

use super::{BootMode, BootSetup, LoaderError, invalid, place, read_image};
use crate::vmm::memory::GuestRam;

/// Loads a raw image at `load` and starts it at `entry` in `mode`.
pub fn load(path: &Path, ram: &GuestRam, load: u64, entry: u64, mode: BootMode) -> Result<BootSetup, LoaderError> {
    let bytes = read_image(path, ram)?;
    let needs_boot_area = mode != BootMode::Real;
    let range = place(path, ram, load, &bytes, bytes.len() as u64, needs_boot_area)?;
    if !ram.map.is_ram(entry, 1) {
        return Err(invalid(path, format!("entry {entry:#x} is outside guest RAM ({})", ram.map)));
    }
    if mode == BootMode::Real && entry >= 0x10_0000 {
        return Err(invalid(path, format!("entry {entry:#x} is beyond real mode's first megabyte")));
    }
    Ok(BootSetup { format: "raw", mode, entry, rax: 0, rbx: 0, rsi: 0, loaded: vec![range], kernel_version: None })
}

//! Linux bzImage by the x86 boot protocol (Documentation/arch/x86/boot.rst), 64-bit entry: the
//! protected-mode kernel at 1 MiB, a zero page (boot_params) with the setup header, the e820 map,
//! the command line and the initrd, and entry in long mode at load address + 0x200 with RSI = the
//! zero page, on kvmscope's identity map.

use std::path::Path;

use super::{BootMode, BootSetup, LoaderError, invalid, place, place_initrd, write_cmdline};
use crate::vmm::memory::{GuestRam, RegionKind};

const ZERO_PAGE: u64 = 0x8000;
const CMDLINE: u64 = 0x9000;
const CMDLINE_MAX: usize = 0x1000;
const KERNEL_LOAD: u64 = 0x10_0000;
const HDRS: &[u8; 4] = b"HdrS";
/// xloadflags: the kernel has a 64-bit entry point at +0x200.
const XLF_KERNEL_64: u16 = 1;
const LOADFLAGS_CAN_USE_HEAP: u8 = 0x80;

/// Writes (or rewrites) the kernel command line.
pub fn set_cmdline(ram: &GuestRam, path: &Path, cmdline: &str) -> Result<(), LoaderError> {
    write_cmdline(ram, path, CMDLINE, CMDLINE_MAX, cmdline)
}

/// Whether the bytes are a bzImage (the setup header's magic).
pub fn is_bzimage(b: &[u8]) -> bool {
    b.get(0x202..0x206) == Some(HDRS)
}

/// Loads a bzImage and builds its zero page.
pub fn load(
    path: &Path,
    b: &[u8],
    ram: &GuestRam,
    cmdline: &str,
    initrd: Option<&Path>,
) -> Result<BootSetup, LoaderError> {
    let bad = |what: String| invalid(path, what);
    let u16_at = |o: usize| b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let version = u16_at(0x206).ok_or_else(|| bad("truncated Linux setup header".into()))?;
    if version < 0x020c {
        return Err(bad(format!(
            "Linux boot protocol {}.{:02} is too old for a 64-bit entry (2.12 needed)",
            version >> 8,
            version & 0xff
        )));
    }
    let xloadflags = u16_at(0x236).unwrap_or(0);
    if xloadflags & XLF_KERNEL_64 == 0 {
        return Err(bad("this bzImage has no 64-bit entry point (XLF_KERNEL_64)".into()));
    }
    let setup_sects = match b[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let kernel_off = (setup_sects + 1) * 512;
    let kernel = b
        .get(kernel_off..)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| bad("truncated: no protected-mode kernel after the setup".into()))?;
    let mut loaded = vec![place(path, ram, KERNEL_LOAD, kernel, kernel.len() as u64, true)?];

    // The zero page: the setup header as the image has it, then what the boot loader fills in.
    let mut zp = vec![0u8; 4096];
    let hdr_end = (0x202 + b[0x201] as usize).min(b.len()).min(4096);
    zp[0x1f1..hdr_end].copy_from_slice(&b[0x1f1..hdr_end]);
    zp[0x210] = 0xff; // type_of_loader: undefined
    zp[0x211] |= LOADFLAGS_CAN_USE_HEAP;
    zp[0x224..0x226].copy_from_slice(&0xfe00u16.to_le_bytes()); // heap_end_ptr
    set_cmdline(ram, path, cmdline)?;
    zp[0x228..0x22c].copy_from_slice(&(CMDLINE as u32).to_le_bytes());
    if let Some(initrd) = initrd {
        let (at, end) = place_initrd(initrd, ram, loaded[0].1)?;
        loaded.push((at, end));
        zp[0x218..0x21c].copy_from_slice(&(at as u32).to_le_bytes());
        zp[0x21c..0x220].copy_from_slice(&((end - at) as u32).to_le_bytes());
    }
    let entries = ram.map.entries();
    zp[0x1e8] = entries.len() as u8;
    for (i, e) in entries.iter().enumerate() {
        let at = 0x2d0 + i * 20;
        zp[at..at + 8].copy_from_slice(&e.start.to_le_bytes());
        zp[at + 8..at + 16].copy_from_slice(&e.len.to_le_bytes());
        let kind: u32 = if e.kind == RegionKind::Ram { 1 } else { 2 };
        zp[at + 16..at + 20].copy_from_slice(&kind.to_le_bytes());
    }
    ram.write(ZERO_PAGE, &zp);
    Ok(BootSetup {
        format: "bzimage",
        mode: BootMode::Long,
        entry: KERNEL_LOAD + 0x200,
        rax: 0,
        rbx: 0,
        loaded,
        rsi: ZERO_PAGE,
    })
}

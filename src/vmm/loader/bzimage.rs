//! Linux bzImage by the x86 boot protocol (Documentation/arch/x86/boot.rst), 64-bit entry: the
//! protected-mode kernel at 1 MiB, a zero page (boot_params) with the setup header, the e820 map,
//! the command line and the initrd, and entry in long mode at load address + 0x200 with RSI = the
//! zero page, on kvmscope's identity map. The zero page is linux-loader's `boot_params`.

use std::path::Path;

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use vm_memory::ByteValued;

use super::{
    BootMode, BootSetup, BootStruct, E820_RAM, E820_RESERVED, LoaderError, invalid, place, place_initrd,
    write_boot_struct, write_cmdline,
};
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
    let mut zp = BootStruct(boot_params::default());
    let hdr_end = (0x202 + b[0x201] as usize).min(b.len()).min(4096);
    zp.as_mut_slice()[0x1f1..hdr_end].copy_from_slice(&b[0x1f1..hdr_end]);
    let hdr = &mut zp.0.hdr;
    hdr.type_of_loader = 0xff; // undefined
    hdr.loadflags |= LOADFLAGS_CAN_USE_HEAP;
    hdr.heap_end_ptr = 0xfe00;
    set_cmdline(ram, path, cmdline)?;
    hdr.cmd_line_ptr = CMDLINE as u32;
    if let Some(initrd) = initrd {
        let (at, end) = place_initrd(initrd, ram, loaded[0].1)?;
        loaded.push((at, end));
        (hdr.ramdisk_image, hdr.ramdisk_size) = (at as u32, (end - at) as u32);
    }
    let entries = ram.map.entries();
    let table = &mut zp.0.e820_table;
    if entries.len() > table.len() {
        return Err(bad(format!("the memory map has {} regions; the zero page holds {}", entries.len(), table.len())));
    }
    for (slot, e) in table.iter_mut().zip(&entries) {
        let r#type = if e.kind == RegionKind::Ram { E820_RAM } else { E820_RESERVED };
        *slot = boot_e820_entry { addr: e.start, size: e.len, r#type };
    }
    zp.0.e820_entries = entries.len() as u8;
    write_boot_struct(ram, path, ZERO_PAGE, zp.0)?;
    Ok(BootSetup {
        format: "bzimage",
        mode: BootMode::Long,
        entry: KERNEL_LOAD + 0x200,
        rax: 0,
        rbx: 0,
        loaded,
        rsi: ZERO_PAGE,
        kernel_version: kernel_version(b),
    })
}

/// The kernel version string the setup header points to (`kernel_version`, relative to the setup
/// code at 0x200), if there is one: Linux's starts with its release number.
fn kernel_version(b: &[u8]) -> Option<String> {
    let at = b.get(0x20e..0x210).map(|s| u16::from_le_bytes([s[0], s[1]]))?;
    if at == 0 {
        return None;
    }
    let text = b.get(0x200 + at as usize..)?;
    let end = text.iter().take(256).position(|&c| c == 0)?;
    let version = String::from_utf8_lossy(&text[..end]).into_owned();
    version.starts_with(|c: char| c.is_ascii_digit()).then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::PhysRead;

    /// A bzImage of boot protocol 2.15 with one setup sector and a 16-byte kernel.
    fn image() -> Vec<u8> {
        let mut b = vec![0u8; 1024 + 16];
        b[0x1f1] = 1;
        b[0x201] = 0x66;
        b[0x202..0x206].copy_from_slice(HDRS);
        b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        b[0x236..0x238].copy_from_slice(&XLF_KERNEL_64.to_le_bytes());
        b[1024..].fill(0x90);
        b
    }

    #[test]
    fn the_zero_page_is_laid_out_as_the_boot_protocol_says() {
        let ram = GuestRam::new(64 << 20).unwrap();
        let setup = load(Path::new("k"), &image(), &ram, "console=ttyS0", None).unwrap();
        assert_eq!((setup.entry, setup.rsi), (KERNEL_LOAD + 0x200, ZERO_PAGE));
        let mut zp = [0u8; 4096];
        assert!(ram.read_phys(ZERO_PAGE, &mut zp));
        let u32_at = |o: usize| u32::from_le_bytes([zp[o], zp[o + 1], zp[o + 2], zp[o + 3]]);
        assert_eq!(&zp[0x202..0x206], HDRS, "the image's setup header is copied");
        assert_eq!(zp[0x210], 0xff, "type_of_loader");
        assert_ne!(zp[0x211] & LOADFLAGS_CAN_USE_HEAP, 0);
        assert_eq!(u32_at(0x228), CMDLINE as u32, "cmd_line_ptr");
        let entries = ram.map.entries();
        assert_eq!(zp[0x1e8] as usize, entries.len(), "e820_entries");
        let first = 0x2d0;
        assert_eq!(u32_at(first + 16), E820_RAM, "the first e820 entry is RAM at 0");
        assert_eq!(u32_at(first + 8) as u64, entries[0].len);
        let mut cmdline = [0u8; 14];
        assert!(ram.read_phys(CMDLINE, &mut cmdline));
        assert_eq!(&cmdline, b"console=ttyS0\0");
        let mut kernel = [0u8; 16];
        assert!(ram.read_phys(KERNEL_LOAD, &mut kernel) && kernel == [0x90; 16]);
    }

    #[test]
    fn linux_says_its_version_other_boot_protocol_images_do_not() {
        let ram = GuestRam::new(64 << 20).unwrap();
        let plain = load(Path::new("k"), &image(), &ram, "", None).unwrap();
        assert_eq!(plain.kernel_version, None, "no version string: not Linux's command line");
        let mut linux = image();
        linux[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        linux[0x300..0x300 + 16].copy_from_slice(b"6.1.0-kvmscope\0\0");
        let setup = load(Path::new("k"), &linux, &ram, "", None).unwrap();
        assert_eq!(setup.kernel_version.as_deref(), Some("6.1.0-kvmscope"));
        let mut other = image();
        other[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        other[0x300..0x308].copy_from_slice(b"memtest\0");
        assert_eq!(load(Path::new("k"), &other, &ram, "", None).unwrap().kernel_version, None);
    }

    #[test]
    fn a_command_line_longer_than_its_page_is_refused() {
        let ram = GuestRam::new(64 << 20).unwrap();
        let err = load(Path::new("k"), &image(), &ram, &"x".repeat(CMDLINE_MAX), None).unwrap_err();
        assert!(err.to_string().contains("command line of 4096 bytes is too long"), "{err}");
    }
}

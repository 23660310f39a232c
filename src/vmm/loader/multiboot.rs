//! Multiboot (version 1, specification 0.6.96) kernels, loaded the way QEMU's `-kernel` does: ELF32
//! segments, or the a.out-kludge addresses when header flag 16 is set; then the information structure
//! (memory sizes, memory map, command line, boot loader name) after the kernel, and entry in flat
//! 32-bit protected mode with EAX = 0x2BADB002 and EBX = the structure's address.

use std::path::Path;

use super::elf::{self, ElfClass};
use super::{BootMode, BootSetup, LoaderError, invalid, place};
use crate::vmm::memory::{GuestRam, RegionKind};

/// The header magic a kernel carries.
pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// What the boot loader leaves in EAX.
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// The header must lie within this many bytes of the file's start.
const SEARCH_LEN: usize = 8192;
/// Header flag: the a.out-kludge address fields are valid.
const FLAG_AOUT_KLUDGE: u32 = 1 << 16;
/// Required-feature bits kvmscope honours: page-align modules, memory info, video mode (left in
/// text mode, as QEMU does).
const KNOWN_REQUIRED: u32 = 0b111;

/// Information-structure flags kvmscope fills in.
const INFO_MEMORY: u32 = 1 << 0;
const INFO_CMDLINE: u32 = 1 << 2;
const INFO_MODS: u32 = 1 << 3;
const INFO_MMAP: u32 = 1 << 6;
const INFO_LOADER_NAME: u32 = 1 << 9;
/// Bytes reserved for the fixed part of the information structure (through the framebuffer fields).
const INFO_FIXED_LEN: usize = 128;

/// A multiboot header found in an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// File offset of the header.
    pub offset: usize,
    pub flags: u32,
    pub header_addr: u32,
    pub load_addr: u32,
    pub load_end_addr: u32,
    pub bss_end_addr: u32,
    pub entry_addr: u32,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Finds a valid multiboot header (magic and checksum) in the first 8 KiB, 4-byte aligned.
pub fn find_header(b: &[u8]) -> Option<Header> {
    let limit = b.len().min(SEARCH_LEN);
    (0..limit.saturating_sub(11)).step_by(4).find_map(|off| {
        let (magic, flags, sum) = (u32_at(b, off), u32_at(b, off + 4), u32_at(b, off + 8));
        if magic != HEADER_MAGIC || magic.wrapping_add(flags).wrapping_add(sum) != 0 {
            return None;
        }
        Some(Header {
            offset: off,
            flags,
            header_addr: u32_at(b, off + 12),
            load_addr: u32_at(b, off + 16),
            load_end_addr: u32_at(b, off + 20),
            bss_end_addr: u32_at(b, off + 24),
            entry_addr: u32_at(b, off + 28),
        })
    })
}

/// Loads a multiboot kernel and writes its information structure.
pub fn load(path: &Path, bytes: &[u8], h: Header, ram: &GuestRam, cmdline: &str) -> Result<BootSetup, LoaderError> {
    let unknown = h.flags & 0xffff & !KNOWN_REQUIRED;
    if unknown != 0 {
        return Err(invalid(
            path,
            format!("multiboot header requires features {unknown:#x} that kvmscope does not provide"),
        ));
    }
    let (loaded, entry) = if h.flags & FLAG_AOUT_KLUDGE != 0 {
        load_aout_kludge(path, bytes, &h, ram)?
    } else {
        let parsed = elf::parse(bytes, &|what| invalid(path, what))?;
        if parsed.class != ElfClass::Elf32 {
            return Err(invalid(
                path,
                "is a 64-bit ELF with a multiboot header but without the a.out-kludge addresses (flag 16); \
                 multiboot loads 32-bit ELF files"
                    .into(),
            ));
        }
        let mut loaded = Vec::new();
        for s in &parsed.segments {
            let data = &bytes[s.offset as usize..(s.offset + s.filesz) as usize];
            loaded.push(place(path, ram, s.paddr, data, s.memsz, true)?);
        }
        (loaded, parsed.virt_to_phys(parsed.entry))
    };
    if !loaded.iter().any(|&(s, e)| (s..e).contains(&entry)) {
        return Err(invalid(path, format!("multiboot entry point {entry:#x} is outside the loaded image")));
    }
    let kernel_end = loaded.iter().map(|r| r.1).max().unwrap_or(0);
    let info_addr = (kernel_end + 0xfff) & !0xfff;
    let name = path.display().to_string();
    let full_cmdline = if cmdline.is_empty() { name } else { format!("{name} {cmdline}") };
    let info = build_info(info_addr, ram, &full_cmdline);
    if info_addr + info.len() as u64 > u32::MAX as u64 || !ram.write(info_addr, &info) {
        return Err(invalid(
            path,
            format!("no room for the multiboot information after the kernel at {info_addr:#x}; raise --mem"),
        ));
    }
    Ok(BootSetup {
        format: "multiboot",
        mode: BootMode::Protected,
        entry,
        rax: BOOTLOADER_MAGIC as u64,
        rbx: info_addr,
        rsi: 0,
        loaded,
        kernel_version: None,
    })
}

/// Loads by the header's own addresses (flag 16): the file from the header back to `load_addr`,
/// through `load_end_addr` (or the file's end), then zeroes up to `bss_end_addr`.
fn load_aout_kludge(
    path: &Path,
    bytes: &[u8],
    h: &Header,
    ram: &GuestRam,
) -> Result<(Vec<(u64, u64)>, u64), LoaderError> {
    let bad = |what: String| invalid(path, format!("multiboot header: {what}"));
    if bytes.len() < h.offset + 32 {
        return Err(bad("the address fields lie past the end of the file".into()));
    }
    if h.header_addr < h.load_addr {
        return Err(bad(format!("header_addr {:#x} is below load_addr {:#x}", h.header_addr, h.load_addr)));
    }
    let back = (h.header_addr - h.load_addr) as usize;
    let file_start = h
        .offset
        .checked_sub(back)
        .ok_or_else(|| bad(format!("load_addr {:#x} lies before the start of the file", h.load_addr)))?;
    let load_len = if h.load_end_addr == 0 {
        bytes.len() - file_start
    } else {
        if h.load_end_addr <= h.load_addr {
            return Err(bad(format!("load_end_addr {:#x} is not above load_addr {:#x}", h.load_end_addr, h.load_addr)));
        }
        (h.load_end_addr - h.load_addr) as usize
    };
    if file_start + load_len > bytes.len() {
        return Err(bad(format!("load_end_addr {:#x} lies past the end of the file", h.load_end_addr)));
    }
    let load_end = h.load_addr as u64 + load_len as u64;
    let mem_end = if h.bss_end_addr == 0 {
        load_end
    } else if (h.bss_end_addr as u64) < load_end {
        return Err(bad(format!(
            "bss_end_addr {:#x} is below the end of the loaded image {load_end:#x}",
            h.bss_end_addr
        )));
    } else {
        h.bss_end_addr as u64
    };
    let range = place(
        path,
        ram,
        h.load_addr as u64,
        &bytes[file_start..file_start + load_len],
        mem_end - h.load_addr as u64,
        true,
    )?;
    Ok((vec![range], h.entry_addr as u64))
}

/// Builds the multiboot information structure for address `at`: fixed part, then the command line,
/// the boot loader name and the memory map.
pub fn build_info(at: u64, ram: &GuestRam, cmdline: &str) -> Vec<u8> {
    let mut info = vec![0u8; INFO_FIXED_LEN];
    let put = |info: &mut Vec<u8>, off: usize, v: u32| info[off..off + 4].copy_from_slice(&v.to_le_bytes());
    let append = |info: &mut Vec<u8>, data: &[u8]| {
        let addr = at + info.len() as u64;
        info.extend_from_slice(data);
        while info.len() % 4 != 0 {
            info.push(0);
        }
        addr as u32
    };
    let mut c = cmdline.as_bytes().to_vec();
    c.push(0);
    let cmd_addr = append(&mut info, &c);
    let name = format!("kvmscope {}\0", env!("CARGO_PKG_VERSION"));
    let name_addr = append(&mut info, name.as_bytes());
    let mut mmap = Vec::new();
    for e in ram.map.entries() {
        mmap.extend_from_slice(&20u32.to_le_bytes());
        mmap.extend_from_slice(&e.start.to_le_bytes());
        mmap.extend_from_slice(&e.len.to_le_bytes());
        let kind: u32 = if e.kind == RegionKind::Ram { 1 } else { 2 };
        mmap.extend_from_slice(&kind.to_le_bytes());
    }
    let mmap_len = mmap.len() as u32;
    let mmap_addr = append(&mut info, &mmap);
    let mem_lower = (crate::vmm::memory::LOW_RAM_END / 1024) as u32;
    let mem_upper = ((ram.map.low_ram_end() - crate::vmm::memory::HIGH_RAM_START) / 1024) as u32;
    put(&mut info, 0, INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MMAP | INFO_LOADER_NAME);
    put(&mut info, 4, mem_lower);
    put(&mut info, 8, mem_upper);
    put(&mut info, 16, cmd_addr);
    put(&mut info, 20, 0); // mods_count
    put(&mut info, 24, 0); // mods_addr
    put(&mut info, 44, mmap_len);
    put(&mut info, 48, mmap_addr);
    put(&mut info, 64, name_addr);
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::loader::elf::tests::build_elf;

    fn header(flags: u32, addrs: [u32; 5]) -> Vec<u8> {
        let mut h = Vec::new();
        for v in [HEADER_MAGIC, flags, 0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(flags)] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        for v in addrs {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h
    }

    fn ram() -> GuestRam {
        GuestRam::new(16 << 20).unwrap()
    }

    fn load_bytes(bytes: &[u8]) -> Result<BootSetup, LoaderError> {
        let h = find_header(bytes).expect("header");
        load(Path::new("k.elf"), bytes, h, &ram(), "console=ttyS0")
    }

    #[test]
    fn header_needs_magic_checksum_and_alignment() {
        let mut b = vec![0u8; 64];
        b[8..20].copy_from_slice(&header(0, [0; 5])[..12]);
        assert_eq!(find_header(&b).unwrap().offset, 8);
        b[16] ^= 1; // break the checksum
        assert!(find_header(&b).is_none());
        let mut unaligned = vec![0u8; 64];
        unaligned[6..18].copy_from_slice(&header(0, [0; 5])[..12]);
        assert!(find_header(&unaligned).is_none());
        let mut late = vec![0u8; 9000];
        late[8192..8204].copy_from_slice(&header(0, [0; 5])[..12]);
        assert!(find_header(&late).is_none());
    }

    #[test]
    fn elf32_kernel_loads_with_info_after_it() {
        let mut code = header(0x3, [0; 5])[..12].to_vec();
        code.extend_from_slice(&[0xf4; 4]);
        let b = build_elf(ElfClass::Elf32, 0x10_000c, &[(0x10_0000, &code, 0x3000)]);
        let ram = ram();
        let h = find_header(&b).unwrap();
        let boot = load(Path::new("k.elf"), &b, h, &ram, "x=1").unwrap();
        assert_eq!((boot.format, boot.entry, boot.rax), ("multiboot", 0x10_000c, 0x2bad_b002));
        assert_eq!(boot.rbx, 0x10_3000);
        use crate::decode::PhysRead;
        let flags = ram.read_u32(boot.rbx).unwrap();
        assert_eq!(flags & (INFO_MEMORY | INFO_MMAP | INFO_CMDLINE), INFO_MEMORY | INFO_MMAP | INFO_CMDLINE);
        assert_eq!(ram.read_u32(boot.rbx + 4).unwrap(), 639);
        assert_eq!(ram.read_u32(boot.rbx + 8).unwrap(), (15 << 20) / 1024);
        let cmd = ram.read_u32(boot.rbx + 16).unwrap() as u64;
        let mut s = [0u8; 9];
        ram.read_phys(cmd, &mut s);
        assert_eq!(&s, b"k.elf x=1");
        // bss is zeroed
        assert_eq!(ram.read_u32(0x10_2000).unwrap(), 0);
    }

    #[test]
    fn aout_kludge_loads_by_header_addresses() {
        // File: header at offset 0 describing load at 0x200000, 32 bytes of file, bss to 0x201000.
        let mut b = header(FLAG_AOUT_KLUDGE, [0x20_0000, 0x20_0000, 0x20_0040, 0x20_1000, 0x20_0020]);
        b.resize(0x40, 0xf4);
        let boot = load_bytes(&b).unwrap();
        assert_eq!(boot.entry, 0x20_0020);
        assert_eq!(boot.loaded, vec![(0x20_0000, 0x20_1000)]);
    }

    #[test]
    fn malformed_kludge_fields_are_refused() {
        let cases: [([u32; 5], &str); 5] = [
            ([0x20_0000, 0x20_0010, 0, 0, 0x20_0000], "below load_addr"),
            ([0x20_0010, 0x20_0000, 0, 0, 0x20_0000], "before the start of the file"),
            ([0x20_0000, 0x20_0000, 0x20_9000, 0, 0x20_0000], "past the end of the file"),
            ([0x20_0000, 0x20_0000, 0x20_0020, 0x20_0010, 0x20_0000], "bss_end_addr"),
            ([0x20_0000, 0x20_0000, 0, 0, 0x30_0000], "entry point"),
        ];
        for (addrs, want) in cases {
            let mut b = header(FLAG_AOUT_KLUDGE, addrs);
            b.resize(0x40, 0x90);
            let e = load_bytes(&b).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("k.elf"), "{addrs:x?}: {e}");
        }
    }

    #[test]
    fn unknown_required_features_and_outside_ram_are_refused() {
        let mut b = header(FLAG_AOUT_KLUDGE | 0x8, [0x20_0000, 0x20_0000, 0, 0, 0x20_0000]);
        b.resize(0x40, 0x90);
        assert!(load_bytes(&b).unwrap_err().to_string().contains("requires features 0x8"));
        let mut b = header(FLAG_AOUT_KLUDGE, [0x4000_0000, 0x4000_0000, 0, 0, 0x4000_0000]);
        b.resize(0x40, 0x90);
        assert!(load_bytes(&b).unwrap_err().to_string().contains("outside guest RAM"));
        let mut b = header(FLAG_AOUT_KLUDGE, [0x1000, 0x1000, 0, 0, 0x1000]);
        b.resize(0x40, 0x90);
        assert!(load_bytes(&b).unwrap_err().to_string().contains("boot area"));
    }
}

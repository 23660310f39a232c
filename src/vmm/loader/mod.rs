//! Boot loaders: recognise a kernel image by its content and put it in guest memory.
//!
//! Each format says where it loaded what, which CPU mode to enter, and the entry registers; the CPU
//! set-up itself lives in `vmm::boot_cpu`.

pub mod bzimage;
pub mod elf;
pub mod elf64;
pub mod multiboot;
pub mod pvh;
pub mod raw;

use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::layout::{BOOT_AREA_END, BOOT_AREA_START};
use super::memory::GuestRam;

/// Why an image cannot be booted. Every message names the file, and what it was given as.
#[derive(Debug, Error)]
pub enum LoaderError {
    /// The file could not be read.
    #[error("{noun} {path}: cannot read it: {source}")]
    Read { noun: &'static str, path: PathBuf, source: std::io::Error },
    /// The file is not what it claims, or asks for something kvmscope cannot give.
    #[error("{noun} {path}: {what}")]
    Invalid { noun: &'static str, path: PathBuf, what: String },
}

/// What a kernel image is called in messages.
pub const KERNEL: &str = "kernel image";
/// What a raw image (`--image`) is called in messages.
pub const RAW: &str = "raw image (--image)";
/// What an initrd is called in messages.
pub const INITRD: &str = "initrd";

impl LoaderError {
    /// The same error, calling the file `noun` (a raw image, an initrd).
    pub fn named(self, noun: &'static str) -> Self {
        match self {
            LoaderError::Read { path, source, .. } => LoaderError::Read { noun, path, source },
            LoaderError::Invalid { path, what, .. } => LoaderError::Invalid { noun, path, what },
        }
    }
}

/// The CPU mode a guest starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BootMode {
    /// 16-bit real mode.
    Real,
    /// 32-bit flat protected mode, paging off.
    Protected,
    /// 64-bit long mode with identity-mapped page tables.
    Long,
}

/// Where and how a loaded image starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSetup {
    /// What the image was recognised as: "multiboot", "elf64", "raw".
    pub format: &'static str,
    pub mode: BootMode,
    /// Physical entry address.
    pub entry: u64,
    /// Initial EAX/RAX (multiboot: the magic 0x2BADB002).
    pub rax: u64,
    /// Initial RSI (Linux boot protocol: the zero page).
    pub rsi: u64,
    /// Initial EBX/RBX (multiboot: the information structure's address).
    pub rbx: u64,
    /// Ranges of guest-physical memory the image occupies, as (start, end).
    pub loaded: Vec<(u64, u64)>,
    /// A boot-protocol image's kernel version string, where it has one (Linux does; memtest86+
    /// and other boot-protocol images do not).
    pub kernel_version: Option<String>,
}

impl BootSetup {
    /// Booted by a Linux protocol (PVH or the bzImage boot protocol): the guest gets the PC a Linux
    /// kernel expects (in-kernel irqchip and PIT, MP and ACPI tables, i8042, virtio on its command
    /// line). memtest86+ comes this way too; only a kernel version string says it is Linux itself.
    pub fn is_linux(&self) -> bool {
        matches!(self.format, "pvh" | "bzimage")
    }
}

/// Reads an image file whole, refusing one larger than guest RAM before reading it.
pub fn read_image(path: &Path, ram: &GuestRam) -> Result<Vec<u8>, LoaderError> {
    let read_err = |source| LoaderError::Read { noun: KERNEL, path: path.to_path_buf(), source };
    // Opened without blocking: a FIFO with no writer would wait in open forever.
    let file = match crate::files::open_regular(path, "image") {
        Ok(f) => f,
        Err(crate::files::FileError::NotRegular { kind, .. }) => {
            return Err(invalid(path, format!("is {kind}, not an image file")));
        }
        Err(crate::files::FileError::Io { source, .. }) => return Err(read_err(source)),
        Err(e) => return Err(invalid(path, e.to_string())),
    };
    let meta = file.metadata().map_err(read_err)?;
    let size = ram.map.size();
    if meta.len() > size {
        return Err(invalid(
            path,
            format!("is {} bytes, larger than guest RAM ({size} bytes); raise --mem", meta.len()),
        ));
    }
    // Never more than guest RAM, even if the file grows while it is read.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(size + 1).read_to_end(&mut bytes).map_err(read_err)?;
    if bytes.len() as u64 > size {
        return Err(invalid(path, format!("grew past the size of guest RAM ({size} bytes) while it was read")));
    }
    if bytes.is_empty() {
        return Err(invalid(path, "is empty".into()));
    }
    Ok(bytes)
}

/// Builds an `Invalid` error for `path`.
pub fn invalid(path: &Path, what: String) -> LoaderError {
    LoaderError::Invalid { noun: KERNEL, path: path.to_path_buf(), what }
}

/// Loads a kernel recognised by its content: multiboot (ELF32 or a.out kludge), an ELF with a PVH
/// entry note (a Linux vmlinux), or another 64-bit ELF.
pub fn load_kernel(
    path: &Path,
    ram: &GuestRam,
    cmdline: &str,
    initrd: Option<&Path>,
) -> Result<BootSetup, LoaderError> {
    let bytes = read_image(path, ram)?;
    load_kernel_bytes(path, &bytes, ram, cmdline, initrd)
}

/// Loads a kernel image already in memory; `path` names it in messages and the multiboot command line.
pub fn load_kernel_bytes(
    path: &Path,
    bytes: &[u8],
    ram: &GuestRam,
    cmdline: &str,
    initrd: Option<&Path>,
) -> Result<BootSetup, LoaderError> {
    if bzimage::is_bzimage(bytes) {
        return bzimage::load(path, bytes, ram, cmdline, initrd);
    }
    if initrd.is_some() && multiboot::find_header(bytes).is_some() {
        return Err(invalid(path, "--initrd is for Linux kernels; this is a multiboot kernel".into()));
    }
    if let Some(header) = multiboot::find_header(bytes) {
        return multiboot::load(path, bytes, header, ram, cmdline);
    }
    if elf::is_elf(bytes) {
        let bad = |what| invalid(path, what);
        let parsed = elf::parse(bytes, &bad)?;
        if let Some(entry) = parsed.pvh_entry(bytes) {
            return pvh::load(path, bytes, &parsed, entry, ram, cmdline, initrd);
        }
        if initrd.is_some() {
            return Err(invalid(path, "--initrd needs a Linux kernel (a vmlinux with a PVH entry note)".into()));
        }
        return match parsed.class {
            elf::ElfClass::Elf64 => elf64::load(path, bytes, &parsed, ram),
            elf::ElfClass::Elf32 => Err(invalid(
                path,
                "is a 32-bit ELF without a multiboot header; kvmscope boots 32-bit kernels by multiboot".into(),
            )),
        };
    }
    Err(invalid(
        path,
        format!(
            "not a multiboot kernel, an ELF file or a Linux image (it starts with {}); for a raw binary use \
             --image with --load, --entry and --mode",
            hex_prefix(bytes)
        ),
    ))
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// Copies a segment into guest RAM and zeroes its tail, after checking it lies in RAM and stays out
/// of the boot area when the mode needs it.
pub fn place(
    path: &Path,
    ram: &GuestRam,
    addr: u64,
    data: &[u8],
    memsz: u64,
    keep_out_of_boot_area: bool,
) -> Result<(u64, u64), LoaderError> {
    let end = addr.checked_add(memsz).ok_or_else(|| invalid(path, format!("segment at {addr:#x} overflows")))?;
    if !ram.map.is_ram(addr, memsz) {
        return Err(invalid(
            path,
            format!("loads {addr:#x}-{end:#x}, outside guest RAM ({}); raise --mem or relink", ram.map),
        ));
    }
    if keep_out_of_boot_area && addr < BOOT_AREA_END && end > BOOT_AREA_START {
        return Err(invalid(
            path,
            format!(
                "loads {addr:#x}-{end:#x}, over kvmscope's boot area {BOOT_AREA_START:#x}-{BOOT_AREA_END:#x} \
                 (GDT, page tables, stack)"
            ),
        ));
    }
    let zeros = vec![0u8; (memsz as usize).saturating_sub(data.len())];
    if !ram.write(addr, data) || !ram.write(addr + data.len() as u64, &zeros) {
        return Err(invalid(path, format!("cannot write {addr:#x}-{end:#x} into guest RAM")));
    }
    Ok((addr, end))
}

/// Puts an initrd at the top of RAM below 4 GiB, page aligned, above `kernel_end`; its range.
pub fn place_initrd(initrd: &Path, ram: &GuestRam, kernel_end: u64) -> Result<(u64, u64), LoaderError> {
    let data = read_image(initrd, ram).map_err(|e| e.named(INITRD))?;
    let top = ram.map.low_ram_end().min(1 << 32);
    let at = top.checked_sub(data.len() as u64).map(|a| a & !0xfff).filter(|a| *a >= kernel_end).ok_or_else(|| {
        invalid(initrd, format!("initrd of {} bytes does not fit above the kernel; raise --mem", data.len()))
    })?;
    place(initrd, ram, at, &data, data.len() as u64, true)
}

/// Writes a NUL-terminated kernel command line at `addr`, refusing one of `max` bytes or more.
pub fn write_cmdline(ram: &GuestRam, path: &Path, addr: u64, max: usize, cmdline: &str) -> Result<(), LoaderError> {
    if cmdline.len() >= max {
        return Err(invalid(path, format!("command line of {} bytes is too long (limit {})", cmdline.len(), max - 1)));
    }
    let checked = linux_loader::cmdline::Cmdline::try_from(cmdline, max)
        .and_then(|c| c.as_cstring())
        .map_err(|e| invalid(path, format!("command line {cmdline:?}: {e}")))?;
    if !ram.write(addr, checked.as_bytes_with_nul()) {
        return Err(invalid(path, format!("guest RAM has no room for the command line at {addr:#x}")));
    }
    Ok(())
}

/// E820 (and PVH memory map) region types.
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

/// A boot-protocol structure as the guest reads it (linux-loader's, laid out as the protocol says).
#[derive(Clone, Copy, Default)]
#[repr(transparent)]
pub struct BootStruct<T>(pub T);

// SAFETY: only instantiated with linux-loader's `#[repr(C)]` boot-protocol structures, which are
// plain integers and arrays of them: any bytes are a valid value, and they have no padding that
// the protocol does not define.
unsafe impl<T: Copy + Send + Sync + 'static> vm_memory::ByteValued for BootStruct<T> where T: BootProtocol {}

/// The linux-loader structures kvmscope writes into guest memory.
pub trait BootProtocol {}
impl BootProtocol for linux_loader::loader::bootparam::boot_params {}
impl BootProtocol for linux_loader::loader::elf::start_info::hvm_start_info {}
impl BootProtocol for linux_loader::loader::elf::start_info::hvm_modlist_entry {}
impl BootProtocol for linux_loader::loader::elf::start_info::hvm_memmap_table_entry {}

/// Writes a boot-protocol structure at guest-physical `addr`.
pub fn write_boot_struct<T: BootProtocol + Copy + Send + Sync + 'static>(
    ram: &GuestRam,
    path: &Path,
    addr: u64,
    value: T,
) -> Result<(), LoaderError> {
    use vm_memory::ByteValued;
    if ram.write(addr, BootStruct(value).as_slice()) {
        Ok(())
    } else {
        Err(invalid(path, format!("guest RAM has no room for the boot structures at {addr:#x}")))
    }
}

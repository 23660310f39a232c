//! Guest memory: the layout (RAM, the MMIO hole below 4 GiB, the boot area) and the mapped RAM.
//!
//! One `MemoryMap` says where RAM is; the loaders, the multiboot memory map, the device bus and the
//! views all read it from here.

use std::fmt;

use std::ops::Deref;
use thiserror::Error;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::decode::PhysRead;

/// Start of the hole below 4 GiB that RAM leaves for device MMIO.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End of the MMIO hole (4 GiB).
pub const MMIO_HOLE_END: u64 = 1 << 32;
/// Top of conventional memory; the EBDA and BIOS area follow and are reported reserved.
pub const LOW_RAM_END: u64 = 0x9_fc00;
/// Start of extended memory (1 MiB).
pub const HIGH_RAM_START: u64 = 0x10_0000;
/// Smallest guest kvmscope builds (the boot area plus room for a kernel at 1 MiB).
pub const MIN_MEM: u64 = 2 << 20;
/// Largest guest kvmscope builds.
pub const MAX_MEM: u64 = 1 << 40;

/// Errors building guest memory.
#[derive(Debug, Error)]
pub enum MemoryError {
    /// The `--mem` value could not be read.
    #[error("memory size {0:?}: expected a number with an optional K, M, G or T suffix (e.g. 256M)")]
    BadSize(String),
    /// The size is outside what kvmscope builds.
    #[error("memory size {} ({size} bytes): must be between 2M and 1T", human_size(*.size))]
    OutOfRange { size: u64 },
    /// The size is not a whole number of pages (KVM maps memory in pages).
    #[error("memory size {} ({size} bytes): must be a whole number of 4K pages", human_size(*.size))]
    NotPages { size: u64 },
    /// The host refused the mapping.
    #[error("cannot map {size} bytes of guest memory: {reason}")]
    Map { size: u64, reason: String },
}

/// A size as `--mem` would take it: `64K`, `256M`, `1G`, or bytes when no suffix fits.
pub fn human_size(bytes: u64) -> String {
    for (shift, suffix) in [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// An amount of data for a person: bytes below a KiB, else KiB, MiB or GiB with one decimal
/// (`27.6 KiB`) — always with its unit.
pub fn data_size(bytes: u64) -> String {
    match bytes {
        b if b < 1 << 10 => format!("{b} bytes"),
        b if b < 1 << 20 => format!("{:.1} KiB", b as f64 / 1024.0),
        b if b < 1 << 30 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
    }
}

/// Parses `--mem`: a size kvmscope can build, in whole pages.
pub fn parse_mem(text: &str) -> Result<u64, MemoryError> {
    let size = parse_size(text)?;
    if !(MIN_MEM..=MAX_MEM).contains(&size) {
        return Err(MemoryError::OutOfRange { size });
    }
    if size % 4096 != 0 {
        return Err(MemoryError::NotPages { size });
    }
    Ok(size)
}

/// Parses a size like `256M`, `1G`, `512KiB` or `4096`.
pub fn parse_size(text: &str) -> Result<u64, MemoryError> {
    let bad = || MemoryError::BadSize(text.to_string());
    let t = text.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (digits, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).ok_or_else(bad)
}

/// What an address range is used for, as the guest's memory map reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    /// Usable RAM.
    Ram,
    /// Backed or not, but not for the guest's allocator (EBDA, BIOS area, MMIO hole).
    Reserved,
}

/// One entry of the guest memory map (e820 / multiboot mmap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapEntry {
    pub start: u64,
    pub len: u64,
    pub kind: RegionKind,
}

impl MapEntry {
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// Where guest RAM is: one range below the MMIO hole and, for big guests, one above 4 GiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryMap {
    /// RAM ranges as (start, length), in address order.
    pub ram: Vec<(u64, u64)>,
}

impl MemoryMap {
    /// The layout for `size` bytes of RAM.
    pub fn new(size: u64) -> Result<Self, MemoryError> {
        if !(MIN_MEM..=MAX_MEM).contains(&size) {
            return Err(MemoryError::OutOfRange { size });
        }
        if size % 4096 != 0 {
            return Err(MemoryError::NotPages { size });
        }
        let low = size.min(MMIO_HOLE_START);
        let mut ram = vec![(0, low)];
        if size > low {
            ram.push((MMIO_HOLE_END, size - low));
        }
        Ok(Self { ram })
    }

    /// Total RAM in bytes.
    pub fn size(&self) -> u64 {
        self.ram.iter().map(|r| r.1).sum()
    }

    /// End of RAM below 4 GiB.
    pub fn low_ram_end(&self) -> u64 {
        self.ram[0].1
    }

    /// Whether `[start, start + len)` lies entirely in one RAM range.
    pub fn is_ram(&self, start: u64, len: u64) -> bool {
        let Some(end) = start.checked_add(len) else { return false };
        self.ram.iter().any(|&(s, l)| start >= s && end <= s + l)
    }

    /// The memory map a firmware would report: low RAM, EBDA/BIOS reserved, extended RAM, the MMIO
    /// hole reserved, and RAM above 4 GiB.
    pub fn entries(&self) -> Vec<MapEntry> {
        let mut v = vec![
            MapEntry { start: 0, len: LOW_RAM_END, kind: RegionKind::Ram },
            MapEntry { start: LOW_RAM_END, len: HIGH_RAM_START - LOW_RAM_END, kind: RegionKind::Reserved },
            MapEntry { start: HIGH_RAM_START, len: self.low_ram_end() - HIGH_RAM_START, kind: RegionKind::Ram },
            MapEntry { start: MMIO_HOLE_START, len: MMIO_HOLE_END - MMIO_HOLE_START, kind: RegionKind::Reserved },
        ];
        if let Some(&(start, len)) = self.ram.get(1) {
            v.push(MapEntry { start, len, kind: RegionKind::Ram });
        }
        v
    }
}

impl fmt::Display for MemoryMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(s, l)) in self.ram.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "RAM {s:#x}-{:#x}", s + l)?;
        }
        Ok(())
    }
}

/// A page of guest RAM.
const PAGE: usize = 4096;

/// Guest memory as the VMM's own code reads and writes it: vm-memory's mmap backend with a dirty
/// bitmap, so that every write kvmscope makes for the guest (a virtio device's DMA, a used ring,
/// the debugger) is known beside those KVM logs for the guest itself.
pub type Mem = vm_memory::GuestMemoryMmap<vm_memory::bitmap::AtomicBitmap>;

/// Guest RAM, mapped, with its layout. Clones share the mapping.
#[derive(Clone)]
pub struct GuestRam {
    pub mem: Mem,
    pub map: MemoryMap,
    /// The mapped ranges as (guest-physical, length, host address), for reads on the exit path.
    host: Vec<(u64, u64, u64)>,
}

impl GuestRam {
    /// Maps `size` bytes of RAM laid out as [`MemoryMap::new`] says.
    pub fn new(size: u64) -> Result<Self, MemoryError> {
        let map = MemoryMap::new(size)?;
        let ranges: Vec<(GuestAddress, usize)> = map.ram.iter().map(|&(s, l)| (GuestAddress(s), l as usize)).collect();
        let mem = Mem::from_ranges(&ranges).map_err(|e| MemoryError::Map { size, reason: e.to_string() })?;
        let host = mem.iter().map(|r| (r.start_addr().0, r.len(), r.as_ptr() as u64)).collect();
        Ok(Self { mem, map, host })
    }

    /// RAM ranges as (guest-physical, length, host address), for memory slots.
    pub fn host_ranges(&self) -> &[(u64, u64, u64)] {
        &self.host
    }

    /// RAM as (guest-physical, bytes) per range, to compare and copy pages in place.
    ///
    /// # Safety
    /// Nothing may write guest RAM while the slices live: every vCPU parked and the virtio
    /// workers settled (what taking and restoring a state arranges).
    pub unsafe fn slices(&self) -> Vec<(u64, &[u8])> {
        // SAFETY: each range stays mapped as long as `self`; the caller keeps writers away.
        self.host
            .iter()
            .map(|&(gpa, len, host)| (gpa, unsafe { std::slice::from_raw_parts(host as *const u8, len as usize) }))
            .collect()
    }

    /// RAM as (guest-physical, bytes) per range, to write pages in place.
    ///
    /// # Safety
    /// As [`GuestRam::slices`], and no other slice of this RAM may live meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slices_mut(&self) -> Vec<(u64, &mut [u8])> {
        // SAFETY: as in `slices`; the ranges do not overlap, so the slices are disjoint.
        self.host
            .iter()
            .map(|&(gpa, len, host)| (gpa, unsafe { std::slice::from_raw_parts_mut(host as *mut u8, len as usize) }))
            .collect()
    }

    /// A digest of RAM's bytes, equal for equal contents (a 64-bit hash of each page with its
    /// address, summed), reading `with` bytes in place of RAM's at their addresses (the guest's
    /// own bytes under kvmscope's int3s). Pages the host never gave memory are zeros and all-zero
    /// pages add nothing, so its cost follows what the guest touched, not the size of RAM.
    ///
    /// # Safety
    /// As [`GuestRam::slices`]: nothing writes guest RAM meanwhile (every vCPU parked).
    pub unsafe fn digest(&self, with: &[(u64, u8)]) -> u64 {
        use std::hash::Hasher;
        static ZEROS: [u8; PAGE] = [0; PAGE];
        let mut digest = 0u64;
        let mut copy = [0u8; PAGE];
        // SAFETY: the caller keeps writers away.
        for (&(_, len, host), (gpa, bytes)) in self.host.iter().zip(unsafe { self.slices() }) {
            let touched = crate::vmm::host_pages::touched_pages(host, len);
            for (i, page) in bytes.chunks_exact(PAGE).enumerate() {
                if touched.as_ref().is_some_and(|t| !t[i]) {
                    continue;
                }
                let at = gpa + (i * PAGE) as u64;
                let mut page = page;
                let fixes = || with.iter().filter(|(a, _)| *a >= at && a - at < PAGE as u64);
                if fixes().next().is_some() {
                    copy.copy_from_slice(page);
                    for &(addr, byte) in fixes() {
                        copy[(addr - at) as usize] = byte;
                    }
                    page = &copy;
                }
                // Compared and hashed by code built optimised even in a debug build (memcmp,
                // rustc-hash): a test's digest of 256 MiB takes milliseconds, not seconds.
                if page == ZEROS {
                    continue;
                }
                let mut h = rustc_hash::FxHasher::default();
                h.write(page);
                h.write_u64(at);
                digest = digest.wrapping_add(h.finish());
            }
        }
        digest
    }

    /// The guest-physical pages kvmscope itself wrote through [`GuestRam::mem`] since the last
    /// call (devices' DMA, used rings, the debugger's writes): the dirty log KVM keeps cannot see
    /// them. Writes through [`GuestRam::slices_mut`] are not among them (those put back a state).
    pub fn take_written(&self) -> Vec<u64> {
        let mut pages = Vec::new();
        for region in self.mem.iter() {
            let base = region.start_addr().0;
            for (w, word) in region.deref().bitmap().get_and_reset().into_iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    let b = bits.trailing_zeros() as u64;
                    pages.push(base + (w as u64 * 64 + b) * PAGE as u64);
                    bits &= bits - 1;
                }
            }
        }
        pages
    }

    /// Writes `data` at guest-physical `addr` (false when it does not fit in RAM).
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        self.map.is_ram(addr, data.len() as u64) && self.mem.write_slice(data, GuestAddress(addr)).is_ok()
    }
}

impl PhysRead for Mem {
    fn read_phys(&self, gpa: u64, buf: &mut [u8]) -> bool {
        self.read_slice(buf, GuestAddress(gpa)).is_ok()
    }
}

/// Copies `buf.len()` bytes from `src` with volatile reads (the guest may write them at any time):
/// aligned words where it can, bytes at the ends.
///
/// # Safety
/// `src .. src + buf.len()` must be readable.
unsafe fn read_volatile_into(src: *const u8, buf: &mut [u8]) {
    let (head, rest) = buf.split_at_mut(src.align_offset(8).min(buf.len()));
    let tail_at = head.len() + rest.len() / 8 * 8;
    let mut words = rest.chunks_exact_mut(8);
    // SAFETY: every address read lies in `src .. src + buf.len()`, as the caller promises; the
    // words start 8-aligned.
    unsafe {
        for (i, b) in head.iter_mut().enumerate() {
            *b = src.add(i).read_volatile();
        }
        let aligned = src.add(head.len()) as *const u64;
        for (i, word) in (&mut words).enumerate() {
            word.copy_from_slice(&aligned.add(i).read_volatile().to_ne_bytes());
        }
        for (i, b) in words.into_remainder().iter_mut().enumerate() {
            *b = src.add(tail_at + i).read_volatile();
        }
    }
}

/// Reads of at most this many bytes go as the aligned words that cover them (an instruction, a
/// page-table entry: the exit path's reads).
const SMALL_READ: usize = 16;

/// Copies a small `buf` (at most [`SMALL_READ`] bytes) from `src` as the aligned words that hold
/// it, read volatile: at most three loads, where bytes one by one at the ends took up to fifteen.
///
/// # Safety
/// Every aligned 8-byte word holding a byte of `src .. src + buf.len()` must be readable.
unsafe fn read_words_into(src: *const u8, buf: &mut [u8]) {
    let skip = src as usize & 7;
    let first = src.wrapping_sub(skip) as *const u64;
    let mut bytes = [0u8; SMALL_READ + 8];
    for (i, word) in bytes.chunks_exact_mut(8).take((skip + buf.len()).div_ceil(8)).enumerate() {
        // SAFETY: word `i` holds a byte of the range, which the caller promises readable.
        word.copy_from_slice(&unsafe { first.add(i).read_volatile() }.to_ne_bytes());
    }
    buf.copy_from_slice(&bytes[skip..skip + buf.len()]);
}

impl PhysRead for GuestRam {
    /// Straight from the mapping (the exit path reads code and page tables on every exit), through
    /// vm-memory only for a read that spans two ranges.
    fn read_phys(&self, gpa: u64, buf: &mut [u8]) -> bool {
        let Some(&(start, len, host)) = self.host.iter().find(|(s, l, _)| gpa >= *s && gpa - s < *l) else {
            return false;
        };
        let offset = gpa - start;
        let end = offset + buf.len() as u64;
        if end > len {
            return self.mem.read_phys(gpa, buf);
        }
        let src = (host + offset) as *const u8;
        // SAFETY: `host + offset .. + buf.len()` lies inside a range mapped by `self.mem`, which
        // this `GuestRam` keeps mapped; for a small read, so do the aligned words around it (the
        // range starts 8-aligned, being mapped, and the last word ends inside it).
        unsafe {
            if buf.len() <= SMALL_READ && end.next_multiple_of(8) <= len {
                read_words_into(src, buf);
            } else {
                read_volatile_into(src, buf);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vmms_own_writes_are_known_once() {
        let ram = GuestRam::new(4 << 20).unwrap();
        assert!(ram.take_written().is_empty());
        assert!(ram.write(0x1ffe, &[1, 2, 3, 4]));
        assert!(ram.write(0x30_0000, &[5]));
        assert_eq!(ram.take_written(), [0x1000, 0x2000, 0x30_0000]);
        assert!(ram.take_written().is_empty(), "read and reset");
        // A clone (as a virtio device holds) shares the log.
        let mem = ram.mem.clone();
        vm_memory::Bytes::write_slice(&mem, &[9], GuestAddress(0x5000)).unwrap();
        assert_eq!(ram.take_written(), [0x5000]);
    }

    #[test]
    fn mem_sizes_are_checked_and_said_as_given() {
        assert_eq!(parse_mem("256M").unwrap(), 256 << 20);
        let small = parse_mem("64K").unwrap_err().to_string();
        assert_eq!(small, "memory size 64K (65536 bytes): must be between 2M and 1T");
        let odd = parse_mem("4097K").unwrap_err().to_string();
        assert!(odd.contains("must be a whole number of 4K pages"), "{odd}");
        assert_eq!(human_size(3 << 30), "3G");
        assert_eq!(human_size(1000), "1000");
    }

    #[test]
    fn reads_at_every_alignment_and_length_return_the_bytes_written() {
        let ram = GuestRam::new(2 << 20).unwrap();
        let pattern: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37) ^ 0x5a).collect();
        assert!(ram.write(0x1000, &pattern));
        for start in 0..16 {
            for len in 0..=40 {
                let mut buf = vec![0u8; len];
                assert!(ram.read_phys(0x1000 + start as u64, &mut buf));
                assert_eq!(buf, pattern[start..start + len], "at +{start}, {len} bytes");
            }
        }
        // The last bytes of RAM, as the aligned words around them must not go past its end.
        let end = 2 << 20;
        assert!(ram.write(end - 13, &pattern[..13]));
        for len in 1..=13 {
            let mut buf = vec![0u8; len];
            assert!(ram.read_phys(end - len as u64, &mut buf));
            assert_eq!(buf, pattern[13 - len..13], "the last {len} bytes");
        }
        let mut beyond = [0u8; 8];
        assert!(!ram.read_phys(4 << 20, &mut beyond), "outside RAM");
        assert!(!ram.read_phys(end - 4, &mut beyond), "across the end of RAM");
    }

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert!(MemoryMap::new(1 << 20).is_err());
    }

    #[test]
    fn small_guest_has_one_ram_range_and_a_hole() {
        let m = MemoryMap::new(256 << 20).unwrap();
        assert_eq!(m.ram, vec![(0, 256 << 20)]);
        assert!(m.is_ram(0x10_0000, 0x1000));
        assert!(!m.is_ram((256 << 20) - 1, 2));
        assert!(!m.is_ram(u64::MAX, 2));
        let e = m.entries();
        assert_eq!(e[2], MapEntry { start: 0x10_0000, len: (256 << 20) - 0x10_0000, kind: RegionKind::Ram });
        assert_eq!(e.len(), 4);
    }

    #[test]
    fn big_guest_continues_above_4g() {
        let m = MemoryMap::new(4 << 30).unwrap();
        assert_eq!(m.ram, vec![(0, MMIO_HOLE_START), (MMIO_HOLE_END, (4 << 30) - MMIO_HOLE_START)]);
        assert_eq!(m.size(), 4 << 30);
        assert!(!m.is_ram(MMIO_HOLE_START, 1));
        assert_eq!(m.entries().last().unwrap().start, MMIO_HOLE_END);
    }
}

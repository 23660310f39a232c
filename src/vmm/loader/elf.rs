//! A strict reader of ELF32/ELF64 executables: the header and the loadable segments, every offset
//! checked against the file.

use super::LoaderError;

/// ELF class: 32- or 64-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfClass {
    Elf32,
    Elf64,
}

/// One `PT_LOAD` segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Offset of its bytes in the file.
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    /// Bytes taken from the file.
    pub filesz: u64,
    /// Bytes in memory (the rest, past `filesz`, is zeroed).
    pub memsz: u64,
}

/// A parsed ELF executable for x86.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elf {
    pub class: ElfClass,
    pub entry: u64,
    pub segments: Vec<Segment>,
    /// `PT_NOTE` segments as (file offset, size).
    pub notes: Vec<(u64, u64)>,
}

/// Xen's note type for the 32-bit physical entry point of a PVH kernel.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

impl Elf {
    /// The PVH entry point (`XEN_ELFNOTE_PHYS32_ENTRY` in a "Xen" note), if the kernel has one.
    pub fn pvh_entry(&self, bytes: &[u8]) -> Option<u64> {
        for &(off, size) in &self.notes {
            let notes = bytes.get(off as usize..(off + size) as usize)?;
            let mut at = 0usize;
            while at + 12 <= notes.len() {
                let namesz = u32_at(notes, at)? as usize;
                let descsz = u32_at(notes, at + 4)? as usize;
                let kind = u32_at(notes, at + 8)?;
                let name_at = at + 12;
                let desc_at = name_at.checked_add(namesz.checked_add(3)? & !3)?;
                let next = desc_at.checked_add(descsz.checked_add(3)? & !3)?;
                let name = notes.get(name_at..name_at + namesz)?;
                if kind == XEN_ELFNOTE_PHYS32_ENTRY && name.starts_with(b"Xen") {
                    return match descsz {
                        4 => u32_at(notes, desc_at).map(u64::from),
                        8 => u64_at(notes, desc_at),
                        _ => None,
                    };
                }
                at = next;
            }
        }
        None
    }
}

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;

/// Whether the bytes start with the ELF magic.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Parses an x86 ELF executable; `bad(what)` builds the error for the file at hand.
pub fn parse(b: &[u8], bad: &dyn Fn(String) -> LoaderError) -> Result<Elf, LoaderError> {
    let trunc = |what: &str| bad(format!("truncated ELF file: {what} lies past the end of the file"));
    if !is_elf(b) {
        return Err(bad("not an ELF file".into()));
    }
    let class = match b.get(4) {
        Some(1) => ElfClass::Elf32,
        Some(2) => ElfClass::Elf64,
        Some(c) => return Err(bad(format!("unknown ELF class {c}"))),
        None => return Err(trunc("the ELF header")),
    };
    if b.get(5) != Some(&1) {
        return Err(bad("not a little-endian ELF file".into()));
    }
    let (hdr_len, ph_ent_min) = match class {
        ElfClass::Elf32 => (52, 32),
        ElfClass::Elf64 => (64, 56),
    };
    if b.len() < hdr_len {
        return Err(trunc("the ELF header"));
    }
    let e_type = u16_at(b, 16).ok_or_else(|| trunc("e_type"))?;
    if e_type != 2 {
        return Err(bad(format!("ELF type {e_type} is not an executable (ET_EXEC)")));
    }
    let machine = u16_at(b, 18).ok_or_else(|| trunc("e_machine"))?;
    let want = if class == ElfClass::Elf32 { EM_386 } else { EM_X86_64 };
    if machine != want {
        return Err(bad(format!("ELF machine {machine} is not x86 (expected {want})")));
    }
    let (entry, phoff, phentsize, phnum) = match class {
        ElfClass::Elf32 => (u32_at(b, 24).map(u64::from), u32_at(b, 28).map(u64::from), u16_at(b, 42), u16_at(b, 44)),
        ElfClass::Elf64 => (u64_at(b, 24), u64_at(b, 32), u16_at(b, 54), u16_at(b, 56)),
    };
    let (entry, phoff, phentsize, phnum) = (
        entry.ok_or_else(|| trunc("e_entry"))?,
        phoff.ok_or_else(|| trunc("e_phoff"))?,
        phentsize.ok_or_else(|| trunc("e_phentsize"))? as u64,
        phnum.ok_or_else(|| trunc("e_phnum"))? as u64,
    );
    if phnum == 0 {
        return Err(bad("ELF file has no program headers".into()));
    }
    if phentsize < ph_ent_min {
        return Err(bad(format!("ELF program header size {phentsize} is too small")));
    }
    let table_end = phentsize.checked_mul(phnum).and_then(|n| n.checked_add(phoff));
    if table_end.is_none_or(|end| end > b.len() as u64) {
        return Err(trunc("the program header table"));
    }
    let mut segments = Vec::new();
    let mut notes = Vec::new();
    for i in 0..phnum {
        let at = (phoff + i * phentsize) as usize;
        let seg = |o32: usize, o64: usize| match class {
            ElfClass::Elf32 => u32_at(b, at + o32).map(u64::from),
            ElfClass::Elf64 => u64_at(b, at + o64),
        };
        if u32_at(b, at) == Some(PT_NOTE) {
            if let (Some(off), Some(size)) = (seg(4, 8), seg(16, 32)) {
                if off.checked_add(size).is_some_and(|end| end <= b.len() as u64) {
                    notes.push((off, size));
                }
            }
            continue;
        }
        if u32_at(b, at) != Some(PT_LOAD) {
            continue;
        }
        let s = Segment {
            offset: seg(4, 8).ok_or_else(|| trunc("a program header"))?,
            vaddr: seg(8, 16).ok_or_else(|| trunc("a program header"))?,
            paddr: seg(12, 24).ok_or_else(|| trunc("a program header"))?,
            filesz: seg(16, 32).ok_or_else(|| trunc("a program header"))?,
            memsz: seg(20, 40).ok_or_else(|| trunc("a program header"))?,
        };
        if s.filesz > s.memsz {
            return Err(bad(format!("segment {i}: file size {:#x} exceeds memory size {:#x}", s.filesz, s.memsz)));
        }
        if s.offset.checked_add(s.filesz).is_none_or(|end| end > b.len() as u64) {
            return Err(trunc(&format!("segment {i}'s data")));
        }
        if s.paddr.checked_add(s.memsz).is_none() {
            return Err(bad(format!("segment {i}: address {:#x} + size {:#x} overflows", s.paddr, s.memsz)));
        }
        if s.memsz > 0 {
            segments.push(s);
        }
    }
    if segments.is_empty() {
        return Err(bad("ELF file has no loadable segments".into()));
    }
    let mut sorted = segments.clone();
    sorted.sort_by_key(|s| s.paddr);
    for w in sorted.windows(2) {
        if w[0].paddr + w[0].memsz > w[1].paddr {
            return Err(bad(format!(
                "segments overlap: {:#x}-{:#x} and {:#x}-{:#x}",
                w[0].paddr,
                w[0].paddr + w[0].memsz,
                w[1].paddr,
                w[1].paddr + w[1].memsz
            )));
        }
    }
    Ok(Elf { class, entry, segments, notes })
}

impl Elf {
    /// The physical address of a virtual address inside one of the segments (for entry points of
    /// kernels linked high but loaded low); the address itself when no segment holds it.
    pub fn virt_to_phys(&self, vaddr: u64) -> u64 {
        self.segments
            .iter()
            .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.memsz)
            .map_or(vaddr, |s| vaddr - s.vaddr + s.paddr)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vmm::loader::KERNEL;

    /// Builds a minimal ELF with the given (paddr, file bytes, memsz) segments.
    pub fn build_elf(class: ElfClass, entry: u64, segs: &[(u64, &[u8], u64)]) -> Vec<u8> {
        let (hdr, phsz) = match class {
            ElfClass::Elf32 => (52usize, 32usize),
            ElfClass::Elf64 => (64, 56),
        };
        let mut b = vec![0u8; hdr + phsz * segs.len()];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = if class == ElfClass::Elf32 { 1 } else { 2 };
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        let machine = if class == ElfClass::Elf32 { EM_386 } else { EM_X86_64 };
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        let mut data_off = b.len();
        let mut data = Vec::new();
        for (i, (paddr, bytes, memsz)) in segs.iter().enumerate() {
            let at = hdr + i * phsz;
            b[at..at + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            let fields = [data_off as u64, *paddr, *paddr, bytes.len() as u64, *memsz];
            match class {
                ElfClass::Elf32 => {
                    for (j, f) in fields.iter().enumerate() {
                        b[at + 4 + j * 4..at + 8 + j * 4].copy_from_slice(&(*f as u32).to_le_bytes());
                    }
                }
                ElfClass::Elf64 => {
                    for (j, f) in fields.iter().enumerate() {
                        b[at + 8 + j * 8..at + 16 + j * 8].copy_from_slice(&f.to_le_bytes());
                    }
                }
            }
            data.extend_from_slice(bytes);
            data_off += bytes.len();
        }
        match class {
            ElfClass::Elf32 => {
                b[24..28].copy_from_slice(&(entry as u32).to_le_bytes());
                b[28..32].copy_from_slice(&(hdr as u32).to_le_bytes());
                b[42..44].copy_from_slice(&(phsz as u16).to_le_bytes());
                b[44..46].copy_from_slice(&(segs.len() as u16).to_le_bytes());
            }
            ElfClass::Elf64 => {
                b[24..32].copy_from_slice(&entry.to_le_bytes());
                b[32..40].copy_from_slice(&(hdr as u64).to_le_bytes());
                b[54..56].copy_from_slice(&(phsz as u16).to_le_bytes());
                b[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
            }
        }
        b.extend_from_slice(&data);
        b
    }

    fn err(b: &[u8]) -> String {
        parse(b, &|m| LoaderError::Invalid { noun: KERNEL, path: "k".into(), what: m }).unwrap_err().to_string()
    }

    #[test]
    fn parses_both_classes() {
        for class in [ElfClass::Elf32, ElfClass::Elf64] {
            let b = build_elf(class, 0x10_0000, &[(0x10_0000, &[0x90, 0xf4], 0x1000)]);
            let e = parse(&b, &|m| LoaderError::Invalid { noun: KERNEL, path: "k".into(), what: m }).unwrap();
            assert_eq!(e.class, class);
            assert_eq!(e.entry, 0x10_0000);
            assert_eq!(e.segments[0].filesz, 2);
            assert_eq!(e.segments[0].memsz, 0x1000);
        }
    }

    #[test]
    fn malformed_headers_are_named() {
        let good = build_elf(ElfClass::Elf32, 0x10_0000, &[(0x10_0000, &[0x90; 16], 16)]);
        assert!(err(&good[..30]).contains("truncated"), "{}", err(&good[..30]));
        assert!(err(&good[..60]).contains("program header table"));
        assert!(err(&good[..good.len() - 4]).contains("segment 0's data"));
        let mut bad_class = good.clone();
        bad_class[4] = 9;
        assert!(err(&bad_class).contains("class 9"));
        let mut big_endian = good.clone();
        big_endian[5] = 2;
        assert!(err(&big_endian).contains("little-endian"));
        let mut not_exec = good.clone();
        not_exec[16] = 3;
        assert!(err(&not_exec).contains("ET_EXEC"));
        let mut arm = good.clone();
        arm[18] = 40;
        assert!(err(&arm).contains("not x86"));
        let mut huge_phnum = good.clone();
        huge_phnum[44..46].copy_from_slice(&0xffffu16.to_le_bytes());
        assert!(err(&huge_phnum).contains("program header table"));
        let mut file_gt_mem = good.clone();
        file_gt_mem[52 + 20..52 + 24].copy_from_slice(&1u32.to_le_bytes());
        assert!(err(&file_gt_mem).contains("exceeds memory size"));
    }

    #[test]
    fn overlapping_segments_are_refused() {
        let b = build_elf(ElfClass::Elf64, 0x10_0000, &[(0x10_0000, &[1; 8], 0x2000), (0x10_1000, &[2; 8], 8)]);
        assert!(err(&b).contains("segments overlap"), "{}", err(&b));
    }

    #[test]
    fn entry_translates_through_segments() {
        let mut e = parse(&build_elf(ElfClass::Elf64, 0, &[(0x20_0000, &[0x90], 0x1000)]), &|m| LoaderError::Invalid {
            noun: KERNEL,
            path: "k".into(),
            what: m,
        })
        .unwrap();
        e.segments[0].vaddr = 0xffff_ffff_8020_0000;
        assert_eq!(e.virt_to_phys(0xffff_ffff_8020_0010), 0x20_0010);
        assert_eq!(e.virt_to_phys(0x30_0000), 0x30_0000);
    }
}

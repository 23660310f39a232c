//! A guest's symbols: its functions, for naming the code that makes exits, and its data objects,
//! for naming the pages it writes; from an ELF image's symbol table (multiboot and 64-bit ELF
//! kernels, `vmlinux`) or from a `System.map`.

use std::path::Path;

use object::read::elf::{FileHeader, ProgramHeader};
use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

/// Function and data symbols sorted by address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Symbols {
    /// (address, size, name); size 0 when the table does not say.
    funcs: Vec<(u64, u64, String)>,
    /// Data objects (variables, arrays), the same way.
    data: Vec<(u64, u64, String)>,
    /// The image's loadable segments as (physical, virtual, size): where a kernel linked high
    /// (a `vmlinux`) has the pages a guest-physical address names. Identity where none covers it.
    segments: Vec<(u64, u64, u64)>,
}

/// The largest file read for symbols (a `vmlinux` with its debug information is a few hundred
/// MiB; a `System.map` a few MiB).
pub const MAX_SYMBOLS_FILE: u64 = 1 << 30;

/// Why a file gave no symbols.
#[derive(Debug, thiserror::Error)]
pub enum SymbolsError {
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    #[error("symbols {}: no function symbols (a stripped image? give --symbols)", .0.display())]
    NoFunctions(std::path::PathBuf),
}

impl Symbols {
    /// Reads `path`: an ELF file's symbol table, or else a `System.map` (`ADDR TYPE NAME` lines).
    /// Only a regular file, of at most [`MAX_SYMBOLS_FILE`] bytes.
    pub fn load(path: &Path) -> Result<Self, SymbolsError> {
        let bytes = crate::files::read_regular(path, "symbols", MAX_SYMBOLS_FILE)?;
        let symbols = Self::from_bytes(&bytes);
        if symbols.funcs.is_empty() {
            return Err(SymbolsError::NoFunctions(path.to_path_buf()));
        }
        Ok(symbols)
    }

    /// The symbols of an image in memory (none when it has none). The ELF parser wants its
    /// headers aligned, which bytes from `include_bytes!` are not: it reads a heap copy.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let owned = bytes.to_vec();
        match object::File::parse(&*owned) {
            Ok(elf) => Self::from_elf(&elf),
            Err(_) => Self::from_system_map(&String::from_utf8_lossy(bytes)),
        }
    }

    /// Functions, and the plain labels of hand-written assembly (no type), in executable sections;
    /// data objects and labels in data and bss sections.
    fn from_elf(elf: &object::File) -> Self {
        let section_kind = |s: &object::Symbol| {
            let section = s.section_index().and_then(|i| elf.section_by_index(i).ok());
            section.map_or(SectionKind::Unknown, |sec| sec.kind())
        };
        let named = |s: &object::Symbol| {
            let name = s.name().ok()?;
            (!name.is_empty() && !name.starts_with(".L")).then(|| (s.address(), s.size(), name.to_string()))
        };
        let (mut funcs, mut data) = (Vec::new(), Vec::new());
        for s in elf.symbols() {
            let labelled = matches!(s.kind(), SymbolKind::Label | SymbolKind::Unknown);
            match section_kind(&s) {
                SectionKind::Text if labelled || s.kind() == SymbolKind::Text => funcs.extend(named(&s)),
                SectionKind::Data | SectionKind::UninitializedData | SectionKind::ReadOnlyData
                    if labelled || s.kind() == SymbolKind::Data =>
                {
                    data.extend(named(&s))
                }
                _ => {}
            }
        }
        let segments = match elf {
            object::File::Elf32(f) => load_segments(f.elf_header(), f.elf_program_headers(), f.endian()),
            object::File::Elf64(f) => load_segments(f.elf_header(), f.elf_program_headers(), f.endian()),
            _ => Vec::new(),
        };
        Self { funcs: sorted(funcs), data: sorted(data), segments }
    }

    fn from_system_map(text: &str) -> Self {
        let (mut funcs, mut data) = (Vec::new(), Vec::new());
        for l in text.lines() {
            let mut w = l.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (w.next(), w.next(), w.next()) else { continue };
            let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
            match kind {
                "T" | "t" | "W" | "w" => funcs.push((addr, 0, name.to_string())),
                "D" | "d" | "B" | "b" | "R" | "r" => data.push((addr, 0, name.to_string())),
                _ => {}
            }
        }
        Self { funcs: sorted(funcs), data: sorted(data), segments: Vec::new() }
    }

    /// Adds data objects and load segments (for tests and hand-made tables).
    pub fn with_data(mut self, data: Vec<(u64, u64, String)>, segments: Vec<(u64, u64, u64)>) -> Self {
        self.data = sorted(data);
        self.segments = segments;
        self
    }

    /// The symbols — data objects first, then functions — that lie in the guest-physical range
    /// `[gpa, gpa + len)`, at most `max` of them: what a dirty page holds.
    pub fn in_physical(&self, gpa: u64, len: u64, max: usize) -> Vec<&str> {
        let virt = self
            .segments
            .iter()
            .find(|&&(p, _, n)| gpa >= p && gpa - p < n)
            .map_or(gpa, |&(p, v, _)| (gpa - p).wrapping_add(v));
        let end = virt.saturating_add(len);
        let mut names = overlapping(&self.data, virt, end);
        names.extend(overlapping(&self.funcs, virt, end));
        names.truncate(max);
        names
    }

    /// Builds a table from (address, size, name) entries (for tests and hand-made tables).
    pub fn from_entries(funcs: Vec<(u64, u64, String)>) -> Self {
        Self { funcs: sorted(funcs), ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.funcs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.funcs.is_empty()
    }

    /// The function holding `addr`: the nearest symbol at or below it, within its size when the
    /// table gives one (past the end of a sized function, or before the first, there is none).
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        let i = self.funcs.partition_point(|f| f.0 <= addr).checked_sub(1)?;
        let (start, size, name) = &self.funcs[i];
        (*size == 0 || addr - start < *size).then_some(name.as_str())
    }

    /// `lookup`, or the address in hex.
    pub fn name_or_addr(&self, addr: u64) -> String {
        self.lookup(addr).map_or_else(|| format!("{addr:#x}"), str::to_string)
    }
}

/// A symbol table sorted by address, one symbol per address.
fn sorted(mut table: Vec<(u64, u64, String)>) -> Vec<(u64, u64, String)> {
    table.sort();
    table.dedup_by_key(|s| s.0);
    table
}

/// The names in `table` (sorted by address) of the symbols that overlap `[start, end)`: from the
/// last one starting at or before `start` (it may run into the range) onwards. A symbol without a
/// size (a `System.map`'s, an assembly label) runs to the next one, as in [`Symbols::lookup`].
fn overlapping(table: &[(u64, u64, String)], start: u64, end: u64) -> Vec<&str> {
    let first = table.partition_point(|s| s.0 <= start).saturating_sub(1);
    let ends = |i: usize| match table[i].1 {
        0 => table.get(i + 1).map_or(table[i].0.saturating_add(1), |next| next.0),
        size => table[i].0.saturating_add(size),
    };
    (first..table.len())
        .take_while(|&i| table[i].0 < end)
        .filter(|&i| table[i].0 >= start || ends(i) > start)
        .map(|i| table[i].2.as_str())
        .collect()
}

/// The PT_LOAD program headers as (physical, virtual, size in memory).
fn load_segments<E: FileHeader>(_: &E, headers: &[E::ProgramHeader], endian: E::Endian) -> Vec<(u64, u64, u64)> {
    headers
        .iter()
        .filter(|h| h.p_type(endian) == object::elf::PT_LOAD)
        .map(|h| (h.p_paddr(endian).into(), h.p_vaddr(endian).into(), h.p_memsz(endian).into()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_to_the_function_that_holds_them() {
        let s = Symbols::from_entries(vec![(0x1000, 0x10, "a".into()), (0x2000, 0, "b".into())]);
        assert_eq!(s.lookup(0x1000), Some("a"));
        assert_eq!(s.lookup(0x100f), Some("a"));
        assert_eq!(s.lookup(0x1010), None, "past a sized function");
        assert_eq!(s.lookup(0x2fff), Some("b"), "an unsized one runs to the next");
        assert_eq!(s.lookup(0xfff), None);
        let map = Symbols::from_system_map("ffffffff81000000 T _text\nffffffff81000100 t helper\n0 a abs\nbad line");
        assert_eq!(map.lookup(0xffff_ffff_8100_0150), Some("helper"));
        assert_eq!(map.len(), 2);
        let map = Symbols::from_system_map("ffffffff81000000 T _text\nffffffff82000000 D jiffies\n");
        assert_eq!(map.in_physical(0xffff_ffff_8200_0000, 4096, 4), ["jiffies"]);
    }

    #[test]
    fn a_guest_physical_page_is_named_by_the_symbols_in_it() {
        let data =
            vec![(0x2000, 0x10, "counter".into()), (0x2ff0, 0x20, "spans".into()), (0x5000, 0x3000, "big".into())];
        let kernel = (0x100_0000, 0xffff_ffff_8100_0000, 0x10_0000);
        let s = Symbols::from_entries(vec![(0x2800, 0x40, "code".into())])
            .with_data([data, vec![(0xffff_ffff_8100_3000, 8, "jiffies".into())]].concat(), vec![kernel]);
        assert_eq!(s.in_physical(0x2000, 0x1000, 8), ["counter", "spans", "code"], "data first, then functions");
        assert_eq!(s.in_physical(0x3000, 0x1000, 8), ["spans"], "an object that runs into the page");
        assert_eq!(s.in_physical(0x6000, 0x1000, 8), ["big"], "inside a large object");
        assert_eq!(s.in_physical(0x8000, 0x1000, 8), Vec::<&str>::new());
        assert_eq!(s.in_physical(0x100_3000, 0x1000, 8), ["jiffies"], "through the load segment");
        assert_eq!(s.in_physical(0x2000, 0x1000, 1), ["counter"]);
    }

    #[test]
    fn a_project_guest_has_its_functions() {
        let demo = Symbols::from_bytes(crate::guests::DEMO);
        assert!(demo.funcs.iter().any(|f| f.2 == "_start"), "the built-in demo, from unaligned bytes");
        let s = Symbols::load(&crate::guests::guest_path("gdbtest.elf")).unwrap();
        let bump = s.funcs.iter().find(|f| f.2 == "bump").expect("bump is a function").0;
        assert_eq!(s.lookup(bump + 1), Some("bump"));
        let counter = s.data.iter().find(|d| d.2 == "counter").expect("counter is data").0;
        assert!(s.in_physical(counter & !0xfff, 4096, 8).contains(&"counter"), "{:?}", s.data);
        assert!(Symbols::load(Path::new("/nonexistent")).is_err());
    }
}

//! A guest's function symbols, for naming the code that makes exits: from an ELF image's symbol
//! table (multiboot and 64-bit ELF kernels, `vmlinux`) or from a `System.map`.

use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

/// Function symbols sorted by address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Symbols {
    /// (address, size, name); size 0 when the table does not say.
    funcs: Vec<(u64, u64, String)>,
}

impl Symbols {
    /// Reads `path`: an ELF file's symbol table, or else a `System.map` (`ADDR TYPE NAME` lines).
    pub fn load(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("symbols {}: {e}", path.display()))?;
        let symbols = Self::from_bytes(&bytes);
        if symbols.funcs.is_empty() {
            return Err(format!("symbols {}: no function symbols (a stripped image? give --symbols)", path.display()));
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

    /// Functions, and the plain labels of hand-written assembly (no type), in executable sections.
    fn from_elf(elf: &object::File) -> Self {
        let in_code = |s: &object::Symbol| {
            let section = s.section_index().and_then(|i| elf.section_by_index(i).ok());
            section.is_some_and(|sec| sec.kind() == SectionKind::Text)
        };
        let funcs = elf
            .symbols()
            .filter(|s| matches!(s.kind(), SymbolKind::Text | SymbolKind::Label | SymbolKind::Unknown) && in_code(s))
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
            .filter(|(_, _, n)| !n.is_empty() && !n.starts_with(".L"))
            .collect();
        Self::sorted(funcs)
    }

    fn from_system_map(text: &str) -> Self {
        let funcs = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let (addr, kind, name) = (w.next()?, w.next()?, w.next()?);
                let text_symbol = matches!(kind, "T" | "t" | "W" | "w");
                text_symbol.then(|| Some((u64::from_str_radix(addr, 16).ok()?, 0, name.to_string())))?
            })
            .collect();
        Self::sorted(funcs)
    }

    fn sorted(mut funcs: Vec<(u64, u64, String)>) -> Self {
        funcs.sort();
        funcs.dedup_by_key(|f| f.0);
        Self { funcs }
    }

    /// Builds a table from (address, size, name) entries (for tests and hand-made tables).
    pub fn from_entries(funcs: Vec<(u64, u64, String)>) -> Self {
        Self::sorted(funcs)
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
    }

    #[test]
    fn a_project_guest_has_its_functions() {
        let demo = Symbols::from_bytes(crate::guests::DEMO);
        assert!(demo.funcs.iter().any(|f| f.2 == "_start"), "the built-in demo, from unaligned bytes");
        let s = Symbols::load(&crate::guests::guest_path("gdbtest.elf")).unwrap();
        let bump = s.funcs.iter().find(|f| f.2 == "bump").expect("bump is a function").0;
        assert_eq!(s.lookup(bump + 1), Some("bump"));
        assert!(Symbols::load(Path::new("/nonexistent")).is_err());
    }
}

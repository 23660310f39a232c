//! One address through every layer, as the controller assembles it: guest-virtual → each paging
//! level's entry with its flags → guest-physical → the KVM memory slot → host-virtual → the host page
//! frame (and whether it is a huge page). What QEMU's `info tlb`/`gva2gpa` and HyperDbg's `!pte` show
//! in pieces, on one screen.

use std::fmt;

use crate::decode::paging::WalkStep;
use crate::vmm::host_pages::HostPage;
use crate::vmm::slots::Slot;

/// The layers of one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressChain {
    /// The guest-virtual address, when the chain starts there.
    pub gva: Option<u64>,
    /// The paging entries on the way (top level first); whether entries are 8 bytes (PAE, long).
    pub steps: Vec<WalkStep>,
    pub wide_entries: bool,
    pub page_size: u64,
    pub gpa: u64,
    /// The KVM memory slot that holds it (its index), or none (MMIO, a watched page's gap).
    pub slot: Option<(usize, Slot)>,
    /// Its host-virtual address, and what the host says of that page.
    pub host: Option<(u64, Result<HostPage, crate::vmm::host_pages::PagemapError>)>,
}

/// The flags of a paging entry by name: P RW US PWT PCD A D PS G, and NX and the protection key
/// where entries are 8 bytes.
pub fn entry_flags(entry: u64, wide: bool) -> String {
    let mut names = Vec::new();
    for (bit, name) in [(0, "P"), (1, "RW"), (2, "US"), (3, "PWT"), (4, "PCD"), (5, "A"), (6, "D"), (7, "PS"), (8, "G")]
    {
        if entry & (1 << bit) != 0 {
            names.push(name.to_string());
        }
    }
    if wide {
        if entry & (1 << 63) != 0 {
            names.push("NX".into());
        }
        let pk = (entry >> 59) & 0xf;
        if pk != 0 {
            names.push(format!("PK{pk}"));
        }
    }
    names.join(" ")
}

impl fmt::Display for AddressChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(gva) = self.gva {
            writeln!(f, "guest-virtual  {gva:#x}")?;
            if self.steps.is_empty() {
                writeln!(f, "  paging off: guest-physical = linear")?;
            }
            for s in &self.steps {
                let flags = entry_flags(s.entry, self.wide_entries);
                writeln!(f, "  {:<4} entry at {:#014x} = {:#018x}  {flags}", s.level, s.entry_addr, s.entry)?;
            }
        }
        writeln!(f, "guest-physical {:#x} ({} KiB page)", self.gpa, self.page_size / 1024)?;
        match &self.slot {
            Some((i, s)) => {
                let ro = if s.readonly { ", read-only" } else { "" };
                writeln!(f, "memory slot    {i}: {:#x}-{:#x}{ro}", s.gpa, s.gpa + s.len - 1)?
            }
            None => writeln!(f, "memory slot    none: not RAM the guest can reach directly (MMIO, or a watched page)")?,
        }
        match &self.host {
            Some((hva, page)) => {
                writeln!(f, "host-virtual   {hva:#x}")?;
                match page {
                    Ok(p) => writeln!(f, "host page      {p}"),
                    Err(why) => writeln!(f, "host page      not shown: {why}"),
                }
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_flags_are_named() {
        assert_eq!(entry_flags(0x2003, false), "P RW");
        assert_eq!(entry_flags(0x87 | (1 << 63), true), "P RW US PS NX");
        assert_eq!(entry_flags(0x87 | (1 << 63), false), "P RW US PS", "no NX in 4-byte entries");
        assert_eq!(entry_flags(1 | (3 << 59), true), "P PK3");
    }
}

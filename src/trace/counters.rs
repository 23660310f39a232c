//! Exact exit counters: per reason, per port and per MMIO address, each with handling-time statistics.
//!
//! Each vCPU thread owns one `Counters` and updates it for every exit; views merge them. Nothing is
//! sampled and nothing is dropped. A guest chooses its MMIO addresses, so their counters are bounded:
//! exact per address for the first [`MMIO_ADDRS`], then per 4 KiB page for [`MMIO_PAGES`] pages,
//! then one bucket for the rest — the totals stay exact, only the breakdown coarsens.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use serde::Serialize;

use super::event::{Dir, ExitEvent, ExitKind, REASON_NAMES};

/// Count and handling time of one class of exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stat {
    pub count: u64,
    pub total_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
}

impl Stat {
    /// Adds one exit that took `ns` to handle.
    pub fn add(&mut self, ns: u64) {
        self.min_ns = if self.count == 0 { ns } else { self.min_ns.min(ns) };
        self.max_ns = self.max_ns.max(ns);
        self.count += 1;
        self.total_ns = self.total_ns.saturating_add(ns);
    }

    /// Folds another stat of the same class into this one.
    pub fn merge(&mut self, other: &Stat) {
        if other.count == 0 {
            return;
        }
        self.min_ns = if self.count == 0 { other.min_ns } else { self.min_ns.min(other.min_ns) };
        self.max_ns = self.max_ns.max(other.max_ns);
        self.count += other.count;
        self.total_ns = self.total_ns.saturating_add(other.total_ns);
    }

    /// Mean handling time in nanoseconds (0 when empty).
    pub fn avg_ns(&self) -> u64 {
        self.total_ns.checked_div(self.count).unwrap_or(0)
    }
}

/// MMIO addresses counted one by one (per direction) before new ones are counted per page.
pub const MMIO_ADDRS: usize = 1024;
/// MMIO pages counted before the rest go to one bucket.
pub const MMIO_PAGES: usize = 1024;

/// Where an MMIO access is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MmioBucket {
    /// Its own address.
    Addr(u64),
    /// Its 4 KiB page (past [`MMIO_ADDRS`] addresses).
    Page(u64),
    /// Everything past [`MMIO_PAGES`] pages.
    Other,
}

impl std::fmt::Display for MmioBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MmioBucket::Addr(a) => write!(f, "{a:#x}"),
            MmioBucket::Page(p) => write!(f, "{p:#x} page"),
            MmioBucket::Other => write!(f, "other"),
        }
    }
}

/// Per-reason stats, one slot per name of [`REASON_NAMES`]: counting an exit is an index.
#[derive(Debug, Clone, Default)]
pub struct ReasonStats([Stat; REASON_NAMES.len()]);

impl ReasonStats {
    /// The stat of the reason `name`; `None` when no exit had it.
    pub fn get(&self, name: &str) -> Option<&Stat> {
        self.iter().find_map(|(n, s)| (n == name).then_some(s))
    }

    /// The reasons some exit had, with their stats, in [`REASON_NAMES`] order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Stat)> {
        REASON_NAMES.iter().zip(&self.0).filter(|(_, s)| s.count > 0).map(|(n, s)| (*n, s))
    }
}

impl std::ops::Index<&str> for ReasonStats {
    type Output = Stat;
    fn index(&self, name: &str) -> &Stat {
        self.get(name).unwrap_or_else(|| panic!("no exit with reason {name}"))
    }
}

/// The exact counters of one vCPU, or of several merged.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub total: Stat,
    pub by_reason: ReasonStats,
    pub by_port: FxHashMap<(u16, Dir), Stat>,
    /// Trapped MSR accesses (`--trap-msr`) by (MSR, read or write).
    pub by_msr: FxHashMap<(u32, Dir), Stat>,
    by_mmio: FxHashMap<(MmioBucket, Dir), Stat>,
    /// How many `Addr` and `Page` buckets there are.
    mmio_addrs: usize,
    mmio_pages: usize,
    /// The device model that took MMIO accesses, by page (the name the bus gave it): a table
    /// counted by address names its rows with it, as the trace names each exit.
    mmio_devices: FxHashMap<u64, &'static str>,
}

impl Counters {
    /// Counts one handled exit.
    pub fn record(&mut self, event: &ExitEvent) {
        let ns = event.cost_ns;
        self.total.add(ns);
        self.by_reason.0[event.kind.reason_slot()].add(ns);
        match event.kind {
            ExitKind::Io { port, dir, .. } => self.by_port.entry((port, dir)).or_default().add(ns),
            ExitKind::Msr { index, dir, .. } => self.by_msr.entry((index, dir)).or_default().add(ns),
            ExitKind::Mmio { addr, dir, .. } => match self.by_mmio.get_mut(&(MmioBucket::Addr(addr), dir)) {
                Some(s) => s.add(ns),
                None => {
                    let bucket = self.bucket_for(MmioBucket::Addr(addr), dir);
                    self.by_mmio.entry((bucket, dir)).or_default().add(ns);
                    if let Some(device) = event.device {
                        self.mmio_devices.entry(addr & !0xfff).or_insert(device);
                    }
                }
            },
            _ => {}
        }
    }

    /// The bucket `wanted` is counted in: itself while there is room at its level, else coarser.
    /// Makes room for it (counts it) when it is new.
    fn bucket_for(&mut self, wanted: MmioBucket, dir: Dir) -> MmioBucket {
        if self.by_mmio.contains_key(&(wanted, dir)) {
            return wanted;
        }
        match wanted {
            MmioBucket::Addr(_) if self.mmio_addrs < MMIO_ADDRS => {
                self.mmio_addrs += 1;
                wanted
            }
            MmioBucket::Addr(a) => self.bucket_for(MmioBucket::Page(a & !0xfff), dir),
            MmioBucket::Page(_) if self.mmio_pages < MMIO_PAGES => {
                self.mmio_pages += 1;
                wanted
            }
            MmioBucket::Page(_) | MmioBucket::Other => MmioBucket::Other,
        }
    }

    /// Whether MMIO accesses were counted more coarsely than per address.
    pub fn mmio_coarsened(&self) -> bool {
        self.by_mmio.keys().any(|(b, _)| !matches!(b, MmioBucket::Addr(_)))
    }

    /// Folds another vCPU's counters into these.
    pub fn merge(&mut self, other: &Counters) {
        self.total.merge(&other.total);
        for (mine, theirs) in self.by_reason.0.iter_mut().zip(&other.by_reason.0) {
            mine.merge(theirs);
        }
        for (k, s) in &other.by_port {
            self.by_port.entry(*k).or_default().merge(s);
        }
        for (k, s) in &other.by_msr {
            self.by_msr.entry(*k).or_default().merge(s);
        }
        for (&(bucket, dir), s) in &other.by_mmio {
            let bucket = self.bucket_for(bucket, dir);
            self.by_mmio.entry((bucket, dir)).or_default().merge(s);
        }
        for (&page, &device) in &other.mmio_devices {
            self.mmio_devices.entry(page).or_insert(device);
        }
    }

    /// The device model that took MMIO accesses at `addr`, if one did.
    pub fn mmio_device(&self, addr: u64) -> Option<&'static str> {
        self.mmio_devices.get(&(addr & !0xfff)).copied()
    }

    /// Reasons sorted by name, for stable output.
    pub fn reasons_sorted(&self) -> BTreeMap<&'static str, Stat> {
        self.by_reason.iter().map(|(k, v)| (k, *v)).collect()
    }

    /// Ports sorted by (port, direction).
    pub fn ports_sorted(&self) -> BTreeMap<(u16, Dir), Stat> {
        self.by_port.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// MSRs sorted by (index, direction).
    pub fn msrs_sorted(&self) -> BTreeMap<(u32, Dir), Stat> {
        self.by_msr.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// MMIO buckets sorted by (bucket, direction).
    pub fn mmio_sorted(&self) -> BTreeMap<(MmioBucket, Dir), Stat> {
        self.by_mmio.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Whether any MMIO access was counted.
    pub fn has_mmio(&self) -> bool {
        !self.by_mmio.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(port: u16, dir: Dir, cost_ns: u64) -> ExitEvent {
        ExitEvent {
            seq: 0,
            vcpu: 0,
            t_ns: 0,
            rip: 0,
            kind: ExitKind::Io { port, dir, size: 1, count: 1, data: 0 },
            device: None,
            insn: None,
            cost_ns,
        }
    }

    #[test]
    fn stat_tracks_min_avg_max() {
        let mut s = Stat::default();
        for ns in [30, 10, 20] {
            s.add(ns);
        }
        assert_eq!((s.count, s.min_ns, s.avg_ns(), s.max_ns), (3, 10, 20, 30));
        assert_eq!(Stat::default().avg_ns(), 0);
    }

    #[test]
    fn counts_per_reason_and_port() {
        let mut c = Counters::default();
        c.record(&io(0x3f8, Dir::Out, 5));
        c.record(&io(0x3f8, Dir::Out, 7));
        c.record(&io(0x3fd, Dir::In, 1));
        let mut hlt = io(0, Dir::In, 2);
        hlt.kind = ExitKind::Hlt;
        c.record(&hlt);
        assert_eq!(c.total.count, 4);
        assert_eq!(c.by_reason["io"].count, 3);
        assert_eq!(c.by_reason["hlt"].count, 1);
        assert_eq!(c.by_port[&(0x3f8, Dir::Out)].count, 2);
        assert_eq!(c.by_port[&(0x3f8, Dir::Out)].max_ns, 7);
        assert_eq!(c.by_port[&(0x3fd, Dir::In)].count, 1);
    }

    #[test]
    fn merge_adds_counts_and_keeps_extremes() {
        let mut a = Counters::default();
        a.record(&io(0x80, Dir::Out, 10));
        let mut b = Counters::default();
        b.record(&io(0x80, Dir::Out, 3));
        b.record(&io(0x80, Dir::Out, 50));
        a.merge(&b);
        let s = a.by_port[&(0x80, Dir::Out)];
        assert_eq!((s.count, s.min_ns, s.max_ns, s.total_ns), (3, 3, 50, 63));
        assert_eq!(a.total.count, 3);
    }

    fn mmio(addr: u64) -> ExitEvent {
        let mut e = io(0, Dir::In, 1);
        e.kind = ExitKind::Mmio { addr, dir: Dir::In, len: 4, data: 0 };
        e
    }

    #[test]
    fn a_guest_cannot_grow_the_mmio_counters_without_bound() {
        let mut c = Counters::default();
        // A guest reading each dword upward from 0xc0000000.
        let n = 4 * (MMIO_ADDRS + 4096 * MMIO_PAGES) as u64 + 1000;
        for i in 0..n / 4 {
            c.record(&mmio(0xc000_0000 + 4 * i));
        }
        assert_eq!(c.by_reason["mmio"].count, n / 4, "the totals stay exact");
        assert!(c.by_mmio.len() <= MMIO_ADDRS + MMIO_PAGES + 1, "{}", c.by_mmio.len());
        assert!(c.mmio_coarsened());
        let sorted = c.mmio_sorted();
        assert_eq!(sorted[&(MmioBucket::Addr(0xc000_0000), Dir::In)].count, 1, "the first addresses exactly");
        let first_page = (0xc000_0000 + 4 * MMIO_ADDRS as u64) & !0xfff;
        assert!(sorted.contains_key(&(MmioBucket::Page(first_page), Dir::In)), "then per page");
        assert!(sorted.contains_key(&(MmioBucket::Other, Dir::In)), "then the rest");
        let counted: u64 = sorted.values().map(|s| s.count).sum();
        assert_eq!(counted, n / 4, "every access is in some bucket");
        // An address already counted exactly stays exact.
        c.record(&mmio(0xc000_0000));
        assert_eq!(c.mmio_sorted()[&(MmioBucket::Addr(0xc000_0000), Dir::In)].count, 2);
        // Merging keeps the bounds.
        let mut merged = Counters::default();
        merged.merge(&c);
        let mut other = Counters::default();
        for i in 0..2 * MMIO_ADDRS as u64 {
            other.record(&mmio(0xd000_0000 + 4096 * i));
        }
        merged.merge(&other);
        assert!(merged.by_mmio.len() <= MMIO_ADDRS + MMIO_PAGES + 1);
        assert_eq!(merged.by_reason["mmio"].count, n / 4 + 1 + 2 * MMIO_ADDRS as u64);
    }
}

//! Exact exit counters: per reason, per port and per MMIO address, each with handling-time statistics.
//!
//! Each vCPU thread owns one `Counters` and updates it for every exit; views merge them. Nothing is
//! sampled and nothing is dropped.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use serde::Serialize;

use super::event::{Dir, ExitEvent, ExitKind};

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

/// The exact counters of one vCPU, or of several merged.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub total: Stat,
    pub by_reason: FxHashMap<&'static str, Stat>,
    pub by_port: FxHashMap<(u16, Dir), Stat>,
    pub by_mmio: FxHashMap<(u64, Dir), Stat>,
}

impl Counters {
    /// Counts one handled exit.
    pub fn record(&mut self, event: &ExitEvent) {
        let ns = event.cost_ns;
        self.total.add(ns);
        self.by_reason.entry(event.kind.reason()).or_default().add(ns);
        match event.kind {
            ExitKind::Io { port, dir, .. } => self.by_port.entry((port, dir)).or_default().add(ns),
            ExitKind::Mmio { addr, dir, .. } => self.by_mmio.entry((addr, dir)).or_default().add(ns),
            _ => {}
        }
    }

    /// Folds another vCPU's counters into these.
    pub fn merge(&mut self, other: &Counters) {
        self.total.merge(&other.total);
        for (k, s) in &other.by_reason {
            self.by_reason.entry(k).or_default().merge(s);
        }
        for (k, s) in &other.by_port {
            self.by_port.entry(*k).or_default().merge(s);
        }
        for (k, s) in &other.by_mmio {
            self.by_mmio.entry(*k).or_default().merge(s);
        }
    }

    /// Reasons sorted by name, for stable output.
    pub fn reasons_sorted(&self) -> BTreeMap<&'static str, Stat> {
        self.by_reason.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Ports sorted by (port, direction).
    pub fn ports_sorted(&self) -> BTreeMap<(u16, Dir), Stat> {
        self.by_port.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// MMIO addresses sorted by (address, direction).
    pub fn mmio_sorted(&self) -> BTreeMap<(u64, Dir), Stat> {
        self.by_mmio.iter().map(|(k, v)| (*k, *v)).collect()
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
}

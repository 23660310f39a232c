//! Dirty pages, live (`--dirty-log`): which guest-physical pages the guest writes, read from KVM's
//! dirty log once a second — how many each interval, which pages are hottest (dirty in the most
//! intervals), and where in guest memory the last interval's writes fell, for a heat strip.

use rustc_hash::FxHashMap;
use serde_json::{Value, json};

use crate::decode::symbols::Symbols;

/// The dirty log's page size.
const PAGE: u64 = 4096;

/// How often the dirty log is read.
pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The dirty log's history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirtyTracker {
    /// Per page: in how many intervals it was dirty.
    heat: FxHashMap<u64, u32>,
    /// The pages of the last interval.
    last: Vec<u64>,
    /// Pages dirtied in each interval, oldest first.
    per_interval: Vec<u64>,
    pub intervals: u64,
    /// Pages dirtied, all intervals added up.
    pub total: u64,
    /// The most pages one interval dirtied.
    pub max: u64,
}

impl DirtyTracker {
    /// One interval's dirty pages.
    pub fn add_interval(&mut self, pages: Vec<u64>) {
        self.add_count(pages.len() as u64);
        for &p in &pages {
            *self.heat.entry(p).or_default() += 1;
        }
        self.last = pages;
    }

    /// One interval's count of dirty pages, without the pages (as a recording holds them).
    pub fn add_count(&mut self, pages: u64) {
        self.intervals += 1;
        self.total += pages;
        self.max = self.max.max(pages);
        self.per_interval.push(pages);
    }

    /// Pages the last interval dirtied.
    pub fn last_count(&self) -> u64 {
        self.per_interval.last().copied().unwrap_or(0)
    }

    /// The `n` hottest pages (guest-physical, intervals dirty), hottest first.
    pub fn hottest(&self, n: usize) -> Vec<(u64, u32)> {
        let mut v: Vec<(u64, u32)> = self.heat.iter().map(|(p, c)| (*p, *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    /// The last interval's dirty pages in `cells` equal parts of `[0, ram_end)`.
    pub fn strip(&self, ram_end: u64, cells: usize) -> Vec<u64> {
        let mut v = vec![0u64; cells.max(1)];
        let per = (ram_end / v.len() as u64).max(1);
        for &p in &self.last {
            let i = ((p / per) as usize).min(v.len() - 1);
            v[i] += 1;
        }
        v
    }

    /// A hot page as the summary and the memory screen show it: `0x201000 counter (12)`, the
    /// page named by what `symbols` says it holds (up to two names).
    pub fn label(page: u64, intervals: u32, symbols: &Symbols) -> String {
        match symbols.in_physical(page, PAGE, 2).join("+") {
            names if names.is_empty() => format!("{page:#x} ({intervals})"),
            names => format!("{page:#x} {names} ({intervals})"),
        }
    }

    /// The summary's text.
    pub fn text(&self, symbols: &Symbols) -> String {
        let hot: Vec<String> = self.hottest(8).iter().map(|&(p, n)| Self::label(p, n, symbols)).collect();
        let mut text = format!(
            "\nDirty pages (KVM_GET_DIRTY_LOG every {} s): {} intervals, {} pages dirtied, last {}, max {} per interval\n",
            INTERVAL.as_secs(),
            self.intervals,
            self.total,
            self.last_count(),
            self.max,
        );
        if !hot.is_empty() {
            text.push_str(&format!("  hottest (intervals dirty): {}\n", hot.join(", ")));
        }
        text
    }

    /// The summary's `dirty_log` object (`hottest` is empty where only the counts are known, as
    /// in a recording).
    pub fn json(&self, symbols: &Symbols) -> Value {
        let hot = |(p, n): (u64, u32)| json!({ "gpa": p, "intervals": n, "symbols": symbols.in_physical(p, PAGE, 4) });
        let hot: Vec<Value> = self.hottest(32).into_iter().map(hot).collect();
        json!({
            "intervals": self.intervals,
            "total": self.total,
            "last": self.last_count(),
            "max": self.max,
            "per_interval": self.per_interval,
            "hottest": hot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_heat_and_strip() {
        let mut t = DirtyTracker::default();
        t.add_interval(vec![0x1000, 0x2000]);
        t.add_interval(vec![0x2000, 0xff000]);
        assert_eq!((t.intervals, t.total, t.max, t.last_count()), (2, 4, 2, 2));
        assert_eq!(t.hottest(1), vec![(0x2000, 2)]);
        assert_eq!(t.strip(0x100000, 4), vec![1, 0, 0, 1]);
        assert!(t.text(&Symbols::default()).contains("0x2000 (2)"));
        assert_eq!(t.json(&Symbols::default())["hottest"][0]["gpa"], 0x2000);
        let named = Symbols::default().with_data(vec![(0x2010, 8, "counter".into())], Vec::new());
        assert!(t.text(&named).contains("0x2000 counter (2)"), "{}", t.text(&named));
        assert_eq!(t.json(&named)["hottest"][0]["symbols"], json!(["counter"]));
    }
}

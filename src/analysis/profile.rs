//! The exit profile by guest function, like `perf report`: exits and handling time per guest RIP,
//! symbolized and grouped by function, with each function's exits by reason.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rustc_hash::FxHashMap;
use serde_json::{Value, json};

use crate::decode::symbols::Symbols;
use crate::trace::{ExitEvent, Stat};

/// Exits counted per guest RIP.
#[derive(Debug, Clone, Default)]
pub struct RipProfile {
    by_rip: FxHashMap<u64, (Stat, BTreeMap<&'static str, u64>)>,
    pub total: Stat,
}

/// One function's line of the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRow {
    pub function: String,
    pub exits: Stat,
    pub reasons: BTreeMap<&'static str, u64>,
}

/// Distinct RIPs kept at most: past it (a guest exiting from a million places), exits from
/// further RIPs are counted together under [`OTHER_RIPS`].
const MAX_RIPS: usize = 1 << 16;

/// Where the RIPs past [`MAX_RIPS`] are counted (no code lives at the top of the address space).
const OTHER_RIPS: u64 = u64::MAX;

/// What that row is called.
const OTHER_RIPS_NAME: &str = "(further addresses, counted together)";

impl RipProfile {
    /// The entry `rip` is counted in.
    fn entry(&mut self, rip: u64) -> &mut (Stat, BTreeMap<&'static str, u64>) {
        let full = self.by_rip.len() >= MAX_RIPS && !self.by_rip.contains_key(&rip);
        self.by_rip.entry(if full { OTHER_RIPS } else { rip }).or_default()
    }

    /// Counts `n` events of `reason` at `rip` that have no handling time (in-kernel events).
    pub fn add_count(&mut self, rip: u64, reason: &'static str, n: u64) {
        let (stat, reasons) = self.entry(rip);
        stat.count += n;
        *reasons.entry(reason).or_default() += n;
        self.total.count += n;
    }

    pub fn record(&mut self, e: &ExitEvent) {
        let (stat, reasons) = self.entry(e.rip);
        stat.add(e.cost_ns);
        *reasons.entry(e.kind.reason()).or_default() += 1;
        self.total.add(e.cost_ns);
    }

    /// The profile grouped by function, most exits first (RIPs no symbol covers stay addresses).
    pub fn by_function(&self, symbols: &Symbols) -> Vec<FunctionRow> {
        let mut rows: BTreeMap<String, FunctionRow> = BTreeMap::new();
        for (&rip, (stat, reasons)) in &self.by_rip {
            let function = if rip == OTHER_RIPS { OTHER_RIPS_NAME.to_string() } else { symbols.name_or_addr(rip) };
            let row = rows.entry(function.clone()).or_insert_with(|| FunctionRow {
                function,
                exits: Stat::default(),
                reasons: BTreeMap::new(),
            });
            row.exits.merge(stat);
            for (r, n) in reasons {
                *row.reasons.entry(r).or_default() += n;
            }
        }
        let mut rows: Vec<FunctionRow> = rows.into_values().collect();
        rows.sort_by(|a, b| b.exits.count.cmp(&a.exits.count).then(a.function.cmp(&b.function)));
        rows
    }

    /// `perf report`-like text: overhead by exits, exits, handling time, function, reasons.
    pub fn text(&self, symbols: &Symbols) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Exit profile by guest function ({} exits, {} symbols)", self.total.count, symbols.len());
        let _ = writeln!(s, "# {:>8} {:>10} {:>12}  {:<40} reasons", "Overhead", "Exits", "Time (us)", "Function");
        for r in self.by_function(symbols) {
            let reasons: Vec<String> = r.reasons.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(
                s,
                "  {:>7.2}% {:>10} {:>12.1}  {:<40} {}",
                crate::summary::percent(r.exits.count, self.total.count),
                r.exits.count,
                r.exits.total_ns as f64 / 1000.0,
                r.function,
                reasons.join(", ")
            );
        }
        s
    }

    /// The same as JSON: an array of {function, exits, total_ns, reasons}.
    pub fn json(&self, symbols: &Symbols) -> Value {
        let rows: Vec<Value> = self
            .by_function(symbols)
            .into_iter()
            .map(|r| json!({ "function": r.function, "exits": r.exits.count, "total_ns": r.exits.total_ns, "reasons": r.reasons }))
            .collect();
        Value::Array(rows)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn distinct_rips_are_bounded() {
        let mut p = RipProfile::default();
        for rip in 0..(MAX_RIPS as u64 + 10) {
            p.add_count(rip, "io", 1);
        }
        assert_eq!(p.by_rip.len(), MAX_RIPS + 1);
        let rows = p.by_function(&Symbols::default());
        let other = rows.iter().find(|r| r.function == OTHER_RIPS_NAME).expect("the rest together");
        assert_eq!(other.exits.count, 10);
        assert_eq!(p.total.count, MAX_RIPS as u64 + 10);
    }

    use super::*;
    use crate::trace::{Dir, ExitKind};

    #[test]
    fn exits_group_under_the_function_holding_their_rip() {
        let io = |rip| ExitEvent {
            seq: 0,
            vcpu: 0,
            t_ns: 0,
            rip,
            kind: ExitKind::Io { port: 0x3f8, dir: Dir::Out, size: 1, count: 1, data: 0 },
            device: None,
            insn: None,
            cost_ns: 10,
        };
        let mut p = RipProfile::default();
        for rip in [0x1004, 0x1008, 0x2000, 0x9999] {
            p.record(&io(rip));
        }
        let syms = Symbols::from_entries(vec![(0x1000, 0x100, "putc".into()), (0x2000, 0x10, "exit".into())]);
        let rows = p.by_function(&syms);
        assert_eq!(rows[0].function, "putc");
        assert_eq!((rows[0].exits.count, rows[0].reasons["io"]), (2, 2));
        assert!(rows.iter().any(|r| r.function == "0x9999"));
        assert!(p.text(&syms).contains("50.00%"));
        assert_eq!(p.json(&syms)[0]["exits"], 2);
    }
}

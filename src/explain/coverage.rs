//! Device register coverage (Simics' word): per device and register, the reads and writes a run
//! made, the distinct values written, and the first and last exit that touched it — how a driver
//! or firmware really uses the hardware.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::Explanation;
use crate::trace::ExitEvent;

/// Distinct values kept per register; past it the count says "at least".
const VALUES: usize = 4096;

/// One register's use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Use {
    pub reads: u64,
    pub writes: u64,
    /// Distinct values written (up to [`VALUES`]).
    pub values: BTreeSet<u64>,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// Every (device, register) the exits touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    pub rows: BTreeMap<(String, String), Use>,
}

impl Coverage {
    /// Counts one exit, as `x` explains it.
    pub fn record(&mut self, e: &ExitEvent, x: &Explanation, write: bool, value: u64) {
        let row = self
            .rows
            .entry((x.device.clone(), x.register.clone()))
            .or_insert_with(|| Use { first_seq: e.seq, ..Default::default() });
        if write {
            row.writes += 1;
            if row.values.len() < VALUES {
                row.values.insert(value);
            }
        } else {
            row.reads += 1;
        }
        row.first_seq = row.first_seq.min(e.seq);
        row.last_seq = row.last_seq.max(e.seq);
    }

    fn distinct(u: &Use) -> String {
        if u.values.len() >= VALUES { format!("{VALUES}+") } else { u.values.len().to_string() }
    }

    /// The table, by device then register.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<36} {:<24} {:>9} {:>9} {:>8} {:>10} {:>10}",
            "DEVICE", "REGISTER", "READS", "WRITES", "VALUES", "FIRST", "LAST"
        );
        for ((device, register), u) in &self.rows {
            let reg = if register.is_empty() { "-" } else { register };
            let _ = writeln!(
                out,
                "{device:<36} {reg:<24} {:>9} {:>9} {:>8} {:>10} {:>10}",
                u.reads,
                u.writes,
                Self::distinct(u),
                format!("#{}", u.first_seq),
                format!("#{}", u.last_seq)
            );
        }
        out
    }

    /// The table as a JSON array of `{device, register, reads, writes, distinct_values, first_seq,
    /// last_seq}`.
    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|((device, register), u)| {
                json!({
                    "device": device,
                    "register": register,
                    "reads": u.reads,
                    "writes": u.writes,
                    "distinct_values": u.values.len(),
                    "first_seq": u.first_seq,
                    "last_seq": u.last_seq,
                })
            })
            .collect();
        Value::Array(rows)
    }
}

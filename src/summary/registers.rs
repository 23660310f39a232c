//! The summary's breakdown by device and register: the per-port and per-address counts, each
//! named by what lives there on a PC (as `explain` names it, from the address alone).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{micros, percent};
use crate::explain::{register_at, register_of};
use crate::trace::counters::MmioBucket;
use crate::trace::{Counters, Dir, Stat};

/// (device, register, read or write) and its exits.
type Rows = BTreeMap<(String, String, &'static str), Stat>;

fn rows(counters: &Counters) -> Rows {
    let mut rows = Rows::new();
    let mut add = |(device, register): (String, String), dir: Dir, s: &Stat| {
        rows.entry((device, register, dir.mmio_name())).or_default().merge(s);
    };
    for ((port, dir), s) in counters.ports_sorted() {
        add(register_at(port as u64, true, dir == Dir::Out), dir, &s);
    }
    for ((bucket, dir), s) in counters.mmio_sorted() {
        let named = match bucket {
            MmioBucket::Addr(a) => register_of(a, false, dir == Dir::Out, counters.mmio_device(a)),
            MmioBucket::Page(p) => {
                (register_of(p, false, dir == Dir::Out, counters.mmio_device(p)).0, "(per page)".into())
            }
            MmioBucket::Other => ("(more addresses)".into(), String::new()),
        };
        add(named, dir, &s);
    }
    rows
}

/// The text section: by device, then register.
pub fn text(counters: &Counters) -> String {
    let rows = rows(counters);
    if rows.is_empty() {
        return String::new();
    }
    let all = counters.by_reason.get("io").copied().unwrap_or_default().count
        + counters.by_reason.get("mmio").copied().unwrap_or_default().count;
    let mut out = format!(
        "\n{:<40} {:<22} {:<5} {:>10} {:>9} {:>11}\n",
        "Device", "Register", "", "Samples", "Samples%", "Avg time"
    );
    for ((device, register, dir), s) in &rows {
        let reg = if register.is_empty() { "-" } else { register };
        let _ = writeln!(
            out,
            "{device:<40} {reg:<22} {dir:<5} {:>10} {:>8.2}% {:>9.2}us",
            s.count,
            percent(s.count, all),
            micros(s.avg_ns())
        );
    }
    out
}

/// The JSON summary's `by_register`: `{device, register, dir, count, total_ns}` per row.
pub fn json(counters: &Counters) -> Value {
    let rows: Vec<Value> = rows(counters)
        .into_iter()
        .map(|((device, register, dir), s)| {
            json!({ "device": device, "register": register, "dir": dir, "count": s.count, "total_ns": s.total_ns })
        })
        .collect();
    Value::Array(rows)
}

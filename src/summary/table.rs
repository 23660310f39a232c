//! The exits by reason, port, MSR and MMIO address: a table like `perf kvm stat report`, and the
//! same counts as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::{micros, percent};
use crate::trace::counters::{MMIO_ADDRS, MMIO_PAGES, MmioBucket};
use crate::trace::{Counters, Stat};

fn us(ns: u64) -> String {
    format!("{:.2}us", micros(ns))
}

fn pct(part: u64, whole: u64) -> String {
    format!("{:.2}%", percent(part, whole))
}

fn row(out: &mut String, name: &str, s: &Stat, total: &Stat) {
    let _ = writeln!(
        out,
        "{name:>22} {:>10} {:>9} {:>9} {:>11} {:>11} {:>11}",
        s.count,
        pct(s.count, total.count),
        pct(s.total_ns, total.total_ns),
        us(s.min_ns),
        us(s.max_ns),
        us(s.avg_ns())
    );
}

fn header(out: &mut String, first: &str) {
    let _ = writeln!(
        out,
        "{first:>22} {:>10} {:>9} {:>9} {:>11} {:>11} {:>11}",
        "Samples", "Samples%", "Time%", "Min Time", "Max Time", "Avg time"
    );
}

/// The table: exits by reason, then by port and by MMIO address, sorted by samples.
pub fn table(counters: &Counters) -> String {
    let mut out = String::new();
    header(&mut out, "VM-EXIT");
    let mut reasons: Vec<_> = counters.reasons_sorted().into_iter().collect();
    reasons.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
    for (name, s) in &reasons {
        row(&mut out, name, s, &counters.total);
    }
    let _ = writeln!(
        out,
        "\nTotal Samples:{}, Total events handled time:{}",
        counters.total.count,
        us(counters.total.total_ns)
    );
    if !counters.by_port.is_empty() {
        let _ = writeln!(out);
        header(&mut out, "IO Port Access");
        let (ports, more) = busiest(counters.ports_sorted(), TEXT_ROWS);
        let io_total = counters.by_reason.get("io").copied().unwrap_or_default();
        for ((port, dir), s) in ports {
            row(&mut out, &format!("{port:#x}:{}", dir.io_name().to_uppercase()), &s, &io_total);
        }
        more_row(&mut out, more, "ports", &io_total);
    }
    if !counters.by_msr.is_empty() {
        let _ = writeln!(out);
        header(&mut out, "MSR Access");
        let reads = counters.by_reason.get("x86_rdmsr").copied().unwrap_or_default();
        let writes = counters.by_reason.get("x86_wrmsr").copied().unwrap_or_default();
        let mut all = reads;
        all.merge(&writes);
        for ((index, dir), s) in counters.msrs_sorted() {
            let name = crate::trace::msr::name(index).map_or(format!("{index:#x}"), str::to_string);
            row(&mut out, &format!("{name}:{}", dir.mmio_name().to_uppercase()), &s, &all);
        }
    }
    if counters.has_mmio() {
        let _ = writeln!(out);
        header(&mut out, "MMIO Access");
        let (mmio, more) = busiest(counters.mmio_sorted(), TEXT_ROWS);
        let mmio_total = counters.by_reason.get("mmio").copied().unwrap_or_default();
        for ((bucket, dir), s) in mmio {
            row(&mut out, &format!("{bucket}:{}", dir.mmio_name().to_uppercase()), &s, &mmio_total);
        }
        more_row(&mut out, more, "addresses", &mmio_total);
        if counters.mmio_coarsened() {
            let _ = writeln!(
                out,
                "(MMIO past the first {MMIO_ADDRS} addresses is counted per 4 KiB page, past {MMIO_PAGES} pages as other)"
            );
        }
    }
    out
}

/// Rows of a breakdown in the text summary; the rest are totalled in one.
const TEXT_ROWS: usize = 50;
/// Entries of a breakdown in the JSON summary; the rest are totalled in `io_more` / `mmio_more`.
const JSON_ENTRIES: usize = 100;

/// Entries left out of a breakdown: how many, and their total.
pub type LeftOut = Option<(usize, Stat)>;

/// The `n` busiest entries, busiest first, and how many others there are with their total.
pub fn busiest<K: Ord + Copy>(all: BTreeMap<K, Stat>, n: usize) -> (Vec<(K, Stat)>, LeftOut) {
    let mut v: Vec<(K, Stat)> = all.into_iter().collect();
    v.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
    if v.len() <= n {
        return (v, None);
    }
    let rest = v.split_off(n);
    let mut total = Stat::default();
    rest.iter().for_each(|(_, s)| total.merge(s));
    (v, Some((rest.len(), total)))
}

fn more_row(out: &mut String, more: LeftOut, what: &str, total: &Stat) {
    if let Some((n, s)) = more {
        row(out, &format!("({n} more {what})"), &s, total);
    }
}

fn more_json(more: LeftOut) -> Value {
    more.map_or(Value::Null, |(n, s)| json!({ "entries": n, "count": s.count, "time": stat_json(&s) }))
}

fn stat_json(s: &Stat) -> Value {
    json!({ "count": s.count, "total_ns": s.total_ns, "min_ns": s.min_ns, "avg_ns": s.avg_ns(), "max_ns": s.max_ns })
}

/// The exit counts of the JSON summary: `exits`, `by_reason`, `msr`, `io`, `mmio` (with what the
/// breakdowns left out) and `time_by_reason`.
pub fn json(counters: &Counters) -> Map<String, Value> {
    let by_reason: serde_json::Map<String, Value> =
        counters.reasons_sorted().into_iter().map(|(k, s)| (k.to_string(), json!(s.count))).collect();
    let time_by_reason: serde_json::Map<String, Value> =
        counters.reasons_sorted().into_iter().map(|(k, s)| (k.to_string(), stat_json(&s))).collect();
    let (mut ports, io_more) = busiest(counters.ports_sorted(), JSON_ENTRIES);
    ports.sort_by_key(|p| p.0);
    let io: Vec<Value> = ports
        .into_iter()
        .map(|((port, dir), s)| json!({ "port": port, "dir": dir.io_name(), "count": s.count, "time": stat_json(&s) }))
        .collect();
    let (mut buckets, mmio_more) = busiest(counters.mmio_sorted(), JSON_ENTRIES);
    buckets.sort_by_key(|m| m.0);
    let mmio: Vec<Value> = buckets
        .into_iter()
        .map(|((bucket, dir), s)| {
            let mut v = json!({ "dir": dir.mmio_name(), "count": s.count, "time": stat_json(&s) });
            match bucket {
                MmioBucket::Addr(a) => v["addr"] = json!(a),
                MmioBucket::Page(p) => v["page"] = json!(p),
                MmioBucket::Other => v["other"] = json!(true),
            }
            v
        })
        .collect();
    let msr: Vec<Value> = counters
        .msrs_sorted()
        .into_iter()
        .map(|((index, dir), s)| {
            let name = crate::trace::msr::name(index);
            json!({ "msr": index, "name": name, "dir": dir.mmio_name(), "count": s.count, "time": stat_json(&s) })
        })
        .collect();
    let mut v = Map::new();
    v.insert("exits".into(), json!(counters.total.count));
    v.insert("by_reason".into(), Value::Object(by_reason));
    v.insert("time_by_reason".into(), Value::Object(time_by_reason));
    v.insert("msr".into(), json!(msr));
    v.insert("io".into(), json!(io));
    v.insert("io_more".into(), more_json(io_more));
    v.insert("mmio".into(), json!(mmio));
    v.insert("mmio_more".into(), more_json(mmio_more));
    v
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::trace::{Dir, ExitEvent, ExitKind};

    /// Three writes to 0x3f8 and two reads of 0x3fd, 1.5 µs each.
    pub fn counters() -> Counters {
        let mut c = Counters::default();
        for (port, dir, n) in [(0x3f8u16, Dir::Out, 3), (0x3fd, Dir::In, 2)] {
            for _ in 0..n {
                c.record(&ExitEvent {
                    seq: 0,
                    vcpu: 0,
                    t_ns: 0,
                    rip: 0,
                    kind: ExitKind::Io { port, dir, size: 1, count: 1, data: 0 },
                    device: Some("serial"),
                    insn: None,
                    cost_ns: 1500,
                });
            }
        }
        c
    }

    #[test]
    fn json_counts_exits_by_reason_and_port() {
        let v = Value::Object(json(&counters()));
        assert_eq!(v["exits"], 5);
        assert_eq!(v["by_reason"]["io"], 5);
        assert_eq!(v["io"][0], json!({"port": 0x3f8, "dir": "out", "count": 3, "time": v["io"][0]["time"]}));
        assert_eq!(v["io"][1]["dir"], "in");
        assert_eq!(v["mmio"], json!([]));
    }

    #[test]
    fn text_is_a_perf_like_table() {
        let t = table(&counters());
        assert!(t.contains("VM-EXIT"), "{t}");
        assert!(t.contains("io          5   100.00%"), "{t}");
        assert!(t.contains("0x3f8:OUT          3    60.00%"), "{t}");
        assert!(t.contains("1.50us"), "{t}");
    }
}

//! The summary of a run: how it ended, its exits as a table like `perf kvm stat report`, per vCPU,
//! what KVM counted itself, the virtio devices, in-kernel events and dirty pages — as text or as
//! one JSON object. A run that has just ended and a run read back from its recording (`kvmscope
//! stats`) fill the same [`Summary`], so both say the same numbers in the same shape.

pub mod crash;
pub mod kvm;
pub mod registers;
pub mod self_profile;
pub mod table;

use std::fmt::Write as _;

use serde_json::{Value, json};

pub use crash::crash_text;
pub use kvm::{KVM_NAMED, kvm_json, kvm_shown, kvm_text};
pub use table::{LeftOut, busiest};

use crate::decode::symbols::Symbols;
use crate::trace::stage_times::StageTimes;
use crate::trace::{Counters, DeviceCounters};
use crate::vmm::RunEnd;
use crate::vmm::dirty::DirtyTracker;
use crate::vmm::kernel_events::KernelCounts;
use crate::vmm::kvm_stats::{KvmCounts, StatsError};
use crate::vmm::outcome::debug_exit_status;

/// Summary formats for `--summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SummaryFormat {
    Text,
    Json,
    None,
}

/// Nanoseconds as microseconds.
pub fn micros(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
}

/// How a run ended, as a summary states it: from the live [`RunEnd`], or a recording's end record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// Short name ("debug-exit", "halted" ...).
    pub name: String,
    /// In words.
    pub detail: String,
    /// kvmscope's exit status for it.
    pub status: i32,
    /// The value a guest wrote to the debug-exit port, when that ended the run.
    pub debug_exit: Option<u32>,
}

impl From<&RunEnd> for Ending {
    fn from(end: &RunEnd) -> Self {
        let debug_exit = if let RunEnd::DebugExit { value } = end { Some(*value) } else { None };
        Ending { name: end.name().into(), detail: end.to_string(), status: end.status(), debug_exit }
    }
}

/// The part of a run a summary covers: all of it, or `stats --vcpu/--from/--to`'s selection.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Selection {
    pub vcpu: Option<u32>,
    /// Seconds into the run.
    pub from: Option<f64>,
    pub to: Option<f64>,
}

impl Selection {
    pub fn is_all(&self) -> bool {
        *self == Selection::default()
    }
}

impl std::fmt::Display for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.vcpu {
            Some(v) => write!(f, "VCPU {v}")?,
            None => write!(f, "all VCPUs")?,
        }
        match (self.from, self.to) {
            (Some(a), Some(b)) => write!(f, " from {a:.3}s to {b:.3}s"),
            (Some(a), None) => write!(f, " from {a:.3}s"),
            (None, Some(b)) => write!(f, " before {b:.3}s"),
            (None, None) => Ok(()),
        }
    }
}

/// Everything a summary says of a run.
pub struct Summary<'a> {
    pub counters: &'a Counters,
    /// Each vCPU's own counters, by index.
    pub per_vcpu: Vec<(u32, &'a Counters)>,
    pub ending: Ending,
    /// The run's length, or the selection's.
    pub elapsed_ns: u64,
    pub selection: Selection,
    /// What KVM counted itself (the whole run's, whatever the selection), or why it is not known.
    pub kvm: &'a Result<KvmCounts, StatsError>,
    pub devices: &'a DeviceCounters,
    pub kernel: Option<&'a KernelCounts>,
    pub dirty: Option<&'a DirtyTracker>,
    /// Names the hottest dirty pages.
    pub symbols: &'a Symbols,
    pub self_profile: Option<&'a StageTimes>,
}

impl Summary<'_> {
    /// The text summary.
    pub fn text(&self) -> String {
        let e = &self.ending;
        let mut out = String::new();
        let _ = writeln!(out, "\nkvmscope: run ended: {} (status {})", e.detail, e.status);
        let _ = writeln!(
            out,
            "Analyze events for {}: {} exits in {:.3}s\n",
            self.selection,
            self.counters.total.count,
            self.elapsed_ns as f64 / 1e9
        );
        out.push_str(&table::table(self.counters));
        out.push_str(&registers::text(self.counters));
        if self.per_vcpu.len() > 1 || self.selection.vcpu.is_some() {
            let total = &self.counters.total;
            let _ = writeln!(out, "\n{:>22} {:>10} {:>9} {:>9}", "VCPU", "Samples", "Samples%", "Time%");
            for (vcpu, c) in &self.per_vcpu {
                let _ = writeln!(
                    out,
                    "{vcpu:>22} {:>10} {:>8.2}% {:>8.2}%",
                    c.total.count,
                    percent(c.total.count, total.count),
                    percent(c.total.total_ns, total.total_ns)
                );
            }
        }
        out.push_str(&kvm_text(self.kvm, self.counters.total.count));
        out.push_str(&self.devices.text());
        if let Some(k) = self.kernel {
            out.push_str(&k.text());
        }
        if let Some(d) = self.dirty {
            out.push_str(&d.text(self.symbols));
        }
        if let Some(p) = self.self_profile {
            out.push_str(&self_profile::text(p));
        }
        out
    }

    /// The JSON summary: `exits`, `by_reason`, `io`, `mmio`, `msr` and their times, `by_register`
    /// (the port and MMIO exits by device and register); `status`,
    /// `end`, `end_detail` (and `debug_exit`: the value the guest wrote and the full status
    /// `(value << 1) | 1`, of which `status` is the low 8 bits); `elapsed_ns`; `selection`;
    /// `per_vcpu` (a list of `{vcpu, exits, by_reason}`); `kvm`; `virtio`; and, when the run had
    /// them, `kernel_events`, `dirty_log` and `self_profile`.
    pub fn json(&self) -> Value {
        let mut v = table::json(self.counters);
        v.insert("by_register".into(), registers::json(self.counters));
        let e = &self.ending;
        v.insert("status".into(), json!(e.status));
        v.insert("end".into(), json!(e.name));
        v.insert("end_detail".into(), json!(e.detail));
        if let Some(value) = e.debug_exit {
            v.insert("debug_exit".into(), json!({ "value": value, "full_status": debug_exit_status(value) }));
        }
        v.insert("elapsed_ns".into(), json!(self.elapsed_ns));
        let s = &self.selection;
        v.insert("selection".into(), json!({ "vcpu": s.vcpu, "from_s": s.from, "to_s": s.to }));
        let per_vcpu: Vec<Value> = self
            .per_vcpu
            .iter()
            .map(|(vcpu, c)| {
                let reasons: serde_json::Map<String, Value> =
                    c.reasons_sorted().into_iter().map(|(k, s)| (k.to_string(), json!(s.count))).collect();
                json!({ "vcpu": vcpu, "exits": c.total.count, "by_reason": reasons })
            })
            .collect();
        v.insert("per_vcpu".into(), json!(per_vcpu));
        v.insert("kvm".into(), kvm_json(self.kvm, self.counters.total.count));
        v.insert("virtio".into(), self.devices.json());
        if let Some(k) = self.kernel {
            v.insert("kernel_events".into(), k.json());
        }
        if let Some(d) = self.dirty {
            v.insert("dirty_log".into(), d.json(self.symbols));
        }
        if let Some(p) = self.self_profile {
            v.insert("self_profile".into(), self_profile::json(p));
        }
        Value::Object(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary<'a>(
        counters: &'a Counters,
        kvm: &'a Result<KvmCounts, StatsError>,
        dev: &'a DeviceCounters,
    ) -> Summary<'a> {
        Summary {
            counters,
            per_vcpu: vec![(0, counters)],
            ending: Ending::from(&RunEnd::DebugExit { value: 1 }),
            elapsed_ns: 10,
            selection: Selection::default(),
            kvm,
            devices: dev,
            kernel: None,
            dirty: None,
            symbols: &EMPTY,
            self_profile: None,
        }
    }

    static EMPTY: std::sync::LazyLock<Symbols> = std::sync::LazyLock::new(Symbols::default);

    #[test]
    fn json_has_the_documented_fields() {
        let (c, kvm, dev) = (table::tests::counters(), Err(StatsError::Layout("none here")), DeviceCounters::default());
        let v = summary(&c, &kvm, &dev).json();
        assert_eq!(v["exits"], 5);
        assert_eq!(v["status"], 3);
        assert_eq!(v["debug_exit"], json!({"value": 1, "full_status": 3}));
        assert_eq!(v["per_vcpu"], json!([{"vcpu": 0, "exits": 5, "by_reason": {"io": 5}}]));
        assert_eq!(v["selection"], json!({"vcpu": null, "from_s": null, "to_s": null}));
        assert_eq!(v["kvm"], json!({"unavailable": "KVM's statistics are not laid out as expected: none here"}));
    }

    #[test]
    fn the_text_names_the_selection() {
        let (c, kvm, dev) = (table::tests::counters(), Err(StatsError::NotRecorded), DeviceCounters::default());
        let mut s = summary(&c, &kvm, &dev);
        assert!(s.text().contains("Analyze events for all VCPUs: 5 exits in 0.000s"), "{}", s.text());
        s.selection = Selection { vcpu: Some(0), from: Some(0.5), to: Some(1.5) };
        assert!(s.text().contains("Analyze events for VCPU 0 from 0.500s to 1.500s: 5 exits"), "{}", s.text());
    }
}

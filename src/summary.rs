//! The end-of-run summary: a table like `perf kvm stat report`, or one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::trace::counters::{MMIO_ADDRS, MMIO_PAGES, MmioBucket};
use crate::trace::stage_times::{STAGES, StageTimes};
use crate::trace::{Counters, Stat};
use crate::vmm::kvm_stats::{KvmCounts, Reading, value};
use crate::vmm::outcome::debug_exit_status;
use crate::vmm::{CrashReport, RunEnd};

/// Summary formats for `--summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SummaryFormat {
    Text,
    Json,
    None,
}

/// Nanoseconds as perf prints them: microseconds with two decimals.
/// Nanoseconds as microseconds.
pub fn micros(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
}

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

/// The text summary: how the run ended, then the table.
pub fn text(counters: &Counters, end: &RunEnd, elapsed_ns: u64) -> String {
    text_for(counters, &end.to_string(), end.status(), elapsed_ns)
}

/// The text summary for an end given as words and status (a recorded run's).
pub fn text_for(counters: &Counters, end: &str, status: i32, elapsed_ns: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nkvmscope: run ended: {end} (status {status})");
    let _ = writeln!(
        out,
        "Analyze events for all VCPUs: {} exits in {:.3}s\n",
        counters.total.count,
        elapsed_ns as f64 / 1e9
    );
    out.push_str(&table(counters));
    out
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

/// The JSON summary: `exits`, `by_reason`, `io`, `mmio`, `status`, with timing detail beside them.
/// A debug-exit end adds `debug_exit`: the value the guest wrote and the full status
/// `(value << 1) | 1`, of which `status` is the low 8 bits.
pub fn json(counters: &Counters, end: &RunEnd, elapsed_ns: u64) -> Value {
    let mut v = json_for(counters, end.name(), &end.to_string(), end.status(), elapsed_ns);
    if let RunEnd::DebugExit { value } = end {
        v["debug_exit"] = json!({ "value": value, "full_status": debug_exit_status(*value) });
    }
    v
}

/// The JSON summary for an end given by name, words and status (a recorded run's).
pub fn json_for(counters: &Counters, name: &str, detail: &str, status: i32, elapsed_ns: u64) -> Value {
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
    json!({
        "exits": counters.total.count,
        "by_reason": by_reason,
        "msr": msr,
        "io": io,
        "io_more": more_json(io_more),
        "mmio": mmio,
        "mmio_more": more_json(mmio_more),
        "status": status,
        "end": name,
        "end_detail": detail,
        "elapsed_ns": elapsed_ns,
        "time_by_reason": time_by_reason,
    })
}

/// KVM's vCPU statistics shown first, by name (kvm_stat's); the other non-zero ones follow.
pub const KVM_NAMED: [&str; 16] = [
    "exits",
    "io_exits",
    "mmio_exits",
    "halt_exits",
    "irq_exits",
    "irq_window_exits",
    "signal_exits",
    "pf_taken",
    "pf_fixed",
    "pf_emulate",
    "insn_emulation",
    "insn_emulation_fail",
    "hypercalls",
    "irq_injections",
    "halt_attempted_poll",
    "halt_successful_poll",
];

/// KVM's vCPU statistics to show: the named ones, then every other that is not zero.
pub fn kvm_shown(vcpus: &Reading) -> Vec<(&str, u64)> {
    let mut shown: Vec<(&str, u64)> = KVM_NAMED.iter().map(|&n| (n, value(vcpus, n))).collect();
    shown.extend(
        vcpus.iter().filter(|(n, _, v)| *v > 0 && !KVM_NAMED.contains(&n.as_str())).map(|(n, _, v)| (n.as_str(), *v)),
    );
    shown
}

/// The text summary's section on what KVM counted itself.
pub fn kvm_text(kvm: &Result<KvmCounts, String>, userspace_exits: u64) -> String {
    let counts = match kvm {
        Ok(c) => c,
        Err(why) => return format!("\nIn KVM: not shown ({why})\n"),
    };
    let mut out = String::new();
    let total = value(&counts.vcpus, "exits");
    let _ = writeln!(
        out,
        "\nIn KVM (its own statistics, all vCPUs): of {total} exits, {userspace_exits} reached userspace"
    );
    for (name, v) in kvm_shown(&counts.vcpus) {
        let _ = writeln!(out, "{name:>26} {v:>12}");
    }
    let vm: Vec<String> = counts.vm.iter().filter(|(_, _, v)| *v > 0).map(|(n, _, v)| format!("{n} {v}")).collect();
    if !vm.is_empty() {
        let _ = writeln!(out, "{:>26} {}", "VM", vm.join(", "));
    }
    out
}

/// The exits of each vCPU, for a run with more than one.
pub fn per_vcpu_text(per_vcpu: &[Counters]) -> String {
    let each: Vec<String> = per_vcpu.iter().enumerate().map(|(i, c)| format!("vCPU {i}: {}", c.total.count)).collect();
    format!("Exits per vCPU: {}\n", each.join(", "))
}

/// `--self-profile`: each stage's mean nanoseconds per exit and its share of the exit's time.
pub fn self_profile_text(p: &StageTimes) -> String {
    let per_exit: f64 = STAGES.iter().map(|(s, ..)| p.per_exit(*s)).sum();
    let share = |ns: f64| if per_exit > 0.0 { ns / per_exit * 100.0 } else { 0.0 };
    let mut out = format!("\nSelf-profile of the vCPU loop ({} exits), mean per exit:\n", p.exits);
    for (stage, _, name) in STAGES {
        let ns = p.per_exit(stage);
        let _ = writeln!(out, "{name:>36} {ns:>10.1} ns {:>6.2}%", share(ns));
    }
    let user = p.userspace_per_exit();
    let _ = writeln!(out, "{:>36} {user:>10.1} ns {:>6.2}%", "kvmscope's userspace in all", share(user));
    out
}

/// The JSON summary's `self_profile` object: exits, and per stage its mean nanoseconds per exit.
pub fn self_profile_json(p: &StageTimes) -> Value {
    let stages: serde_json::Map<String, Value> =
        STAGES.iter().map(|(s, key, _)| (key.to_string(), json!(p.per_exit(*s)))).collect();
    json!({ "exits": p.exits, "ns_per_exit": stages, "userspace_ns_per_exit": p.userspace_per_exit() })
}

/// The JSON summary's `kvm` object: every statistic of the vCPUs (added up) and of the VM, the
/// exits KVM counted and those that reached userspace; `null` with `kvm_unavailable` where the host
/// has no binary statistics.
pub fn kvm_json(kvm: &Result<KvmCounts, String>, userspace_exits: u64) -> Value {
    match kvm {
        Ok(c) => {
            let map = |r: &Reading| -> serde_json::Map<String, Value> {
                r.iter().map(|(n, _, v)| (n.clone(), json!(v))).collect()
            };
            json!({
                "exits": value(&c.vcpus, "exits"),
                "userspace_exits": userspace_exits,
                "vcpu": map(&c.vcpus),
                "vm": map(&c.vm),
            })
        }
        Err(why) => json!({ "unavailable": why }),
    }
}

/// The state of a crashed vCPU: registers, the instruction at RIP, and its last exits.
pub fn crash_text(c: &CrashReport) -> String {
    let r = &c.regs;
    let s = &c.sregs;
    let mut out = String::new();
    let _ = writeln!(out, "kvmscope: vCPU {} state at the crash:", c.vcpu);
    let _ = writeln!(out, "  rax {:016x} rbx {:016x} rcx {:016x} rdx {:016x}", r.rax, r.rbx, r.rcx, r.rdx);
    let _ = writeln!(out, "  rsi {:016x} rdi {:016x} rbp {:016x} rsp {:016x}", r.rsi, r.rdi, r.rbp, r.rsp);
    let _ = writeln!(out, "  r8  {:016x} r9  {:016x} r10 {:016x} r11 {:016x}", r.r8, r.r9, r.r10, r.r11);
    let _ = writeln!(out, "  r12 {:016x} r13 {:016x} r14 {:016x} r15 {:016x}", r.r12, r.r13, r.r14, r.r15);
    let _ = writeln!(out, "  rip {:016x} rflags {:08x}", r.rip, r.rflags);
    let _ = writeln!(
        out,
        "  cs {:04x} ss {:04x} ds {:04x} cr0 {:x} cr2 {:x} cr3 {:x} cr4 {:x} efer {:x}",
        s.cs.selector, s.ss.selector, s.ds.selector, s.cr0, s.cr2, s.cr3, s.cr4, s.efer
    );
    match &c.insn {
        Some(i) => {
            let _ = writeln!(out, "  at rip: {}  ({})", i.text, i.hex());
        }
        None if c.rip_bytes.is_empty() => {
            let _ = writeln!(out, "  at rip: (unreadable: not mapped to guest RAM)");
        }
        None => {
            let hex: Vec<String> = c.rip_bytes.iter().map(|b| format!("{b:02x}")).collect();
            let _ = writeln!(out, "  at rip: undecodable bytes {}", hex.join(" "));
        }
    }
    if !c.last_exits.is_empty() {
        let _ = writeln!(out, "  last exits:");
        for e in &c.last_exits {
            let insn = e.insn.as_ref().map(|i| i.text.as_str()).unwrap_or("");
            let _ =
                writeln!(out, "    #{:<8} {:<14} rip {:#x} {}  {}", e.seq, e.kind.reason(), e.rip, e.detail(), insn);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Dir, ExitEvent, ExitKind};

    fn counters() -> Counters {
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
    fn json_has_the_documented_fields() {
        let v = json(&counters(), &RunEnd::DebugExit { value: 1 }, 10);
        assert_eq!(v["exits"], 5);
        assert_eq!(v["by_reason"]["io"], 5);
        assert_eq!(v["status"], 3);
        assert_eq!(v["io"][0], json!({"port": 0x3f8, "dir": "out", "count": 3, "time": v["io"][0]["time"]}));
        assert_eq!(v["io"][1]["dir"], "in");
        assert_eq!(v["mmio"], json!([]));
    }

    #[test]
    fn text_is_a_perf_like_table() {
        let t = text(&counters(), &RunEnd::Halted { vcpu: 0, interrupts_on: false }, 1_000_000);
        assert!(t.contains("VM-EXIT"), "{t}");
        assert!(t.contains("io          5   100.00%"), "{t}");
        assert!(t.contains("0x3f8:OUT          3    60.00%"), "{t}");
        assert!(t.contains("1.50us"), "{t}");
    }

    #[test]
    fn a_crash_at_undecodable_bytes_shows_them() {
        let report = |rip_bytes: Vec<u8>| CrashReport {
            vcpu: 0,
            regs: Default::default(),
            sregs: Default::default(),
            insn: None,
            rip_bytes,
            last_exits: Vec::new(),
        };
        let text = crash_text(&report(vec![0xff; 4]));
        assert!(text.contains("at rip: undecodable bytes ff ff ff ff"), "{text}");
        let text = crash_text(&report(Vec::new()));
        assert!(text.contains("at rip: (unreadable: not mapped to guest RAM)"), "{text}");
    }
}

//! `kvmscope stats FILE`: the run's summary recomputed from its recording (the same numbers), and
//! a `perf kvm stat report`-like breakdown per vCPU; filtered by vCPU and time window.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::AnalysisError;
use super::profile::RipProfile;
use crate::decode::symbols::Symbols;
use crate::recording::Record;
use crate::summary;
use crate::trace::{Counters, DeviceCounters};
use crate::vmm::kernel_events::KernelCounts;
use crate::vmm::kvm_stats::KvmCounts;

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The trace file.
    pub file: PathBuf,
    /// Print JSON (the run's `--summary json` object, plus per-vCPU counts).
    #[arg(long)]
    pub json: bool,
    /// Only this vCPU's exits.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub vcpu: Option<u32>,
    /// Only exits at or after this many seconds into the run.
    #[arg(long, value_name = "SECS", allow_hyphen_values = true, value_parser = crate::headless::parse_seconds)]
    pub from: Option<f64>,
    /// Only exits before this many seconds into the run.
    #[arg(long, value_name = "SECS", allow_hyphen_values = true, value_parser = crate::headless::parse_seconds)]
    pub to: Option<f64>,
    /// Group by exit reason (the run's summary), or by the guest function that made the exits.
    #[arg(long, value_enum, default_value = "reason")]
    pub by: By,
    /// The guest's symbols for `--by symbol` (an ELF image, vmlinux or System.map); default: the
    /// recorded guest image.
    #[arg(long, value_name = "FILE")]
    pub symbols: Option<PathBuf>,
}

/// What `stats` groups exits by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    Reason,
    Symbol,
}

/// Counters of a recording, as the run counted them.
pub struct RecordedRun {
    pub counters: Counters,
    pub per_vcpu: BTreeMap<u32, Counters>,
    /// (status, name, detail, t_ns) of the end record, if the recording has one.
    pub end: Option<(i32, String, String, u64)>,
    /// KVM's own counters at the last sample, if the recording has one.
    pub kvm: Option<KvmCounts>,
    /// The virtio devices' events, counted (in the time window).
    pub devices: DeviceCounters,
    /// Exits per guest RIP (in the window), for the profile by function.
    pub profile: RipProfile,
    /// KVM's tracepoints at the last sample (`--kernel-events`), the whole run's.
    pub kernel: Option<KernelCounts>,
    /// Pages dirtied per interval (`--dirty-log`), in the window.
    pub dirty: Vec<u64>,
    /// The guest image the recording names.
    pub guest_image: String,
    pub last_t_ns: u64,
}

/// Reads and counts a recording.
pub fn count(args: &StatsArgs) -> Result<RecordedRun, AnalysisError> {
    let from = args.from.map(|s| (s * 1e9) as u64).unwrap_or(0);
    let to = args.to.map(|s| (s * 1e9) as u64).unwrap_or(u64::MAX);
    let mut run = RecordedRun {
        counters: Counters::default(),
        per_vcpu: BTreeMap::new(),
        end: None,
        kvm: None,
        devices: DeviceCounters::default(),
        profile: RipProfile::default(),
        kernel: None,
        dirty: Vec::new(),
        guest_image: String::new(),
        last_t_ns: 0,
    };
    let reader = super::read_all_warning(&args.file, |r| match r {
        Record::Exit(e) => {
            run.last_t_ns = run.last_t_ns.max(e.t_ns);
            if args.vcpu.is_none_or(|v| v == e.vcpu) && (from..to).contains(&e.t_ns) {
                run.counters.record(&e);
                run.per_vcpu.entry(e.vcpu).or_default().record(&e);
                run.profile.record(&e);
            }
        }
        Record::End { t_ns, status, name, detail } => run.end = Some((status, name, detail, t_ns)),
        Record::Kvm { counts, .. } => run.kvm = Some(counts),
        Record::Device(d) if (from..to).contains(&d.t_ns) => run.devices.record(&d),
        Record::Dirty { t_ns, pages } if (from..to).contains(&t_ns) => run.dirty.push(pages),
        Record::Kernel { by_event, by_rip, .. } => {
            let mut k = KernelCounts { by_event: by_event.into_iter().collect(), ..Default::default() };
            // The RIPs come with the last sample only; an earlier one keeps those already read.
            k.by_rip = if by_rip.is_empty() {
                run.kernel.take().map(|o| o.by_rip).unwrap_or_default()
            } else {
                by_rip.into_iter().collect()
            };
            run.kernel = Some(k);
        }
        _ => {}
    })?;
    run.guest_image = reader.header.guest_image.clone();
    Ok(run)
}

/// Runs the command.
pub fn run(args: &StatsArgs) -> Result<(), AnalysisError> {
    let run = count(args)?;
    if args.by == By::Symbol {
        let path = args.symbols.clone().unwrap_or_else(|| PathBuf::from(&run.guest_image));
        let symbols = Symbols::load(&path).map_err(AnalysisError::Symbols)?;
        // In-kernel events (tracepoints) that carry a RIP, by the same functions.
        let mut in_kernel = RipProfile::default();
        for (&rip, &n) in run.kernel.iter().flat_map(|k| k.by_rip.iter()) {
            in_kernel.add_count(rip, "in-kernel", n);
        }
        if args.json {
            println!(
                "{}",
                json!({ "by_symbol": run.profile.json(&symbols), "in_kernel_by_symbol": in_kernel.json(&symbols) })
            );
        } else {
            print!("{}", run.profile.text(&symbols));
            if run.kernel.is_some() {
                println!("\n# In-kernel events (kvm_emulate_insn, kvm_exit) by guest function:");
                print!("{}", in_kernel.text(&symbols));
            }
        }
        return Ok(());
    }
    let (status, name, detail, elapsed) = run.end.clone().unwrap_or((
        1,
        "incomplete".into(),
        "the recording has no end record (the run was killed, or the file is cut short)".into(),
        run.last_t_ns,
    ));
    // KVM's counters are the whole run's (the last sample), whatever the filters.
    let kvm = run.kvm.clone().ok_or_else(|| "the recording has no sample of KVM's counters".to_string());
    if args.json {
        let mut v = summary::json_for(&run.counters, &name, &detail, status, elapsed);
        v["kvm"] = summary::kvm_json(&kvm, run.counters.total.count);
        let per_vcpu: serde_json::Map<String, serde_json::Value> = run
            .per_vcpu
            .iter()
            .map(|(vcpu, c)| {
                let reasons: serde_json::Map<String, serde_json::Value> =
                    c.reasons_sorted().into_iter().map(|(k, s)| (k.to_string(), json!(s.count))).collect();
                (vcpu.to_string(), json!({ "exits": c.total.count, "by_reason": reasons }))
            })
            .collect();
        v["per_vcpu"] = json!(per_vcpu);
        v["virtio"] = run.devices.json();
        if let Some(k) = &run.kernel {
            v["kernel_events"] = k.json();
        }
        if !run.dirty.is_empty() {
            v["dirty_pages_per_interval"] = json!(run.dirty);
        }
        println!("{v}");
    } else {
        let mut out = summary::text_for(&run.counters, &detail, status, elapsed);
        let _ = writeln!(out, "\n{:>22} {:>10} {:>9} {:>9}", "VCPU", "Samples", "Samples%", "Time%");
        for (vcpu, c) in &run.per_vcpu {
            let _ = writeln!(
                out,
                "{vcpu:>22} {:>10} {:>8.2}% {:>8.2}%",
                c.total.count,
                summary::percent(c.total.count, run.counters.total.count),
                summary::percent(c.total.total_ns, run.counters.total.total_ns)
            );
        }
        out.push_str(&summary::kvm_text(&kvm, run.counters.total.count));
        out.push_str(&run.devices.text());
        if let Some(k) = &run.kernel {
            out.push_str(&k.text());
        }
        if !run.dirty.is_empty() {
            let max = run.dirty.iter().max().copied().unwrap_or(0);
            let _ =
                writeln!(out, "\nDirty pages per interval ({} intervals, max {max}): {:?}", run.dirty.len(), run.dirty);
        }
        print!("{out}");
    }
    Ok(())
}

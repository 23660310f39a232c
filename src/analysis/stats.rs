//! `kvmscope stats FILE`: the run's summary recomputed from its recording (the same numbers), and
//! a `perf kvm stat report`-like breakdown per vCPU; filtered by vCPU and time window.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::AnalysisError;
use super::profile::RipProfile;
use crate::decode::symbols::Symbols;
use crate::explain::Explainer;
use crate::explain::coverage::Coverage;
use crate::recording::trailer::ChunkEntry;
use crate::recording::{Record, TraceHeader, TraceReader};
use crate::summary::{Ending, Selection, Summary};
use crate::trace::{Counters, DeviceCounters, Dir, ExitKind};
use crate::vmm::dirty::DirtyTracker;
use crate::vmm::kernel_events::KernelCounts;
use crate::vmm::kvm_stats::{KvmCounts, StatsError};

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
    /// Group by exit reason (the run's summary), by the guest function that made the exits, or by
    /// device register (coverage).
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
    /// Device register coverage: per device and register, reads, writes, distinct values
    /// written, the first and last exit.
    Register,
}

/// Counters of a recording, as the run counted them.
pub struct RecordedRun {
    pub counters: Counters,
    pub per_vcpu: BTreeMap<u32, Counters>,
    /// (status, name, detail, t_ns) of the end record, if the recording has one.
    pub end: Option<(i32, String, String, u64)>,
    /// The value of the last write to the debug-exit port: what a debug-exit end wrote.
    pub debug_exit: Option<u32>,
    /// KVM's own counters at the last sample, if the recording has one.
    pub kvm: Option<KvmCounts>,
    /// The virtio devices' events, counted (in the time window).
    pub devices: DeviceCounters,
    /// Exits per guest RIP (in the window), for the profile by function.
    pub profile: RipProfile,
    /// KVM's tracepoints at the last sample (`--kernel-events`), the whole run's.
    pub kernel: Option<KernelCounts>,
    /// Pages dirtied per interval (`--dirty-log`), in the window.
    pub dirty: Option<DirtyTracker>,
    /// What the recording says about itself (the guest image and its hash ...).
    pub header: TraceHeader,
    /// The vCPUs that made exits, whatever the selection.
    pub vcpus_seen: BTreeSet<u32>,
    /// Device register coverage (`--by register`), in the selection.
    pub coverage: Coverage,
    pub last_t_ns: u64,
}

/// Why a selection of `stats` cannot hold any exit.
#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    #[error("--from {from}s is not before --to {to}s: no exit can be between them")]
    EmptyWindow { from: f64, to: f64 },
}

impl StatsArgs {
    pub fn selection(&self) -> Selection {
        Selection { vcpu: self.vcpu, from: self.from, to: self.to }
    }
}

/// Reads and counts a recording.
pub fn count(args: &StatsArgs) -> Result<RecordedRun, AnalysisError> {
    counted(args, true)
}

/// What a window reads, by the recording's index (see
/// [`crate::recording::trailer::window_chunks`]).
struct Window {
    reader: TraceReader,
    chunks: Vec<ChunkEntry>,
    /// The explainer's device state before the first chunk (`--by register`).
    state: Option<serde_json::Value>,
    /// The time of the recording's last exit.
    last_exit_t: u64,
}

/// The window `from..to` of the recording at `path`; `None` without a trusted index, or when
/// nothing is in the window.
fn windowed(path: &std::path::Path, from: u64, to: u64, explained: bool) -> Option<Window> {
    let reader = TraceReader::open(path).ok()?;
    let trailer = reader.trailer().ok()??;
    let last_exit_t = trailer.chunks.iter().filter(|c| c.exits > 0).map(|c| c.last_exit_t).max().unwrap_or(0);
    let (chunks, state) = crate::recording::trailer::window_chunks(&trailer, from, to, explained)?;
    Some(Window { reader, chunks, state, last_exit_t })
}

/// [`count`]; `by_index`: a window reads only the chunks it needs, where the index says which.
fn counted(args: &StatsArgs, by_index: bool) -> Result<RecordedRun, AnalysisError> {
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from >= to
    {
        return Err(AnalysisError::Selection(SelectionError::EmptyWindow { from, to }));
    }
    let from = args.from.map(|s| (s * 1e9) as u64).unwrap_or(0);
    let to = args.to.map(|s| (s * 1e9) as u64).unwrap_or(u64::MAX);
    let mut run = RecordedRun {
        counters: Counters::default(),
        per_vcpu: BTreeMap::new(),
        end: None,
        debug_exit: None,
        kvm: None,
        devices: DeviceCounters::default(),
        profile: RipProfile::default(),
        kernel: None,
        dirty: None,
        header: TraceHeader::default(),
        vcpus_seen: BTreeSet::new(),
        coverage: Coverage::default(),
        last_t_ns: 0,
    };
    // Explained in time order, every exit (device state follows the whole run), counted in the
    // selection. A window reads only the chunks it needs where the recording's index says which.
    let explained = args.by == By::Register;
    let mut window = if by_index && (args.from.is_some() || args.to.is_some()) {
        windowed(&args.file, from, to, explained)
    } else {
        None
    };
    let mut explainer = match window.as_ref().and_then(|w| w.state.as_ref()) {
        Some(state) => Explainer::with_state(state),
        None => explained.then(Explainer::default),
    };
    let mut each = |r: Record| match r {
        Record::Exit(e) => {
            run.last_t_ns = run.last_t_ns.max(e.t_ns);
            run.vcpus_seen.insert(e.vcpu);
            if let (Some("debug-exit"), ExitKind::Io { dir: Dir::Out, data, .. }) = (e.device, &e.kind) {
                run.debug_exit = Some(*data as u32);
            }
            let selected = args.vcpu.is_none_or(|v| v == e.vcpu) && (from..to).contains(&e.t_ns);
            if let Some(x) = explainer.as_mut().and_then(|x| x.explain(&e)) {
                if let (true, ExitKind::Io { dir, data, .. } | ExitKind::Mmio { dir, data, .. }) = (selected, &e.kind) {
                    run.coverage.record(&e, &x, *dir == Dir::Out, *data);
                }
            }
            if selected {
                run.counters.record(&e);
                run.per_vcpu.entry(e.vcpu).or_default().record(&e);
                run.profile.record(&e);
            }
        }
        Record::End { t_ns, status, name, detail } => run.end = Some((status, name, detail, t_ns)),
        Record::Kvm { counts, .. } => run.kvm = Some(counts),
        Record::Device(d) if (from..to).contains(&d.t_ns) => run.devices.record(&d),
        Record::Dirty { t_ns, pages } if (from..to).contains(&t_ns) => {
            run.dirty.get_or_insert_with(DirtyTracker::default).add_count(pages)
        }
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
    };
    let header = match &mut window {
        Some(Window { reader, chunks, .. }) => {
            for chunk in chunks.iter() {
                match reader.chunk_at(chunk.offset) {
                    Ok(records) if chunk.describes(&records) => records.into_iter().for_each(&mut each),
                    // Not what the index says: it is not trusted, the whole file is read.
                    Ok(_) => return counted(args, false),
                    // Damage: the whole read says where, and counts what comes before it.
                    Err(e) if e.is_damage() => return counted(args, false),
                    Err(e) => return Err(e.into()),
                }
            }
            reader.header.clone()
        }
        None => super::read_all_warning(&args.file, &mut each)?.header.clone(),
    };
    // Read in part: the recording's last exit from its index, the vCPUs seen from a whole read
    // where a selection holds no exit (the message names them).
    if let Some(w) = &window {
        run.last_t_ns = run.last_t_ns.max(w.last_exit_t);
        if run.counters.total.count == 0 {
            return counted(args, false);
        }
    }
    run.header = header;
    Ok(run)
}

impl RecordedRun {
    /// How the run ended, as its end record says (a recording without one says that).
    pub fn ending(&self) -> Ending {
        match &self.end {
            Some((status, name, detail, _)) => Ending {
                name: name.clone(),
                detail: detail.clone(),
                status: *status,
                debug_exit: self.debug_exit.filter(|_| name == "debug-exit"),
            },
            None => Ending {
                name: "incomplete".into(),
                detail: "the recording has no end record (the run was killed, or the file is cut short)".into(),
                status: 1,
                debug_exit: None,
            },
        }
    }

    /// The run's length (from its end record, or its last exit), or the part of it selected.
    pub fn elapsed_ns(&self, selection: &Selection) -> u64 {
        let end = self.end.as_ref().map_or(self.last_t_ns, |e| e.3);
        let from = selection.from.map_or(0, |s| (s * 1e9) as u64);
        let to = selection.to.map_or(end, |s| ((s * 1e9) as u64).min(end));
        to.saturating_sub(from)
    }

    /// Why the selection holds no exit, in words, when it holds none.
    pub fn empty_selection(&self, selection: &Selection) -> Option<String> {
        if self.counters.total.count > 0 || self.vcpus_seen.is_empty() {
            return None;
        }
        if let Some(v) = selection.vcpu
            && !self.vcpus_seen.contains(&v)
        {
            let seen: Vec<String> = self.vcpus_seen.iter().map(u32::to_string).collect();
            return Some(format!("--vcpu {v}: the recording has exits of vCPU {} only", seen.join(", ")));
        }
        Some(format!("no exits of {selection} (the recording's exits span 0 to {:.3}s)", self.last_t_ns as f64 / 1e9))
    }
}

/// Runs the command.
pub fn run(args: &StatsArgs) -> Result<(), AnalysisError> {
    let run = count(args)?;
    if args.by == By::Register {
        let text = if args.json {
            format!("{}\n", json!({ "by_register": run.coverage.json() }))
        } else {
            format!("# Device register coverage ({} exits)\n{}", run.counters.total.count, run.coverage.text())
        };
        return super::emit(&text);
    }
    if args.by == By::Symbol {
        let (symbols, warnings) = super::guest_image::symbols(&args.file, &run.header, args.symbols.as_deref())?;
        for w in warnings {
            crate::say!("kvmscope: warning: {w}");
        }
        // In-kernel events (tracepoints) that carry a RIP, by the same functions.
        let mut in_kernel = RipProfile::default();
        for (&rip, &n) in run.kernel.iter().flat_map(|k| k.by_rip.iter()) {
            in_kernel.add_count(rip, "in-kernel", n);
        }
        let text = if args.json {
            let v = json!({ "by_symbol": run.profile.json(&symbols), "in_kernel_by_symbol": in_kernel.json(&symbols) });
            format!("{v}\n")
        } else {
            let mut text = run.profile.text(&symbols);
            if run.kernel.is_some() {
                text.push_str("\n# In-kernel events (kvm_emulate_insn, kvm_exit) by guest function:\n");
                text.push_str(&in_kernel.text(&symbols));
            }
            text
        };
        return super::emit(&text);
    }
    let selection = args.selection();
    // KVM's counters are the whole run's (the last sample), whatever the filters.
    let kvm = run.kvm.clone().ok_or(StatsError::NotRecorded);
    let summary = Summary {
        counters: &run.counters,
        per_vcpu: run.per_vcpu.iter().map(|(v, c)| (*v, c)).collect(),
        ending: run.ending(),
        elapsed_ns: run.elapsed_ns(&selection),
        selection,
        kvm: &kvm,
        devices: &run.devices,
        kernel: run.kernel.as_ref(),
        dirty: run.dirty.as_ref(),
        symbols: &Symbols::default(),
        self_profile: None,
    };
    super::emit(&if args.json { format!("{}\n", summary.json()) } else { summary.text() })?;
    match run.empty_selection(&selection) {
        Some(why) => Err(AnalysisError::NothingSelected(why)),
        None => Ok(()),
    }
}

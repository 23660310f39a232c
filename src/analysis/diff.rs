//! `kvmscope diff OLD NEW`: what changed between two recorded runs, the way `perf diff` compares
//! two profiles — per exit reason, port or MMIO address, device register, guest function, MSR or
//! virtio queue: counts and handling time in both runs, the change, largest first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::AnalysisError;
use crate::explain::Explainer;
use crate::recording::Record;
use crate::trace::{Dir, ExitEvent, ExitKind};

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The baseline recording.
    pub old: PathBuf,
    /// The recording compared with it.
    pub new: PathBuf,
    /// What to group exits by.
    #[arg(long, value_enum, default_value = "reason")]
    pub by: DiffBy,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Rows shown at most (the largest changes); 0 for all.
    #[arg(long, default_value_t = 40)]
    pub limit: usize,
}

/// What `diff` groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffBy {
    /// The exit reason (io, mmio, hlt ...).
    Reason,
    /// The port or MMIO address, and the direction.
    Port,
    /// The device and register each port or MMIO access touched (see `stats --by register`).
    Register,
    /// The guest function that made the exit (from the recorded guest image's symbols).
    Symbol,
    /// The MSR and the direction (trapped MSRs only).
    Msr,
    /// The virtio device and queue: its events (notifications, requests, interrupts).
    Queue,
}

impl DiffBy {
    fn name(self) -> &'static str {
        match self {
            DiffBy::Reason => "reason",
            DiffBy::Port => "port",
            DiffBy::Register => "register",
            DiffBy::Symbol => "symbol",
            DiffBy::Msr => "msr",
            DiffBy::Queue => "queue",
        }
    }
}

/// Exits (or events) of one group in one run, and the time kvmscope spent handling them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub total_ns: u64,
}

impl Tally {
    fn add(&mut self, ns: u64) {
        self.count = self.count.saturating_add(1);
        self.total_ns = self.total_ns.saturating_add(ns);
    }

    fn mean_ns(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.total_ns as f64 / self.count as f64 }
    }
}

/// Groups kept at most per run: past it (a guest touching a million addresses), the exits of
/// further groups are counted together in one row, [`OTHER_GROUPS`], as `stats` bounds its
/// per-address counters.
const MAX_GROUPS: usize = 1 << 16;

/// The row the groups past [`MAX_GROUPS`] are counted in.
pub const OTHER_GROUPS: &str = "(further groups, counted together)";

/// One run, grouped.
#[derive(Debug, Default)]
pub struct Grouped {
    pub groups: BTreeMap<String, Tally>,
    pub exits: u64,
}

impl Grouped {
    /// Counts an exit (or event) costing `ns` in group `key`.
    fn add(&mut self, key: String, ns: u64) {
        let full = self.groups.len() >= MAX_GROUPS;
        let key = if full && !self.groups.contains_key(&key) { OTHER_GROUPS.to_string() } else { key };
        self.groups.entry(key).or_default().add(ns);
    }
}

/// The key of an exit for `by` (`None`: the exit is not in that grouping); `symbol` names RIPs.
fn key_of(by: DiffBy, e: &ExitEvent, explainer: &mut Explainer, symbol: &dyn Fn(u64) -> String) -> Option<String> {
    let dir = |d: &Dir, read: &str, write: &str| if *d == Dir::Out { write.to_string() } else { read.to_string() };
    match (by, &e.kind) {
        (DiffBy::Reason, kind) => Some(kind.reason().to_string()),
        (DiffBy::Port, ExitKind::Io { port, dir: d, .. }) => Some(format!("io {port:#06x} {}", dir(d, "in", "out"))),
        (DiffBy::Port, ExitKind::Mmio { addr, dir: d, .. }) => {
            Some(format!("mmio {addr:#010x} {}", dir(d, "read", "write")))
        }
        (DiffBy::Register, ExitKind::Io { .. } | ExitKind::Mmio { .. }) => {
            let x = explainer.explain(e)?;
            Some(if x.register.is_empty() { x.device.clone() } else { format!("{} {}", x.device, x.register) })
        }
        (DiffBy::Symbol, _) => Some(symbol(e.rip)),
        (DiffBy::Msr, ExitKind::Msr { index, dir: d, .. }) => {
            let name = crate::trace::msr::name(*index).map_or(format!("{index:#x}"), str::to_string);
            Some(format!("{name} {}", dir(d, "rdmsr", "wrmsr")))
        }
        _ => None,
    }
}

/// Reads one recording into its groups, streaming (memory holds the groups, not the exits).
pub fn group(path: &Path, by: DiffBy) -> Result<Grouped, AnalysisError> {
    let mut out = Grouped::default();
    let mut explainer = Explainer::default();
    // Symbols come from the recorded image, named in the header: read it first.
    let symbols = match by {
        DiffBy::Symbol => {
            let header = crate::recording::TraceReader::open(path)?.header.clone();
            let (symbols, warnings) = super::guest_image::symbols(path, &header, None)?;
            for w in warnings {
                crate::say!("kvmscope: warning: {}: {w}", path.display());
            }
            Some(symbols)
        }
        _ => None,
    };
    let symbol = |rip: u64| symbols.as_ref().map_or(format!("{rip:#x}"), |s| s.name_or_addr(rip));
    super::read_all_warning(path, |r| match r {
        Record::Exit(e) => {
            out.exits += 1;
            if let Some(k) = key_of(by, &e, &mut explainer, &symbol) {
                out.add(k, e.cost_ns);
            }
        }
        Record::Device(d) if by == DiffBy::Queue => {
            let queue = d.queue.map_or(String::new(), |q| format!(" queue {q}"));
            out.add(format!("{}{queue} {}", d.device, d.kind.name()), 0);
        }
        _ => {}
    })?;
    Ok(out)
}

/// One group in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: String,
    pub old: Tally,
    pub new: Tally,
}

impl Row {
    fn change(&self) -> i64 {
        (self.new.count as i128 - self.old.count as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// The relative change of the count, in percent (`None` for a group the old run had not).
    fn change_pct(&self) -> Option<f64> {
        (self.old.count > 0).then(|| 100.0 * self.change() as f64 / self.old.count as f64)
    }

    fn time_change_ns(&self) -> i64 {
        (self.new.total_ns as i128 - self.old.total_ns as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }
}

/// Both runs' groups side by side, the largest change in count first (then in time).
pub fn compare(old: &Grouped, new: &Grouped) -> Vec<Row> {
    let keys: std::collections::BTreeSet<&String> = old.groups.keys().chain(new.groups.keys()).collect();
    let mut rows: Vec<Row> = keys
        .into_iter()
        .map(|k| Row {
            key: k.clone(),
            old: old.groups.get(k).copied().unwrap_or_default(),
            new: new.groups.get(k).copied().unwrap_or_default(),
        })
        .collect();
    rows.sort_by(|a, b| {
        (b.change().unsigned_abs(), b.time_change_ns().unsigned_abs(), &a.key).cmp(&(
            a.change().unsigned_abs(),
            a.time_change_ns().unsigned_abs(),
            &b.key,
        ))
    });
    rows
}

fn text(args: &DiffArgs, old: &Grouped, new: &Grouped, rows: &[Row]) -> String {
    let mut out = format!(
        "# kvmscope diff, by {}: {} ({} exits) -> {} ({} exits)\n",
        args.by.name(),
        args.old.display(),
        old.exits,
        args.new.display(),
        new.exits
    );
    out.push_str(&format!(
        "# {:>10} {:>10} {:>10} {:>8}  {:>9} {:>9}  {:>10} {:>10}  {}\n",
        "old",
        "new",
        "change",
        "%",
        "old avg",
        "new avg",
        "old ms",
        "new ms",
        args.by.name()
    ));
    let shown = if args.limit == 0 { rows.len() } else { args.limit.min(rows.len()) };
    for r in &rows[..shown] {
        let pct = r.change_pct().map_or("new".to_string(), |p| format!("{p:+.1}"));
        out.push_str(&format!(
            "  {:>10} {:>10} {:>+10} {:>8}  {:>7.1}us {:>7.1}us  {:>10.3} {:>10.3}  {}\n",
            r.old.count,
            r.new.count,
            r.change(),
            pct,
            r.old.mean_ns() / 1e3,
            r.new.mean_ns() / 1e3,
            r.old.total_ns as f64 / 1e6,
            r.new.total_ns as f64 / 1e6,
            r.key
        ));
    }
    if shown < rows.len() {
        out.push_str(&format!("# ... {} more (--limit 0 shows all)\n", rows.len() - shown));
    }
    out
}

fn to_json(args: &DiffArgs, old: &Grouped, new: &Grouped, rows: &[Row]) -> serde_json::Value {
    let tally = |t: &Tally| json!({ "count": t.count, "total_ns": t.total_ns, "mean_ns": t.mean_ns() });
    let shown = if args.limit == 0 { rows.len() } else { args.limit.min(rows.len()) };
    json!({
        "by": args.by.name(),
        "old": { "file": args.old.display().to_string(), "exits": old.exits },
        "new": { "file": args.new.display().to_string(), "exits": new.exits },
        "more_rows": rows.len() - shown,
        "rows": rows[..shown].iter().map(|r| json!({
            "key": r.key,
            "old": tally(&r.old),
            "new": tally(&r.new),
            "change": r.change(),
            "change_pct": r.change_pct(),
            "total_ns_change": r.time_change_ns(),
        })).collect::<Vec<_>>(),
    })
}

/// Runs the command.
pub fn run(args: &DiffArgs) -> Result<(), AnalysisError> {
    let old = group(&args.old, args.by)?;
    let new = group(&args.new, args.by)?;
    let rows = compare(&old, &new);
    let out = if args.json { format!("{}\n", to_json(args, &old, &new, &rows)) } else { text(args, &old, &new, &rows) };
    super::emit(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grouped(rows: &[(&str, u64, u64)]) -> Grouped {
        let groups = rows.iter().map(|&(k, count, total_ns)| (k.to_string(), Tally { count, total_ns })).collect();
        Grouped { groups, exits: rows.iter().map(|r| r.1).sum() }
    }

    #[test]
    fn the_largest_change_comes_first_and_new_groups_are_said() {
        let old = grouped(&[("io", 100, 1000), ("mmio", 10, 500), ("hlt", 5, 50)]);
        let new = grouped(&[("io", 100, 4000), ("mmio", 40, 900), ("msr", 7, 70)]);
        let rows = compare(&old, &new);
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["mmio", "msr", "hlt", "io"]);
        assert_eq!(rows[0].change(), 30);
        assert_eq!(rows[0].change_pct(), Some(300.0));
        assert_eq!(rows[1].change_pct(), None, "the old run had no msr exits");
        assert_eq!(rows[2].change(), -5);
        assert_eq!(rows[3].time_change_ns(), 3000, "same count, more time: last, but there");
    }

    #[test]
    fn groups_are_bounded_and_times_saturate() {
        let mut g = Grouped::default();
        for i in 0..MAX_GROUPS + 100 {
            g.add(format!("mmio {i:#x}"), u64::MAX / 2);
        }
        assert_eq!(g.groups.len(), MAX_GROUPS + 1, "the rest counted together");
        assert_eq!(g.groups[OTHER_GROUPS].count, 100);
        assert_eq!(g.groups[OTHER_GROUPS].total_ns, u64::MAX, "saturated, not wrapped");
        let row =
            Row { key: "x".into(), old: Tally { count: 0, total_ns: 0 }, new: Tally { count: 1, total_ns: u64::MAX } };
        assert_eq!(row.time_change_ns(), i64::MAX);
    }
}

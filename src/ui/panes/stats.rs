//! kvm_stat's view: Event, Total, %Total, CurAvg/s per reason (sorted by rate or total), handling
//! time, a sparkline of the exit rate, and the breakdown per port and MMIO address or, after `x`,
//! per device register (its coverage: reads, writes, distinct values written).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Paragraph, Row, Sparkline, Table};

use super::frame;
use crate::explain::coverage::Coverage;
use crate::summary::{busiest, kvm_shown, micros, percent};
use crate::trace::{Counters, DeviceCounters, FrameDir, Stat};
use crate::ui::command::SortBy;
use crate::ui::theme::Theme;
use crate::vmm::kvm_stats::{KvmCounts, Reading, StatsError, rates, value};

/// Rate samples kept for the sparkline.
const RATE_HISTORY: usize = 120;

/// Exit rates, kvm_stat style: the change of each counter over the last interval.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    last: Option<(Instant, Counters)>,
    /// Per reason: exits per second over the last interval.
    pub per_reason: Vec<(&'static str, f64)>,
    /// Total exits per second, oldest first.
    pub history: VecDeque<u64>,
}

impl Rates {
    /// Takes a new sample of the counters at `now`; computes rates once a second.
    pub fn sample(&mut self, counters: &Counters, now: Instant) {
        let Some((then, before)) = &self.last else {
            self.last = Some((now, counters.clone()));
            return;
        };
        let dt = now.duration_since(*then);
        if dt < Duration::from_secs(1) {
            return;
        }
        let secs = dt.as_secs_f64();
        self.per_reason = counters
            .by_reason
            .iter()
            .map(|(name, s)| {
                let was = before.by_reason.get(name).map_or(0, |b| b.count);
                (name, s.count.saturating_sub(was) as f64 / secs)
            })
            .collect();
        let total = counters.total.count.saturating_sub(before.total.count) as f64 / secs;
        if self.history.len() == RATE_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(total.round() as u64);
        self.last = Some((now, counters.clone()));
    }

    /// Exits per second of one reason in the last interval.
    pub fn of(&self, reason: &str) -> f64 {
        self.per_reason.iter().find(|(n, _)| *n == reason).map_or(0.0, |(_, r)| *r)
    }

    /// Total exits per second in the last interval.
    pub fn total(&self) -> u64 {
        self.history.back().copied().unwrap_or(0)
    }
}

/// What KVM itself counted, with per-second rates, kvm_stat style.
#[derive(Debug, Clone, Default)]
pub struct KvmSection {
    /// The latest reading, or why there is none.
    pub counts: Option<Result<KvmCounts, StatsError>>,
    last: Option<(Instant, Reading)>,
    /// Per vCPU statistic: its change per second over the last interval.
    pub rates: Vec<(String, f64)>,
}

impl KvmSection {
    /// Takes a new reading at `now`; rates once a second.
    pub fn sample(&mut self, counts: Result<KvmCounts, StatsError>, now: Instant) {
        if let Ok(c) = &counts {
            match &self.last {
                Some((then, before)) if now.duration_since(*then) >= Duration::from_secs(1) => {
                    self.rates = rates(&c.vcpus, before, now.duration_since(*then).as_secs_f64());
                    self.last = Some((now, c.vcpus.clone()));
                }
                Some(_) => {}
                None => self.last = Some((now, c.vcpus.clone())),
            }
        }
        self.counts = Some(counts);
    }

    fn rate(&self, name: &str) -> f64 {
        self.rates.iter().find(|(n, _)| n == name).map_or(0.0, |(_, r)| *r)
    }
}

/// What the stats pane breaks the exits down by, below the reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breakdown {
    /// By port and MMIO address, with handling times.
    Ports,
    /// By device and register: reads, writes, distinct values written.
    Registers,
    Off,
}

/// The stats pane's state: the counters it shows, their rates, and how.
#[derive(Debug)]
pub struct StatsPane {
    pub counters: Counters,
    pub rates: Rates,
    pub sort: SortBy,
    /// The breakdown below the reasons (`x` cycles it).
    pub breakdown: Breakdown,
    /// KVM's own counters, below kvmscope's.
    pub kvm: KvmSection,
    /// The virtio devices' events, counted: notifications by how they came.
    pub virtio: DeviceCounters,
    /// KVM's tracepoints (`--kernel-events`), with their rates.
    pub kernel: KernelSection,
    /// Rows scrolled down from the top.
    pub scroll: usize,
}

/// The in-kernel events from KVM's tracepoints, and their rates since the previous sample.
#[derive(Debug, Default)]
pub struct KernelSection {
    pub counts: Option<std::collections::BTreeMap<String, u64>>,
    at: Option<Instant>,
    pub rates: std::collections::BTreeMap<String, f64>,
}

impl KernelSection {
    /// Whether a new reading is due (twice a second).
    pub fn due(&self, now: Instant) -> bool {
        self.at.is_none_or(|t| now.duration_since(t) >= Duration::from_millis(500))
    }

    /// Takes a new reading.
    pub fn sample(&mut self, counts: Option<std::collections::BTreeMap<String, u64>>, now: Instant) {
        let Some(new) = counts else { return };
        if let (Some(old), Some(at)) = (&self.counts, self.at) {
            let dt = now.duration_since(at).as_secs_f64();
            self.rates =
                new.iter().map(|(k, v)| (k.clone(), v.saturating_sub(*old.get(k).unwrap_or(&0)) as f64 / dt)).collect();
        }
        (self.counts, self.at) = (Some(new), Some(now));
    }
}

impl Default for StatsPane {
    fn default() -> Self {
        Self {
            counters: Counters::default(),
            rates: Rates::default(),
            sort: SortBy::Rate,
            breakdown: Breakdown::Ports,
            kvm: KvmSection::default(),
            virtio: DeviceCounters::default(),
            kernel: KernelSection::default(),
            scroll: 0,
        }
    }
}

impl StatsPane {
    /// New counters from the VM; the rates follow.
    pub fn update(&mut self, counters: Counters, now: Instant) {
        self.counters = counters;
        self.rates.sample(&self.counters, now);
    }

    /// The keys this pane takes (`o` sort, `x` breakdown); false for any other.
    pub fn on_key(&mut self, code: KeyCode) -> bool {
        match code {
            KeyCode::Char('o') => self.sort = if self.sort == SortBy::Rate { SortBy::Total } else { SortBy::Rate },
            KeyCode::Char('x') => {
                self.breakdown = match self.breakdown {
                    Breakdown::Ports => Breakdown::Registers,
                    Breakdown::Registers => Breakdown::Off,
                    Breakdown::Off => Breakdown::Ports,
                }
            }
            _ => return false,
        }
        true
    }

    /// Scrolling keys, while the pane has focus; false for any other.
    pub fn on_scroll_key(&mut self, code: KeyCode) -> bool {
        match (code, super::scroll_rows(code)) {
            (KeyCode::Home, _) => self.scroll = 0,
            (KeyCode::End, _) => self.scroll = usize::MAX / 2,
            // Up (a positive "back") moves toward the top.
            (_, Some(rows)) => self.scroll = (self.scroll as isize).saturating_sub(rows).max(0) as usize,
            _ => return false,
        }
        true
    }
}

fn one_place(v: f64) -> String {
    format!("{v:.1}")
}

/// One row of a table: its cells, and how it looks.
struct StatsRow {
    cells: Vec<String>,
    style: ratatui::style::Style,
}

impl StatsRow {
    fn new(cells: Vec<String>) -> Self {
        Self { cells, style: Default::default() }
    }

    fn styled(mut self, style: ratatui::style::Style) -> Self {
        self.style = style;
        self
    }
}

/// One table of the pane: its header, its rows, and how many of its columns are handling times
/// (the last ones, dropped when the table is too wide for the pane).
struct Section {
    header: &'static [&'static str],
    rows: Vec<StatsRow>,
    times: usize,
}

/// The pane's tables, top to bottom, each with its own header and columns: the exits by reason
/// (kvm_stat's), by port and MMIO address, and what KVM and the devices counted themselves.
fn sections(pane: &StatsPane, coverage: &Coverage, fit: usize, theme: &Theme) -> Vec<Section> {
    let total = pane.counters.total;
    let mut reasons: Vec<(&'static str, Stat)> = pane.counters.reasons_sorted().into_iter().collect();
    match pane.sort {
        SortBy::Rate => {
            reasons.sort_by(|a, b| pane.rates.of(b.0).total_cmp(&pane.rates.of(a.0)).then(b.1.count.cmp(&a.1.count)))
        }
        SortBy::Total => reasons.sort_by_key(|r| std::cmp::Reverse(r.1.count)),
    }
    let times = |s: &Stat| [s.min_ns, s.avg_ns(), s.max_ns].map(|ns| one_place(micros(ns)));
    let by_reason = reasons
        .iter()
        .map(|(name, s)| {
            let mut cells = vec![
                name.to_string(),
                s.count.to_string(),
                one_place(percent(s.count, total.count)),
                format!("{:.0}", pane.rates.of(name)),
            ];
            cells.extend(times(s));
            StatsRow::new(cells)
        })
        .collect();
    let mut out = vec![Section {
        header: &["Event", "Total", "%Total", "CurAvg/s", "min us", "avg us", "max us"],
        rows: by_reason,
        times: 3,
    }];
    if pane.breakdown == Breakdown::Registers {
        let mut busiest: Vec<_> = coverage.rows.iter().collect();
        busiest.sort_by_key(|(_, u)| std::cmp::Reverse(u.reads + u.writes));
        let rows: Vec<StatsRow> = busiest
            .into_iter()
            .take(fit)
            .map(|((device, register), u)| {
                let name = format!("{} {register}", crate::explain::tag(device));
                StatsRow::new(vec![name, u.reads.to_string(), u.writes.to_string(), u.values.len().to_string()])
                    .styled(theme.dim())
            })
            .collect();
        if !rows.is_empty() {
            out.push(Section { header: &["Register", "Reads", "Writes", "Values"], rows, times: 0 });
        }
    }
    if pane.breakdown == Breakdown::Ports {
        // No more rows than the pane can show: a guest chooses how many addresses there are.
        let mut rows = Vec::new();
        let mut add = |name: String, s: &Stat, whole: u64| {
            let mut cells = vec![name, s.count.to_string(), one_place(percent(s.count, whole))];
            cells.extend(times(s));
            rows.push(StatsRow::new(cells).styled(theme.dim()));
        };
        let io_total = pane.counters.by_reason.get("io").map_or(0, |s| s.count);
        for ((port, dir), s) in busiest(pane.counters.ports_sorted(), fit).0 {
            add(format!("io {port:#x} {}", dir.io_name()), &s, io_total);
        }
        let mmio_total = pane.counters.by_reason.get("mmio").map_or(0, |s| s.count);
        for ((addr, dir), s) in busiest(pane.counters.mmio_sorted(), fit).0 {
            add(format!("mmio {addr} {}", dir.mmio_name()), &s, mmio_total);
        }
        if !rows.is_empty() {
            out.push(Section { header: &["Port/address", "Total", "%", "min us", "avg us", "max us"], rows, times: 3 });
        }
    }
    let mut rows = Vec::new();
    match &pane.kvm.counts {
        Some(Ok(c)) => {
            // KVM's counters are counts of their own, not shares of the exits: a count and a rate.
            let exits = value(&c.vcpus, "exits");
            let share = one_place(percent(total.count, exits));
            rows.push(StatsRow::new(vec!["to userspace".into(), total.count.to_string(), share]));
            for (name, v) in kvm_shown(&c.vcpus).into_iter().filter(|(n, v)| *v > 0 || *n == "exits") {
                let rate = format!("{:.0}", pane.kvm.rate(name));
                rows.push(StatsRow::new(vec![name.to_string(), v.to_string(), String::new(), rate]));
            }
        }
        // Why is said in the summary; the row is too narrow for it.
        Some(Err(_)) => rows.push(StatsRow::new(vec!["unavailable on this host".into()]).styled(theme.dim())),
        None => {}
    }
    if let Some(counts) = &pane.kernel.counts {
        rows.push(StatsRow::new(vec!["in KVM, tracepoints".into()]).styled(theme.header()));
        let mut events: Vec<(&String, &u64)> = counts.iter().collect();
        events.sort_by(|a, b| b.1.cmp(a.1));
        let all: u64 = counts.iter().filter(|(k, _)| !k.contains(':')).map(|(_, v)| v).sum();
        for (name, v) in events.into_iter().take(8) {
            let rate = pane.kernel.rates.get(name).copied().unwrap_or(0.0);
            let cells = vec![format!(" {name}"), v.to_string(), one_place(percent(*v, all)), format!("{rate:.0}")];
            rows.push(StatsRow::new(cells));
        }
    }
    if !pane.virtio.is_empty() {
        let all = pane.virtio.rows.values();
        let (trapped, eventfd) = all.fold((0, 0), |(t, e), c| (t + c.notifies_trapped, e + c.notifies_ioeventfd));
        rows.push(StatsRow::new(vec!["virtio notifications".into()]).styled(theme.header()));
        let notifies = trapped + eventfd;
        let trapped_share = one_place(percent(trapped, notifies));
        rows.push(StatsRow::new(vec![" trapped (an exit each)".into(), trapped.to_string(), trapped_share]));
        let saved = one_place(percent(eventfd, notifies));
        rows.push(StatsRow::new(vec![" by ioeventfd (exits saved)".into(), eventfd.to_string(), saved]));
        let net: Vec<_> = pane.virtio.rows.values().filter(|c| c.frame_dir.is_some()).collect();
        if !net.is_empty() {
            rows.push(StatsRow::new(vec!["network frames".into()]).styled(theme.header()));
            for dir in [FrameDir::Rx, FrameDir::Tx] {
                let (frames, bytes) = net
                    .iter()
                    .filter(|c| c.frame_dir == Some(dir))
                    .fold((0, 0), |(f, b), c| (f + c.frames, b + c.frame_bytes));
                let name = if dir == FrameDir::Rx { "received" } else { "sent" };
                rows.push(StatsRow::new(vec![
                    format!(" {name} ({})", crate::vmm::memory::data_size(bytes)),
                    frames.to_string(),
                ]));
            }
            let drops: u64 = net.iter().map(|c| c.drops).sum();
            rows.push(StatsRow::new(vec![" dropped".into(), drops.to_string()]));
        }
    }
    if !rows.is_empty() {
        out.push(Section { header: &["In KVM", "Total", "%", "CurAvg/s"], rows, times: 0 });
    }
    out
}

/// Column widths that hold every cell of `rows` (a heading's lone cell does not count: it may run
/// over the empty cells beside it) and the header's words.
fn widths(rows: &[StatsRow], header: &[&str]) -> Vec<usize> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows.iter().filter(|r| r.cells.len() > 1) {
        for (w, c) in widths.iter_mut().zip(&r.cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    widths
}

/// A table of `rows` with `widths` (the first column takes what is left).
fn table<'a>(rows: Vec<Row<'a>>, widths: &[usize]) -> Table<'a> {
    let constraints: Vec<Constraint> = widths
        .iter()
        .enumerate()
        .map(|(i, &w)| if i == 0 { Constraint::Min(w as u16) } else { Constraint::Length(w as u16) })
        .collect();
    Table::new(rows, constraints).column_spacing(1)
}

/// Draws the pane. Columns are as wide as what they hold; the handling times show when they fit
/// beside the rest; rows that do not fit scroll (arrows, page keys, Home/End with focus).
/// Draws the pane; `coverage` is the device register coverage of the exits the view received.
pub fn render(f: &mut Frame, area: Rect, (pane, coverage): (&StatsPane, &Coverage), focused: bool, theme: &Theme) {
    let sort = match pane.sort {
        SortBy::Rate => "rate",
        SortBy::Total => "total",
    };
    let title = format!(" Stats: {} exits/s, sorted by {sort} (o) ", pane.rates.total());
    let block = frame(title, focused, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let spark_h = if inner.height >= 14 { 3 } else { 1 };
    let [spark_area, table_area] = Layout::vertical([Constraint::Length(spark_h), Constraint::Min(1)]).areas(inner);
    let data: Vec<u64> = pane.rates.history.iter().copied().collect();
    let tail = data.len().saturating_sub(spark_area.width as usize);
    f.render_widget(Sparkline::default().data(&data[tail..]).style(theme.instruction()), spark_area);

    let room = table_area.width as usize;
    // Each table's lines: its header, then its rows, in columns as wide as what they hold (the
    // handling times where they fit beside the rest); all of them scroll as one list.
    let mut tables: Vec<(Vec<usize>, Vec<Row>)> = Vec::new();
    for section in sections(pane, coverage, table_area.height as usize, theme) {
        let mut w = widths(&section.rows, section.header);
        if w.iter().sum::<usize>() + w.len() - 1 > room {
            w.truncate(w.len() - section.times);
        }
        let n = w.len();
        let head = Row::new(section.header[..n].to_vec()).style(theme.header());
        let rows = std::iter::once(head).chain(section.rows.into_iter().map(|r| {
            let mut cells = r.cells;
            cells.truncate(n);
            Row::new(cells).style(r.style)
        }));
        tables.push((w, rows.collect()));
    }
    let visible = table_area.height as usize;
    let all: usize = tables.iter().map(|(_, rows)| rows.len()).sum();
    let scroll = pane.scroll.min(all.saturating_sub(visible));
    let (mut skip, mut left, mut area) = (scroll, visible, table_area);
    for (widths, rows) in tables {
        let n = rows.len();
        let shown: Vec<Row> = rows.into_iter().skip(skip).take(left).collect();
        skip = skip.saturating_sub(n);
        left -= shown.len();
        let [this, rest] = Layout::vertical([Constraint::Length(shown.len() as u16), Constraint::Min(0)]).areas(area);
        f.render_widget(table(shown, &widths), this);
        area = rest;
    }
    if all > visible {
        // On the bottom border: which way there is more to scroll to.
        let up = if scroll > 0 { "↑" } else { "" };
        let more = format!(" {up}{} more ", if scroll + visible < all { "↓" } else { "" });
        let w = more.chars().count() as u16;
        let corner = Rect { x: inner.right().saturating_sub(w + 1), y: inner.bottom(), width: w, height: 1 };
        f.render_widget(Paragraph::new(more).style(theme.dim()), corner);
    }
}

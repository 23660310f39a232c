//! The memory map: every KVM memory slot (guest-physical range, host-virtual address, size, flags —
//! including the slots watchpoints split off — and how much of it the host has populated, how much in
//! huge pages), every device range on the port and MMIO buses, the guest's memory map with its holes,
//! the stopped vCPU's page tables (QEMU's `info mem`, or with `t` every page as `info tlb`), the
//! dirty pages (the hottest named by the guest's symbols), and KVM's own counters of its mappings.
//! Read once a second while its screen shows; its lines are made then, not every frame, since a
//! Linux guest's `info tlb` has hundreds of thousands.

use std::time::{Duration, Instant};

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};

use super::{frame, scroll_rows};
use crate::decode::symbols::Symbols;
use crate::memory_view::MemoryMapView;
use crate::ui::theme::Theme;
use crate::vmm::dirty::DirtyTracker;
use crate::vmm::kernel_events::MMU_EVENTS;
use crate::vmm::kvm_stats::rates;
use crate::vmm::memory::{MapEntry, RegionKind};
use std::collections::BTreeMap;

/// How often the map is read again while it shows.
const REFRESH: Duration = Duration::from_secs(1);

/// The memory-map pane's state.
#[derive(Debug, Default)]
pub struct MemMapPane {
    pub view: Option<MemoryMapView>,
    read_at: Option<Instant>,
    /// KVM's VM counters per second, from the reading before this one.
    pub kvm_rates: Vec<(String, f64)>,
    /// Lines scrolled down from the top.
    pub scroll: usize,
    /// The view turned dirty logging on (while its screen shows, without `--dirty-log`).
    pub dirty_on: bool,
    /// KVM's MMU tracepoints (`--kernel-events`): counts and rates per second, by event.
    pub mmu: Option<(BTreeMap<String, u64>, BTreeMap<String, f64>)>,
    /// The page tables as every page (`info tlb`) rather than ranges merged by protection.
    pub tlb: bool,
    /// The guest's symbols, naming what the hottest dirty pages hold.
    pub symbols: Symbols,
    /// The map as lines, made when it is read or the page-table form changes.
    text: Vec<String>,
}

/// A heat cell: nothing, then more and more dirty pages.
fn heat(pages: u64) -> char {
    match pages {
        0 => '.',
        1..=3 => ':',
        4..=63 => '+',
        64..=1023 => '#',
        _ => '@',
    }
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b => format!("{} KiB", b >> 10),
    }
}

impl MemMapPane {
    /// Whether the map is due to be read again.
    pub fn due(&self, now: Instant) -> bool {
        self.read_at.is_none_or(|t| now.duration_since(t) >= REFRESH)
    }

    pub fn show(&mut self, view: MemoryMapView, now: Instant) {
        if let (Some(old), Some(at), Some(new)) =
            (self.view.as_ref().and_then(|v| v.kvm.as_ref()), self.read_at, &view.kvm)
        {
            self.kvm_rates = rates(new, old, now.duration_since(at).as_secs_f64());
        }
        self.text = Self::lines(&view, &self.kvm_rates, self.tlb, &self.symbols);
        self.view = Some(view);
        self.read_at = Some(now);
    }

    /// The keys this pane takes (scrolling, `t` for the page tables' form); false for any other.
    pub fn on_key(&mut self, code: KeyCode) -> bool {
        if code == KeyCode::Char('t') {
            self.tlb = !self.tlb;
            if let Some(view) = &self.view {
                self.text = Self::lines(view, &self.kvm_rates, self.tlb, &self.symbols);
            }
            return true;
        }
        match scroll_rows(code) {
            Some(rows) => {
                // Positive rows scroll back up, as elsewhere; never past the last line.
                let down = self.scroll.saturating_add_signed(-rows.clamp(-100_000, 100_000));
                self.scroll = down.min(self.text.len().saturating_sub(1));
                true
            }
            None => false,
        }
    }

    /// The map's lines, as last made.
    pub fn text(&self) -> &[String] {
        &self.text
    }

    /// KVM's MMU events as lines: what fired, with rates, and what this host does not report.
    pub fn mmu_lines(&self) -> Vec<String> {
        let Some((counts, rates)) = &self.mmu else {
            return vec!["KVM's MMU events: run with --kernel-events (root) to see them".into()];
        };
        let fired: Vec<String> = MMU_EVENTS
            .iter()
            .filter_map(|e| counts.get(*e).map(|n| (e, n)))
            .map(|(e, n)| format!("{e} {n} ({:.0}/s)", rates.get(*e).copied().unwrap_or(0.0)))
            .collect();
        let silent: Vec<&str> = MMU_EVENTS.iter().copied().filter(|e| !counts.contains_key(*e)).collect();
        let fired = if fired.is_empty() { "none yet".to_string() } else { fired.join(", ") };
        vec![
            format!("KVM's MMU events (tracepoints): {fired}"),
            format!("  not reported by this host: {}", silent.join(", ")),
        ]
    }

    /// The map as text lines; the page tables as `info tlb` when `tlb`.
    pub fn lines(view: &MemoryMapView, rates: &[(String, f64)], tlb: bool, symbols: &Symbols) -> Vec<String> {
        let mut out = vec!["KVM memory slots".to_string()];
        out.push(format!(
            "  {:<4} {:<25} {:<16} {:>9} {:<3} {:>10} {:>10}",
            "slot", "guest-physical", "host-virtual", "size", "rw", "populated", "huge"
        ));
        for s in &view.slots {
            let range = format!("{:#x}-{:#x}", s.slot.gpa, s.slot.gpa + s.slot.len - 1);
            let rw = if s.slot.readonly { "ro" } else { "rw" };
            let (populated, huge) = match &s.populated {
                Ok((pages, huge)) => (size(pages * 4096), huge.map_or("root only".to_string(), |h| size(h * 4096))),
                Err(why) => (why.to_string(), String::new()),
            };
            out.push(format!(
                "  {:<4} {range:<25} {:<16} {:>9} {rw:<3} {populated:>10} {huge:>10}",
                s.index,
                format!("{:#x}", s.slot.host),
                size(s.slot.len)
            ));
        }
        out.push("Devices".into());
        for (bus, devices) in [("port", &view.ports), ("mmio", &view.mmio)] {
            for (name, base, len) in devices.iter() {
                out.push(format!("  {bus:<4} {:<25} {name}", format!("{base:#x}-{:#x}", base + len - 1)));
            }
        }
        out.push("Guest memory map".into());
        let mut at = 0;
        for e in &view.layout {
            if e.start > at {
                out.push(format!("  {:<30} hole", format!("{at:#x}-{:#x}", e.start - 1)));
            }
            let kind = if e.kind == RegionKind::Ram { "RAM" } else { "reserved" };
            out.push(format!("  {:<30} {kind} ({})", format!("{:#x}-{:#x}", e.start, e.end() - 1), size(e.len)));
            at = e.end();
        }
        let form = if tlb { "every page, as QEMU's info tlb" } else { "as QEMU's info mem" };
        out.push(format!("Guest page tables (vCPU 0, {form}; t switches)"));
        match &view.guest_pages {
            Ok(map) if map.mappings.is_empty() => out.push("  paging is off".into()),
            Ok(map) if tlb => out.extend(map.mappings.iter().map(|m| {
                let mut line = String::with_capacity(48);
                line.push_str("  ");
                map.tlb_line(m, &mut line);
                line
            })),
            Ok(map) => out.extend(map.info_mem().lines().map(|l| format!("  {l}"))),
            Err(why) => out.push(format!("  {why}")),
        }
        match &view.dirty {
            Some(d) => {
                let ram_end = view.layout.iter().map(MapEntry::end).max().unwrap_or(0);
                out.push(format!(
                    "Dirty pages (last interval: {}; {} intervals, max {})",
                    d.last_count(),
                    d.intervals,
                    d.max
                ));
                // One cell per 1/64 of guest-physical memory: how much of it the last interval dirtied.
                let strip: String = d.strip(ram_end, 64).iter().map(|&n| heat(n)).collect();
                out.push(format!("  0 [{strip}] {ram_end:#x}"));
                let hot: Vec<String> = d.hottest(6).iter().map(|&(p, n)| DirtyTracker::label(p, n, symbols)).collect();
                out.push(format!("  hottest (intervals dirty): {}", hot.join(", ")));
            }
            None => out.push("Dirty pages: off (on while this screen shows a running guest, or --dirty-log)".into()),
        }
        match &view.kvm {
            Some(stats) => {
                let shown: Vec<String> = stats
                    .iter()
                    .filter(|(n, _, v)| *v > 0 || n.starts_with("pages_"))
                    .map(|(n, _, v)| match rates.iter().find(|(r, _)| r == n) {
                        Some((_, rate)) if *rate != 0.0 => format!("{n} {v} ({rate:+.0}/s)"),
                        _ => format!("{n} {v}"),
                    })
                    .collect();
                out.push(format!("KVM's mappings: {}", shown.join(", ")));
            }
            None => out.push("KVM's mappings: this host's KVM has no binary statistics".into()),
        }
        out
    }
}

pub fn render(f: &mut Frame, area: Rect, pane: &MemMapPane, focused: bool, theme: &Theme) {
    let block = frame(" Memory map: slots, devices, layout ".into(), focused, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if pane.view.is_none() {
        f.render_widget(Paragraph::new(Line::styled("reading the memory map ...", theme.dim())), inner);
        return;
    }
    // Only the lines that show are styled and drawn.
    let mmu = pane.mmu_lines();
    // Scrolled to the end, the pane stays full: the last lines at its bottom.
    let all = pane.text.len() + mmu.len();
    let top = pane.scroll.min(all.saturating_sub(inner.height as usize));
    let lines: Vec<Line> = pane
        .text
        .iter()
        .chain(&mmu)
        .skip(top)
        .take(inner.height as usize)
        .map(|l| if l.starts_with(' ') { Line::from(l.as_str()) } else { Line::styled(l.as_str(), theme.header()) })
        .collect();
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

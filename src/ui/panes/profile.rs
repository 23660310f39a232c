//! The exit profile by guest function, live, like `perf report`: what share of the exits each
//! function of the guest makes, their handling time, by reason; sorted by exits or by time (`t`).
//! Counted from the exits the view receives (the title says when the live feed dropped some).

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Row, Table};

use super::{frame, scroll_rows};
use crate::analysis::profile::RipProfile;
use crate::decode::symbols::Symbols;
use crate::summary::percent;
use crate::trace::ExitEvent;
use crate::ui::theme::Theme;

/// The profile pane's state.
#[derive(Debug, Default)]
pub struct ProfilePane {
    pub profile: RipProfile,
    pub symbols: Symbols,
    /// Sorted by handling time instead of exits.
    pub by_time: bool,
    pub scroll: usize,
    /// The in-kernel events that carry a RIP (`--kernel-events`), by function, and when sampled.
    pub kernel: Option<RipProfile>,
    kernel_at: Option<std::time::Instant>,
}

impl ProfilePane {
    pub fn record<'a>(&mut self, events: impl IntoIterator<Item = &'a ExitEvent>) {
        for e in events {
            self.profile.record(e);
        }
    }

    /// Whether the in-kernel RIPs are due to be read again (once a second).
    pub fn kernel_due(&self, now: std::time::Instant) -> bool {
        self.kernel_at.is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(1))
    }

    /// The busiest guest RIPs of the in-kernel events, now.
    pub fn show_kernel(&mut self, rips: Vec<(u64, u64)>, now: std::time::Instant) {
        let mut p = RipProfile::default();
        for (rip, n) in rips {
            p.add_count(rip, "in-kernel", n);
        }
        (self.kernel, self.kernel_at) = (Some(p), Some(now));
    }

    pub fn on_key(&mut self, code: KeyCode) -> bool {
        match (code, scroll_rows(code)) {
            (KeyCode::Char('t'), _) => self.by_time = !self.by_time,
            (_, Some(rows)) => self.scroll = self.scroll.saturating_add_signed(-rows.clamp(-10_000, 10_000)),
            _ => return false,
        }
        true
    }
}

pub fn render(f: &mut Frame, area: Rect, pane: &ProfilePane, dropped: u64, focused: bool, theme: &Theme) {
    let sort = if pane.by_time { "time" } else { "exits" };
    let mut title = format!(" Profile by guest function: {} exits, sorted by {sort} (t) ", pane.profile.total.count);
    if dropped > 0 {
        title.push_str(&format!("[the view dropped {dropped}] "));
    }
    let block = frame(title, focused, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if pane.symbols.is_empty() {
        let note = "no guest symbols: functions show as addresses (give --symbols FILE: a vmlinux or System.map)";
        f.render_widget(Paragraph::new(Line::styled(note, theme.dim())), Rect { height: 1, ..inner });
    }
    let mut rows = pane.profile.by_function(&pane.symbols);
    if pane.by_time {
        rows.sort_by_key(|r| std::cmp::Reverse(r.exits.total_ns));
    }
    let total = pane.profile.total;
    let (whole, part): (u64, fn(&crate::trace::Stat) -> u64) =
        if pane.by_time { (total.total_ns, |s| s.total_ns) } else { (total.count, |s| s.count) };
    let table_rows = rows.into_iter().skip(pane.scroll).map(|r| {
        let reasons: Vec<String> = r.reasons.iter().map(|(k, n)| format!("{k} {n}")).collect();
        Row::new(vec![
            format!("{:.2}%", percent(part(&r.exits), whole)),
            r.exits.count.to_string(),
            format!("{:.1}", r.exits.total_ns as f64 / 1000.0),
            r.function,
            reasons.join(", "),
        ])
    });
    let widths = [
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(11),
        Constraint::Min(24),
        Constraint::Fill(1),
    ];
    let header = Row::new(["Overhead", "Exits", "Time (us)", "Function", "Reasons"]).style(theme.header());
    let area = if pane.symbols.is_empty() {
        Rect { y: inner.y + 1, height: inner.height.saturating_sub(1), ..inner }
    } else {
        inner
    };
    // With --kernel-events, the in-kernel events by function below the exits.
    let (area, below) = match &pane.kernel {
        Some(k) if area.height >= 8 => {
            let [top, bottom] = Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area);
            (top, Some((bottom, k)))
        }
        _ => (area, None),
    };
    f.render_widget(Table::new(table_rows, widths).header(header).column_spacing(1), area);
    if let Some((bottom, k)) = below {
        let rows = k.by_function(&pane.symbols).into_iter().map(|r| {
            let share = format!("{:.2}%", percent(r.exits.count, k.total.count));
            Row::new(vec![share, r.exits.count.to_string(), String::new(), r.function, String::new()])
        });
        let title = format!("In-kernel events by function ({}, kvm_emulate_insn / kvm_exit)", k.total.count);
        f.render_widget(Paragraph::new(Line::styled(title, theme.header())), Rect { height: 1, ..bottom });
        let table_area = Rect { y: bottom.y + 1, height: bottom.height.saturating_sub(1), ..bottom };
        let header = Row::new(["Overhead", "Events", "", "Function", ""]).style(theme.header());
        f.render_widget(Table::new(rows, widths).header(header).column_spacing(1), table_area);
    }
}

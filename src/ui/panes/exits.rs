//! The live exit stream: newest at the bottom, followed unless scrolled back or frozen (`f`),
//! filtered by an exit spec (`/`).

use std::collections::VecDeque;

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table};

use super::{frame, scroll_rows};
use crate::debug::ExitSpec;
use crate::trace::ExitEvent;
use crate::ui::theme::Theme;

/// Events the exit list keeps for scrolling back.
pub const HISTORY: usize = 5000;

/// The exit list's state.
#[derive(Debug, Default)]
pub struct ExitsPane {
    events: VecDeque<ExitEvent>,
    /// Events the live feed dropped because the view was behind.
    pub dropped: u64,
    /// Rows scrolled back from the newest (0 = follow the newest).
    pub scroll: usize,
    /// When frozen: the newest sequence number shown.
    pub frozen: Option<u64>,
    pub filter: Option<ExitSpec>,
}

impl ExitsPane {
    /// Adds events from the live feed (the oldest fall out of the history).
    pub fn push(&mut self, events: impl IntoIterator<Item = ExitEvent>) {
        for e in events {
            if self.events.len() == HISTORY {
                self.events.pop_front();
            }
            self.events.push_back(e);
        }
    }

    /// Shows exactly these events, following the newest (replay).
    pub fn replace(&mut self, events: impl IntoIterator<Item = ExitEvent>) {
        self.events.clear();
        self.push(events);
        self.scroll = 0;
    }

    /// Every event kept, oldest first.
    pub fn all(&self) -> &VecDeque<ExitEvent> {
        &self.events
    }

    /// The newest event.
    pub fn newest(&self) -> Option<&ExitEvent> {
        self.events.back()
    }

    /// The events the list shows, oldest first: filtered, up to the freeze point.
    pub fn visible(&self) -> impl DoubleEndedIterator<Item = &ExitEvent> {
        let frozen = self.frozen;
        self.events
            .iter()
            .filter(move |e| frozen.is_none_or(|f| e.seq <= f))
            .filter(move |e| self.filter.as_ref().is_none_or(|s| s.matches(e)))
    }

    /// Freezes the view at the newest event, or follows again; true when now frozen.
    pub fn toggle_freeze(&mut self) -> bool {
        self.frozen = match self.frozen {
            Some(_) => None,
            None => Some(self.events.back().map_or(0, |e| e.seq)),
        };
        self.frozen.is_some()
    }

    /// Scrolls back (positive) or forward by `rows`.
    pub fn scroll_by(&mut self, rows: isize) {
        let max = self.visible().count().saturating_sub(1);
        self.scroll = (self.scroll as isize).saturating_add(rows).clamp(0, max as isize) as usize;
    }

    /// The keys this pane takes; false for any other.
    pub fn on_key(&mut self, code: KeyCode) -> bool {
        match (code, scroll_rows(code)) {
            (_, Some(rows)) => self.scroll_by(rows),
            (KeyCode::End, None) => self.scroll = 0,
            _ => return false,
        }
        true
    }
}

/// Draws the list; `total` is the number of exits counted so far.
pub fn render(f: &mut Frame, area: Rect, pane: &ExitsPane, total: u64, focused: bool, theme: &Theme) {
    let mut title = format!(" Exits ({total}) ");
    if let Some(spec) = &pane.filter {
        title.push_str(&format!("[filter: {spec}] "));
    }
    if pane.frozen.is_some() {
        title.push_str("[frozen] ");
    } else if pane.scroll > 0 {
        title.push_str(&format!("[{} back] ", pane.scroll));
    }
    if pane.dropped > 0 {
        title.push_str(&format!("[view dropped {}] ", pane.dropped));
    }
    let block = frame(title, focused, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let rows_fit = inner.height.saturating_sub(1) as usize;
    let wide = inner.width >= 110;
    let visible: Vec<_> = pane.visible().rev().skip(pane.scroll).take(rows_fit).collect();
    let rows = visible.into_iter().rev().map(|e| {
        let insn = e.insn.as_ref().map(|i| i.text.clone()).unwrap_or_default();
        let mut cells = vec![Cell::from(e.seq.to_string())];
        if wide {
            cells.push(Cell::from(e.vcpu.to_string()));
        }
        cells.push(Cell::from(Span::styled(e.kind.reason(), theme.reason(e.kind.reason()))));
        cells.push(Cell::from(format!("{:#x}", e.rip)));
        cells.push(Cell::from(e.detail()));
        cells.push(Cell::from(Line::from(Span::styled(insn, theme.instruction()))));
        Row::new(cells)
    });
    let (header, widths): (Vec<&str>, Vec<Constraint>) = if wide {
        (
            vec!["seq", "cpu", "reason", "rip", "port/address  data", "instruction"],
            vec![
                Constraint::Length(8),
                Constraint::Length(3),
                Constraint::Length(14),
                Constraint::Length(18),
                Constraint::Length(34),
                Constraint::Min(10),
            ],
        )
    } else {
        (
            vec!["seq", "reason", "rip", "port/address  data", "instruction"],
            vec![
                Constraint::Length(7),
                Constraint::Length(6),
                Constraint::Length(10),
                Constraint::Length(31),
                Constraint::Min(8),
            ],
        )
    };
    let table = Table::new(rows, widths).header(Row::new(header).style(theme.header())).column_spacing(1);
    f.render_widget(table, inner);
}

//! The live exit stream: newest at the bottom, followed unless scrolled back or frozen (`f`),
//! filtered by an exit spec (`/`).

use std::cell::Cell;
use std::collections::VecDeque;

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{frame, hard_wrap, scroll_rows};
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
    /// Rows scrolled back from the newest (0 = follow the newest). While scrolled back the view
    /// holds still: rows that arrive add to it.
    pub scroll: usize,
    /// When frozen: the newest sequence number shown.
    pub frozen: Option<u64>,
    pub filter: Option<ExitSpec>,
    /// Rows the last drawing had room for: Home fills the pane rather than showing one row.
    rows_shown: Cell<usize>,
}

impl ExitsPane {
    /// Adds events from the live feed (the oldest fall out of the history).
    pub fn push(&mut self, events: impl IntoIterator<Item = ExitEvent>) {
        for e in events {
            if self.events.len() == HISTORY {
                self.events.pop_front();
            }
            // Scrolled back: the rows shown stay where they are.
            if self.scroll > 0 && self.shows(&e) {
                self.scroll += 1;
            }
            self.events.push_back(e);
        }
        self.scroll = self.scroll.min(self.max_scroll());
    }

    /// Shows exactly these events, following the newest (replay).
    pub fn replace(&mut self, events: impl IntoIterator<Item = ExitEvent>) {
        self.events.clear();
        self.scroll = 0;
        self.push(events);
    }

    /// Every event kept, oldest first.
    pub fn all(&self) -> &VecDeque<ExitEvent> {
        &self.events
    }

    /// The newest event.
    pub fn newest(&self) -> Option<&ExitEvent> {
        self.events.back()
    }

    /// Whether the list shows `e` (the filter and the freeze point allow it).
    fn shows(&self, e: &ExitEvent) -> bool {
        self.frozen.is_none_or(|f| e.seq <= f) && self.filter.as_ref().is_none_or(|s| s.matches(e))
    }

    /// The events the list shows, oldest first: filtered, up to the freeze point.
    pub fn visible(&self) -> impl DoubleEndedIterator<Item = &ExitEvent> {
        self.events.iter().filter(move |e| self.shows(e))
    }

    /// Freezes the view at the newest event, or follows again; true when now frozen.
    pub fn toggle_freeze(&mut self) -> bool {
        self.frozen = match self.frozen {
            Some(_) => None,
            None => Some(self.events.back().map_or(0, |e| e.seq)),
        };
        self.frozen.is_some()
    }

    /// The furthest back the list scrolls: the oldest rows fill the pane.
    fn max_scroll(&self) -> usize {
        self.visible().count().saturating_sub(self.rows_shown.get().max(1))
    }

    /// Scrolls back (positive) or forward by `rows`.
    pub fn scroll_by(&mut self, rows: isize) {
        let max = self.max_scroll();
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

/// One exit's cells: seq, vCPU, reason, RIP, port or address with data, instruction.
fn cells(e: &ExitEvent) -> [String; 6] {
    let insn = e.insn.as_ref().map(|i| i.text.clone()).unwrap_or_default();
    [e.seq.to_string(), e.vcpu.to_string(), e.kind.reason().to_string(), format!("{:#x}", e.rip), e.detail(), insn]
}

const HEADER: [&str; 6] = ["seq", "cpu", "reason", "rip", "port/address  data", "instruction"];

/// Draws the list; `total` is the number of exits counted so far. Columns are as wide as what
/// they hold (nothing is cut); where a row does not fit the width, its instruction goes on a line
/// of its own below it.
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
    let room = inner.height.saturating_sub(1) as usize;
    let width = inner.width as usize;
    // The rows that can show, newest last; widths from them.
    let candidates: Vec<[String; 6]> = pane.visible().rev().skip(pane.scroll).take(room).map(cells).collect();
    let mut widths: [usize; 5] = std::array::from_fn(|i| HEADER[i].len().min(if i == 4 { 4 } else { 6 }));
    for c in &candidates {
        for (w, cell) in widths.iter_mut().zip(c.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let lead: usize = widths.iter().sum::<usize>() + widths.len();
    let pad = |i: usize, text: &str| format!("{text:<w$} ", w = widths[i]);
    let mut rows: Vec<Vec<Line>> = Vec::new();
    let mut used = 0;
    for c in &candidates {
        let mut spans = vec![
            Span::raw(pad(0, &c[0])),
            Span::raw(pad(1, &c[1])),
            Span::styled(pad(2, &c[2]), theme.reason(&c[2])),
            Span::raw(pad(3, &c[3])),
            Span::raw(pad(4, &c[4])),
        ];
        let insn = Span::styled(c[5].clone(), theme.instruction());
        let row = if lead + c[5].chars().count() <= width {
            spans.push(insn);
            hard_wrap(spans, width)
        } else {
            let mut row = hard_wrap(spans, width);
            row.extend(hard_wrap(vec![Span::raw("  "), insn], width));
            row
        };
        if used + row.len() > room {
            break;
        }
        used += row.len();
        rows.push(row);
    }
    pane.rows_shown.set(rows.len().max(1));
    let header: String = (0..5).map(|i| pad(i, HEADER[i])).collect::<String>() + HEADER[5];
    let mut lines = hard_wrap(vec![Span::styled(header, theme.header())], width);
    lines.truncate(1);
    lines.extend(rows.into_iter().rev().flatten());
    f.render_widget(Paragraph::new(lines), inner);
}

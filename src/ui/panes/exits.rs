//! The live exit stream: newest at the bottom, followed unless scrolled back or frozen (`f`),
//! filtered by an exit spec (`/`). Each exit is explained as it arrives (the device and register
//! it touched); once the view is scrolled back or frozen, the arrows move a cursor over the rows
//! and Enter opens the exit inspector on the one under it.

use std::cell::Cell;
use std::collections::VecDeque;

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{frame, hard_wrap, scroll_rows};
use crate::debug::ExitSpec;
use crate::explain::coverage::Coverage;
use std::sync::Arc;

use crate::explain::{Explained, Explainer, Explanation};
use crate::trace::{Dir, ExitEvent, ExitKind};
use crate::ui::theme::Theme;

/// Events the exit list keeps for scrolling back.
pub const HISTORY: usize = 5000;

/// The exit list's state.
#[derive(Debug, Default)]
pub struct ExitsPane {
    events: VecDeque<ExitEvent>,
    /// What each event means, beside it (port and MMIO exits).
    explained: VecDeque<Option<Arc<Explained>>>,
    /// Explains the events in the order they arrive.
    explainer: Explainer,
    /// The exit under the cursor, by sequence number.
    pub selected: Option<u64>,
    /// Device register coverage of every exit received (not only those kept).
    pub coverage: Coverage,
    /// Events the live feed dropped because the view was behind.
    pub dropped: u64,
    /// Events not kept because the history was full of frozen rows.
    pub unkept: u64,
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
    /// Adds events from the live feed (the oldest fall out of the history), explaining each.
    pub fn push(&mut self, events: impl IntoIterator<Item = ExitEvent>) {
        for e in events {
            let x = self.explainer.explain(&e);
            self.push_explained(e, x);
        }
        self.scroll = self.scroll.min(self.max_scroll());
    }

    fn push_explained(&mut self, e: ExitEvent, x: Option<Arc<Explained>>) {
        if let (Some(x), ExitKind::Io { dir, data, .. } | ExitKind::Mmio { dir, data, .. }) = (&x, &e.kind) {
            self.coverage.record(&e, x, *dir == Dir::Out, *data);
        }
        if self.events.len() == HISTORY {
            // Frozen, the rows held stay: the newest are counted, not kept.
            if self.frozen.is_some_and(|f| self.events.front().is_some_and(|o| o.seq <= f)) {
                self.unkept += 1;
                return;
            }
            self.events.pop_front();
            self.explained.pop_front();
        }
        // Scrolled back: the rows shown stay where they are.
        if self.scroll > 0 && self.shows(&e) {
            self.scroll += 1;
        }
        self.events.push_back(e);
        self.explained.push_back(x);
    }

    /// Shows exactly these events, explained already, the newest under the cursor (replay).
    pub fn replace(&mut self, events: impl IntoIterator<Item = (ExitEvent, Option<Arc<Explained>>)>) {
        self.events.clear();
        self.explained.clear();
        self.coverage = Coverage::default();
        self.scroll = 0;
        for (e, x) in events {
            self.push_explained(e, x);
        }
        self.selected = self.events.back().map(|e| e.seq);
    }

    /// The exit with sequence number `seq`, and what it means, if it is kept.
    pub fn find(&self, seq: u64) -> Option<(&ExitEvent, Option<&Explanation>)> {
        let i = self.events.binary_search_by_key(&seq, |e| e.seq).ok()?;
        Some((&self.events[i], self.explained[i].as_deref().map(|x| &x.explanation)))
    }

    /// The exit before `e` on `e`'s vCPU, if it is kept.
    pub fn previous_on_vcpu(&self, e: &ExitEvent) -> Option<&ExitEvent> {
        let i = self.events.binary_search_by_key(&e.seq, |x| x.seq).ok()?;
        self.events.range(..i).rev().find(|x| x.vcpu == e.vcpu)
    }

    /// The exit the inspector opens on: the one under the cursor, else the newest shown.
    pub fn chosen(&self) -> Option<u64> {
        self.selected.or_else(|| self.visible().next_back().map(|e| e.seq))
    }

    /// Moves the cursor one row up (`up`) or down among the rows shown, scrolling to keep it in
    /// the pane; from outside the pane (or from nowhere) it starts on the bottom row.
    fn move_cursor(&mut self, up: bool) {
        let seqs: Vec<u64> = self.visible().map(|e| e.seq).collect();
        if seqs.is_empty() {
            return;
        }
        let rows = self.rows_shown.get().max(1);
        let bottom = seqs.len() - 1 - self.scroll.min(seqs.len() - 1);
        let top = bottom.saturating_sub(rows - 1);
        let at = self.selected.and_then(|s| seqs.iter().position(|&x| x == s)).filter(|i| (top..=bottom).contains(i));
        let Some(at) = at else {
            self.selected = Some(seqs[bottom]);
            return;
        };
        let to = if up { at.saturating_sub(1) } else { (at + 1).min(seqs.len() - 1) };
        self.selected = Some(seqs[to]);
        if to < top {
            self.scroll += top - to;
        } else if to > bottom {
            self.scroll = self.scroll.saturating_sub(to - bottom);
        }
    }

    /// A cursor the view scrolled away from moves to the nearest row shown: Enter inspects an
    /// exit on screen.
    fn keep_cursor_in_view(&mut self) {
        let Some(selected) = self.selected else { return };
        let seqs: Vec<u64> = self.visible().map(|e| e.seq).collect();
        if seqs.is_empty() {
            return;
        }
        let rows = self.rows_shown.get().max(1);
        let bottom = seqs.len() - 1 - self.scroll.min(seqs.len() - 1);
        let top = bottom.saturating_sub(rows - 1);
        let at = seqs.iter().position(|&s| s == selected).unwrap_or(bottom);
        self.selected = Some(seqs[at.clamp(top, bottom)]);
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
        self.unkept = 0;
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

    /// The keys this pane takes; false for any other. Following the newest, Up scrolls back a
    /// row and puts the cursor on the bottom one; scrolled back or frozen, the arrows move it.
    pub fn on_key(&mut self, code: KeyCode) -> bool {
        let held = self.scroll > 0 || self.frozen.is_some() || self.selected.is_some();
        match (code, scroll_rows(code)) {
            (KeyCode::Up | KeyCode::Down, _) if held => self.move_cursor(code == KeyCode::Up),
            (KeyCode::Up, _) => {
                self.scroll_by(1);
                self.selected = None;
                self.move_cursor(true);
            }
            (_, Some(rows)) => {
                self.scroll_by(rows);
                self.keep_cursor_in_view();
            }
            (KeyCode::End, None) => {
                self.scroll = 0;
                self.selected = None;
            }
            _ => return false,
        }
        true
    }
}

/// One exit's cells: seq, vCPU, reason, RIP, port or address with data, device and register (with
/// what the access means when `wide`), instruction.
fn cells(e: &ExitEvent, x: Option<&Explanation>, wide: bool) -> [String; 7] {
    let insn = e.insn.as_ref().map(|i| i.text.clone()).unwrap_or_default();
    let device = match x {
        Some(x) if wide && !x.meaning().is_empty() => format!("{}: {}", x.short(), x.meaning()),
        Some(x) => x.short(),
        None => String::new(),
    };
    [
        e.seq.to_string(),
        e.vcpu.to_string(),
        e.kind.reason().to_string(),
        format!("{:#x}", e.rip),
        e.detail(),
        device,
        insn,
    ]
}

/// Each column's heading, longest first: the longest that fits the column is shown.
const HEADER: [&[&str]; 7] = [
    &["seq"],
    &["cpu"],
    &["reason"],
    &["rip"],
    &["port/address  data", "addr  data", "addr"],
    &["device/register", "device", "dev"],
    &["instruction", "insn"],
];

/// An instruction's column is at least this wide, or instructions go on lines of their own.
const MIN_INSN: usize = 20;

/// How the rows are laid out at a pane's width — the same for every row shown, so that rows of
/// one kind take one height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Every column on one line; a long instruction goes on within its column.
    OneLine { insn: usize },
    /// Seq to device on one line, the instruction below.
    InsnBelow,
    /// Seq to data on one line, the device and the instruction below.
    TwoLines,
}

/// Column widths (what the cells hold, at least the shortest heading) and the shape they leave.
fn layout(candidates: &[(u64, [String; 7])], width: usize) -> ([usize; 6], Shape) {
    let mut widths: [usize; 6] = std::array::from_fn(|i| HEADER[i].iter().map(|h| h.len()).min().unwrap_or(0));
    for (_, c) in candidates {
        for (w, cell) in widths.iter_mut().zip(c.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let lead: usize = widths.iter().map(|w| w + 1).sum();
    let shape = if lead + MIN_INSN <= width {
        Shape::OneLine { insn: width - lead }
    } else if lead <= width {
        Shape::InsnBelow
    } else {
        Shape::TwoLines
    };
    (widths, shape)
}

/// The longest heading of column `i` that fits `room`.
fn heading(i: usize, room: usize) -> &'static str {
    HEADER[i].iter().find(|h| h.len() <= room).unwrap_or(HEADER[i].last().unwrap_or(&""))
}

/// Draws the list; `total` is the number of exits counted so far. Columns are as wide as what
/// they hold (nothing is cut, headings included); at a width where the instruction has no room
/// beside the rest, it goes below — for every row alike.
pub fn render(f: &mut Frame, area: Rect, pane: &ExitsPane, total: u64, focused: bool, theme: &Theme) {
    let mut title = format!(" Exits ({total}) ");
    if let Some(spec) = &pane.filter {
        title.push_str(&format!("[filter: {spec}] "));
    }
    if pane.frozen.is_some() {
        title.push_str("[frozen] ");
        if pane.unkept > 0 {
            title.push_str(&format!("[{} newer not kept: history full] ", pane.unkept));
        }
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
    // The rows that can show, newest last; widths from them. From 140 columns the device column
    // says what the access means too, where that leaves the instruction its column.
    let shown: Vec<(&ExitEvent, Option<&Explanation>)> = pane
        .events
        .iter()
        .zip(&pane.explained)
        .filter(|(e, _)| pane.shows(e))
        .rev()
        .skip(pane.scroll)
        .take(room)
        .map(|(e, x)| (e, x.as_deref().map(|x| &x.explanation)))
        .collect();
    let cells_at =
        |wide: bool| -> Vec<(u64, [String; 7])> { shown.iter().map(|(e, x)| (e.seq, cells(e, *x, wide))).collect() };
    let mut candidates = cells_at(width >= 140);
    let (mut widths, mut shape) = layout(&candidates, width);
    if width >= 140 && !matches!(shape, Shape::OneLine { .. }) {
        candidates = cells_at(false);
        (widths, shape) = layout(&candidates, width);
    }
    let pad = |i: usize, text: &str| format!("{text:<w$} ", w = widths[i]);
    let lead: usize = widths.iter().map(|w| w + 1).sum();
    let mut rows: Vec<Vec<Line>> = Vec::new();
    let mut used = 0;
    for (seq, c) in &candidates {
        let mut spans = vec![
            Span::raw(pad(0, &c[0])),
            Span::raw(pad(1, &c[1])),
            Span::styled(pad(2, &c[2]), theme.reason(&c[2])),
            Span::raw(pad(3, &c[3])),
            Span::raw(pad(4, &c[4])),
        ];
        let device = Span::styled(pad(5, &c[5]), theme.dim());
        let insn: Vec<char> = c[6].chars().collect();
        let mut row = match shape {
            Shape::OneLine { insn: room } => {
                spans.push(device);
                let mut chunks = insn.chunks(room.max(1)).map(|ch| ch.iter().collect::<String>());
                spans.push(Span::styled(chunks.next().unwrap_or_default(), theme.instruction()));
                let mut row = vec![Line::from(spans)];
                row.extend(
                    chunks
                        .map(|ch| Line::from(vec![Span::raw(" ".repeat(lead)), Span::styled(ch, theme.instruction())])),
                );
                row
            }
            Shape::InsnBelow => {
                spans.push(Span::styled(c[5].clone(), theme.dim()));
                let mut row = hard_wrap(spans, width);
                row.extend(hard_wrap(vec![Span::raw("  "), Span::styled(c[6].clone(), theme.instruction())], width));
                row
            }
            Shape::TwoLines => {
                let mut row = hard_wrap(spans, width);
                let below = vec![
                    Span::raw("  "),
                    Span::styled(format!("{}  ", c[5]), theme.dim()),
                    Span::styled(c[6].clone(), theme.instruction()),
                ];
                row.extend(hard_wrap(below, width));
                row
            }
        };
        if pane.selected == Some(*seq) {
            row = row.into_iter().map(|l| l.style(theme.current())).collect();
        }
        if used + row.len() > room {
            break;
        }
        used += row.len();
        rows.push(row);
    }
    pane.rows_shown.set(rows.len().max(1));
    let columns = match shape {
        Shape::OneLine { .. } | Shape::InsnBelow => 6,
        Shape::TwoLines => 5,
    };
    let mut labels: Vec<String> = (0..columns).map(|i| pad(i, heading(i, widths[i]))).collect();
    if let Shape::OneLine { insn } = shape {
        labels.push(heading(6, insn).to_string());
    }
    // Whole headings only: one that would be cut is left out, with those after it.
    let mut header = String::new();
    for label in labels {
        if header.chars().count() + label.trim_end().chars().count() > width {
            break;
        }
        header.push_str(&label);
    }
    let header = header.trim_end().to_string();
    let mut lines = vec![Line::from(Span::styled(header, theme.header()))];
    lines.extend(rows.into_iter().rev().flatten());
    f.render_widget(Paragraph::new(lines), inner);
}

//! The device event stream: what the virtio devices saw and did on their queues — each
//! notification and how it arrived, each request taken and completed, each interrupt, each rule a
//! driver broke — and, with `--kernel-events`, what KVM did in the kernel (each event while they
//! are few, a line of rates a second when many), marked as in-kernel; newest at the bottom,
//! followed unless scrolled back.

use std::collections::VecDeque;

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::{frame, hard_wrap, scroll_rows};
use crate::trace::{DeviceEvent, DeviceEventKind};
use crate::ui::theme::Theme;

/// Events kept for scrolling back.
pub const HISTORY: usize = 2000;

/// The device event list's state.
#[derive(Debug, Default)]
pub struct DeviceEventsPane {
    events: VecDeque<Row>,
    /// Events seen in all (the list keeps the last `HISTORY`).
    pub total: u64,
    /// Rows scrolled back from the newest.
    pub scroll: usize,
}

/// One line of the stream.
#[derive(Debug, Clone)]
enum Row {
    Device(DeviceEvent),
    /// An in-kernel event (or a second's rates), as the trace reader gave it.
    Kernel(String),
}

impl DeviceEventsPane {
    pub fn push(&mut self, events: impl IntoIterator<Item = DeviceEvent>) {
        events.into_iter().for_each(|e| self.add(Row::Device(e)));
    }

    /// In-kernel event lines (`--kernel-events`).
    pub fn push_kernel(&mut self, lines: impl IntoIterator<Item = String>) {
        lines.into_iter().for_each(|l| self.add(Row::Kernel(l)));
    }

    fn add(&mut self, row: Row) {
        if self.events.len() == HISTORY {
            self.events.pop_front();
        }
        self.events.push_back(row);
        self.total += 1;
    }

    /// Shows exactly these events (replay).
    pub fn replace(&mut self, events: impl IntoIterator<Item = DeviceEvent>) {
        self.events.clear();
        self.total = 0;
        self.push(events);
    }

    pub fn on_key(&mut self, code: KeyCode) -> bool {
        match scroll_rows(code) {
            Some(rows) => {
                let max = self.events.len().saturating_sub(1) as isize;
                self.scroll = (self.scroll as isize).saturating_add(rows).clamp(0, max) as usize;
                true
            }
            None => false,
        }
    }
}

pub fn render(f: &mut Frame, area: Rect, pane: &DeviceEventsPane, focused: bool, theme: &Theme) {
    let mut title = format!(" Device and in-kernel events ({}) ", pane.total);
    if pane.scroll > 0 {
        title.push_str(&format!("[{} back] ", pane.scroll));
    }
    let block = frame(title, focused, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if pane.events.is_empty() {
        let none = "no events yet (virtio devices: --disk FILE, --virtio rng,console; KVM's own: --kernel-events)";
        f.render_widget(Paragraph::new(Line::styled(none, theme.dim())).wrap(Wrap { trim: false }), inner);
        return;
    }
    // Newest at the bottom; a row longer than the pane is wide goes on as many lines as it needs.
    let (fit, width) = (inner.height as usize, inner.width as usize);
    let mut rows: Vec<Vec<Line>> = Vec::new();
    let mut used = 0;
    for row in pane.events.iter().rev().skip(pane.scroll) {
        let spans = match row {
            Row::Device(e) => {
                let style = match e.kind {
                    DeviceEventKind::Error { .. } | DeviceEventKind::Dropped { .. } => theme.error(),
                    DeviceEventKind::Frame { .. } => theme.reason("frame"),
                    DeviceEventKind::Notify { .. } => theme.reason("mmio"),
                    DeviceEventKind::Interrupt => theme.reason("io"),
                    _ => theme.instruction(),
                };
                vec![Span::raw(format!("{:>12.6}s ", e.t_ns as f64 / 1e9)), Span::styled(e.to_string(), style)]
            }
            Row::Kernel(l) => vec![Span::styled("   in-kernel ", theme.dim()), Span::raw(l.clone())],
        };
        let lines = hard_wrap(spans, width);
        if used + lines.len() > fit {
            break;
        }
        used += lines.len();
        rows.push(lines);
    }
    let lines: Vec<Line> = rows.into_iter().rev().flatten().collect();
    f.render_widget(Paragraph::new(lines), inner);
}

//! The virtqueue view: each virtio device's status and features by name, each queue's rings and
//! indexes, its notifications and interrupts per second, the chains in flight and the last
//! requests completed, descriptor by descriptor. Up/Down select a descriptor, Enter opens its
//! buffer in the memory pane. Read twice a second while its screen shows.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};

use super::frame;
use crate::ui::theme::Theme;
use crate::vmm::virtio::DeviceView;
use crate::vmm::virtio::view::ViewLine;

/// How often the devices are read again while the pane shows.
const REFRESH: Duration = Duration::from_millis(500);

/// The virtqueue pane's state.
#[derive(Debug, Default)]
pub struct VirtioPane {
    pub views: Option<Vec<DeviceView>>,
    read_at: Option<Instant>,
    /// Per (device, queue): notifications and interrupts per second, from the previous reading.
    rates: HashMap<(&'static str, u16), (f64, f64)>,
    /// The selected descriptor line (an index among the lines that name a buffer).
    pub selected: usize,
    /// Lines scrolled down from the top.
    pub scroll: usize,
    /// Only this device (`:virtio NAME`).
    pub only: Option<String>,
    /// What to say where there are no views to show (a replay: the queues are not recorded).
    pub note: Vec<String>,
}

impl VirtioPane {
    pub fn due(&self, now: Instant) -> bool {
        self.read_at.is_none_or(|t| now.duration_since(t) >= REFRESH)
    }

    pub fn show(&mut self, views: Vec<DeviceView>, now: Instant) {
        if let (Some(old), Some(at)) = (&self.views, self.read_at) {
            let dt = now.duration_since(at).as_secs_f64().max(1e-3);
            self.rates.clear();
            for (new, old) in views.iter().zip(old) {
                for (q, o) in new.queues.iter().zip(&old.queues) {
                    let n = q.counts.notifies().saturating_sub(o.counts.notifies()) as f64 / dt;
                    let i = q.counts.interrupts.saturating_sub(o.counts.interrupts) as f64 / dt;
                    self.rates.insert((new.name, q.index), (n, i));
                }
            }
        }
        self.views = Some(views);
        self.read_at = Some(now);
    }

    /// Every line shown, in order.
    pub fn lines(&self) -> Vec<ViewLine> {
        let Some(views) = &self.views else { return Vec::new() };
        views
            .iter()
            .filter(|v| self.only.as_deref().is_none_or(|n| n == v.name))
            .flat_map(|v| v.lines(true, &|q| self.rates.get(&(v.name, q)).copied()))
            .collect()
    }

    /// The selected descriptor's buffer (guest-physical address, length).
    pub fn selected_buffer(&self) -> Option<(u64, u32)> {
        self.lines().iter().filter_map(|l| l.buffer).nth(self.selected)
    }

    /// Scrolling keys and the selection; false for any other.
    pub fn on_key(&mut self, code: KeyCode) -> bool {
        let buffers = self.lines().iter().filter(|l| l.buffer.is_some()).count();
        match code {
            KeyCode::Down => self.selected = (self.selected + 1).min(buffers.saturating_sub(1)),
            KeyCode::Up => self.selected = self.selected.saturating_sub(1),
            KeyCode::PageDown => self.scroll += 20,
            KeyCode::PageUp => self.scroll = self.scroll.saturating_sub(20),
            KeyCode::Home => self.scroll = 0,
            _ => return false,
        }
        true
    }
}

pub fn render(f: &mut Frame, area: Rect, pane: &VirtioPane, focused: bool, theme: &Theme) {
    let title = match &pane.only {
        Some(name) => format!(" Virtqueues: {name} (Enter: open the selected buffer) "),
        None => " Virtqueues (Up/Down select a descriptor, Enter opens its buffer) ".to_string(),
    };
    let block = frame(title, focused, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let lines = pane.lines();
    if pane.views.is_none() && !pane.note.is_empty() {
        let note: Vec<Line> = pane.note.iter().map(|l| Line::styled(l.clone(), theme.dim())).collect();
        f.render_widget(Paragraph::new(note).wrap(Wrap { trim: false }), inner);
        return;
    }
    if pane.views.as_ref().is_some_and(Vec::is_empty) {
        let none = "this VM has no virtio devices: add them with --disk FILE[,ro] or --virtio rng,console";
        f.render_widget(Paragraph::new(Line::styled(none, theme.dim())).wrap(Wrap { trim: false }), inner);
        return;
    }
    // Keep the selected descriptor in sight.
    let selected_line = lines.iter().enumerate().filter(|(_, l)| l.buffer.is_some()).nth(pane.selected).map(|(i, _)| i);
    let height = inner.height as usize;
    let mut top = pane.scroll.min(lines.len().saturating_sub(1));
    if let Some(i) = selected_line.filter(|&i| i < top || i >= top + height) {
        top = i.saturating_sub(height / 2);
    }
    let shown: Vec<Line> = lines
        .into_iter()
        .enumerate()
        .skip(top)
        .take(height)
        .map(|(i, l)| match () {
            _ if Some(i) == selected_line && focused => Line::styled(l.text, theme.current()),
            _ if !l.text.starts_with(' ') => Line::styled(l.text, theme.header()),
            _ if l.text.contains("DEVICE_NEEDS_RESET") => Line::styled(l.text, theme.error()),
            _ => Line::from(l.text),
        })
        .collect();
    f.render_widget(Paragraph::new(shown).wrap(Wrap { trim: false }), inner);
}

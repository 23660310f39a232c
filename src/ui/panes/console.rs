//! The guest's serial output; keys typed while this pane has focus go to the UART.

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::widgets::Paragraph;

use super::frame;
use crate::ui::theme::Theme;

/// The console pane's state: the guest's output so far, and how far it is scrolled back.
#[derive(Debug, Default)]
pub struct ConsolePane {
    pub text: String,
    /// Lines scrolled back from the newest.
    pub scroll: usize,
}

impl ConsolePane {
    /// A key while the console has focus: the bytes it types for the guest (arrows scroll instead).
    pub fn on_key(&mut self, code: KeyCode) -> Option<Vec<u8>> {
        match code {
            KeyCode::Char(c) => Some(c.to_string().into_bytes()),
            KeyCode::Enter => Some(vec![b'\r']),
            KeyCode::Backspace => Some(vec![0x7f]),
            KeyCode::Up => self.scroll_by(1),
            KeyCode::PageUp => self.scroll_by(10),
            KeyCode::Down => self.scroll_by(-1),
            KeyCode::PageDown => self.scroll_by(-10),
            _ => None,
        }
    }

    fn scroll_by(&mut self, lines: isize) -> Option<Vec<u8>> {
        self.scroll = self.scroll.saturating_add_signed(lines);
        None
    }
}

pub fn render(f: &mut Frame, area: Rect, pane: &ConsolePane, focused: bool, theme: &Theme) {
    let hint = if focused { " Console — typing goes to the guest (Esc/Tab to leave) " } else { " Console " };
    let block = frame(hint.into(), focused, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let lines: Vec<&str> = pane.text.lines().collect();
    let height = inner.height as usize;
    let end = lines.len().saturating_sub(pane.scroll.min(lines.len()));
    let start = end.saturating_sub(height);
    let text = lines[start..end].join("\n");
    f.render_widget(Paragraph::new(text), inner);
}

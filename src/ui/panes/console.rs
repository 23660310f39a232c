//! The guest's console: what the UART, the debug console ports and the virtio console wrote (the
//! title says which, when not the UART alone); keys typed while this pane has focus go to the UART,
//! or to the virtio console when the guest's console is `hvc0`.

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{frame, hard_wrap};
use crate::ui::theme::Theme;

/// The console pane's state: the guest's output so far, and how far it is scrolled back.
#[derive(Debug, Default)]
pub struct ConsolePane {
    /// The console's text as shown: escape sequences left out (see [`ConsolePane::show`]).
    pub text: String,
    /// Bytes of guest output the text was made from.
    pub from_bytes: usize,
    /// Lines scrolled back from the newest.
    pub scroll: usize,
    /// The devices that write to the console, with the bytes each wrote.
    pub sources: Vec<(&'static str, u64)>,
    /// The device typed input goes to.
    pub input_to: &'static str,
}

impl ConsolePane {
    /// Shows the guest's output `raw` (`bytes` long), made safe for the terminal.
    pub fn show(&mut self, raw: &str, bytes: usize) {
        self.text = crate::out::console_text(raw);
        self.from_bytes = bytes;
    }

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
    // Which devices the text came from, when more than the UART wrote.
    let from: Vec<String> = pane.sources.iter().filter(|(_, n)| *n > 0).map(|(d, n)| format!("{d} {n} B")).collect();
    let from = if from.len() > 1 || from.first().is_some_and(|f| !f.starts_with("serial")) {
        format!("from {} ", from.join(", "))
    } else {
        String::new()
    };
    let title = if focused {
        format!(" Console {from}— typing goes to the guest's {} (Esc/Tab to leave) ", pane.input_to)
    } else {
        format!(" Console {from}")
    };
    let block = frame(title, focused, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    // The newest lines at the bottom, a long one on as many rows as it needs.
    let lines: Vec<&str> = pane.text.lines().collect();
    let (height, width) = (inner.height as usize, inner.width as usize);
    let end = lines.len().saturating_sub(pane.scroll.min(lines.len()));
    let mut rows: Vec<Line> = Vec::new();
    for line in lines[..end].iter().rev() {
        let wrapped = hard_wrap(vec![Span::raw(line.to_string())], width);
        if rows.len() + wrapped.len() > height {
            break;
        }
        rows.extend(wrapped.into_iter().rev());
    }
    rows.reverse();
    f.render_widget(Paragraph::new(rows), inner);
}

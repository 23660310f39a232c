//! The panes: one per file, each its own state, its keys and the widget that draws it from that
//! state (and what `view` hands it of the rest). Nothing here knows the `App`.

pub mod code;
pub mod console;
pub mod device_events;
pub mod exits;
pub mod help;
pub mod inspector;
pub mod memmap;
pub mod memory;
pub mod profile;
pub mod registers;
pub mod stats;
pub mod virtio;

use ratatui::text::{Line, Span};
use ratatui::widgets::Block;

use super::theme::Theme;

/// Rows back (positive) or forward a scrolling key moves: arrows one, pages twenty, Home to the
/// start. `None` for any other key.
pub fn scroll_rows(code: ratatui::crossterm::event::KeyCode) -> Option<isize> {
    use ratatui::crossterm::event::KeyCode;
    match code {
        KeyCode::Up => Some(1),
        KeyCode::Down => Some(-1),
        KeyCode::PageUp => Some(20),
        KeyCode::PageDown => Some(-20),
        KeyCode::Home => Some(isize::MAX / 2),
        _ => None,
    }
}

/// A pane's frame: bordered, titled, highlighted when focused.
pub fn frame<'a>(title: String, focused: bool, theme: &Theme) -> Block<'a> {
    Block::bordered().title(title).border_style(theme.border(focused))
}

/// Breaks a line of spans into lines of at most `width` characters, each span keeping its style.
pub fn hard_wrap(spans: Vec<Span<'static>>, width: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let mut lines = vec![Vec::new()];
    let mut col = 0;
    for span in spans {
        let mut text: &str = &span.content;
        while !text.is_empty() {
            if col == width {
                lines.push(Vec::new());
                col = 0;
            }
            let take = text.char_indices().nth(width - col).map_or(text.len(), |(i, _)| i);
            let (head, rest) = text.split_at(take);
            col += head.chars().count();
            if let Some(line) = lines.last_mut() {
                line.push(Span::styled(head.to_string(), span.style));
            }
            text = rest;
        }
    }
    lines.into_iter().map(Line::from).collect()
}

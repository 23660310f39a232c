//! The panes: one per file, each its own state, its keys and the widget that draws it from that
//! state (and what `view` hands it of the rest). Nothing here knows the `App`.

pub mod code;
pub mod console;
pub mod exits;
pub mod help;
pub mod memory;
pub mod registers;
pub mod stats;

use ratatui::widgets::Block;

use super::theme::Theme;

/// A pane's frame: bordered, titled, highlighted when focused.
pub fn frame<'a>(title: String, focused: bool, theme: &Theme) -> Block<'a> {
    Block::bordered().title(title).border_style(theme.border(focused))
}

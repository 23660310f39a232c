//! The panes: one widget per file, each drawn from the `App` alone.

pub mod code;
pub mod console;
pub mod exits;
pub mod help;
pub mod memory;
pub mod registers;
pub mod stats;
pub mod status;

use ratatui::widgets::Block;

use super::theme::Theme;

/// A pane's frame: bordered, titled, highlighted when focused.
pub fn frame<'a>(title: String, focused: bool, theme: &Theme) -> Block<'a> {
    Block::bordered().title(title).border_style(theme.border(focused))
}

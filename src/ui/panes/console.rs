//! The guest's serial output; keys typed while this pane has focus go to the UART.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::Paragraph;

use super::frame;
use crate::ui::app::App;
use crate::ui::theme::Theme;

pub fn render(f: &mut Frame, area: Rect, app: &App, focused: bool, theme: &Theme) {
    let hint = if focused { " Console — typing goes to the guest (Esc/Tab to leave) " } else { " Console " };
    let block = frame(hint.into(), focused, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let lines: Vec<&str> = app.console.lines().collect();
    let height = inner.height as usize;
    let end = lines.len().saturating_sub(app.console_scroll.min(lines.len()));
    let start = end.saturating_sub(height);
    let text = lines[start..end].join("\n");
    f.render_widget(Paragraph::new(text), inner);
}

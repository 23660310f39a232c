//! The live exit stream: newest at the bottom, followed unless scrolled back or frozen.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table};

use super::frame;
use crate::ui::app::App;
use crate::ui::theme::Theme;

pub fn render(f: &mut Frame, area: Rect, app: &App, focused: bool, theme: &Theme) {
    let mut title = format!(" Exits ({}) ", app.counters.total.count);
    if let Some(spec) = &app.filter {
        title.push_str(&format!("[filter: {spec}] "));
    }
    if app.frozen.is_some() {
        title.push_str("[frozen] ");
    } else if app.scroll > 0 {
        title.push_str(&format!("[{} back] ", app.scroll));
    }
    if app.dropped > 0 {
        title.push_str(&format!("[view dropped {}] ", app.dropped));
    }
    let block = frame(title, focused, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let rows_fit = inner.height.saturating_sub(1) as usize;
    let wide = inner.width >= 110;
    let visible: Vec<_> = app.visible_events().rev().skip(app.scroll).take(rows_fit).collect();
    let rows = visible.into_iter().rev().map(|e| {
        let insn = e.insn.as_ref().map(|i| i.text.clone()).unwrap_or_default();
        let mut cells = vec![Cell::from(e.seq.to_string())];
        if wide {
            cells.push(Cell::from(e.vcpu.to_string()));
        }
        cells.push(Cell::from(Span::styled(e.kind.reason(), theme.reason(e.kind.reason()))));
        cells.push(Cell::from(format!("{:#x}", e.rip)));
        cells.push(Cell::from(e.detail()));
        cells.push(Cell::from(Line::from(Span::styled(insn, theme.instruction()))));
        Row::new(cells)
    });
    let (header, widths): (Vec<&str>, Vec<Constraint>) = if wide {
        (
            vec!["seq", "cpu", "reason", "rip", "port/address  data", "instruction"],
            vec![
                Constraint::Length(8),
                Constraint::Length(3),
                Constraint::Length(14),
                Constraint::Length(18),
                Constraint::Length(34),
                Constraint::Min(10),
            ],
        )
    } else {
        (
            vec!["seq", "reason", "rip", "port/address  data", "instruction"],
            vec![
                Constraint::Length(7),
                Constraint::Length(6),
                Constraint::Length(10),
                Constraint::Length(31),
                Constraint::Min(8),
            ],
        )
    };
    let table = Table::new(rows, widths).header(Row::new(header).style(theme.header())).column_spacing(1);
    f.render_widget(table, inner);
}

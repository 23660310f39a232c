//! kvm_stat's view: Event, Total, %Total, CurAvg/s per reason (sorted by rate or total), handling
//! time, a sparkline of the exit rate, and the breakdown per port and MMIO address.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Row, Sparkline, Table};

use super::frame;
use crate::summary::{micros, percent};
use crate::trace::Stat;
use crate::ui::app::App;
use crate::ui::command::SortBy;
use crate::ui::theme::Theme;

fn one_place(v: f64) -> String {
    format!("{v:.1}")
}

pub fn render(f: &mut Frame, area: Rect, app: &App, focused: bool, theme: &Theme) {
    let sort = match app.sort {
        SortBy::Rate => "rate",
        SortBy::Total => "total",
    };
    let title = format!(" Stats: {} exits/s, sorted by {sort} (o) ", app.rates.total());
    let block = frame(title, focused, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let spark_h = if inner.height >= 14 { 3 } else { 1 };
    let [spark_area, table_area] = Layout::vertical([Constraint::Length(spark_h), Constraint::Min(1)]).areas(inner);
    let data: Vec<u64> = app.rates.history.iter().copied().collect();
    let tail = data.len().saturating_sub(spark_area.width as usize);
    f.render_widget(Sparkline::default().data(&data[tail..]).style(theme.instruction()), spark_area);

    let total = app.counters.total;
    let mut reasons: Vec<(&'static str, Stat)> = app.counters.reasons_sorted().into_iter().collect();
    match app.sort {
        SortBy::Rate => {
            reasons.sort_by(|a, b| app.rates.of(b.0).total_cmp(&app.rates.of(a.0)).then(b.1.count.cmp(&a.1.count)))
        }
        SortBy::Total => reasons.sort_by_key(|r| std::cmp::Reverse(r.1.count)),
    }
    let wide = table_area.width >= 70;
    let row = |name: String, s: &Stat, whole: u64, rate: Option<f64>| {
        let mut cells = vec![
            name,
            s.count.to_string(),
            one_place(percent(s.count, whole)),
            rate.map_or(String::new(), |r| format!("{r:.0}")),
        ];
        if wide {
            cells.extend([s.min_ns, s.avg_ns(), s.max_ns].map(|ns| one_place(micros(ns))));
        }
        Row::new(cells)
    };
    let mut rows: Vec<Row> =
        reasons.iter().map(|(name, s)| row(name.to_string(), s, total.count, Some(app.rates.of(name)))).collect();
    if app.breakdown {
        let io_total = app.counters.by_reason.get("io").map_or(0, |s| s.count);
        let mut ports: Vec<_> = app.counters.ports_sorted().into_iter().collect();
        ports.sort_by_key(|p| std::cmp::Reverse(p.1.count));
        for ((port, dir), s) in ports {
            rows.push(row(format!(" io {port:#x} {}", dir.io_name()), &s, io_total, None).style(theme.dim()));
        }
        let mmio_total = app.counters.by_reason.get("mmio").map_or(0, |s| s.count);
        let mut mmio: Vec<_> = app.counters.mmio_sorted().into_iter().collect();
        mmio.sort_by_key(|m| std::cmp::Reverse(m.1.count));
        for ((addr, dir), s) in mmio {
            rows.push(row(format!(" mmio {addr:#x} {}", dir.mmio_name()), &s, mmio_total, None).style(theme.dim()));
        }
    }
    let mut header = vec!["Event", "Total", "%Total", "CurAvg/s"];
    let mut widths = vec![Constraint::Min(16), Constraint::Length(9), Constraint::Length(6), Constraint::Length(8)];
    if wide {
        header.extend(["min us", "avg us", "max us"]);
        widths.extend([Constraint::Length(7), Constraint::Length(7), Constraint::Length(8)]);
    }
    let table = Table::new(rows, widths).header(Row::new(header).style(theme.header())).column_spacing(1);
    f.render_widget(table, table_area);
}

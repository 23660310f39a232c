//! Where the panes go: the screen's grid when the terminal is big enough, one pane at a time under a
//! tab bar when it is not (80×24 works). Returns where each pane landed, for mouse clicks.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{App, InputMode, RunState};
use super::panes::{
    code, console, device_events, exits, help, inspector, memmap, memory, profile, registers, stats, virtio,
};
use super::screen::{PaneId, WIDE_MIN};
use super::status;
use super::theme::Theme;

fn render_pane(f: &mut Frame, pane: PaneId, area: Rect, app: &App, theme: &Theme) {
    let focused = app.focus == pane;
    match pane {
        PaneId::Exits => exits::render(f, area, &app.exits, app.stats.counters.total.count, focused, theme),
        PaneId::Stats => stats::render(f, area, (&app.stats, &app.exits.coverage), focused, theme),
        PaneId::Registers => {
            let ended = app.state.is_over();
            registers::render(f, area, (&app.registers, app.stop.as_ref(), app.vcpu, ended), focused, theme)
        }
        PaneId::Code => {
            let without = match app.state {
                RunState::Replay(_) => code::Without::Replay,
                RunState::Ended(_) => code::Without::Ended,
                _ => code::Without::Running,
            };
            code::render(f, area, (&app.code, app.stop.as_ref(), app.exits.newest(), without), focused, theme)
        }
        PaneId::Console => console::render(f, area, &app.console, focused, theme),
        PaneId::Memory => memory::render(f, area, &app.memory, focused, theme),
        PaneId::MemMap => memmap::render(f, area, &app.memmap, focused, theme),
        PaneId::Virtio => virtio::render(f, area, &app.virtio, focused, theme),
        PaneId::DeviceEvents => device_events::render(f, area, &app.devices, focused, theme),
        PaneId::Profile => profile::render(f, area, &app.profile, app.exits.dropped, focused, theme),
    }
}

/// Draws the whole screen.
pub fn draw(f: &mut Frame, app: &App) -> Vec<(PaneId, Rect)> {
    let theme = Theme { no_color: app.no_color };
    let area = f.area();
    let status_rows = status::height(app, area.width);
    let [main, status_area] = Layout::vertical([Constraint::Min(1), Constraint::Length(status_rows)]).areas(area);
    let placed = if area.width >= WIDE_MIN.0 && area.height >= WIDE_MIN.1 {
        let placed = app.screen.grid(main, app.focus);
        for (pane, r) in &placed {
            render_pane(f, *pane, *r, app, &theme);
        }
        placed
    } else {
        let [tabs, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(main);
        let mut placed = Vec::new();
        let mut spans = Vec::new();
        let mut x = tabs.x;
        for &p in app.screen.panes() {
            let label = format!(" {} ", p.title());
            let w = label.len() as u16;
            let style = if p == app.focus { theme.current() } else { theme.dim() };
            placed.push((p, Rect { x, y: tabs.y, width: w.min(tabs.right().saturating_sub(x)), height: 1 }));
            spans.push(Span::styled(label, style));
            spans.push(Span::raw("|"));
            x = x.saturating_add(w + 1);
        }
        f.render_widget(Paragraph::new(Line::from(spans)), tabs);
        render_pane(f, app.focus, body, app, &theme);
        placed.push((app.focus, body));
        placed
    };
    status::render(f, status_area, app, &theme);
    if app.input == InputMode::Help {
        help::render(f, area, app.help_scroll, &theme);
    }
    if let (InputMode::Inspect, Some(i)) = (&app.input, &app.inspector) {
        inspector::render(f, area, i, &theme);
    }
    placed
}

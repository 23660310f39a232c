//! The bottom line: run state, the screens (the current one marked), totals and rate, the message of the moment, or the line being typed.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::ui::app::{App, InputMode, RunState};
use crate::ui::screen::Screen;
use crate::ui::theme::Theme;

pub fn render(f: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let line = match &app.input {
        InputMode::Command(text) => typing(':', text, app, area.width, theme),
        InputMode::Filter(text) => typing('/', text, app, area.width, theme),
        _ => {
            let (state, style) = match &app.state {
                RunState::Running => ("RUNNING".to_string(), theme.ok()),
                RunState::Pausing => ("PAUSING".to_string(), theme.warn()),
                RunState::Paused => {
                    let at = app.stop.as_ref().map(|s| format!(" at {:#x}", s.regs.rip)).unwrap_or_default();
                    (format!("PAUSED{at}"), theme.warn())
                }
                RunState::Ended(end) => (format!("ENDED: {} (status {})", end.name(), end.status()), theme.error()),
                RunState::Replay(Some((name, status))) => {
                    (format!("REPLAY of a run that ended: {name} (status {status})"), theme.warn())
                }
                RunState::Replay(None) => ("REPLAY of a run with no end recorded".to_string(), theme.warn()),
            };
            let mut spans = vec![
                Span::styled(format!(" {state} "), style.add_modifier(ratatui::style::Modifier::REVERSED)),
                Span::raw(" "),
            ];
            for screen in Screen::ALL {
                let label = format!("{}:{}", screen.key(), screen.name());
                let style = if screen == app.screen { theme.current() } else { theme.dim() };
                spans.extend([Span::styled(label, style), Span::raw(" ")]);
            }
            let stats = &app.stats;
            spans.push(Span::raw(format!(" {} exits  {}/s ", stats.counters.total.count, stats.rates.total())));
            if app.exits.dropped > 0 {
                spans.push(Span::styled(format!(" view dropped {} ", app.exits.dropped), theme.warn()));
            }
            match app.current_message() {
                Some((text, error)) => {
                    spans.push(Span::styled(format!(" {text}"), if error { theme.error() } else { theme.ok() }))
                }
                None => spans.push(Span::styled(
                    format!(" {} — ? help  space pause  s step  : command  q quit", app.title),
                    theme.dim(),
                )),
            }
            Line::from(spans)
        }
    };
    f.render_widget(Paragraph::new(line), area);
}

/// The line being typed: its end when it is longer than the screen is wide, the cursor, and an
/// error about it (the line was cut) after it.
fn typing<'a>(prompt: char, text: &str, app: &App, width: u16, theme: &Theme) -> Line<'a> {
    let note = match app.current_message() {
        Some((msg, true)) => format!("  {msg}"),
        _ => String::new(),
    };
    let room = (width as usize).saturating_sub(2 + note.chars().count());
    let count = text.chars().count();
    let shown: String = if count > room {
        std::iter::once('…').chain(text.chars().skip(count - room.saturating_sub(1))).collect()
    } else {
        text.to_string()
    };
    Line::from(vec![Span::raw(format!("{prompt}{shown}█")), Span::styled(note, theme.error())])
}

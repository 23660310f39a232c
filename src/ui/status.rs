//! The bottom line: run state, the screens (the current one marked), totals and rate, the message
//! of the moment and the keys' hint, or the line being typed. Nothing in it is cut: on a narrow
//! terminal the screens shrink to their keys, and a message that does not fit goes on a line of
//! its own below (see [`height`]).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::ui::app::{App, InputMode, RunState};
use crate::ui::panes::hard_wrap;
use crate::ui::screen::Screen;
use crate::ui::theme::Theme;

/// The run state's label and its style.
fn state(app: &App, theme: &Theme) -> (String, Style) {
    if let Some(g) = &app.going_back {
        let progress = match g.progress {
            Some((done, of)) if of > 0 => format!(" · {done} of {of} exits made again ({}%)", done * 100 / of),
            _ => String::new(),
        };
        let what = if g.cancelling {
            "CANCELLING: back to where it was".to_string()
        } else {
            format!("GOING BACK to exit #{}", g.seq)
        };
        let esc = if g.cancelling { "" } else { " · Esc cancels" };
        return (format!("{what}{progress}{esc}"), theme.warn());
    }
    match &app.state {
        RunState::Running => ("RUNNING".to_string(), theme.ok()),
        RunState::Pausing => ("PAUSING".to_string(), theme.warn()),
        RunState::Paused => {
            let at = app.stop.as_ref().map(|s| format!(" vCPU {} at {:#x}", s.vcpu, s.regs.rip)).unwrap_or_default();
            let place = app.place.as_ref().map(|p| format!(" · {p}")).unwrap_or_default();
            (format!("PAUSED{at}{place}"), theme.warn())
        }
        RunState::Ended(end) => (format!("ENDED: {} (status {})", end.name(), end.status()), theme.error()),
        RunState::Replay(Some((name, status))) => {
            (format!("REPLAY of a run that ended: {name} (status {status})"), theme.warn())
        }
        RunState::Replay(None) => ("REPLAY of a run with no end recorded".to_string(), theme.warn()),
    }
}

/// The status's lines for a terminal `width` wide: the state, the screens, the totals and the
/// message or the keys' hint on one line; where a message does not fit beside the rest, it goes
/// on lines of its own below, and the hint stays.
fn lines<'a>(app: &App, width: u16, theme: &Theme) -> Vec<Line<'a>> {
    let (label, style) = state(app, theme);
    let mut spans = vec![Span::styled(format!(" {label} "), style.add_modifier(Modifier::REVERSED)), Span::raw(" ")];
    // On a narrow terminal the screens shrink to their keys (the current one keeps its name).
    let wide = width >= 130;
    for screen in Screen::ALL {
        let current = screen == app.screen;
        let label =
            if wide || current { format!("{}:{}", screen.key(), screen.name()) } else { screen.key().to_string() };
        spans.extend([Span::styled(label, if current { theme.current() } else { theme.dim() }), Span::raw(" ")]);
    }
    let stats = &app.stats;
    spans.push(Span::raw(format!(" {} exits {}/s ", stats.counters.total.count, stats.rates.total())));
    if app.exits.dropped > 0 {
        spans.push(Span::styled(format!(" view dropped {} ", app.exits.dropped), theme.warn()));
    }
    let gdb = app.gdb.as_ref().map(|g| format!("gdb: {g}"));
    let len = |spans: &[Span]| spans.iter().map(|s| s.content.chars().count()).sum::<usize>();
    let width = width as usize;
    // What goes on lines of its own below when it does not fit beside the rest: the gdb stub's
    // address, the message of the moment.
    let mut below: Vec<Span> = Vec::new();
    let gdb_beside = gdb.as_ref().is_some_and(|g| len(&spans) + g.chars().count() + 12 <= width);
    if let Some(g) = gdb {
        match gdb_beside {
            true => spans.push(Span::styled(format!(" {g} ·"), theme.dim())),
            false => below.push(Span::styled(g, theme.dim())),
        }
    }
    match app.current_message() {
        Some((text, error)) => {
            let message = Span::styled(format!(" {text}"), if error { theme.error() } else { theme.ok() });
            if below.is_empty() && len(&spans) + message.content.chars().count() + 8 <= width {
                spans.extend([message, Span::styled("  ? help", theme.dim())]);
            } else {
                spans.push(Span::styled(" ? help", theme.dim()));
                below.push(message);
            }
        }
        None if width >= 130 => spans.push(Span::styled(
            format!(" {} — ? help  space pause  s step  : command  q quit", app.title),
            theme.dim(),
        )),
        None => spans.push(Span::styled(" ? help", theme.dim())),
    }
    let mut out = hard_wrap(spans, width);
    for span in below {
        out.extend(hard_wrap(vec![span], width));
    }
    out
}

/// Rows the status needs at `width`: one, or more for a message that does not fit beside the rest
/// (at most three).
pub fn height(app: &App, width: u16) -> u16 {
    if !matches!(app.input, InputMode::Normal | InputMode::Help) || width == 0 {
        return 1;
    }
    lines(app, width, &Theme { no_color: true }).len().clamp(1, 3) as u16
}

pub fn render(f: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let text = match &app.input {
        InputMode::Command(text) => vec![typing(':', text, app, area.width, theme)],
        InputMode::Filter(text) => vec![typing('/', text, app, area.width, theme)],
        _ => lines(app, area.width, theme),
    };
    f.render_widget(Paragraph::new(text), area);
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

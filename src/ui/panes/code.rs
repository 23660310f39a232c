//! Disassembly around RIP of the stopped vCPU, the current instruction marked; while running, the
//! instruction of the newest exit.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::frame;
use crate::debug::Stop;
use crate::trace::{ExitEvent, Insn};
use crate::ui::theme::Theme;

/// The code pane's state: the instructions it shows (read by `ui::reader`, or a replay's exit).
#[derive(Debug, Default)]
pub struct CodePane {
    pub lines: Vec<Insn>,
}

/// What there is to show when no vCPU is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Without {
    /// The guest runs: the newest exit's instruction.
    Running,
    /// The run has ended.
    Ended,
    /// A replay: the exit at the cursor, whose instruction the recording holds.
    Replay,
}

/// Draws the listing around the stop's RIP; without a stop, the newest exit's instruction.
pub fn render(
    f: &mut Frame,
    area: Rect,
    (pane, stop, newest, without): (&CodePane, Option<&Stop>, Option<&ExitEvent>, Without),
    focused: bool,
    theme: &Theme,
) {
    let block = frame(" Code ".into(), focused, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let show_bytes = inner.width >= 60;
    let Some(stop) = stop else {
        let (note, which) = match without {
            Without::Replay => ("a recording holds each exit's instruction, not the code around it", "exit"),
            Without::Ended => ("the run has ended", "last exit"),
            Without::Running => ("running: space pauses to disassemble around RIP", "newest exit"),
        };
        let mut lines = vec![Line::styled(note, theme.dim())];
        if let Some(e) = newest {
            if let Some(i) = &e.insn {
                lines.push(Line::from(format!("{which} #{} ({}) at rip {:#x}:", e.seq, e.kind.reason(), e.rip)));
                lines.push(Line::from(vec![
                    Span::raw(format!("  {:#x}  ", i.addr)),
                    Span::styled(i.text.clone(), theme.instruction()),
                    Span::styled(format!("  ({})", i.hex()), theme.dim()),
                ]));
            }
        }
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
        return;
    };
    if pane.lines.is_empty() {
        f.render_widget(
            Paragraph::new(format!("rip {:#x}: not readable", stop.regs.rip)).wrap(Wrap { trim: false }),
            inner,
        );
        return;
    }
    let lines: Vec<Line> = pane
        .lines
        .iter()
        .map(|i| {
            let here = i.addr == stop.regs.rip;
            let marker = if here { "▶ " } else { "  " };
            let mut spans = vec![Span::raw(format!("{marker}{:>12}  ", format!("{:#x}", i.addr)))];
            if show_bytes {
                spans.push(Span::styled(format!("{:<24} ", i.hex()), theme.dim()));
            }
            spans.push(Span::styled(i.text.clone(), theme.instruction()));
            let line = Line::from(spans);
            if here { line.style(theme.current()) } else { line }
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}

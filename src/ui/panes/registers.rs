//! Registers of the stopped vCPU: GPRs, RIP, RFLAGS with its flags spelled out, segments, control
//! registers and EFER; what changed since the previous stop is highlighted.

use kvm_bindings::{kvm_regs, kvm_sregs};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::frame;
use crate::debug::Stop;
use crate::decode::CpuMode;
use crate::ui::theme::Theme;

/// RFLAGS bits worth naming.
const FLAGS: [(u32, &str); 10] =
    [(0, "CF"), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"), (9, "IF"), (10, "DF"), (11, "OF"), (17, "VM")];

/// The set flags of an RFLAGS value, e.g. "ZF IF".
pub fn flag_names(rflags: u64) -> String {
    FLAGS.iter().filter(|(bit, _)| rflags & (1 << bit) != 0).map(|(_, n)| *n).collect::<Vec<_>>().join(" ")
}

fn gprs(r: &kvm_regs) -> [(&'static str, u64); 18] {
    [
        ("rax", r.rax),
        ("rbx", r.rbx),
        ("rcx", r.rcx),
        ("rdx", r.rdx),
        ("rsi", r.rsi),
        ("rdi", r.rdi),
        ("rbp", r.rbp),
        ("rsp", r.rsp),
        ("r8", r.r8),
        ("r9", r.r9),
        ("r10", r.r10),
        ("r11", r.r11),
        ("r12", r.r12),
        ("r13", r.r13),
        ("r14", r.r14),
        ("r15", r.r15),
        ("rip", r.rip),
        ("rflags", r.rflags),
    ]
}

fn system(s: &kvm_sregs) -> [(&'static str, u64); 11] {
    [
        ("cs", s.cs.selector as u64),
        ("ss", s.ss.selector as u64),
        ("ds", s.ds.selector as u64),
        ("es", s.es.selector as u64),
        ("fs", s.fs.selector as u64),
        ("gs", s.gs.selector as u64),
        ("cr0", s.cr0),
        ("cr2", s.cr2),
        ("cr3", s.cr3),
        ("cr4", s.cr4),
        ("efer", s.efer),
    ]
}

/// The registers pane's state: the stop before the one shown, to highlight what changed.
#[derive(Debug, Default)]
pub struct RegistersPane {
    pub previous: Option<Stop>,
}

/// Draws the selected vCPU's registers at its stop (`ended`: the run is over, there is nothing to
/// pause).
pub fn render(
    f: &mut Frame,
    area: Rect,
    (pane, stop, vcpu, ended): (&RegistersPane, Option<&Stop>, usize, bool),
    focused: bool,
    theme: &Theme,
) {
    let Some(stop) = stop else {
        let text = if ended {
            "no registers recorded for this vCPU here".to_string()
        } else {
            "running: space pauses to read them (:cpu N picks a vCPU)".to_string()
        };
        let block = frame(format!(" Registers: vCPU {vcpu} "), focused, theme);
        f.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }).block(block), area);
        return;
    };
    let title = format!(" Registers: vCPU {} ({}) ", stop.vcpu, stop.reason.short());
    let block = frame(title, focused, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let prev = pane.previous.as_ref();
    let cell = |name: &'static str, value: u64, was: Option<u64>, width: usize| {
        let style = if was.is_some_and(|w| w != value) { theme.changed() } else { Default::default() };
        vec![Span::styled(format!("{name:>7} "), theme.dim()), Span::styled(format!("{value:0width$x}"), style)]
    };
    let now = gprs(&stop.regs);
    let before = prev.map(|p| gprs(&p.regs));
    let per_row = if inner.width >= 48 { 2 } else { 1 };
    let mut lines: Vec<Line> = Vec::new();
    for chunk in (0..now.len()).collect::<Vec<_>>().chunks(per_row) {
        let mut spans = Vec::new();
        for &i in chunk {
            spans.extend(cell(now[i].0, now[i].1, before.map(|b| b[i].1), 16));
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::from(vec![Span::styled("  flags ", theme.dim()), Span::raw(flag_names(stop.regs.rflags))]));
    let sys = system(&stop.sregs);
    let mode = CpuMode::from(&stop.sregs);
    let sys_before = prev.map(|p| system(&p.sregs));
    let mut spans = Vec::new();
    for (i, (name, v)) in sys.iter().take(6).enumerate() {
        spans.extend(cell(name, *v, sys_before.map(|b| b[i].1), 4));
    }
    lines.push(Line::from(spans[..6.min(spans.len())].to_vec()));
    lines.push(Line::from(spans[6..].to_vec()));
    for chunk in (6..sys.len()).collect::<Vec<_>>().chunks(per_row) {
        let mut spans = Vec::new();
        for &i in chunk {
            spans.extend(cell(sys[i].0, sys[i].1, sys_before.map(|b| b[i].1), 16));
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::from(vec![
        Span::styled("   mode ", theme.dim()),
        Span::raw(format!("{} ({}-bit code)", mode.paging_name(), mode.bitness())),
    ]));
    f.render_widget(Paragraph::new(lines), inner);
}

//! The exit inspector (Enter on an exit): everything known about one exit — reason, vCPU, time,
//! handling cost, RIP with its guest symbol, the instruction and its bytes, the device, register
//! and every field of the value, why it reached userspace, the device's state as kvmscope tracked
//! it, and its call stack where the recording holds one. Arrows scroll it; any other key closes.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::frame;
use crate::decode::symbols::Symbols;
use crate::explain::{Explanation, why};
use crate::trace::ExitEvent;
use crate::ui::theme::Theme;

/// An open inspector: its lines, and how far it is scrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspector {
    pub seq: u64,
    pub lines: Vec<(String, String)>,
    pub scroll: u16,
}

/// A code address with the guest symbol it is in, where the guest has symbols.
fn located(addr: u64, symbols: &Symbols) -> String {
    match symbols.lookup(addr) {
        Some(_) => format!("{addr:#x} ({})", symbols.name_or_addr(addr)),
        None => format!("{addr:#x}"),
    }
}

impl Inspector {
    /// The inspector on exit `e`, explained by `x`; `stack` is its recorded call stack, if any.
    pub fn of(e: &ExitEvent, x: Option<&Explanation>, symbols: &Symbols, stack: Option<&[u64]>) -> Self {
        let mut lines: Vec<(String, String)> = Vec::new();
        let mut add = |k: &str, v: String| lines.push((k.to_string(), v));
        add(
            "exit",
            format!(
                "#{} on vCPU {} at {:.6} s, handled in {:.1} µs",
                e.seq,
                e.vcpu,
                e.t_ns as f64 / 1e9,
                e.cost_ns as f64 / 1e3
            ),
        );
        add("reason", e.kind.reason().to_string());
        add("access", e.detail());
        add("rip", located(e.rip, symbols));
        match &e.insn {
            Some(i) => add("instruction", format!("{}  {}  ({})", located(i.addr, symbols), i.text, i.hex())),
            None => add("instruction", "not read (not a port, MMIO or debug exit, or unmapped)".into()),
        }
        if let Some(x) = x {
            add("device", x.device.clone());
            add("register", if x.register.is_empty() { "-".into() } else { x.register.clone() });
            add("meaning", x.summary.clone());
            for (name, value) in &x.fields {
                add(&format!("  {name}"), value.clone());
            }
            for s in &x.state {
                add("state", s.clone());
            }
        }
        add("why", why(e).to_string());
        match stack {
            Some(frames) => {
                for (i, &f) in frames.iter().enumerate() {
                    // A return address is named by the call before it.
                    let at = if i == 0 { f } else { f.wrapping_sub(1) };
                    add(
                        if i == 0 { "stack" } else { "" },
                        format!(
                            "#{i} {}",
                            if symbols.lookup(at).is_some() { symbols.name_or_addr(at) } else { format!("{f:#x}") }
                        ),
                    );
                }
            }
            None => add("stack", "not recorded for this exit (record with --stacks)".into()),
        }
        Self { seq: e.seq, lines, scroll: 0 }
    }
}

/// Draws the inspector over `area`.
pub fn render(f: &mut Frame, area: Rect, inspector: &Inspector, theme: &Theme) {
    let w = area.width.min(110);
    let h = area.height.min(inspector.lines.len() as u16 + 2).max(3);
    let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    let lines: Vec<Line> = inspector
        .lines
        .iter()
        .map(|(k, v)| Line::from(vec![Span::styled(format!("{k:<12} "), theme.dim()), Span::raw(v.clone())]))
        .collect();
    f.render_widget(Clear, r);
    let title = format!(" Exit #{} — arrows scroll, any other key closes ", inspector.seq);
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).scroll((inspector.scroll, 0)).block(frame(title, true, theme)),
        r,
    );
}

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
use crate::trace::KernelLine;
use crate::ui::theme::Theme;

/// The in-kernel events around one exit (`--kernel-events`).
#[derive(Debug, Clone, Default)]
pub struct KernelAround {
    /// Its vCPU's events between its previous exit and its handling's end.
    pub lines: Vec<KernelLine>,
    /// Whether the events carry times at all (the trace clock could be set).
    pub timed: bool,
    /// The oldest event still kept.
    pub kept_since: Option<u64>,
    /// Whether events came too fast to be kept one by one while it happened.
    pub throttled: bool,
}

/// In-kernel events shown for one exit at most.
const KERNEL_SHOWN: usize = 24;

/// An open inspector: its lines, and how far it is scrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspector {
    pub seq: u64,
    pub lines: Vec<(String, String)>,
    pub scroll: u16,
    /// The machine can be taken back to this exit (a live run; a recording cannot).
    pub can_go_back: bool,
}

/// A code address with the guest symbol it is in, where the guest has symbols.
fn located(addr: u64, symbols: &Symbols) -> String {
    match symbols.lookup(addr) {
        Some(_) => format!("{addr:#x} ({})", symbols.name_or_addr(addr)),
        None => format!("{addr:#x}"),
    }
}

impl Inspector {
    /// The inspector on exit `e`, explained by `x`; `stack` is its recorded call stack, if any;
    /// `kernel` the in-kernel events around it, where they are followed.
    pub fn of(
        e: &ExitEvent,
        x: Option<&Explanation>,
        symbols: &Symbols,
        stack: Option<&[u64]>,
        kernel: Option<&KernelAround>,
    ) -> Self {
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
        match kernel {
            None => add("in-kernel", "not followed (run with --kernel-events, as root)".into()),
            Some(k) if !k.timed => add("in-kernel", "events carry no time on this host (no mono trace clock)".into()),
            Some(k) if k.lines.is_empty() && k.kept_since.is_none_or(|t| t > e.t_ns) => {
                add("in-kernel", "its events are no longer kept (the latest 4096 are)".into())
            }
            Some(k) if k.lines.is_empty() && k.throttled => add(
                "in-kernel",
                "too many events then to keep one by one (their rates are in the device events pane)".into(),
            ),
            Some(k) if k.lines.is_empty() => {
                add("in-kernel", "no event of its vCPU's thread since its previous exit".into())
            }
            Some(k) => {
                let skipped = k.lines.len().saturating_sub(KERNEL_SHOWN);
                let mut notes = Vec::new();
                if k.throttled {
                    notes.push("some only: too many events then to keep each one".to_string());
                }
                if skipped > 0 {
                    notes.push(format!("… {skipped} earlier events"));
                }
                let events = k.lines.iter().skip(skipped).map(|l| {
                    let when =
                        l.t_ns.map_or(String::new(), |t| format!("{:+.1} µs ", (t as f64 - e.t_ns as f64) / 1e3));
                    format!("{when}{}", l.text)
                });
                for (i, line) in notes.into_iter().chain(events).enumerate() {
                    add(if i == 0 { "in-kernel" } else { "" }, line);
                }
            }
        }
        Self { seq: e.seq, lines, scroll: 0, can_go_back: true }
    }
}

impl Inspector {
    /// Replaces the value of the line named `key`.
    pub fn set(&mut self, key: &str, value: &str) {
        if let Some(line) = self.lines.iter_mut().find(|(k, _)| k == key) {
            line.1 = value.to_string();
        }
    }
}

/// Draws the inspector over `area`.
pub fn render(f: &mut Frame, area: Rect, inspector: &Inspector, theme: &Theme) {
    let w = area.width.min(110);
    let h = area.height.min(inspector.lines.len() as u16 + 2).max(3);
    let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    // The names in one column, as wide as the longest (a field's name is indented under its value).
    let keys = inspector.lines.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0).min(24);
    let lines: Vec<Line> = inspector
        .lines
        .iter()
        .map(|(k, v)| Line::from(vec![Span::styled(format!("{k:<keys$} "), theme.dim()), Span::raw(v.clone())]))
        .collect();
    f.render_widget(Clear, r);
    let back = if inspector.can_go_back { "b goes back to here, " } else { "" };
    let title = format!(" Exit #{} — arrows scroll, {back}any other key closes ", inspector.seq);
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).scroll((inspector.scroll, 0)).block(frame(title, true, theme)),
        r,
    );
}

//! A hexdump with ASCII of guest memory, at a guest-physical (`:xp`) or guest-virtual (`:x`) address.

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};

use super::{frame, scroll_rows};
use crate::ui::command::DEFAULT_EXAMINE_LEN;
use crate::ui::theme::Theme;

/// What the memory pane shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryTarget {
    pub addr: u64,
    pub len: u64,
    pub physical: bool,
    /// Follow the stopped vCPU's RIP (until the user picks an address with `:x`/`:xp`).
    pub follow_rip: bool,
}

/// The memory pane's state: its target, and the bytes read there (by `ui::reader`).
#[derive(Debug)]
pub struct MemoryPane {
    pub target: MemoryTarget,
    pub bytes: Vec<u8>,
    /// Why fewer bytes than asked could be read (translation failed, not RAM).
    pub note: Option<String>,
    /// The layers of the address asked for with `:gva`/`:gpa`, shown above the bytes.
    pub chain: Vec<String>,
}

impl Default for MemoryPane {
    fn default() -> Self {
        let target = MemoryTarget { addr: 0x10_0000, len: DEFAULT_EXAMINE_LEN, physical: true, follow_rip: true };
        Self { target, bytes: Vec::new(), note: None, chain: Vec::new() }
    }
}

impl MemoryPane {
    /// Shows the layers of an address (`chain`, one line each) and the bytes at it.
    pub fn show_chain(&mut self, chain: &str, addr: u64, physical: bool) {
        self.chain = chain.lines().map(String::from).collect();
        self.target = MemoryTarget { addr, len: self.target.len, physical, follow_rip: false };
    }

    /// Moves the view by `rows` lines of 16 bytes (positive: back to lower addresses).
    pub fn scroll_by(&mut self, rows: isize) {
        let step = 16i64.saturating_mul(rows as i64);
        self.target.addr = (self.target.addr as i64).saturating_sub(step).max(0) as u64;
    }

    /// The keys this pane takes; false for any other.
    pub fn on_key(&mut self, code: KeyCode) -> bool {
        scroll_rows(code).map(|rows| self.scroll_by(rows)).is_some()
    }
}

/// Hexdump lines of `bytes` starting at `addr`, `per_line` bytes each.
pub fn hexdump(addr: u64, bytes: &[u8], per_line: usize) -> Vec<String> {
    bytes
        .chunks(per_line)
        .enumerate()
        .map(|(i, chunk)| {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            let ascii: String =
                chunk.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }).collect();
            format!("{:012x}  {:<w$}  {ascii}", addr + (i * per_line) as u64, hex.join(" "), w = per_line * 3 - 1)
        })
        .collect()
}

pub fn render(f: &mut Frame, area: Rect, pane: &MemoryPane, focused: bool, theme: &Theme) {
    let m = pane.target;
    let kind = if m.physical { "physical" } else { "virtual" };
    let follow = if m.follow_rip { ", at RIP" } else { "" };
    let title = format!(" Memory: {kind} {:#x} +{:#x}{follow} (:x / :xp) ", m.addr, m.len);
    let block = frame(title, focused, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let per_line = if inner.width >= 14 + 16 * 4 { 16 } else { 8 };
    let mut lines: Vec<Line> = pane.chain.iter().map(|l| Line::styled(l.clone(), theme.instruction())).collect();
    lines.extend(hexdump(m.addr, &pane.bytes, per_line).into_iter().map(Line::from));
    if let Some(note) = &pane.note {
        lines.push(Line::styled(note.clone(), theme.warn()));
    }
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hexdump_has_hex_and_ascii() {
        let lines = hexdump(0x1000, b"Hello, kvmscope!\x00\x01", 16);
        assert_eq!(lines[0], "000000001000  48 65 6c 6c 6f 2c 20 6b 76 6d 73 63 6f 70 65 21  Hello, kvmscope!");
        assert!(lines[1].starts_with("000000001010  00 01 "));
        assert!(lines[1].ends_with("  .."));
    }
}

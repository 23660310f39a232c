//! The `?` (or `:help`) overlay: every key and command. It scrolls (arrows, page keys, Home/End)
//! when the terminal is too short for it; any other key closes it.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::frame;
use crate::ui::theme::Theme;

pub const HELP: &str = "\
Keys
  space      pause / resume all vCPUs    s      single-step the selected vCPU
  tab        next pane (S-tab back; or click)  q C-c  quit (summary on stderr)
  1 2 3 4 5  screens: 1 overview (every pane), 2 exits (the stream at full
             height), 3 memory map (t: page tables as ranges or every page),
             4 devices (virtqueues, device events, a buffer in memory),
             5 profile (exits by guest function; t sorts by exits or time)
  /          filter exits: io PORT | mmio ADDR[-END] | reason NAME
  f          freeze the exit view (the guest runs on); arrows then move a row
  Enter      inspect the exit under the cursor: device, register, fields, why;
             there b goes back in time to just after that exit (paused)
  o          sort stats by rate or total  x  stats by port, register, or not
  arrows     scroll the focused pane (pgup/pgdn home/end; the stats pane too)
  ?          this help (arrows scroll it, any other key closes it)
  :          command line
  In the Console pane typing goes to the guest's UART; Esc or Tab leaves it.
Commands
  :break io PORT | mmio ADDR[-END] | reason NAME [nth N]   stop on an exit
  :break msr NAME|NUMBER [read|write]   stop on a trapped MSR's access
  :delete [N]  :breaks  :step  :continue  :pause  :quit  :help
  :cpu N          the vCPU the registers, code and memory panes follow
  :x ADDR [LEN]   memory at a guest-virtual address (the vCPU's page tables)
  :xp ADDR [LEN]  memory at a guest-physical address
  :gva ADDR  :gpa ADDR  an address through page tables, slot and host
  :virtio [NAME]  the virtio devices (one in full), on the devices screen
  :trap msr LIST  trap these MSRs' rdmsr/wrmsr (names, numbers; `none` stops)
  :filter SPEC    :sort rate|total
  :checkpoint  :checkpoints  :restore N   take, list, go back to checkpoints
  :goto SEQ       back to just after exit SEQ   :snapshot FILE  the whole VM
  Replay: n/p or arrows step, :goto SEQ, :time SECS";

/// Rows `text` takes wrapped at `width` columns (exact where no line is longer: the lines are
/// kept within 78 columns, so from 80 columns on nothing wraps).
fn wrapped_rows(text: &str, width: u16) -> u16 {
    let w = width.max(1) as usize;
    text.lines().map(|l| l.chars().count().max(1).div_ceil(w) as u16).sum()
}

/// Draws the help over `area`, scrolled down `scroll` rows (clamped to its end).
pub fn render(f: &mut Frame, area: Rect, scroll: u16, theme: &Theme) {
    let w = area.width.min(80);
    let rows = wrapped_rows(HELP, w.saturating_sub(2));
    let h = area.height.min(rows + 2);
    let scroll = scroll.min(rows.saturating_sub(h.saturating_sub(2)));
    let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    let more = if rows + 2 > h { " — arrows scroll" } else { "" };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(HELP).wrap(Wrap { trim: false }).scroll((scroll, 0)).block(frame(
            format!(" Help{more} — any other key closes "),
            true,
            theme,
        )),
        r,
    );
}

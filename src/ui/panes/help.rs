//! The `?` overlay: every key and command.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::frame;
use crate::ui::theme::Theme;

pub const HELP: &str = "\
Keys
  space    pause / resume all vCPUs      s      single-step (while paused)
  tab      next pane (S-tab back; or click)  q C-c  quit (summary on stderr)
  1 2 3 4  screens: 1 overview (every pane), 2 exits (the stream at full height), 3 memory map
           (t: page tables as info mem ranges or every page, info tlb),
           4 devices (virtqueues, device events, a buffer in the memory pane),
           5 profile (exits by guest function; t sorts by exits or time)
  /        filter exits: io PORT | mmio ADDR[-END] | reason NAME
  f        freeze the exit view (the guest runs on)
  o        sort stats by rate or total   x      port/MMIO breakdown in stats
  arrows   scroll (pgup/pgdn home/end)   ?      this help (any key closes)
  :        command line
  In the Console pane typing goes to the guest's UART; Esc or Tab leaves it.
Commands
  :break io PORT | mmio ADDR[-END] | reason NAME [nth N]   stop on an exit
  :delete [N]  :breaks  :step  :continue  :pause  :quit
  :x ADDR [LEN]   memory at a guest-virtual address (stopped vCPU's tables)
  :xp ADDR [LEN]  memory at a guest-physical address
  :virtio [NAME]  the virtio devices (one in full), on the devices screen
  :trap msr LIST  trap these MSRs' rdmsr/wrmsr (names or numbers; `none` stops)
  :gva ADDR  :gpa ADDR  an address through page tables, slot and host
  :filter SPEC    :sort rate|total";

pub fn render(f: &mut Frame, area: Rect, theme: &Theme) {
    let w = area.width.min(80);
    let h = area.height.min(HELP.lines().count() as u16 + 2);
    let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(HELP).wrap(Wrap { trim: false }).block(frame(" Help — any key closes ".into(), true, theme)),
        r,
    );
}

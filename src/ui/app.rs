//! The UI's state: the screen, focus, input line and run state, and each pane's own state (in
//! `panes/`, beside the widget that draws it). Keys the app does not take itself go to the focused
//! pane; those that need the VM (pause, step, breakpoints, console input) come out as [`Action`]s
//! for the runner to carry out, so all of this is testable without a terminal or a guest.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Position, Rect};

use super::command::{self, Command};
use super::panes::code::CodePane;
use super::panes::console::ConsolePane;
use super::panes::device_events::DeviceEventsPane;
use super::panes::exits::ExitsPane;
use super::panes::inspector::{Inspector, KernelAround};
use super::panes::memmap::MemMapPane;
use super::panes::memory::{MemoryPane, MemoryTarget};
use super::panes::profile::ProfilePane;
use super::panes::registers::RegistersPane;
use super::panes::stats::StatsPane;
use super::panes::virtio::VirtioPane;
use super::screen::{PaneId, Screen};
use crate::debug::{ExitSpec, Stop};
use crate::trace::{KernelLine, KernelLineKind};
use crate::vmm::RunEnd;

/// The longest `:` or `/` line; what is typed beyond it is dropped, with a note.
pub const MAX_LINE: usize = 1024;

/// What the bottom line is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputMode {
    Normal,
    /// Typing a `:` command.
    Command(String),
    /// Typing a `/` filter.
    Filter(String),
    /// The help overlay is open.
    Help,
    /// The exit inspector is open.
    Inspect,
}

/// What the runner must do for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    TogglePause,
    Pause,
    Resume,
    Step,
    Quit,
    /// An exit breakpoint on the Nth match of a spec.
    AddExitBreakpoint(ExitSpec, u64),
    DeleteExitBreakpoint(Option<u32>),
    ListExitBreakpoints,
    /// Bytes typed for the guest's UART.
    SerialInput(Vec<u8>),
    /// Show an address through every layer (guest-virtual when `virt`).
    ShowChain {
        addr: u64,
        virt: bool,
    },
    /// Trap exactly these MSRs from now on.
    TrapMsrs(Vec<u32>),
    /// Take a checkpoint; list them; go back to one; write a snapshot file.
    Checkpoint,
    ListCheckpoints,
    Restore(u32),
    Snapshot(std::path::PathBuf),
    /// Move to the exit with this sequence number: in a replay, the view; in a live run, the
    /// machine (back to just after it). Replay: or the first exit at or after this time (ns).
    Goto(u64),
    GotoTime(u64),
}

/// A going back under way (`:goto`, `b` in the inspector), on a thread of its own: the TUI
/// draws on meanwhile and Esc cancels it.
pub struct GoingBack {
    /// The exit it goes to.
    pub seq: u64,
    /// The exits made again so far, of those to make.
    pub progress: Option<(u64, u64)>,
    /// Whether it started at the guest's end (kept as a stop).
    pub from_end: bool,
    /// The message it ends with, and whether it is an error.
    pub done: std::sync::mpsc::Receiver<(String, bool)>,
    /// Esc was pressed.
    pub cancelling: bool,
}

/// Whether the guest runs, is stopped, or has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    Running,
    Pausing,
    Paused,
    Ended(RunEnd),
    /// A replay: how the recorded run ended (name and status), if the recording says.
    Replay(Option<(String, i32)>),
}

impl RunState {
    /// Whether the guest can no longer run (nothing to pause or type into).
    pub fn is_over(&self) -> bool {
        matches!(self, RunState::Ended(_) | RunState::Replay(_))
    }
}

/// All UI state.
pub struct App {
    pub screen: Screen,
    pub focus: PaneId,
    pub input: InputMode,
    message: Option<(String, bool, Instant)>,
    pub state: RunState,
    /// The vCPU the registers, code and memory panes follow (`:cpu N`; a vCPU that hits a
    /// breakpoint becomes it).
    pub vcpu: usize,
    /// Every vCPU's stop (`None` while it runs), or, once the run has ended, the state it left.
    pub stops: Vec<Option<Stop>>,
    /// The selected vCPU's stop, which the views show; `None` while it runs.
    pub stop: Option<Stop>,
    /// The newest stop seen (its serial): a newer one selects its vCPU, the same one again does
    /// not undo the user's `:cpu N`.
    newest_seen: u64,
    /// Where a stopped live guest is on its timeline ("exit 1234 + 3 instructions").
    pub place: Option<String>,
    pub exits: ExitsPane,
    pub stats: StatsPane,
    pub registers: RegistersPane,
    pub code: CodePane,
    pub console: ConsolePane,
    pub memory: MemoryPane,
    pub memmap: MemMapPane,
    pub virtio: VirtioPane,
    pub devices: DeviceEventsPane,
    pub profile: ProfilePane,
    /// Where each pane was drawn, for mouse clicks.
    pub pane_rects: Vec<(PaneId, Rect)>,
    pub quit: bool,
    /// Guest image name, for the title.
    pub title: String,
    /// NO_COLOR: modifiers only.
    pub no_color: bool,
    /// Lines the help overlay is scrolled down.
    pub help_scroll: u16,
    /// Where gdb can attach (`--gdb`): "target remote ADDR".
    pub gdb: Option<String>,
    /// The exit inspector, while open.
    pub inspector: Option<Inspector>,
    /// The going back under way, if one is.
    pub going_back: Option<GoingBack>,
    /// Recorded call stacks by exit (a replay of a `--stacks` recording).
    pub stacks: std::collections::HashMap<u64, Vec<u64>>,
    /// The latest in-kernel events (`--kernel-events`), for the inspector; `None` when not followed.
    pub kernel_lines: Option<std::collections::VecDeque<KernelLine>>,
}

/// In-kernel events kept for the inspector.
pub const KERNEL_LINES: usize = 4096;

/// Whether the stream showed the events of (`from`, `to`] only in part: a stretch from a
/// [`KernelLineKind::Throttled`] mark to the next [`KernelLineKind::Rates`] overlaps it.
fn throttled_within(kept: &std::collections::VecDeque<KernelLine>, from: u64, to: u64) -> bool {
    let mut stretch_from = None;
    for l in kept {
        let Some(t) = l.t_ns else { continue };
        match l.kind {
            KernelLineKind::Throttled if t <= to => stretch_from = Some(t),
            KernelLineKind::Rates if stretch_from.is_some() => {
                if t > from {
                    return true;
                }
                stretch_from = None;
            }
            _ => {}
        }
    }
    stretch_from.is_some()
}

impl App {
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            screen: Screen::Overview,
            focus: PaneId::Exits,
            input: InputMode::Normal,
            message: None,
            state: RunState::Running,
            vcpu: 0,
            stops: Vec::new(),
            stop: None,
            newest_seen: 0,
            place: None,
            exits: ExitsPane::default(),
            stats: StatsPane::default(),
            registers: RegistersPane::default(),
            code: CodePane::default(),
            console: ConsolePane::default(),
            memory: MemoryPane::default(),
            memmap: MemMapPane::default(),
            virtio: VirtioPane::default(),
            devices: DeviceEventsPane::default(),
            profile: ProfilePane::default(),
            pane_rects: Vec::new(),
            quit: false,
            title: title.into(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            help_scroll: 0,
            gdb: None,
            inspector: None,
            going_back: None,
            stacks: Default::default(),
            kernel_lines: None,
        }
    }

    /// Shows a one-line message (an error in red) for a few seconds.
    pub fn say(&mut self, text: impl Into<String>, error: bool) {
        self.message = Some((text.into(), error, Instant::now()));
    }

    /// The message, if still fresh.
    pub fn current_message(&self) -> Option<(&str, bool)> {
        self.message
            .as_ref()
            .filter(|(_, _, at)| at.elapsed() < Duration::from_secs(6))
            .map(|(t, e, _)| (t.as_str(), *e))
    }

    /// Shows `stop`; the one shown before, if of the same vCPU, becomes the registers pane's
    /// previous stop (what changed since is highlighted).
    pub fn show_stop(&mut self, stop: Option<Stop>) {
        if let Some(old) = self.stop.take() {
            let same_vcpu = stop.as_ref().is_none_or(|s| s.vcpu == old.vcpu);
            self.registers.previous = same_vcpu.then_some(old);
        }
        self.stop = stop;
    }

    /// Records the vCPUs' stops from the controller: a new stop (a breakpoint, a step) selects its
    /// vCPU; the views show the selected vCPU's stop while paused, nothing stale while running.
    pub fn set_stops(&mut self, stops: &[Option<Stop>], paused: bool) {
        if self.state.is_over() {
            return;
        }
        let newest = stops.iter().flatten().max_by_key(|s| s.serial).filter(|s| s.serial > self.newest_seen).cloned();
        if let Some(stop) = &newest {
            self.newest_seen = stop.serial;
            self.vcpu = stop.vcpu as usize;
            if let Some(e) = &stop.event {
                self.say(format!("vCPU {} {}: {}", stop.vcpu, stop.reason, e.detail()), false);
            }
        }
        self.stops = stops.to_vec();
        let selected = if paused { stops.get(self.vcpu).cloned().flatten() } else { None };
        if selected.as_ref().map(|s| s.serial) != self.stop.as_ref().map(|s| s.serial) {
            self.show_stop(selected);
        }
        let all_parked = !stops.is_empty() && stops.iter().all(Option::is_some);
        let was = std::mem::replace(
            &mut self.state,
            match (paused, all_parked) {
                (false, _) => RunState::Running,
                (true, true) => RunState::Paused,
                (true, false) => RunState::Pausing,
            },
        );
        // "pausing ..." is over once every vCPU has parked (a stop at an exit says so itself).
        let told = newest.as_ref().is_some_and(|s| s.event.is_some());
        if was == RunState::Pausing && self.state == RunState::Paused && !told {
            self.say(format!("paused: all {} vCPUs stopped", stops.len()), false);
        }
    }

    /// The run ended; `finals` is the state each vCPU left, still there to be looked at;
    /// `kept`: the guest's end is kept, and its past can be gone back to.
    pub fn set_ended(&mut self, end: RunEnd, finals: Vec<Option<Stop>>, kept: bool) {
        let then = if kept { "b in the exit inspector or :goto SEQ goes back, q quits" } else { "q quits" };
        self.say(format!("guest run ended: {end} (status {}) — {then}", end.status()), end.is_crash());
        self.state = RunState::Ended(end);
        if self.vcpu >= finals.len() || finals[self.vcpu].is_none() {
            self.vcpu = finals.iter().position(Option::is_some).unwrap_or(0);
        }
        self.show_stop(finals.get(self.vcpu).cloned().flatten());
        self.stops = finals;
    }

    /// Gone back from the guest's end: stopped in its past.
    pub fn leave_end(&mut self) {
        self.state = RunState::Paused;
    }

    /// Follows vCPU `n` in the registers, code and memory panes (`:cpu N`).
    pub fn select_vcpu(&mut self, n: usize) {
        let count = self.stops.len();
        if n >= count.max(1) {
            self.say(format!("no vCPU {n}: this VM has {}", count.max(1)), true);
            return;
        }
        self.vcpu = n;
        let stop = self.stops.get(n).cloned().flatten();
        let note = match (&stop, &self.state) {
            (Some(_), _) => "",
            (None, RunState::Running) => " (running: pause to read its registers)",
            (None, RunState::Paused | RunState::Pausing) => " (not parked yet: its registers come when it stops)",
            (None, _) => "",
        };
        self.show_stop(stop);
        self.say(format!("vCPU {n} selected{note}"), false);
    }

    /// Shows another screen; focus stays on a pane it holds, else goes to its first.
    pub fn show_screen(&mut self, screen: Screen) {
        self.screen = screen;
        if !screen.panes().contains(&self.focus) {
            self.focus = screen.panes()[0];
        }
    }

    /// Handles a key; returns what the runner must do.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Action> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return vec![Action::Quit];
        }
        match std::mem::replace(&mut self.input, InputMode::Normal) {
            InputMode::Inspect => {
                // Scrolling keys move the inspector; any other key closes it.
                match (self.inspector.as_mut(), super::panes::scroll_rows(key.code)) {
                    (Some(i), Some(rows)) => {
                        i.scroll = (i.scroll as i32 - rows.clamp(-1000, 1000) as i32).clamp(0, u16::MAX as i32) as u16;
                        self.input = InputMode::Inspect;
                    }
                    // "Go back to here": the machine as it was just after this exit.
                    (Some(i), None) if key.code == KeyCode::Char('b') && i.can_go_back => {
                        let seq = i.seq;
                        self.inspector = None;
                        return vec![Action::Goto(seq)];
                    }
                    (Some(i), None) if key.code == KeyCode::Char('b') => {
                        let seq = i.seq;
                        self.inspector = None;
                        self.say(
                            format!(
                                "a recording holds the exits, not the machine: it cannot go back to exit #{seq} (a live run can: b in `kvmscope run`'s inspector)"
                            ),
                            true,
                        );
                    }
                    _ => self.inspector = None,
                }
                Vec::new()
            }
            InputMode::Help => {
                // Scrolling keys move the help; any other key closes it.
                if let Some(rows) = super::panes::scroll_rows(key.code) {
                    let back = -(rows.clamp(-1000, 1000) as i32);
                    self.help_scroll = (self.help_scroll as i32 + back).clamp(0, u16::MAX as i32) as u16;
                    self.input = InputMode::Help;
                } else if key.code == KeyCode::End {
                    self.help_scroll = u16::MAX;
                    self.input = InputMode::Help;
                }
                Vec::new()
            }
            InputMode::Command(text) => self.edit_line(key, text, true),
            InputMode::Filter(text) => self.edit_line(key, text, false),
            InputMode::Normal => self.normal_key(key),
        }
    }

    fn edit_line(&mut self, key: KeyEvent, mut text: String, command: bool) -> Vec<Action> {
        let keep = |app: &mut App, text: String| {
            app.input = if command { InputMode::Command(text) } else { InputMode::Filter(text) };
        };
        // After a long paste the terminal delivers Esc and the next key together, as Alt+key:
        // that is Esc, then the key.
        if key.modifiers.contains(KeyModifiers::ALT) {
            return self.normal_key(KeyEvent::new(key.code, key.modifiers - KeyModifiers::ALT));
        }
        match key.code {
            KeyCode::Esc => {}
            KeyCode::Enter => {
                return if command { self.run_command(&text) } else { self.apply_filter(&text) };
            }
            KeyCode::Backspace => {
                if text.pop().is_some() {
                    keep(self, text);
                }
            }
            KeyCode::Char(c) => {
                if text.chars().count() < MAX_LINE {
                    text.push(c);
                } else {
                    self.say(format!("the line is cut at {MAX_LINE} characters"), true);
                }
                keep(self, text);
            }
            _ => keep(self, text),
        }
        Vec::new()
    }

    fn apply_filter(&mut self, text: &str) -> Vec<Action> {
        self.message = None;
        let text = text.trim();
        if text.is_empty() {
            self.exits.filter = None;
            self.say("filter cleared", false);
            return Vec::new();
        }
        match ExitSpec::parse(text) {
            Ok(spec) => {
                self.say(format!("filter: {spec}"), false);
                self.exits.filter = Some(spec);
                self.exits.scroll = 0;
            }
            Err(e) => self.say(e.to_string(), true),
        }
        Vec::new()
    }

    fn run_command(&mut self, text: &str) -> Vec<Action> {
        // A new command's answer replaces the last one's (a usage line does not linger).
        self.message = None;
        match command::parse(text) {
            Err(e) => {
                self.say(e, true);
                Vec::new()
            }
            Ok(Command::Break(spec, nth)) => vec![Action::AddExitBreakpoint(spec, nth)],
            Ok(Command::Delete(id)) => vec![Action::DeleteExitBreakpoint(id)],
            Ok(Command::Breaks) => vec![Action::ListExitBreakpoints],
            Ok(Command::Examine { addr, len, physical }) => {
                self.memory.target = MemoryTarget { addr, len, physical, follow_rip: false };
                self.memory.chain.clear();
                if !self.screen.panes().contains(&PaneId::Memory) {
                    self.show_screen(Screen::Overview);
                }
                self.focus = PaneId::Memory;
                Vec::new()
            }
            Ok(Command::Filter(spec)) => {
                self.exits.filter = spec;
                Vec::new()
            }
            Ok(Command::Chain { addr, virt }) => vec![Action::ShowChain { addr, virt }],
            Ok(Command::Step) => vec![Action::Step],
            Ok(Command::Continue) => vec![Action::Resume],
            Ok(Command::Pause) => vec![Action::Pause],
            Ok(Command::Sort(s)) => {
                self.stats.sort = s;
                Vec::new()
            }
            Ok(Command::Quit) => {
                self.quit = true;
                vec![Action::Quit]
            }
            Ok(Command::Goto(seq)) => vec![Action::Goto(seq)],
            Ok(Command::Time(t)) => vec![Action::GotoTime(t)],
            Ok(Command::TrapMsrs(msrs)) => vec![Action::TrapMsrs(msrs)],
            Ok(Command::Checkpoint) => vec![Action::Checkpoint],
            Ok(Command::Checkpoints) => vec![Action::ListCheckpoints],
            Ok(Command::Restore(id)) => vec![Action::Restore(id)],
            Ok(Command::Snapshot(path)) => vec![Action::Snapshot(path)],
            Ok(Command::Cpu(n)) => {
                self.select_vcpu(n);
                Vec::new()
            }
            Ok(Command::Help) => {
                self.open_help();
                Vec::new()
            }
            Ok(Command::Virtio(only)) => {
                let known =
                    self.virtio.views.as_ref().is_none_or(|v| v.iter().any(|d| Some(d.name) == only.as_deref()));
                if only.is_some() && !known {
                    self.say(format!("no virtio device {:?}", only.unwrap_or_default()), true);
                    return Vec::new();
                }
                self.virtio.only = only;
                self.virtio.selected = 0;
                self.show_screen(Screen::Devices);
                self.focus = PaneId::Virtio;
                Vec::new()
            }
        }
    }

    fn move_focus(&mut self, forward: bool) {
        let panes = self.screen.panes();
        let n = panes.len();
        let i = panes.iter().position(|p| *p == self.focus).unwrap_or(0);
        self.focus = panes[if forward { (i + 1) % n } else { (i + n - 1) % n }];
    }

    fn normal_key(&mut self, key: KeyEvent) -> Vec<Action> {
        match key.code {
            KeyCode::Tab => {
                self.move_focus(true);
                return Vec::new();
            }
            KeyCode::BackTab => {
                self.move_focus(false);
                return Vec::new();
            }
            _ => {}
        }
        if self.focus == PaneId::Console && !self.state.is_over() {
            if key.code == KeyCode::Esc {
                self.focus = PaneId::Exits;
                return Vec::new();
            }
            return self.console.on_key(key.code).map(Action::SerialInput).into_iter().collect();
        }
        match key.code {
            KeyCode::Char('q') => {
                self.quit = true;
                return vec![Action::Quit];
            }
            KeyCode::Char(' ') => return vec![Action::TogglePause],
            KeyCode::Char('s') => return vec![Action::Step],
            KeyCode::Char('?') => self.open_help(),
            KeyCode::Char(':') => self.input = InputMode::Command(String::new()),
            KeyCode::Char('/') => self.input = InputMode::Filter(String::new()),
            KeyCode::Char('f') => {
                let frozen = self.exits.toggle_freeze();
                self.say(if frozen { "view frozen (f to follow)" } else { "following" }, false);
            }
            KeyCode::Char(c) if Screen::of_key(c).is_some() => {
                if let Some(screen) = Screen::of_key(c) {
                    // A screen's first pane is its main one: the key goes there.
                    self.show_screen(screen);
                    self.focus = screen.panes()[0];
                }
            }
            code => {
                // The focused pane first; keys it does not take go to the exit list and the stats.
                if self.focus == PaneId::Virtio && code == KeyCode::Enter {
                    self.open_selected_buffer();
                    return Vec::new();
                }
                if self.focus == PaneId::Exits && code == KeyCode::Enter {
                    self.open_inspector();
                    return Vec::new();
                }
                let taken = (self.focus == PaneId::Stats && self.stats.on_scroll_key(code))
                    || (self.focus == PaneId::Memory && self.memory.on_key(code))
                    || (self.focus == PaneId::MemMap && self.memmap.on_key(code))
                    || (self.focus == PaneId::Virtio && self.virtio.on_key(code))
                    || (self.focus == PaneId::DeviceEvents && self.devices.on_key(code))
                    || (self.focus == PaneId::Profile && self.profile.on_key(code))
                    || self.exits.on_key(code);
                if !taken {
                    self.stats.on_key(code);
                }
            }
        }
        Vec::new()
    }

    /// Takes in-kernel events: to the device events pane, and kept for the inspector.
    pub fn push_kernel(&mut self, lines: Vec<KernelLine>) {
        self.devices.push_kernel(lines.iter().map(|l| l.text.clone()));
        if let Some(kept) = &mut self.kernel_lines {
            for l in lines {
                if kept.len() == KERNEL_LINES {
                    kept.pop_front();
                }
                kept.push_back(l);
            }
        }
    }

    /// Opens the exit inspector on the exit under the exits pane's cursor (or the newest).
    pub fn open_inspector(&mut self) {
        let Some((e, x)) = self.exits.chosen().and_then(|seq| self.exits.find(seq)) else {
            self.say("no exit to inspect yet", true);
            return;
        };
        let stack = self.stacks.get(&e.seq).map(Vec::as_slice);
        let kernel = self.kernel_lines.as_ref().map(|kept| {
            // Its vCPU's events since that vCPU's previous exit (KVM's handling of this one).
            let since = self.exits.previous_on_vcpu(e).map_or(e.t_ns.saturating_sub(1_000_000), |p| p.t_ns);
            let (thread, end) = (format!("vcpu{}", e.vcpu), e.t_ns + e.cost_ns);
            let around = |l: &&KernelLine| l.t_ns.is_some_and(|t| t > since && t <= end);
            KernelAround {
                lines: kept
                    .iter()
                    .filter(|l| l.kind == KernelLineKind::Event && l.thread == thread)
                    .filter(around)
                    .cloned()
                    .collect(),
                timed: kept.iter().any(|l| l.t_ns.is_some()),
                kept_since: kept.front().and_then(|l| l.t_ns),
                throttled: throttled_within(kept, since, end),
            }
        });
        let mut inspector = Inspector::of(e, x, &self.profile.symbols, stack, kernel.as_ref());
        if matches!(self.state, RunState::Replay(_)) {
            inspector.set("in-kernel", "a recording keeps their counts only (`kvmscope stats`)");
            inspector.can_go_back = false;
        }
        self.inspector = Some(inspector);
        self.input = InputMode::Inspect;
    }

    fn open_help(&mut self) {
        self.input = InputMode::Help;
        self.help_scroll = 0;
    }

    /// Opens the virtqueue pane's selected descriptor buffer in the memory pane.
    fn open_selected_buffer(&mut self) {
        match self.virtio.selected_buffer() {
            Some((addr, len)) => {
                let what = format!("virtqueue buffer: guest-physical {addr:#x}, {len} bytes");
                self.memory.show_chain(&what, addr, true);
                self.say(what, false);
            }
            None => self.say("no descriptor to open: the queues show none", true),
        }
    }

    /// Handles the mouse: a click focuses the pane under it, the wheel scrolls.
    pub fn on_mouse(&mut self, m: MouseEvent) {
        let at = Position { x: m.column, y: m.row };
        let hit = self.pane_rects.iter().find(|(_, r)| r.contains(at)).map(|(p, _)| *p);
        let rows = match m.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                if let Some(p) = hit {
                    self.focus = p;
                }
                return;
            }
            MouseEventKind::ScrollUp => 3,
            MouseEventKind::ScrollDown => -3,
            _ => return,
        };
        match self.focus {
            PaneId::Memory => self.memory.scroll_by(rows),
            _ => self.exits.scroll_by(rows),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Counters, Dir, ExitEvent, ExitKind};
    use crate::ui::panes::exits::HISTORY;
    use ratatui::crossterm::event::KeyEvent;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn parked(vcpu: u32, serial: u64) -> Option<Stop> {
        Some(Stop {
            vcpu,
            reason: crate::debug::StopReason::Pause,
            regs: Default::default(),
            sregs: Default::default(),
            fpu: Default::default(),
            event: None,
            serial,
        })
    }

    #[test]
    fn a_vcpu_chosen_stays_chosen_until_a_newer_stop() {
        let mut app = App::new("t");
        let stops = [parked(0, 5), parked(1, 6)];
        app.set_stops(&stops, true);
        assert_eq!(app.vcpu, 1, "the newest stop's vCPU");
        app.select_vcpu(0);
        app.set_stops(&stops, true);
        assert_eq!((app.vcpu, app.stop.as_ref().map(|s| s.vcpu)), (0, Some(0)), ":cpu 0 holds");
        app.set_stops(&[parked(0, 5), parked(1, 7)], true);
        assert_eq!(app.vcpu, 1, "a new stop on vCPU 1 shows it");
        app.set_stops(&[parked(0, 5), None], true);
        app.select_vcpu(1);
        let said = app.current_message().map(|(m, _)| m.to_string()).unwrap_or_default();
        assert!(said.contains("not parked yet"), "{said}");
    }

    fn typed(app: &mut App, text: &str) -> Vec<Action> {
        let mut actions = Vec::new();
        for c in text.chars() {
            actions.extend(app.on_key(key(KeyCode::Char(c))));
        }
        actions.extend(app.on_key(key(KeyCode::Enter)));
        actions
    }

    fn io(seq: u64, port: u16) -> ExitEvent {
        ExitEvent {
            seq,
            vcpu: 0,
            t_ns: seq,
            rip: 0x1000,
            kind: ExitKind::Io { port, dir: Dir::Out, size: 1, count: 1, data: 0 },
            device: None,
            insn: None,
            cost_ns: 1,
        }
    }

    #[test]
    fn trap_msr_becomes_an_action() {
        let mut app = App::new("t");
        assert_eq!(typed(&mut app, ":trap msr PAT,efer"), vec![Action::TrapMsrs(vec![0x277, 0xc000_0080])]);
        assert!(typed(&mut app, ":trap msr nosuch").is_empty());
        assert!(app.current_message().is_some_and(|(m, error)| error && m.contains("unknown MSR")));
    }

    #[test]
    fn space_step_and_quit_become_actions() {
        let mut app = App::new("t");
        assert_eq!(app.on_key(key(KeyCode::Char(' '))), vec![Action::TogglePause]);
        assert_eq!(app.on_key(key(KeyCode::Char('s'))), vec![Action::Step]);
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), vec![Action::Quit]);
        assert!(app.quit);
        let mut app = App::new("t");
        assert_eq!(app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), vec![Action::Quit]);
    }

    #[test]
    fn tab_cycles_focus_and_console_takes_typing() {
        let mut app = App::new("t");
        for want in [PaneId::Stats, PaneId::Registers, PaneId::Code, PaneId::Console] {
            app.on_key(key(KeyCode::Tab));
            assert_eq!(app.focus, want);
        }
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), vec![Action::SerialInput(b"q".to_vec())]);
        assert!(!app.quit, "q goes to the guest while the console has focus");
        assert_eq!(app.on_key(key(KeyCode::Enter)), vec![Action::SerialInput(b"\r".to_vec())]);
        app.on_key(key(KeyCode::BackTab));
        assert_eq!(app.focus, PaneId::Code);
        app.focus = PaneId::Console;
        app.on_key(key(KeyCode::Esc));
        assert_eq!(app.focus, PaneId::Exits);
    }

    #[test]
    fn command_line_gives_actions_or_one_line_errors() {
        let mut app = App::new("t");
        app.on_key(key(KeyCode::Char(':')));
        assert_eq!(app.input, InputMode::Command(String::new()));
        assert_eq!(typed(&mut app, "break io 0x3f8"), vec![Action::AddExitBreakpoint(ExitSpec::Io(0x3f8), 1)]);
        assert_eq!(app.input, InputMode::Normal);
        app.on_key(key(KeyCode::Char(':')));
        assert!(typed(&mut app, "frobnicate").is_empty());
        let (msg, error) = app.current_message().unwrap();
        assert!(error && msg.contains("unknown command"), "{msg}");
        app.on_key(key(KeyCode::Char(':')));
        typed(&mut app, "xp 0x2000 32");
        assert_eq!(app.memory.target, MemoryTarget { addr: 0x2000, len: 32, physical: true, follow_rip: false });
        assert_eq!(app.focus, PaneId::Memory);
        // Esc abandons a line; backspace edits it.
        app.on_key(key(KeyCode::Char(':')));
        app.on_key(key(KeyCode::Char('z')));
        app.on_key(key(KeyCode::Backspace));
        assert_eq!(app.input, InputMode::Command(String::new()));
        app.on_key(key(KeyCode::Esc));
        assert_eq!(app.input, InputMode::Normal);
    }

    #[test]
    fn filter_freeze_and_scroll() {
        let mut app = App::new("t");
        app.exits.push((0..10).map(|i| io(i, if i % 2 == 0 { 0x80 } else { 0x3f8 })));
        app.on_key(key(KeyCode::Char('/')));
        typed(&mut app, "io 0x80");
        assert_eq!(app.exits.visible().count(), 5);
        app.on_key(key(KeyCode::Char('/')));
        typed(&mut app, "io 0x10000");
        assert!(app.current_message().unwrap().1, "a bad filter is an error");
        assert_eq!(app.exits.filter, Some(ExitSpec::Io(0x80)), "and leaves the old filter");
        app.on_key(key(KeyCode::Char('/')));
        typed(&mut app, "");
        assert!(app.exits.filter.is_none());
        app.on_key(key(KeyCode::Char('f')));
        app.exits.push((10..15).map(|i| io(i, 0x80)));
        assert_eq!(app.exits.visible().count(), 10, "frozen at seq 9");
        app.on_key(key(KeyCode::Char('f')));
        assert_eq!(app.exits.visible().count(), 15);
        app.on_key(key(KeyCode::Up));
        assert_eq!((app.exits.scroll, app.exits.selected), (1, Some(13)), "back a row, the cursor on it");
        app.on_key(key(KeyCode::Up));
        assert_eq!((app.exits.scroll, app.exits.selected), (2, Some(12)), "the cursor moves, the view follows it");
        app.on_key(key(KeyCode::Down));
        assert_eq!((app.exits.scroll, app.exits.selected), (1, Some(13)));
        app.on_key(key(KeyCode::Home));
        assert_eq!(app.exits.scroll, 14);
        app.on_key(key(KeyCode::Up));
        assert_eq!(app.exits.selected, Some(0), "off the pane, the cursor starts again on its bottom row");
        app.on_key(key(KeyCode::End));
        assert_eq!((app.exits.scroll, app.exits.selected), (0, None));
    }

    #[test]
    fn history_is_bounded() {
        let mut app = App::new("t");
        app.exits.push((0..(HISTORY as u64 + 100)).map(|i| io(i, 0x80)));
        assert_eq!(app.exits.all().len(), HISTORY);
        assert_eq!(app.exits.all().front().unwrap().seq, 100);
        // Frozen, the rows shown stay however many exits come: the newer are counted, not kept.
        app.on_key(key(KeyCode::Char('f')));
        let last = HISTORY as u64 + 100;
        app.exits.push((last..last + 2 * HISTORY as u64).map(|i| io(i, 0x80)));
        assert_eq!(app.exits.visible().count(), HISTORY);
        assert_eq!(app.exits.unkept, 2 * HISTORY as u64);
        app.on_key(key(KeyCode::Char('f')));
        app.exits.push([io(10 * HISTORY as u64, 0x80)]);
        assert_eq!(app.exits.all().back().unwrap().seq, 10 * HISTORY as u64, "following again");
    }

    #[test]
    fn help_opens_and_any_key_closes() {
        let mut app = App::new("t");
        app.on_key(key(KeyCode::Char('?')));
        assert_eq!(app.input, InputMode::Help);
        assert!(app.on_key(key(KeyCode::Char('q'))).is_empty(), "the key only closes help");
        assert_eq!(app.input, InputMode::Normal);
        assert!(!app.quit);
    }

    #[test]
    fn mouse_click_focuses_the_pane_under_it() {
        let mut app = App::new("t");
        app.pane_rects = vec![(PaneId::Exits, Rect::new(0, 0, 10, 10)), (PaneId::Code, Rect::new(10, 0, 10, 10))];
        app.on_mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: 12,
            row: 3,
            modifiers: KeyModifiers::NONE,
        });
        assert_eq!(app.focus, PaneId::Code);
    }

    #[test]
    fn rates_are_per_second_deltas() {
        let mut r = crate::ui::panes::stats::Rates::default();
        let mut c = Counters::default();
        let t0 = Instant::now();
        r.sample(&c, t0);
        for i in 0..500 {
            c.record(&io(i, 0x80));
        }
        r.sample(&c, t0 + Duration::from_millis(500));
        assert_eq!(r.total(), 0, "no rate before a second has passed");
        r.sample(&c, t0 + Duration::from_secs(2));
        assert_eq!(r.total(), 250);
        assert_eq!(r.of("io"), 250.0);
    }

    #[test]
    fn a_long_paste_is_cut_and_esc_still_closes_the_line() {
        let mut app = App::new("t");
        app.on_key(key(KeyCode::Char(':')));
        for _ in 0..5000 {
            app.on_key(key(KeyCode::Char('x')));
        }
        match &app.input {
            InputMode::Command(text) => assert_eq!(text.len(), MAX_LINE),
            other => panic!("{other:?}"),
        }
        assert!(app.current_message().is_some_and(|(m, e)| e && m.contains("cut at 1024")));
        // Esc and `q` arriving together read as Alt+q: the line closes, then q quits.
        assert_eq!(app.on_key(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::ALT)), vec![Action::Quit]);
        assert_eq!(app.input, InputMode::Normal);
        let mut app = App::new("t");
        app.on_key(key(KeyCode::Char('/')));
        app.on_key(key(KeyCode::Char('i')));
        app.on_key(key(KeyCode::Esc));
        assert_eq!(app.input, InputMode::Normal, "a plain Esc closes the filter line");
    }
}

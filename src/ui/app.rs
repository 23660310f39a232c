//! The UI's state: plain data, changed by keys and by what the VM reports. Keys that need the VM
//! (pause, step, breakpoints, console input) come out as [`Action`]s for the runner to carry out,
//! so all of this is testable without a terminal or a guest.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Position, Rect};

use super::command::{self, Command, SortBy};
use crate::debug::{ExitSpec, Stop};
use crate::decode::insn::decode_many;
use crate::decode::paging::read_virt;
use crate::decode::{CpuMode, PhysRead};
use crate::trace::{Counters, ExitEvent};
use crate::vmm::RunEnd;

/// Events the exit list keeps for scrolling back.
pub const HISTORY: usize = 5000;
/// Rate samples kept for the sparkline.
const RATE_HISTORY: usize = 120;

/// The panes, in focus order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaneId {
    Exits,
    Stats,
    Registers,
    Code,
    Console,
    Memory,
}

impl PaneId {
    pub const ALL: [PaneId; 6] =
        [PaneId::Exits, PaneId::Stats, PaneId::Registers, PaneId::Code, PaneId::Console, PaneId::Memory];

    pub fn title(self) -> &'static str {
        match self {
            PaneId::Exits => "Exits",
            PaneId::Stats => "Stats",
            PaneId::Registers => "Registers",
            PaneId::Code => "Code",
            PaneId::Console => "Console",
            PaneId::Memory => "Memory",
        }
    }

    fn index(self) -> usize {
        PaneId::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

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
}

/// What the runner must do for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    TogglePause,
    Pause,
    Resume,
    Step,
    Quit,
    AddExitBreakpoint(ExitSpec, u64),
    DeleteExitBreakpoint(Option<u32>),
    ListExitBreakpoints,
    /// Bytes typed for the guest's UART.
    SerialInput(Vec<u8>),
    /// Replay: move to the exit with this sequence number, or the first at or after this time (ns).
    Goto(u64),
    GotoTime(u64),
}

/// Exit rates, kvm_stat style: the change of each counter over the last interval.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    last: Option<(Instant, Counters)>,
    /// Per reason: exits per second over the last interval.
    pub per_reason: Vec<(&'static str, f64)>,
    /// Total exits per second, oldest first.
    pub history: VecDeque<u64>,
}

impl Rates {
    /// Takes a new sample of the counters at `now`; computes rates once a second.
    pub fn sample(&mut self, counters: &Counters, now: Instant) {
        let Some((then, before)) = &self.last else {
            self.last = Some((now, counters.clone()));
            return;
        };
        let dt = now.duration_since(*then);
        if dt < Duration::from_secs(1) {
            return;
        }
        let secs = dt.as_secs_f64();
        self.per_reason = counters
            .by_reason
            .iter()
            .map(|(name, s)| {
                let was = before.by_reason.get(name).map_or(0, |b| b.count);
                (*name, s.count.saturating_sub(was) as f64 / secs)
            })
            .collect();
        let total = counters.total.count.saturating_sub(before.total.count) as f64 / secs;
        if self.history.len() == RATE_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(total.round() as u64);
        self.last = Some((now, counters.clone()));
    }

    /// Exits per second of one reason in the last interval.
    pub fn of(&self, reason: &str) -> f64 {
        self.per_reason.iter().find(|(n, _)| *n == reason).map_or(0.0, |(_, r)| *r)
    }

    /// Total exits per second in the last interval.
    pub fn total(&self) -> u64 {
        self.history.back().copied().unwrap_or(0)
    }
}

/// Whether the guest runs, is stopped, or has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    Running,
    Pausing,
    Paused,
    Ended(RunEnd),
}

/// The memory pane's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryTarget {
    pub addr: u64,
    pub len: u64,
    pub physical: bool,
    /// Follow the stopped vCPU's RIP (until the user picks an address with `:x`/`:xp`).
    pub follow_rip: bool,
}

/// All UI state.
pub struct App {
    pub events: VecDeque<ExitEvent>,
    /// Events the live feed dropped because the view was behind.
    pub dropped: u64,
    /// Rows scrolled back from the newest (0 = follow the newest).
    pub scroll: usize,
    /// When frozen: the newest sequence number shown.
    pub frozen: Option<u64>,
    pub filter: Option<ExitSpec>,
    pub focus: PaneId,
    /// In the wide layout, which of Console and Memory shares the bottom-right slot.
    pub input: InputMode,
    pub message: Option<(String, bool, Instant)>,
    pub counters: Counters,
    pub rates: Rates,
    pub sort: SortBy,
    pub breakdown: bool,
    pub state: RunState,
    /// The stop the views show (vCPU 0's, or the one that hit a breakpoint).
    pub stop: Option<Stop>,
    /// The stop before it, to highlight what changed.
    pub previous_stop: Option<Stop>,
    pub memory: MemoryTarget,
    /// Bytes shown in the memory pane, and a note (e.g. where translation failed).
    pub memory_bytes: Vec<u8>,
    pub memory_note: Option<String>,
    /// Instructions around RIP for the code pane.
    pub code: Vec<crate::trace::Insn>,
    pub console: String,
    pub console_scroll: usize,
    /// Where each pane was drawn, for mouse clicks.
    pub pane_rects: Vec<(PaneId, Rect)>,
    pub quit: bool,
    /// Guest image name, for the title.
    pub title: String,
    /// NO_COLOR: modifiers only.
    pub no_color: bool,
}

impl App {
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            events: VecDeque::with_capacity(HISTORY),
            dropped: 0,
            scroll: 0,
            frozen: None,
            filter: None,
            focus: PaneId::Exits,
            input: InputMode::Normal,
            message: None,
            counters: Counters::default(),
            rates: Rates::default(),
            sort: SortBy::Rate,
            breakdown: true,
            state: RunState::Running,
            stop: None,
            previous_stop: None,
            memory: MemoryTarget {
                addr: 0x10_0000,
                len: command::DEFAULT_EXAMINE_LEN,
                physical: true,
                follow_rip: true,
            },
            memory_bytes: Vec::new(),
            memory_note: None,
            code: Vec::new(),
            console: String::new(),
            console_scroll: 0,
            pane_rects: Vec::new(),
            quit: false,
            title: title.into(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
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

    /// Adds events from the live feed (the oldest fall out of the history).
    pub fn push_events(&mut self, events: impl IntoIterator<Item = ExitEvent>) {
        for e in events {
            if self.events.len() == HISTORY {
                self.events.pop_front();
            }
            self.events.push_back(e);
        }
    }

    /// The events the exit list shows, oldest first: filtered, up to the freeze point.
    pub fn visible_events(&self) -> impl DoubleEndedIterator<Item = &ExitEvent> {
        let frozen = self.frozen;
        self.events
            .iter()
            .filter(move |e| frozen.is_none_or(|f| e.seq <= f))
            .filter(move |e| self.filter.as_ref().is_none_or(|s| s.matches(e)))
    }

    /// Records new stops from the controller; keeps the previous one for highlighting.
    pub fn set_stops(&mut self, stops: &[Option<Stop>], paused: bool) {
        if matches!(self.state, RunState::Ended(_)) {
            return;
        }
        let newest = stops.iter().flatten().max_by_key(|s| s.serial).cloned();
        if let Some(stop) = newest {
            if self.stop.as_ref().is_none_or(|s| s.serial != stop.serial) {
                if let Some(e) = &stop.event {
                    self.say(format!("vCPU {} {}: {}", stop.vcpu, stop.reason, e.detail()), false);
                }
                self.previous_stop = self.stop.take();
                self.stop = Some(stop);
            }
        }
        let all_parked = !stops.is_empty() && stops.iter().all(Option::is_some);
        self.state = match (paused, all_parked) {
            (false, _) => RunState::Running,
            (true, true) => RunState::Paused,
            (true, false) => RunState::Pausing,
        };
    }

    /// The run ended.
    pub fn set_ended(&mut self, end: RunEnd) {
        self.say(format!("guest run ended: {end} (status {}) — q quits", end.status()), end.is_crash());
        self.state = RunState::Ended(end);
    }

    /// Re-reads what the code and memory panes show from guest memory.
    pub fn refresh_views(&mut self, mem: &dyn PhysRead) {
        let mode = self.stop.as_ref().map(|s| CpuMode::from(&s.sregs));
        self.code = match (&self.stop, mode) {
            (Some(stop), Some(mode)) => code_around(mem, &mode, stop.regs.rip),
            _ => Vec::new(),
        };
        if let (true, Some(stop), Some(mode)) = (self.memory.follow_rip, &self.stop, mode) {
            self.memory.addr = mode.code_linear(stop.regs.rip) & !0xf;
            self.memory.physical = false;
        }
        let target = self.memory;
        let mut buf = vec![0u8; target.len as usize];
        let (n, note) = match (target.physical, mode) {
            (true, _) => {
                let n = if mem.read_phys(target.addr, &mut buf) {
                    buf.len()
                } else {
                    read_phys_prefix(mem, target.addr, &mut buf)
                };
                (n, None)
            }
            (false, Some(mode)) => {
                let n = read_virt(mem, &mode, target.addr, &mut buf);
                let note = (n < buf.len()).then(|| {
                    match crate::decode::paging::translate(mem, &mode, target.addr + n as u64) {
                        Err(e) => e.to_string(),
                        Ok(t) => format!("{:#x} (guest-physical {:#x}) is not RAM", t.gva, t.gpa),
                    }
                });
                (n, note)
            }
            (false, None) => (0, Some("pause first: virtual addresses need the vCPU's page tables".into())),
        };
        buf.truncate(n);
        self.memory_bytes = buf;
        self.memory_note = note.or_else(|| (n == 0).then(|| format!("{:#x} is not guest RAM", target.addr)));
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
            InputMode::Help => Vec::new(),
            InputMode::Command(text) => self.edit_line(key, text, true),
            InputMode::Filter(text) => self.edit_line(key, text, false),
            InputMode::Normal => self.normal_key(key),
        }
    }

    fn edit_line(&mut self, key: KeyEvent, mut text: String, command: bool) -> Vec<Action> {
        let keep = |app: &mut App, text: String| {
            app.input = if command { InputMode::Command(text) } else { InputMode::Filter(text) };
        };
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
                text.push(c);
                keep(self, text);
            }
            _ => keep(self, text),
        }
        Vec::new()
    }

    fn apply_filter(&mut self, text: &str) -> Vec<Action> {
        let text = text.trim();
        if text.is_empty() {
            self.filter = None;
            self.say("filter cleared", false);
            return Vec::new();
        }
        match ExitSpec::parse(text) {
            Ok(spec) => {
                self.say(format!("filter: {spec}"), false);
                self.filter = Some(spec);
                self.scroll = 0;
            }
            Err(e) => self.say(e.to_string(), true),
        }
        Vec::new()
    }

    fn run_command(&mut self, text: &str) -> Vec<Action> {
        match command::parse(text) {
            Err(e) => {
                self.say(e, true);
                Vec::new()
            }
            Ok(Command::Break(spec, nth)) => vec![Action::AddExitBreakpoint(spec, nth)],
            Ok(Command::Delete(id)) => vec![Action::DeleteExitBreakpoint(id)],
            Ok(Command::Breaks) => vec![Action::ListExitBreakpoints],
            Ok(Command::Examine { addr, len, physical }) => {
                self.memory = MemoryTarget { addr, len, physical, follow_rip: false };
                self.focus = PaneId::Memory;
                Vec::new()
            }
            Ok(Command::Filter(spec)) => {
                self.filter = spec;
                Vec::new()
            }
            Ok(Command::Step) => vec![Action::Step],
            Ok(Command::Continue) => vec![Action::Resume],
            Ok(Command::Pause) => vec![Action::Pause],
            Ok(Command::Sort(s)) => {
                self.sort = s;
                Vec::new()
            }
            Ok(Command::Quit) => {
                self.quit = true;
                vec![Action::Quit]
            }
            Ok(Command::Goto(seq)) => vec![Action::Goto(seq)],
            Ok(Command::Time(t)) => vec![Action::GotoTime(t)],
        }
    }

    fn move_focus(&mut self, forward: bool) {
        let n = PaneId::ALL.len();
        let i = self.focus.index();
        self.focus = PaneId::ALL[if forward { (i + 1) % n } else { (i + n - 1) % n }];
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
        if self.focus == PaneId::Console && !matches!(self.state, RunState::Ended(_)) {
            let bytes: Vec<u8> = match key.code {
                KeyCode::Char(c) => c.to_string().into_bytes(),
                KeyCode::Enter => vec![b'\r'],
                KeyCode::Backspace => vec![0x7f],
                KeyCode::Esc => {
                    self.focus = PaneId::Exits;
                    return Vec::new();
                }
                KeyCode::Up | KeyCode::PageUp => {
                    self.console_scroll += if key.code == KeyCode::Up { 1 } else { 10 };
                    return Vec::new();
                }
                KeyCode::Down | KeyCode::PageDown => {
                    self.console_scroll =
                        self.console_scroll.saturating_sub(if key.code == KeyCode::Down { 1 } else { 10 });
                    return Vec::new();
                }
                _ => return Vec::new(),
            };
            return vec![Action::SerialInput(bytes)];
        }
        match key.code {
            KeyCode::Char('q') => {
                self.quit = true;
                vec![Action::Quit]
            }
            KeyCode::Char(' ') => vec![Action::TogglePause],
            KeyCode::Char('s') => vec![Action::Step],
            KeyCode::Char('?') => {
                self.input = InputMode::Help;
                Vec::new()
            }
            KeyCode::Char(':') => {
                self.input = InputMode::Command(String::new());
                Vec::new()
            }
            KeyCode::Char('/') => {
                self.input = InputMode::Filter(String::new());
                Vec::new()
            }
            KeyCode::Char('f') => {
                self.frozen = match self.frozen {
                    Some(_) => None,
                    None => Some(self.events.back().map_or(0, |e| e.seq)),
                };
                self.say(if self.frozen.is_some() { "view frozen (f to follow)" } else { "following" }, false);
                Vec::new()
            }
            KeyCode::Char('o') => {
                self.sort = if self.sort == SortBy::Rate { SortBy::Total } else { SortBy::Rate };
                Vec::new()
            }
            KeyCode::Char('x') => {
                self.breakdown = !self.breakdown;
                Vec::new()
            }
            KeyCode::Up => self.scroll_by(1),
            KeyCode::Down => self.scroll_by(-1),
            KeyCode::PageUp => self.scroll_by(20),
            KeyCode::PageDown => self.scroll_by(-20),
            KeyCode::Home => self.scroll_by(isize::MAX / 2),
            KeyCode::End => {
                self.scroll = 0;
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn scroll_by(&mut self, rows: isize) -> Vec<Action> {
        match self.focus {
            PaneId::Memory => {
                let step = 16i64 * rows as i64;
                self.memory.addr = (self.memory.addr as i64).saturating_sub(step).max(0) as u64;
            }
            _ => {
                let max = self.visible_events().count().saturating_sub(1);
                self.scroll = (self.scroll as isize).saturating_add(rows).clamp(0, max as isize) as usize;
            }
        }
        Vec::new()
    }

    /// Handles the mouse: a click focuses the pane under it, the wheel scrolls.
    pub fn on_mouse(&mut self, m: MouseEvent) {
        let at = Position { x: m.column, y: m.row };
        let hit = self.pane_rects.iter().find(|(_, r)| r.contains(at)).map(|(p, _)| *p);
        match m.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                if let Some(p) = hit {
                    self.focus = p;
                }
            }
            MouseEventKind::ScrollUp => {
                self.scroll_by(3);
            }
            MouseEventKind::ScrollDown => {
                self.scroll_by(-3);
            }
            _ => {}
        }
    }
}

/// Some instructions before RIP (found by decoding from a point that lands exactly on RIP) and the
/// ones after it.
pub fn code_around(mem: &dyn PhysRead, mode: &CpuMode, rip: u64) -> Vec<crate::trace::Insn> {
    const AFTER: usize = 48;
    let bitness = mode.bitness();
    let linear = mode.code_linear(rip);
    let mut after = [0u8; AFTER];
    let n = read_virt(mem, mode, linear, &mut after);
    let mut out = Vec::new();
    // Try starting 24..1 bytes before RIP; take the earliest start whose decoding lands on RIP.
    for back in (1..=24u64).rev() {
        let mut bytes = vec![0u8; back as usize];
        if read_virt(mem, mode, linear.wrapping_sub(back), &mut bytes) != bytes.len() {
            continue;
        }
        let insns = decode_many(&bytes, bitness, rip - back);
        let lands = insns.last().is_some_and(|i| i.addr + i.bytes.len() as u64 == rip);
        if lands && insns.iter().all(|i| i.text != "(bad)") {
            let skip = insns.len().saturating_sub(4);
            out.extend(insns.into_iter().skip(skip));
            break;
        }
    }
    out.extend(decode_many(&after[..n], bitness, rip).into_iter().take(16));
    out
}

fn read_phys_prefix(mem: &dyn PhysRead, addr: u64, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() && mem.read_phys(addr + n as u64, &mut buf[n..n + 1]) {
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Dir, ExitKind};
    use ratatui::crossterm::event::KeyEvent;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
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
        assert_eq!(app.memory, MemoryTarget { addr: 0x2000, len: 32, physical: true, follow_rip: false });
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
        app.push_events((0..10).map(|i| io(i, if i % 2 == 0 { 0x80 } else { 0x3f8 })));
        app.on_key(key(KeyCode::Char('/')));
        typed(&mut app, "io 0x80");
        assert_eq!(app.visible_events().count(), 5);
        app.on_key(key(KeyCode::Char('/')));
        typed(&mut app, "io 0x10000");
        assert!(app.current_message().unwrap().1, "a bad filter is an error");
        assert_eq!(app.filter, Some(ExitSpec::Io(0x80)), "and leaves the old filter");
        app.on_key(key(KeyCode::Char('/')));
        typed(&mut app, "");
        assert!(app.filter.is_none());
        app.on_key(key(KeyCode::Char('f')));
        app.push_events((10..15).map(|i| io(i, 0x80)));
        assert_eq!(app.visible_events().count(), 10, "frozen at seq 9");
        app.on_key(key(KeyCode::Char('f')));
        assert_eq!(app.visible_events().count(), 15);
        app.on_key(key(KeyCode::Up));
        app.on_key(key(KeyCode::Up));
        assert_eq!(app.scroll, 2);
        app.on_key(key(KeyCode::Home));
        assert_eq!(app.scroll, 14);
        app.on_key(key(KeyCode::End));
        assert_eq!(app.scroll, 0);
    }

    #[test]
    fn history_is_bounded() {
        let mut app = App::new("t");
        app.push_events((0..(HISTORY as u64 + 100)).map(|i| io(i, 0x80)));
        assert_eq!(app.events.len(), HISTORY);
        assert_eq!(app.events.front().unwrap().seq, 100);
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
        let mut r = Rates::default();
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
}

//! `kvmscope replay FILE`: the TUI over a recording. The same exit, stats, code, registers and
//! console panes, at a cursor that steps forward and back through the exits (`n`/`p`, arrows),
//! jumps (`:goto SEQ`, `:time SECS`, Home/End) and follows the filter (`/`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};

use super::app::{Action, App, InputMode, RunState};
use super::panes::exits::HISTORY;
use super::screen::PaneId;
use super::{terminal, view};
use crate::analysis::profile::RipProfile;
use crate::explain::{Explainer, Explanation};
use crate::recording::format::StopRecord;
use crate::recording::{ReadError, Record, TraceHeader};
use crate::trace::{Counters, DeviceCounters, DeviceEvent, ExitEvent};

/// A recording in memory, and where the cursor is.
pub struct Replay {
    pub exits: Vec<ExitEvent>,
    pub console: Vec<(u64, Vec<u8>)>,
    pub stops: Vec<StopRecord>,
    pub devices: Vec<DeviceEvent>,
    pub end: Option<(i32, String, String)>,
    /// What the recording says about itself.
    pub header: TraceHeader,
    pub cursor: usize,
    /// Exits counted into `counters` and `profile` so far (the first `counted`).
    counted: usize,
    counters: Counters,
    profile: RipProfile,
    /// What each exit means, for the exits up to the furthest the cursor has been.
    explained: Vec<Option<Explanation>>,
    explainer: Explainer,
    /// The recorded call stacks (`--stacks`), by the sequence number of their exit.
    pub stacks: std::collections::HashMap<u64, Vec<u64>>,
}

impl Replay {
    /// Loads a recording; the damage, if any, is returned beside what is intact.
    pub fn load(path: &Path) -> Result<(Self, Option<ReadError>), ReadError> {
        let mut r = Replay {
            exits: Vec::new(),
            console: Vec::new(),
            stops: Vec::new(),
            devices: Vec::new(),
            end: None,
            header: TraceHeader::default(),
            cursor: 0,
            counted: 0,
            counters: Counters::default(),
            profile: RipProfile::default(),
            explained: Vec::new(),
            explainer: Explainer::default(),
            stacks: Default::default(),
        };
        let recording = crate::analysis::read_all(path, |rec| match rec {
            Record::Exit(e) => r.exits.push(e),
            Record::Console { t_ns, bytes } => r.console.push((t_ns, bytes)),
            Record::Stop(s) => r.stops.push(s),
            Record::End { status, name, detail, .. } => r.end = Some((status, name, detail)),
            Record::Device(d) => r.devices.push(d),
            Record::Stack(st) => {
                r.stacks.insert(st.seq, st.frames);
            }
            Record::Kvm { .. } | Record::Kernel { .. } | Record::Dirty { .. } => {}
        })?;
        r.header = recording.reader.header.clone();
        Ok((r, recording.damage))
    }

    /// Counts the exits up to and including the cursor (again from the start when it went back).
    fn count_to_cursor(&mut self) {
        let upto = (self.cursor + 1).min(self.exits.len());
        if upto < self.counted {
            (self.counters, self.profile, self.counted) = (Counters::default(), RipProfile::default(), 0);
        }
        for e in &self.exits[self.counted..upto] {
            self.counters.record(e);
            self.profile.record(e);
        }
        self.counted = upto;
    }

    /// Explains the exits up to the cursor (once each, in order: device state follows the run).
    fn explain_to_cursor(&mut self) {
        while self.explained.len() <= self.cursor.min(self.exits.len().saturating_sub(1)) {
            let x = self.explainer.explain(&self.exits[self.explained.len()]);
            self.explained.push(x);
        }
    }

    /// Counters of the exits up to and including the cursor.
    pub fn counters(&mut self) -> &Counters {
        self.count_to_cursor();
        &self.counters
    }

    /// Moves to the next (or previous) exit that `keep` accepts.
    pub fn step(&mut self, forward: bool, keep: impl Fn(&ExitEvent) -> bool) {
        let found = if forward {
            (self.cursor + 1..self.exits.len()).find(|&i| keep(&self.exits[i]))
        } else {
            (0..self.cursor).rev().find(|&i| keep(&self.exits[i]))
        };
        if let Some(i) = found {
            self.cursor = i;
        }
    }

    pub fn goto_seq(&mut self, seq: u64) -> bool {
        match self.exits.binary_search_by_key(&seq, |e| e.seq) {
            Ok(i) => {
                self.cursor = i;
                true
            }
            Err(_) => false,
        }
    }

    pub fn goto_time(&mut self, t: u64) -> bool {
        let i = self.exits.partition_point(|e| e.t_ns < t);
        if i < self.exits.len() {
            self.cursor = i;
            true
        } else {
            false
        }
    }

    /// Fills the app's panes as they were at the cursor, as far as the recording holds them.
    pub fn show(&mut self, app: &mut App) {
        let Some(now) = self.exits.get(self.cursor).cloned() else { return };
        let start = (self.cursor + 1).saturating_sub(HISTORY);
        self.explain_to_cursor();
        let window =
            self.exits[start..=self.cursor].iter().cloned().zip(self.explained[start..=self.cursor].iter().cloned());
        app.exits.replace(window);
        self.count_to_cursor();
        app.stats.counters = self.counters.clone();
        app.profile.profile = self.profile.clone();
        let text: Vec<u8> =
            self.console.iter().filter(|(t, _)| *t <= now.t_ns).flat_map(|(_, b)| b.iter().copied()).collect();
        app.console.show(&String::from_utf8_lossy(&text), text.len());
        // Each vCPU's last recorded stop before the cursor; the selected one's in the panes.
        let vcpus = (self.header.vcpus as usize).max(1);
        app.stops = (0..vcpus)
            .map(|v| {
                self.stops.iter().rev().find(|s| s.t_ns <= now.t_ns && s.vcpu as usize == v).map(StopRecord::to_stop)
            })
            .collect();
        let selected = app.stops.get(app.vcpu).cloned().flatten();
        if selected.as_ref().map(|s| s.serial) != app.stop.as_ref().map(|s| s.serial) || selected.is_none() {
            app.show_stop(selected);
        }
        let seen = self.devices.partition_point(|d| d.t_ns <= now.t_ns);
        app.devices.replace(self.devices[..seen].iter().cloned());
        let mut devices = DeviceCounters::default();
        self.devices[..seen].iter().for_each(|d| devices.record(d));
        app.virtio.note = vec![
            "a recording holds the devices' events (the events pane), not their queues;".into(),
            "counted up to this exit:".into(),
        ];
        app.virtio.note.extend(devices.text().lines().filter(|l| !l.is_empty()).map(String::from));
        app.stats.virtio = devices;
        app.code.lines = now.insn.iter().map(|i| (**i).clone()).collect();
        app.state = RunState::Replay(self.end.as_ref().map(|(status, name, _)| (name.clone(), *status)));
    }
}

/// Why a replay could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("trace file {path}: no exits recorded{damage}")]
    NoExits { path: PathBuf, damage: String },
    #[error("cannot use the terminal: {0}")]
    Terminal(std::io::Error),
}

impl ReplayError {
    /// kvmscope's exit status: 2 for a recording it cannot show, 1 for a terminal it cannot use.
    pub fn status(&self) -> u8 {
        match self {
            ReplayError::Read(_) | ReplayError::NoExits { .. } => 2,
            ReplayError::Terminal(_) => 1,
        }
    }
}

/// Runs the replay UI until the user quits; `symbols` names the guest's functions (default: the
/// recorded guest image's).
pub fn run(path: &Path, symbols: Option<&Path>) -> Result<(), ReplayError> {
    let (mut replay, damage) = Replay::load(path)?;
    let damage = damage.map(|d| d.to_string());
    if replay.exits.is_empty() {
        let damage = damage.map(|d| format!(" ({d})")).unwrap_or_default();
        return Err(ReplayError::NoExits { path: path.to_path_buf(), damage });
    }
    crate::vmm::vm::catch_interrupts();
    crate::vmm::vm::must_clean_up();
    let mut guard = terminal::TerminalGuard::enter().map_err(ReplayError::Terminal)?;
    let mut app = App::new(format!("replay of {}", path.display()));
    app.focus = PaneId::Exits;
    app.memory.note = Some("a recording holds no guest memory: :x and :xp look at a live guest".into());
    // The profile names the guest's functions as `stats --by symbol` does; why not, if it cannot.
    let symbols = crate::analysis::guest_image::symbols(path, &replay.header, symbols);
    let symbol_note = match symbols {
        Ok((s, warnings)) => {
            app.profile.symbols = s;
            warnings.into_iter().next()
        }
        Err(e) => Some(format!("no guest symbols for the profile: {e}")),
    };
    match (&damage, symbol_note) {
        (Some(d), _) => app.say(format!("{d}: showing what is intact"), true),
        (None, Some(note)) => app.say(note, true),
        (None, None) => app.say("replay: n/p or arrows step, :goto SEQ, :time SECS, / filter, q quits", false),
    }
    app.stacks = std::mem::take(&mut replay.stacks);
    replay.show(&mut app);
    while !app.quit {
        let total = replay.exits.len();
        app.title =
            format!("replay {}/{} t={:.6}s", replay.cursor + 1, total, replay.exits[replay.cursor].t_ns as f64 / 1e9);
        // The terminal gone (a failed draw, input at its end) or a signal ends the replay.
        if guard.terminal.draw(|f| app.pane_rects = view::draw(f, &app)).is_err() || crate::vmm::vm::interrupted() {
            break;
        }
        match event::poll(Duration::from_millis(200)) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(_) => break,
        }
        let Ok(ev) = event::read() else { break };
        let Event::Key(key) = ev else {
            if let Event::Mouse(m) = ev {
                app.on_mouse(m);
            }
            continue;
        };
        if key.kind == KeyEventKind::Release {
            continue;
        }
        let filter = app.exits.filter.clone();
        let keep = |e: &ExitEvent| filter.as_ref().is_none_or(|f| f.matches(e));
        let navigating = app.input == InputMode::Normal && app.focus != PaneId::Console;
        let moved = navigating
            && match key.code {
                KeyCode::Char('n') | KeyCode::Right | KeyCode::Down => {
                    replay.step(true, keep);
                    true
                }
                KeyCode::Char('p') | KeyCode::Left | KeyCode::Up => {
                    replay.step(false, keep);
                    true
                }
                KeyCode::PageDown => {
                    replay.cursor = (replay.cursor + 100).min(total - 1);
                    true
                }
                KeyCode::PageUp => {
                    replay.cursor = replay.cursor.saturating_sub(100);
                    true
                }
                KeyCode::Home => {
                    replay.cursor = 0;
                    true
                }
                KeyCode::End => {
                    replay.cursor = total - 1;
                    true
                }
                _ => false,
            };
        if !moved {
            for action in app.on_key(key) {
                match action {
                    Action::Quit => app.quit = true,
                    Action::Goto(seq) => {
                        if !replay.goto_seq(seq) {
                            app.say(format!("no exit #{seq} in this recording"), true);
                        }
                    }
                    Action::ShowChain { .. } => {
                        app.say("a recording holds no guest memory: :gva and :gpa look at a live guest", true)
                    }
                    Action::GotoTime(t) => {
                        if !replay.goto_time(t) {
                            app.say(format!("no exit at or after {:.6}s", t as f64 / 1e9), true);
                        }
                    }
                    _ => app.say("a recording cannot be paused, stepped or typed into", true),
                }
            }
        }
        replay.show(&mut app);
    }
    Ok(())
}

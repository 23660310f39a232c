//! `kvmscope replay FILE`: the TUI over a recording. The same exit, stats, code, registers and
//! console panes, at a cursor that steps forward and back through the exits (`n`/`p`, arrows),
//! jumps (`:goto SEQ`, `:time SECS`, Home/End) and follows the filter (`/`). The exits are read
//! from the file as the cursor needs them: a recording larger than memory replays.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};

use super::app::{Action, App, InputMode, RunState};
use super::panes::device_events::HISTORY as DEVICE_HISTORY;
use super::panes::exits::HISTORY;
use super::screen::PaneId;
use super::{terminal, view};
use crate::analysis::profile::RipProfile;
use crate::explain::{Explained, Explainer};
use crate::recording::events::EventChunks;
use crate::recording::index::{ExitIndex, HowIndexed, Indexed};
use crate::recording::{ReadError, TraceHeader};
use crate::trace::{Counters, DeviceCounters, ExitEvent};

/// Explainer states kept, one every this many exits passed: going back explains again from the
/// nearest one before, not from the start.
const EXPLAINER_EVERY: usize = 65_536;

/// Exits counted into the stats and profile per screen shown: a far jump shows at once, and the
/// counts catch up over the next screens (the title says how far they are).
const COUNT_PER_SCREEN: usize = 1 << 20;

/// A recording, and where the cursor is. Nothing of it is held but what the screen shows: the
/// exits are found by an index of the recording's chunks, its console output, stops, device
/// events and call stacks by what each chunk's events are (see [`EventChunks`]).
pub struct Replay {
    exits: ExitIndex,
    events: EventChunks,
    pub end: Option<(i32, String, String)>,
    /// What the recording says about itself.
    pub header: TraceHeader,
    pub cursor: usize,
    /// Exits counted into `counters` and `profile` so far (the first `counted`), and the device
    /// events up to the latest time among them, into `devices`.
    counted: usize,
    counters: Counters,
    profile: RipProfile,
    devices: DeviceCounters,
    devices_to: Option<u64>,
    /// What the exits just before `explained_to` mean (the window the exits pane shows), by index.
    explained: VecDeque<(usize, Option<Arc<Explained>>)>,
    /// The explainer, having seen every exit before `explained_to` (device state follows the run).
    explainer: Explainer,
    explained_to: usize,
    /// The explainer as it was before exit N, every [`EXPLAINER_EVERY`] exits.
    explainers: BTreeMap<usize, Explainer>,
    /// How the recording was opened: by its index, or read whole (and why).
    pub how: HowIndexed,
}

impl Replay {
    /// Opens a recording (by its index, or one pass to index it); the damage, if any, is
    /// returned beside what is intact.
    pub fn load(path: &Path) -> Result<(Self, Option<ReadError>), ReadError> {
        let Indexed { index, damage, how, states, events } = ExitIndex::open(path)?;
        let mut events = EventChunks::open(path, events)?;
        let header = index.header().clone();
        let explainers = states.iter().filter_map(|(at, state)| Some((*at, Explainer::with_state(state)?))).collect();
        let r = Replay {
            exits: index,
            end: events.end(),
            events,
            header,
            cursor: 0,
            counted: 0,
            counters: Counters::default(),
            profile: RipProfile::default(),
            devices: DeviceCounters::default(),
            devices_to: None,
            explained: VecDeque::new(),
            explainer: Explainer::default(),
            explained_to: 0,
            explainers,
            how,
        };
        Ok((r, damage))
    }

    /// Exits in the recording.
    pub fn len(&self) -> usize {
        self.exits.len()
    }

    /// Whether the file changed on disk since it was opened (its exits are cut where it stopped
    /// agreeing with what was read); the cursor is kept on an exit that is still there.
    pub fn changed(&mut self) -> bool {
        if self.exits.changed {
            self.cursor = self.cursor.min(self.exits.len().saturating_sub(1));
        }
        self.exits.changed
    }

    /// Why the recording's events are not read as its index says, if they are not (a chunk did
    /// not hold what the index said: every chunk was read to find them).
    pub fn events_untrusted(&self) -> Option<&str> {
        self.events.untrusted.as_deref()
    }

    pub fn is_empty(&self) -> bool {
        self.exits.is_empty()
    }

    /// The exit at the cursor.
    pub fn current(&mut self) -> Option<ExitEvent> {
        self.exits.get(self.cursor)
    }

    /// Counts the exits up to and including the cursor (again from the start when it went back),
    /// at most `budget` of them ([`Replay::counting`] says whether they reach it).
    fn count_to_cursor(&mut self, budget: usize) {
        let upto = (self.cursor + 1).min(self.exits.len());
        if upto < self.counted {
            (self.counters, self.profile, self.counted) = (Counters::default(), RipProfile::default(), 0);
            (self.devices, self.devices_to) = (DeviceCounters::default(), None);
        }
        let to = upto.min(self.counted.saturating_add(budget));
        let (counters, profile) = (&mut self.counters, &mut self.profile);
        let mut latest = self.devices_to;
        self.exits.for_range(self.counted, to, |_, e| {
            counters.record(e);
            profile.record(e);
            latest = latest.max(Some(e.t_ns));
            true
        });
        self.counted = to;
        // The device events up to the latest exit counted (by time, each once).
        if let Some(upto_t) = latest.filter(|_| latest != self.devices_to) {
            let devices = &mut self.devices;
            self.events.each_device(self.devices_to, upto_t, |d| devices.record(d));
            self.devices_to = latest;
        }
    }

    /// How far the stats and profile are counted, while they are behind the cursor: (exits
    /// counted, exits to count).
    pub fn counting(&self) -> Option<(usize, usize)> {
        let upto = (self.cursor + 1).min(self.exits.len());
        (self.counted < upto).then_some((self.counted, upto))
    }

    /// Explains the exits of the window up to the cursor, in order from the nearest kept state of
    /// the explainer (device state follows the run).
    fn explain_to_cursor(&mut self) {
        let start = (self.cursor + 1).saturating_sub(HISTORY);
        let have = |r: &Replay| r.explained.front().is_some_and(|(i, _)| *i <= start) && r.explained_to > r.cursor;
        if have(self) {
            return;
        }
        let nearest = self.explainers.range(..=start).next_back().map(|(k, _)| *k);
        let back = self.cursor < self.explained_to || self.explained.front().is_some_and(|(i, _)| *i > start);
        if back || nearest.is_some_and(|k| k > self.explained_to) {
            // Back, or far forward: from the explainer kept nearest before the window.
            let (at, explainer) =
                self.explainers.range(..=start).next_back().map_or((0, Explainer::default()), |(k, x)| (*k, x.clone()));
            (self.explainer, self.explained_to) = (explainer, at);
            self.explained.clear();
        }
        let (from, to) = (self.explained_to, self.cursor + 1);
        let (explainer, explained, explainers) = (&mut self.explainer, &mut self.explained, &mut self.explainers);
        self.exits.for_range(from, to, |i, e| {
            if i % EXPLAINER_EVERY == 0 {
                explainers.entry(i).or_insert_with(|| explainer.clone());
            }
            let x = explainer.explain(e);
            if i >= start {
                // The window is contiguous: a jump forward leaves the older explanations behind.
                if explained.back().is_some_and(|(k, _)| k + 1 != i) {
                    explained.clear();
                }
                explained.push_back((i, x));
                if explained.len() > 2 * HISTORY {
                    explained.pop_front();
                }
            }
            true
        });
        self.explained_to = to.max(self.explained_to);
    }

    /// Counters of the exits up to and including the cursor.
    pub fn counters(&mut self) -> &Counters {
        self.count_to_cursor(usize::MAX);
        &self.counters
    }

    /// Moves to the next (or previous) exit that `keep` accepts.
    pub fn step(&mut self, forward: bool, keep: impl Fn(&ExitEvent) -> bool) {
        if let Some(i) = self.exits.find_from(self.cursor, forward, keep) {
            self.cursor = i;
        }
    }

    pub fn goto_seq(&mut self, seq: u64) -> bool {
        match self.exits.find_seq(seq) {
            Some(i) => {
                self.cursor = i;
                true
            }
            None => false,
        }
    }

    pub fn goto_time(&mut self, t: u64) -> bool {
        match self.exits.find_time(t) {
            Some(i) => {
                self.cursor = i;
                true
            }
            None => false,
        }
    }

    /// Fills the app's panes as they were at the cursor, as far as the recording holds them.
    pub fn show(&mut self, app: &mut App) {
        let Some(now) = self.exits.get(self.cursor) else { return };
        let start = (self.cursor + 1).saturating_sub(HISTORY);
        self.explain_to_cursor();
        let mut window = Vec::with_capacity(self.cursor + 1 - start);
        self.exits.for_range(start, self.cursor + 1, |_, e| {
            window.push(e.clone());
            true
        });
        let first_seq = window.first().map_or(now.seq, |e| e.seq);
        let (explained, first) = (&self.explained, self.explained.front().map_or(0, |f| f.0));
        let x = |i: usize| i.checked_sub(first).and_then(|k| explained.get(k)).and_then(|(_, x)| x.clone());
        app.exits.replace(window.into_iter().enumerate().map(|(k, e)| (e, x(start + k))));
        self.count_to_cursor(COUNT_PER_SCREEN);
        app.stats.counters = self.counters.clone();
        app.profile.profile = self.profile.clone();
        if let Some(why) = self.exits.events_disagree.take() {
            self.events.distrust(why);
        }
        let (text, total) = self.events.console(now.t_ns, crate::console::KEEP);
        app.console.show(&String::from_utf8_lossy(&text), total as usize);
        // Each vCPU's last recorded stop before the cursor; the selected one's in the panes.
        let vcpus = (self.header.vcpus as usize).max(1);
        app.stops = (0..vcpus as u32).map(|v| self.events.last_stop(now.t_ns, v).map(|s| s.to_stop())).collect();
        let selected = app.stops.get(app.vcpu).cloned().flatten();
        if selected.as_ref().map(|s| s.serial) != app.stop.as_ref().map(|s| s.serial) || selected.is_none() {
            app.show_stop(selected);
        }
        let (last, seen) = self.events.devices(now.t_ns, DEVICE_HISTORY);
        app.devices.replace(last);
        app.devices.total = seen;
        app.virtio.note = vec![
            "a recording holds the devices' events (the events pane), not their queues;".into(),
            "counted up to this exit (as the stats are):".into(),
        ];
        app.virtio.note.extend(self.devices.text().lines().filter(|l| !l.is_empty()).map(String::from));
        app.stats.virtio = self.devices.clone();
        // The call stacks of the exits the exits pane shows (`--stacks`), for the inspector.
        app.stacks = self.events.stacks(first_seq, now.seq);
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
    if replay.is_empty() {
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
    match (&damage, replay.how.note(), symbol_note) {
        (Some(d), _, _) => app.say(format!("{d}: showing what is intact"), true),
        (None, Some(note), _) | (None, None, Some(note)) => app.say(note, true),
        (None, None, None) => app.say("replay: n/p or arrows step, :goto SEQ, :time SECS, / filter, q quits", false),
    }
    replay.show(&mut app);
    let (mut said_changed, mut said_untrusted) = (false, false);
    while !app.quit {
        if !said_changed && replay.changed() {
            said_changed = true;
            app.say(
                format!(
                    "{} does not read as it did when it was opened (changed on disk, or its index is wrong): shown as far as it agrees ({} exits)",
                    path.display(),
                    replay.len()
                ),
                true,
            );
            replay.show(&mut app);
        }
        if !said_untrusted && let Some(why) = replay.events_untrusted() {
            said_untrusted = true;
            app.say(format!("{why}: its events were found by reading every chunk"), true);
        }
        let total = replay.len();
        let t = replay.current().map_or(0, |e| e.t_ns);
        app.title = format!("replay {}/{} t={:.6}s", replay.cursor + 1, total, t as f64 / 1e9);
        if let Some((counted, upto)) = replay.counting() {
            app.title.push_str(&format!(" · stats counted to exit {counted} of {upto}"));
        }
        // The terminal gone (a failed draw, input at its end) or a signal ends the replay.
        if guard.draw(|f| app.pane_rects = view::draw(f, &app)).is_err() || crate::vmm::vm::interrupted() {
            break;
        }
        // While the counts catch up, a screen at a time.
        let counting = replay.counting().is_some();
        match event::poll(Duration::from_millis(if counting { 1 } else { 200 })) {
            Ok(true) => {}
            Ok(false) if counting => {
                replay.show(&mut app);
                continue;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::Record;
    use crate::recording::format::{encode_chunk, encode_header};
    use crate::trace::{Dir, ExitKind};

    /// A recording of `n` POST-code writes, in chunks of 1000.
    fn recording(n: u64) -> PathBuf {
        let mut bytes = encode_header(&TraceHeader { vcpus: 1, ..Default::default() });
        let exit = |seq: u64| {
            let kind = ExitKind::Io { port: 0x80, dir: Dir::Out, size: 1, count: 1, data: seq & 0xff };
            let e =
                ExitEvent { seq, vcpu: 0, t_ns: seq, rip: 0x1000, kind, device: Some("post"), insn: None, cost_ns: 1 };
            Record::Exit(e)
        };
        for c in 0..n.div_ceil(1000) {
            let records: Vec<Record> = (c * 1000..((c + 1) * 1000).min(n)).map(exit).collect();
            bytes.extend(encode_chunk(&records));
        }
        let path = std::env::temp_dir().join(format!("kvmscope-replay-{}.trace", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn every_exit_of_the_window_is_explained_after_any_jump() {
        let path = recording(200_000);
        let (mut r, damage) = Replay::load(&path).unwrap();
        assert!(damage.is_none());
        assert_eq!(r.len(), 200_000);
        for (cursor, what) in [(0, "start"), (180_000, "far forward"), (70_000, "far back"), (69_990, "a step back")] {
            r.cursor = cursor;
            r.explain_to_cursor();
            let start = (cursor + 1).saturating_sub(HISTORY);
            for i in start..=cursor {
                let x = r.explained.iter().find(|(k, _)| *k == i).map(|(_, x)| x.clone());
                assert!(matches!(x, Some(Some(_))), "{what}: exit {i} at cursor {cursor}: {x:?}");
            }
        }
        r.cursor = 199_999;
        assert_eq!(r.counters().total.count, 200_000);
        r.cursor = 10;
        assert_eq!(r.counters().total.count, 11, "counted again from the start");
        let _ = std::fs::remove_file(path);
    }
}

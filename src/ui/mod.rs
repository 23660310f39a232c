//! The terminal UI: the exits streaming live, the state behind them, and the keys to stop the guest.
//!
//! `App` is plain state, each pane's own state beside its widget in `panes/`; `screen` says which
//! panes a screen holds and where; `view` draws them; `reader` fills the code and memory panes from
//! guest memory. This file runs the loop that feeds the `App` from the VM, draws at most 30 frames
//! a second, and carries out actions through the debug controller. The vCPU threads never wait for
//! any of it.

pub mod app;
pub mod command;
pub mod panes;
pub mod reader;
pub mod replay;
pub mod screen;
pub mod status;
pub mod terminal;
pub mod theme;
pub mod view;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event};

use crate::console::ConsoleBuffer;
use crate::controller::ControlError;
use crate::headless::print_report;
use crate::session::{self, Launched, Session, SessionError};
use crate::sink::live::{LIVE_CAPACITY, LiveFeed};
use crate::summary::SummaryFormat;
use crate::vmm::snapshot::SnapshotError;
use crate::vmm::snapshot::every::Every;
use crate::vmm::{RunEnd, VmConfig};
use app::{Action, App, GoingBack, RunState};

/// Time between frames (30 per second).
const FRAME: Duration = Duration::from_millis(33);
/// How long to wait for more input once a key has come, before drawing.
const DRAIN: Duration = Duration::from_millis(1);

/// Errors of the UI itself.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The terminal could not be set up.
    #[error("cannot use the terminal: {0} (use --headless without one)")]
    Terminal(std::io::Error),
}

/// Boots the VM and runs the UI until the user quits; prints the summary; returns the exit status.
pub fn run(mut config: VmConfig, mut session: Session, title: String) -> Result<i32, UiError> {
    // From here on, notices (gdb attached, a feature that could not start) go to the status line.
    crate::notice::hold();
    let gdb = session.gdb.as_ref().map(|g| g.describe.clone());
    let symbols = match session::guest_symbols(&config, &session) {
        Ok(s) => s,
        Err(e) => {
            release_notices();
            return Err(e.into());
        }
    };
    let console = ConsoleBuffer::default();
    config.console = Box::new(console.clone());
    let (feed, events) = LiveFeed::new(LIVE_CAPACITY);
    let feed = Arc::new(feed);
    // A checkpoint before the first instruction, so that every exit the view shows can be gone
    // back to (`--checkpoint-every 0` leaves it out; with `--gdb-wait` gdb's attach takes it).
    let checkpoints_on = session.limits.checkpoint_every != Every::Off;
    let checkpoint_at_start = !session.limits.start_paused && checkpoints_on;
    session.limits.start_paused |= checkpoint_at_start;
    let mut launched = match session::launch(config, session, vec![feed.clone()], |_| {}) {
        Ok(l) => l,
        Err(e) => {
            release_notices();
            return Err(e.into());
        }
    };
    // With a history to go back over, the guest's own end is kept as a stop.
    launched.controller.hold_guest_end(checkpoints_on);
    if checkpoint_at_start {
        let controller = &launched.controller;
        controller.wait_all_stopped(Duration::from_secs(5));
        if let Some(Err(e)) = controller.auto_checkpoint() {
            crate::notice::say(format!("no checkpoint at the start: {e}"));
        }
        controller.resume();
    }
    let title = format!("{title} ({}, {} mode)", launched.info.format, launched.info.mode).to_lowercase();
    let mut guard = match terminal::TerminalGuard::enter() {
        Ok(g) => g,
        Err(e) => {
            launched.finish(RunEnd::Quit)?;
            release_notices();
            return Err(UiError::Terminal(e));
        }
    };
    let mut app = App::new(title);
    app.gdb = gdb;
    if launched.kernel_event_counts().is_some() {
        app.kernel_lines = Some(Default::default());
    }
    app.memmap.symbols = symbols.clone();
    app.profile.symbols = symbols;
    let mut next_frame = Instant::now();
    // The guest's end, while the TUI keeps it to go back from.
    let mut held: Option<crate::vmm::outcome::VcpuEnd> = None;
    while !app.quit {
        // Ctrl-C, SIGTERM and SIGHUP (the terminal went away) end the UI in every state, the
        // ended one included.
        if crate::vmm::vm::interrupted() {
            break;
        }
        if let Some(report) = launched.poll(Duration::ZERO) {
            app.quit |= report.end == RunEnd::Interrupted;
            let end = report.end.clone();
            app.set_ended(end, launched.controller.final_states(), false);
        }
        // The guest's own end, kept to go back from.
        if let Some(end) = launched.controller.take_held_end() {
            app.set_ended(end.0.clone(), launched.controller.stops(), true);
            held = Some(end);
        }
        if !matches!(app.state, RunState::Ended(_)) {
            held = None;
        }
        for line in crate::notice::take() {
            app.say(line, false);
        }
        let controller = &launched.controller;
        let new: Vec<_> = events.try_iter().collect();
        app.profile.record(&new);
        app.exits.push(new);
        app.exits.dropped = feed.dropped();
        app.stats.update(controller.counters(), Instant::now());
        app.stats.kvm.sample(controller.kvm_counts(), Instant::now());
        if let Some(g) = &mut app.going_back {
            g.progress = controller.travel_progress();
        }
        if let Some((text, error)) = app.going_back.as_ref().and_then(|g| g.done.try_recv().ok()) {
            let from_end = app.going_back.take().is_some_and(|g| g.from_end);
            if from_end && !error {
                app.leave_end();
            }
            app.set_stops(&controller.stops(), controller.is_paused());
            app.say(text, error);
        }
        let travelling = app.going_back.is_some();
        if !travelling {
            app.set_stops(&controller.stops(), controller.is_paused());
        }
        app.place = (app.state == RunState::Paused && !travelling).then(|| controller.place().to_string());
        if app.state == RunState::Paused && !travelling {
            // Somewhere to go back to near each stop the user holds (see `--checkpoint-every`).
            if let Some(Err(e)) = controller.auto_checkpoint() {
                app.say(format!("automatic checkpoint: {e}"), true);
            }
        }
        (app.console.sources, app.console.input_to) = launched.console_sources();
        app.stats.virtio = controller.device_counters();
        if app.stats.kernel.due(Instant::now()) {
            app.stats.kernel.sample(launched.kernel_event_counts(), Instant::now());
            app.memmap.mmu = app.stats.kernel.counts.clone().map(|c| (c, app.stats.kernel.rates.clone()));
        }
        if app.screen == screen::Screen::Profile && app.profile.kernel_due(Instant::now()) {
            if let Some(rips) = launched.kernel_top_rips(4096) {
                app.profile.show_kernel(rips, Instant::now());
            }
        }
        if console.len() != app.console.from_bytes {
            app.console.show(&console.text(), console.len());
        }
        reader::refresh(&mut app, controller.memory());
        // The dirty log costs the guest: on while the memory screen shows (always with --dirty-log).
        let memory_screen = app.screen == screen::Screen::Memory && launched.is_running();
        if !controller.dirty_log_always() && memory_screen != app.memmap.dirty_on {
            match controller.set_dirty_logging(memory_screen) {
                Ok(()) => app.memmap.dirty_on = memory_screen,
                Err(e) => app.say(format!("dirty log: {e}"), true),
            }
        }
        if app.screen == screen::Screen::Memory && app.memmap.due(Instant::now()) {
            if app.memmap.dirty_on {
                let _ = controller.sample_dirty();
            }
            app.memmap.show(controller.memory_map(), Instant::now());
        }
        app.devices.push(feed.take_device_events());
        app.push_kernel(feed.take_kernel_lines());
        if app.screen == screen::Screen::Devices && app.virtio.due(Instant::now()) {
            app.virtio.show(controller.virtio(), Instant::now());
        }
        if guard
            .draw(|f| {
                let placed = view::draw(f, &app);
                app.pane_rects = placed;
            })
            .is_err()
        {
            // The terminal is gone (its size or a write fails): nobody is looking.
            break;
        }
        next_frame += FRAME;
        let now = Instant::now();
        if next_frame < now {
            next_frame = now;
        }
        // Wait for input until the next frame; a key is handled (and drawn) at once.
        let mut wait = next_frame.saturating_duration_since(Instant::now());
        loop {
            match event::poll(wait) {
                Ok(true) => {}
                Ok(false) => break,
                // End of file or an error on the terminal: it is gone.
                Err(_) => app.quit = true,
            }
            if app.quit {
                break;
            }
            match event::read() {
                Ok(Event::Key(key)) if app.going_back.is_some() && key.code == event::KeyCode::Esc => {
                    launched.controller.cancel_travel();
                    if let Some(g) = &mut app.going_back {
                        g.cancelling = true;
                    }
                }
                Ok(Event::Key(key)) => {
                    for action in app.on_key(key) {
                        perform(action, &mut app, &launched);
                    }
                }
                Ok(Event::Mouse(m)) => app.on_mouse(m),
                Ok(_) => {}
                Err(_) => app.quit = true,
            }
            // Drain what has arrived before drawing (a poll of zero would not look at the tty).
            wait = DRAIN;
            next_frame = Instant::now();
        }
    }
    drop(guard);
    // Quitting while going back: it stops where it is first.
    if let Some(g) = app.going_back.take() {
        launched.controller.cancel_travel();
        let _ = g.done.recv_timeout(Duration::from_secs(10));
    }
    // The guest's end is where the quit happened only if the TUI still shows it (a going back
    // that finished in the last round has left it).
    let held = held.filter(|_| matches!(app.state, RunState::Ended(_)));
    let report = match held {
        // Quit (or Ctrl-C, SIGTERM, SIGHUP) at the guest's end: the run ended as the guest ended it.
        Some(end) => launched.finish_with(end),
        _ if crate::vmm::vm::interrupted() => launched.finish(RunEnd::Interrupted),
        _ => launched.finish(RunEnd::Quit),
    };
    release_notices();
    let report = report?;
    // Where the terminal is gone with the summary, there is nobody to tell.
    let _ = print_report(&report, SummaryFormat::Text, &app.profile.symbols, None);
    Ok(report.end.status())
}

/// Gives the terminal back to notices, printing those the TUI did not show.
fn release_notices() {
    for line in crate::notice::release() {
        crate::say!("kvmscope: {line}");
    }
}

/// Carries out one action on the VM.
fn perform(action: Action, app: &mut App, launched: &Launched) {
    let controller = &launched.controller;
    if !launched.is_running() && !matches!(action, Action::Quit | Action::ShowChain { .. }) {
        app.say("the run has ended: its registers, memory and page tables can still be looked at; q quits", true);
        return;
    }
    if app.going_back.is_some() && !matches!(action, Action::Quit) {
        app.say("going back: wait for it, or Esc cancels it", true);
        return;
    }
    // The guest ended, its end kept: the past can be gone back to, the end not run past.
    let at_end = matches!(app.state, RunState::Ended(_));
    if at_end && matches!(action, Action::TogglePause | Action::Pause | Action::Resume | Action::Step) {
        app.say("the guest has ended: b in the exit inspector or :goto SEQ goes back to an exit; q quits", true);
        return;
    }
    match action {
        Action::Quit => app.quit = true,
        Action::TogglePause if controller.is_paused() => {
            controller.resume();
            app.say("resumed", false);
        }
        Action::TogglePause | Action::Pause => {
            controller.pause();
            app.state = RunState::Pausing;
            app.say("pausing all vCPUs", false);
        }
        Action::Resume => {
            controller.resume();
            app.say("resumed", false);
        }
        Action::Step => {
            if let Err(e) = controller.step(app.vcpu) {
                app.say(e.to_string(), true);
            }
        }
        Action::AddExitBreakpoint(spec, nth) => match controller.add_exit_breakpoint_trapping(spec, nth) {
            Ok((bp, None)) => app.say(format!("exit breakpoint {bp}"), false),
            Ok((bp, Some(msr))) => {
                let name = crate::trace::msr::name(msr).map_or(format!("{msr:#x}"), str::to_string);
                app.say(format!("exit breakpoint {bp} (MSR {name} is trapped from now on)"), false)
            }
            Err(e) => app.say(e.to_string(), true),
        },
        Action::DeleteExitBreakpoint(id) => {
            let n = controller.delete_exit_breakpoint(id);
            match (id, n) {
                (Some(id), 0) => app.say(format!("no exit breakpoint #{id}"), true),
                _ => app.say(format!("deleted {n} exit breakpoint(s)"), false),
            }
        }
        Action::ListExitBreakpoints => {
            let list = controller.exit_breakpoints();
            let text = if list.is_empty() {
                "no exit breakpoints".to_string()
            } else {
                list.iter().map(|b| b.to_string()).collect::<Vec<_>>().join("; ")
            };
            app.say(text, false);
        }
        Action::ShowChain { addr, virt } => match controller.address_chain(app.vcpu, addr, virt) {
            Ok(chain) => {
                app.memory.show_chain(&chain.to_string(), addr, !virt);
                app.focus = screen::PaneId::Memory;
                app.show_screen(screen::Screen::Overview);
                app.say(format!("{addr:#x}: guest-physical {:#x}", chain.gpa), false);
            }
            Err(e) => app.say(e.to_string(), true),
        },
        Action::TrapMsrs(msrs) => match controller.trap_msrs(&msrs) {
            Ok(()) if msrs.is_empty() => app.say("no MSRs trapped", false),
            Ok(()) => {
                let names: Vec<String> = msrs
                    .iter()
                    .map(|&m| crate::trace::msr::name(m).map_or(format!("{m:#x}"), str::to_string))
                    .collect();
                app.say(format!("trapping MSRs {}", names.join(", ")), false)
            }
            Err(e) => app.say(e.to_string(), true),
        },
        Action::Goto(seq) => {
            // On a thread of its own: the TUI draws the progress meanwhile, and Esc cancels.
            let (tell, done) = std::sync::mpsc::channel();
            let c = controller.clone();
            let spawned = std::thread::Builder::new().name("going back".into()).spawn(move || {
                let _ = tell.send(travel(Action::Goto(seq), &c));
            });
            match spawned {
                Ok(_) => {
                    app.going_back = Some(GoingBack { seq, progress: None, from_end: at_end, done, cancelling: false })
                }
                Err(e) => app.say(format!("going back to exit #{seq}: no thread for it: {e}"), true),
            }
        }
        Action::Checkpoint | Action::Restore(_) | Action::Snapshot(_) => {
            let goes_back = matches!(action, Action::Goto(_) | Action::Restore(_));
            let (text, error) = travel(action, controller);
            if at_end && goes_back && !error {
                app.leave_end();
            }
            // The stops going back (or settling the vCPUs) made are this message's to tell.
            app.set_stops(&controller.stops(), controller.is_paused());
            app.say(text, error);
        }
        Action::GotoTime(_) => app.say(":time works in `kvmscope replay`; :goto SEQ goes back to an exit", true),
        Action::ListCheckpoints => {
            let list = controller.checkpoints().to_string();
            app.say(list.lines().collect::<Vec<_>>().join("; "), false)
        }
        Action::SerialInput(bytes) => {
            launched.type_input(&bytes);
        }
    }
}

/// Carries out a going-back action: its message, and whether it is an error.
fn travel(action: Action, controller: &crate::controller::Controller) -> (String, bool) {
    let said = match action {
        Action::Goto(seq) => controller
            .go_back_to(seq)
            .map(|place| format!("back at exit #{seq} ({place}); space runs on from here"))
            .map_err(|e| format!("going back to exit #{seq}: {e}")),
        Action::Checkpoint => controller
            .checkpoint(true)
            .map(|id| format!("checkpoint #{id} {}", controller.place()))
            .map_err(|e| format!(":checkpoint: {e}")),
        Action::Restore(id) => controller
            .restore_checkpoint(id)
            .map(|at| format!("back at checkpoint #{id}: {at}; space runs on from here"))
            .map_err(|e| match e {
                ControlError::Snapshot(SnapshotError::NoCheckpoint(_)) => {
                    format!(":restore: {e} (:checkpoints lists them)")
                }
                e => format!(":restore: {e}"),
            }),
        Action::Snapshot(path) => controller
            .snapshot(&path)
            .map(|bytes| {
                let size = crate::vmm::memory::data_size(bytes);
                format!("wrote {} ({size}) {}", path.display(), controller.place())
            })
            .map_err(|e| format!(":snapshot: {e}")),
        _ => return (String::new(), false),
    };
    match said {
        Ok(text) => (text, false),
        Err(text) => (text, true),
    }
}

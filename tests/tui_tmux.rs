//! The TUI end to end in a real terminal: tmux runs `kvmscope` on the demo guest; the test reads the
//! screen with capture-pane and types keys — pause, step, help, an exit breakpoint, quit — and checks
//! that the process ends cleanly and gives the terminal back, on `q` and on SIGTERM.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::kvm_or_skip;

/// One tmux server of our own, killed when dropped.
struct Tmux {
    socket: String,
    dir: PathBuf,
}

impl Tmux {
    fn start(test: &str, width: u16, height: u16) -> Option<Tmux> {
        Self::start_with(test, width, height, "")
    }

    /// Starts `kvmscope ARGS` in a new tmux server.
    fn start_with(test: &str, width: u16, height: u16, args: &str) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            if std::env::var("KVMSCOPE_REQUIRE_KVM").as_deref() == Ok("1") {
                panic!("{test}: tmux is required (tests/run.sh installs it)");
            }
            eprintln!("SKIPPED {test}: tmux is not installed");
            return None;
        }
        // Unique in the run: a server just killed may still hold its socket's name a moment.
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = format!("kvmscope-{test}-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&socket);
        std::fs::create_dir_all(&dir).unwrap();
        let bin = env!("CARGO_BIN_EXE_kvmscope");
        let script = format!(
            "echo $$ > {pid}; {bin} {args} 2> {err}; echo EXIT=$? > {status}; sleep 60",
            pid = dir.join("pid").display(),
            err = dir.join("stderr").display(),
            status = dir.join("status").display()
        );
        let ok = Command::new("tmux")
            .args(["-L", &socket, "new-session", "-d", "-x", &width.to_string(), "-y", &height.to_string()])
            .args(["sh", "-c", &script])
            .env("TERM", "xterm-256color")
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux new-session");
        Some(Tmux { socket, dir })
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(["-L", &self.socket]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Waits until the screen satisfies `ok`; panics with the screen if it does not.
    fn wait_until(&self, ok: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{what}; screen:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the screen shows every one of `wants`.
    fn wait_for(&self, wants: &[&str], what: &str) -> String {
        self.wait_until(|s| wants.iter().all(|w| s.contains(w)), &format!("{what}: waiting for {wants:?}"))
    }

    fn wait_status(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(s) = std::fs::read_to_string(self.dir.join("status")) {
                return s.trim().to_string();
            }
            assert!(Instant::now() < deadline, "kvmscope did not end; screen:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// The terminal is back to normal: no alternate screen, no mouse reporting, cursor shown.
    fn assert_restored(&self) {
        let flags = self.tmux(&["display-message", "-p", "#{alternate_on} #{mouse_any_flag} #{cursor_flag}"]);
        assert_eq!(flags.trim(), "0 0 1", "alternate screen, mouse, cursor after exit");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn tui_pause_step_help_break_and_quit() {
    if !kvm_or_skip("tui_pause_step_help_break_and_quit") {
        return;
    }
    let Some(t) = Tmux::start("keys", 160, 45) else { return };
    t.wait_for(&["RUNNING", "demo: round", "Exits", "Stats", "CurAvg/s"], "the demo guest runs");
    t.keys(&["Space"]);
    let s = t.wait_for(&["PAUSED vCPU 0 at", "Registers: vCPU 0 (paused)", "▶"], "space pauses");
    assert!(s.contains("rip "), "{s}");
    t.keys(&["s"]);
    t.wait_for(&["Registers: vCPU 0 (stepped)", "debug"], "s single-steps (a debug exit in the stream)");
    // Running again, the panes show no stale stop.
    t.keys(&["Space"]);
    t.wait_until(
        |s| s.contains("running: space pauses") && !s.contains("(stepped)") && !s.contains("▶"),
        "after a resume the registers and code panes show the guest running",
    );
    t.keys(&["Space"]);
    t.wait_for(&["PAUSED vCPU 0 at", "Registers: vCPU 0 (paused)"], "space pauses again");
    t.keys(&[":cpu 1", "Enter"]);
    t.wait_for(&["no vCPU 1: this VM has 1"], ":cpu names the vCPUs there are");
    t.keys(&["?"]);
    t.wait_for(&["Help", ":break io PORT", ":break msr", ":cpu N", "1 2 3 4 5"], "? opens help");
    t.keys(&["x"]);
    t.wait_until(|s| !s.contains("any key closes") && s.contains("PAUSED"), "any key closes help");
    t.keys(&[":break io 0x80", "Enter"]);
    t.wait_for(&["exit breakpoint #1 io 0x80"], ":break answers");
    t.keys(&["Space"]);
    t.wait_for(
        &["Registers: vCPU 0 (exit breakpoint #1)", "exit breakpoint #1 io 0x80", "PAUSED"],
        "the guest stops on the exit breakpoint",
    );
    t.keys(&[":bogus", "Enter"]);
    t.wait_for(&["unknown command :bogus"], "a bad command gets a one-line message");
    t.keys(&[":breaks", "Enter"]);
    t.wait_until(|s| s.contains("#1 io 0x80") && !s.contains(":bogus"), "the next command's answer replaces it");
    let paste = "x".repeat(5000);
    t.keys(&[":", &paste]);
    t.wait_for(&["the line is cut at 1024 characters"], "a long paste is cut with a note");
    t.keys(&["Escape"]);
    t.wait_until(
        |s| !s.lines().any(|l| l.starts_with(":…xxxx")) && s.contains("? help"),
        "Esc closes the line after a long paste",
    );
    t.keys(&["2"]);
    t.wait_until(|s| s.contains("┌ Exits") && !s.contains("┌ Registers"), "2 shows the exits screen");
    t.keys(&["3"]);
    t.wait_for(&["┌ Memory map", "KVM memory slots", "serial", "Guest memory map"], "3 shows the memory map");
    t.keys(&["1"]);
    t.wait_for(&["┌ Registers", "┌ Memory"], "1 shows the overview again");
    t.keys(&["q"]);
    assert_eq!(t.wait_status(), "EXIT=0");
    let err = t.stderr();
    assert!(err.contains("run ended: quit by the user") && err.contains("VM-EXIT"), "summary on stderr: {err}");
    t.assert_restored();
}

#[test]
fn the_exit_inspector_opens_on_the_exit_under_the_cursor() {
    if !kvm_or_skip("the_exit_inspector_opens_on_the_exit_under_the_cursor") {
        return;
    }
    let Some(t) = Tmux::start("inspect", 160, 45) else { return };
    t.wait_for(&["RUNNING", "demo: round"], "the demo guest runs");
    // The exits screen: the device/register column says what each access touched.
    t.keys(&["2"]);
    t.wait_for(&["device/register", "COM1 LSR", "POST"], "the exits pane explains the exits");
    // Frozen, the arrows move a cursor; Enter opens the inspector on its exit.
    t.keys(&["f", "Up", "Up", "Enter"]);
    let s = t.wait_for(&["Exit #", "any other key closes", "reason", "device", "why"], "Enter opens the inspector");
    assert!(s.contains("instruction") && s.contains("rip"), "{s}");
    assert!(s.contains("in-kernel   not followed (run with --kernel-events"), "{s}");
    t.keys(&["Escape"]);
    t.wait_until(|s| !s.contains("any other key closes") && s.contains("device/register"), "any key closes it");
    t.keys(&["q"]);
    assert_eq!(t.wait_status(), "EXIT=0");
    t.assert_restored();
    drop(t);

    // With --kernel-events (root: tracefs), the inspector says what KVM did in the kernel for the
    // exit: its vCPU thread's events, or that they came too fast to keep one by one (an emulating
    // host makes one per guest kernel instruction).
    let demo = common::guest("demo.elf");
    let args = format!("run --kernel-events --kernel {}", demo.display());
    let Some(t) = Tmux::start_with("inspect-kernel", 160, 45, &args) else { return };
    t.wait_for(&["RUNNING", "demo: round"], "the demo guest runs");
    t.keys(&["2", "f", "Up", "Enter"]);
    let s = t.wait_for(&["Exit #", "in-kernel"], "the inspector");
    let line = s.lines().find(|l| l.contains("in-kernel")).unwrap_or_default();
    assert!(!line.contains("not followed"), "{s}");
    let followed = ["µs kvm_", "too many events then", "no event of its vCPU's thread"];
    assert!(followed.iter().any(|f| s.contains(f)), "the in-kernel events around the exit: {s}");
    // (Escape and q apart: together a terminal reads them as Alt-q.)
    t.keys(&["Escape"]);
    t.wait_until(|s| !s.contains("any other key closes"), "Escape closes the inspector");
    t.keys(&["q"]);
    assert_eq!(t.wait_status(), "EXIT=0");
}

#[test]
fn the_tui_goes_back_to_an_exit_and_runs_on_from_there() {
    if !kvm_or_skip("the_tui_goes_back_to_an_exit_and_runs_on_from_there") {
        return;
    }
    let Some(t) = Tmux::start("back", 160, 45) else { return };
    t.wait_for(&["RUNNING", "demo: round"], "the demo guest runs");
    t.keys(&["Space"]);
    t.wait_for(&["PAUSED vCPU 0 at", " · "], "paused, the status line says where on the timeline");
    t.keys(&[":checkpoints", "Enter"]);
    t.wait_for(&["#1   after exit 0", "automatic"], "a checkpoint was taken at the start");
    // An exit some rows up the list, its number read from the inspector.
    t.keys(&["2", "f", "Up", "Up", "Up", "Up", "Up", "Enter"]);
    let s = t.wait_for(&["Exit #", "b goes back to here"], "the inspector");
    let seq: u64 = s
        .split("Exit #")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the exit's number: {s}"));
    t.keys(&["b"]);
    let s = t.wait_for(&[&format!("back at exit #{seq} (after exit ")], "b goes back to that exit");
    let place = s.split(&format!("back at exit #{seq} (")).nth(1).and_then(|r| r.split(')').next()).unwrap();
    assert!(s.contains("PAUSED vCPU 0 at") && s.contains(&format!(" · {place}")), "{s}");
    // From there: a checkpoint of the user's, then on, then back to it.
    t.keys(&[":checkpoint", "Enter"]);
    let s = t.wait_for(&[&format!(" {place}"), "checkpoint #"], ":checkpoint where the guest was put back");
    let id: u32 = s
        .split("checkpoint #")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the checkpoint's number: {s}"));
    t.keys(&["Space"]);
    t.wait_for(&["RUNNING"], "it runs on from the past");
    t.keys(&["Space"]);
    t.wait_for(&["PAUSED vCPU 0 at"], "paused again");
    t.keys(&[&format!(":restore {id}"), "Enter"]);
    t.wait_for(&[&format!("back at checkpoint #{id}")], ":restore goes back");
    t.keys(&[":goto 999999999", "Enter"]);
    t.wait_for(&["going back to exit #999999999: ", "not on the timeline kept"], "an exit never made is said");
    t.keys(&["q"]);
    assert_eq!(t.wait_status(), "EXIT=0");
    t.assert_restored();
}

#[test]
fn going_back_far_shows_its_progress_and_esc_cancels_it() {
    if !kvm_or_skip("going_back_far_shows_its_progress_and_esc_cancels_it") {
        return;
    }
    // longrun: 300,000 exits, then its end. Checkpoints at exit 0 and 200,000 only: going back
    // to exit 190,000 makes 190,000 exits again, long enough to be seen and cancelled.
    let guest = common::guest("longrun.elf");
    let args = format!("run --kernel {} --checkpoint-every 200000", guest.display());
    let Some(t) = Tmux::start_with("far", 160, 45, &args) else { return };
    t.wait_for(&["guest run ended", "status 15"], "longrun ends, its end kept");
    t.keys(&[":goto 190000", "Enter"]);
    let s = t.wait_until(
        |s| {
            s.contains("GOING BACK to exit #190000 · ")
                && s.contains(" of 19000")
                && s.contains(" exits made again (")
                && !s.contains("· 0 of")
        },
        "the status line shows how far it has got",
    );
    assert!(s.contains("Esc cancels"), "{s}");
    // While it goes, other commands wait.
    t.keys(&["s"]);
    t.wait_for(&["going back: wait for it, or Esc cancels it"], "a step waits");
    t.keys(&["Escape"]);
    let s = t.wait_for(
        &["going back to exit #190000: cancelled: back where it started (", " after exit 300001)"],
        "Esc cancels",
    );
    assert!(s.contains("ENDED"), "back at the guest's end: {s}");
    // Back where it was: its end, which a goto leaves again.
    t.keys(&[":goto 250000", "Enter"]);
    t.wait_for(&["back at exit #250000 (after exit "], "a goto after the cancel");
    // Quit in the past: the user's quit, not the guest's end.
    t.keys(&["q"]);
    assert_eq!(t.wait_status(), "EXIT=0");
    t.assert_restored();
}

#[test]
fn the_tui_goes_back_from_the_guests_end() {
    if !kvm_or_skip("the_tui_goes_back_from_the_guests_end") {
        return;
    }
    // gdbtest prints five dots and ends through isa-debug-exit (status 11).
    let guest = common::guest("gdbtest.elf");
    let Some(t) = Tmux::start_with("end", 160, 45, &format!("run --kernel {}", guest.display())) else { return };
    t.wait_for(&["guest run ended", "status 11", "b in the exit inspector or :goto SEQ goes back"], "the end is kept");
    t.keys(&["Space"]);
    t.wait_for(&["the guest has ended: b in the exit inspector"], "running past the end is refused");
    // The third dot's exit, from the top of the list.
    t.keys(&["Home", "Up", "Up", "Up", "Enter"]);
    let s = t.wait_for(&["Exit #", "b goes back to here"], "the inspector");
    let seq: u64 =
        s.split("Exit #").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap();
    t.keys(&["b"]);
    t.wait_for(&[&format!("back at exit #{seq} (after exit "), "PAUSED vCPU 0 at"], "back from the end");
    t.keys(&["Space"]);
    t.wait_for(&["guest run ended", "status 11"], "run on to the end again");
    t.keys(&["q"]);
    assert_eq!(t.wait_status(), "EXIT=11", "the run ends as the guest ended it");
    t.assert_restored();
}

impl Tmux {
    /// kvmscope's pid: the child of the shell the session runs.
    fn kvmscope_pid(&self) -> i32 {
        let pid: i32 = std::fs::read_to_string(self.dir.join("pid")).unwrap().trim().parse().unwrap();
        let child = Command::new("pgrep").args(["-P", &pid.to_string()]).output().unwrap();
        String::from_utf8_lossy(&child.stdout).trim().parse().expect("kvmscope's pid")
    }
}

/// Whether process `pid` still exists (a zombie counts as gone) after up to `within`.
fn still_running_after(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state is the field after the command's closing parenthesis.
        let state = stat.rsplit(')').next().unwrap_or("").trim_start().chars().next();
        if matches!(state, None | Some('Z')) {
            return false;
        }
        if Instant::now() >= deadline {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_tui_whose_guest_ended_ends_on_sigterm_and_when_its_terminal_goes() {
    if !kvm_or_skip("a_tui_whose_guest_ended_ends_on_sigterm_and_when_its_terminal_goes") {
        return;
    }
    let args = format!("run --kernel {}", common::guest("hello.elf").display());
    // SIGTERM after the guest has ended.
    let Some(t) = Tmux::start_with("ended-term", 80, 24, &args) else { return };
    t.wait_for(&["ENDED: debug-exit", "? help"], "the guest ends by itself; at 80x24 the hint stays");
    // An ended guest can still be looked at: its memory map, its registers, an address.
    t.keys(&["3"]);
    t.wait_for(&["Guest memory map"], "the memory map");
    t.keys(&["End"]);
    t.keys(&["PageDown"]);
    t.wait_until(|s| s.contains("paging is off") && !s.contains("stop it first"), "the ended guest's page tables");
    t.keys(&[":gpa 0x100000", "Enter"]);
    t.wait_for(&["guest-physical 0x100000 (4 KiB page)", "memory slot    0"], ":gpa on an ended guest");
    t.keys(&["1", "Tab", "Tab"]);
    t.wait_for(&["Registers: vCPU 0 (run ended)"], "the registers the vCPU ended with");
    // SAFETY: kill(2) on the process this test started.
    unsafe { libc::kill(t.kvmscope_pid(), libc::SIGTERM) };
    assert_eq!(t.wait_status(), "EXIT=33", "the run's own end still decides the status");
    t.assert_restored();
    // The terminal closed under it (the tmux server killed, as when a window is closed).
    let Some(t) = Tmux::start_with("ended-hup", 80, 24, &args) else { return };
    t.wait_for(&["ENDED: debug-exit"], "the guest ends by itself");
    let pid = t.kvmscope_pid();
    t.tmux(&["kill-server"]);
    assert!(!still_running_after(pid, Duration::from_secs(10)), "kvmscope outlived its terminal");
}

#[test]
fn tui_gives_the_terminal_back_on_sigterm() {
    if !kvm_or_skip("tui_gives_the_terminal_back_on_sigterm") {
        return;
    }
    let Some(t) = Tmux::start("term", 80, 24) else { return };
    t.wait_for(&["RUNNING", "Exits |"], "the TUI runs at 80x24");
    // SAFETY: kill(2) on the process this test started.
    unsafe { libc::kill(t.kvmscope_pid(), libc::SIGTERM) };
    assert_eq!(t.wait_status(), "EXIT=130");
    assert!(t.stderr().contains("interrupted"), "{}", t.stderr());
    t.assert_restored();
}

#[test]
fn in_a_real_terminal_of_each_size_nothing_is_cut() {
    if !kvm_or_skip("in_a_real_terminal_of_each_size_nothing_is_cut") {
        return;
    }
    // The demo guest with a gdb stub, at the sizes the TestBackend test draws: the exits pane's
    // heading words whole, the stub's address whole, no blank row among the exits.
    let words = ["seq", "cpu", "reason", "rip", "port/address", "data", "addr", "device/register", "device", "dev"];
    let words = [&words[..], &["instruction", "insn"]].concat();
    for (w, h) in [(80u16, 24u16), (160, 45), (220, 50)] {
        let Some(t) = Tmux::start_with(&format!("size{w}"), w, h, "run --demo --gdb 127.0.0.1:0") else { return };
        let s = t.wait_for(&["RUNNING", "gdb: target remote 127.0.0.1:"], "the demo runs with its stub");
        let lines: Vec<&str> = s.lines().collect();
        let title = lines.iter().position(|l| l.contains("┌ Exits")).unwrap_or_else(|| panic!("the exits pane:\n{s}"));
        let header = lines[title + 1].trim_start_matches('│').split('│').next().unwrap_or("");
        for word in header.split_whitespace() {
            assert!(words.contains(&word), "heading {word:?} cut at {w}x{h}:\n{s}");
        }
        let address = s.split("gdb: target remote ").nth(1).unwrap_or("");
        let port: String = address.trim_start_matches("127.0.0.1:").chars().take_while(char::is_ascii_digit).collect();
        assert!(!port.is_empty() && address.starts_with("127.0.0.1:"), "the stub's address whole at {w}x{h}:\n{s}");
        t.keys(&["q"]);
        assert_eq!(t.wait_status(), "EXIT=0");
        t.assert_restored();
    }
}

#[test]
fn a_replayable_recording_is_re_executed_in_the_tui() {
    if !kvm_or_skip("a_replayable_recording_is_re_executed_in_the_tui") {
        return;
    }
    let trace = std::env::temp_dir().join(format!("kvmscope-replay-exec-{}.trace", std::process::id()));
    let guest = common::guest("gdbtest.elf");
    let rec = common::run_headless(&[
        "--kernel",
        guest.to_str().unwrap(),
        "--record",
        trace.to_str().unwrap(),
        "--replayable",
    ]);
    assert_eq!(rec.status, 11, "{}", rec.stderr);
    // The machine itself, not the trace: registers, code and the exits made again, to its end.
    let Some(t) = Tmux::start_with("exec", 160, 45, &format!("replay {} --exec", trace.display())) else { return };
    let s =
        t.wait_for(&["guest run ended", "status 11", "Registers: vCPU 0", "Code"], "the guest runs again to its end");
    assert!(!s.contains("left the recording"), "{s}");
    // Its past can be gone back to, as in any run.
    t.keys(&["Home", "Up", "Up", "Enter"]);
    t.wait_for(&["Exit #", "b goes back to here"], "the inspector");
    t.keys(&["b"]);
    t.wait_for(&["back at exit #", "PAUSED vCPU 0 at"], "back in the re-executed past");
    t.keys(&["Space"]);
    t.wait_for(&["guest run ended", "status 11"], "on to the end again");
    t.keys(&["q"]);
    assert_eq!(t.wait_status(), "EXIT=11", "the run ends as the guest ended it");
    t.assert_restored();
    let _ = std::fs::remove_file(trace);
}

#[test]
fn replay_steps_through_a_recording() {
    if !kvm_or_skip("replay_steps_through_a_recording") {
        return;
    }
    let trace = std::env::temp_dir().join(format!("kvmscope-replay-{}.trace", std::process::id()));
    let rec = common::run_headless(&[
        "--kernel",
        common::guest("hello.elf").to_str().unwrap(),
        "--record",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(rec.status, 33, "{}", rec.stderr);
    let Some(t) = Tmux::start_with("replay", 160, 45, &format!("replay {}", trace.display())) else { return };
    let first = t.wait_for(&["replay 1/", "Exits", "Stats"], "replay opens at the first exit");
    let total: String = first.split("replay 1/").nth(1).unwrap().chars().take_while(|c| c.is_ascii_digit()).collect();
    t.keys(&["n"]);
    t.wait_for(&["replay 2/"], "n steps forward");
    t.keys(&["p"]);
    t.wait_for(&["replay 1/"], "p steps back");
    t.keys(&[":goto 100", "Enter"]);
    t.wait_for(&["replay 101/"], ":goto jumps to a sequence number");
    t.keys(&["End"]);
    t.wait_for(
        &[&format!("replay {total}/{total}"), "Hello from kvmscope", "run that ended: debug-exit (status 33)"],
        "End shows the last exit and the console up to it",
    );
    t.keys(&["/io 0x80", "Enter", "Home", "n"]);
    let s = t.wait_for(&["out 0x0080"], "n follows the filter");
    assert!(!s.contains("replay 2/"), "the filter skips to the first POST write: {s}");
    // The profile names the guest's functions from the recorded image, as `stats --by symbol`.
    t.keys(&["5"]);
    t.wait_for(&["Profile by guest function", "putc"], "the profile screen names the recorded guest's functions");
    // The inspector opens on the replay's current exit, as on a live one.
    t.keys(&["2", "Enter"]);
    t.wait_for(&["Exit #", "POST diagnostic port", "why"], "Enter inspects the current exit of a replay");
    t.keys(&["Escape"]);
    t.wait_until(|s| !s.contains("any other key closes"), "and closes");
    // What a recording does not hold is said, not shown as a live guest's.
    t.keys(&["1"]);
    t.wait_until(
        |s| !s.contains("running") && s.contains("a recording holds"),
        "the code and memory panes in a replay",
    );
    t.keys(&["q"]);
    assert_eq!(t.wait_status(), "EXIT=0");
    t.assert_restored();
    let _ = std::fs::remove_file(&trace);
}

#[test]
fn a_replay_says_when_a_recording_has_no_index_or_one_not_trusted() {
    if !kvm_or_skip("a_replay_says_when_a_recording_has_no_index_or_one_not_trusted") {
        return;
    }
    let trace = std::env::temp_dir().join(format!("kvmscope-replay-index-{}.trace", std::process::id()));
    let rec = common::run_headless(&[
        "--kernel",
        common::guest("spin.elf").to_str().unwrap(),
        "--max-exits",
        "200000",
        "--record",
        trace.to_str().unwrap(),
    ]);
    assert!(rec.stderr.contains("recorded 200000 exits"), "{}", rec.stderr);
    let bytes = std::fs::read(&trace).unwrap();
    let at = common::index_offset(&bytes);
    // Cut off where its index starts (as a crash leaves it), and with a byte of its index changed.
    let bare = trace.with_extension("bare.trace");
    std::fs::write(&bare, &bytes[..at]).unwrap();
    let lying = trace.with_extension("lying.trace");
    let mut b = bytes.clone();
    b[at + 40] ^= 0x01;
    std::fs::write(&lying, &b).unwrap();
    for (file, said) in [
        (&bare, "it has no index (an older recording, or one cut off): read it whole"),
        (&lying, "checksum does not match: the index is not trusted"),
    ] {
        let Some(t) = Tmux::start_with("index", 160, 45, &format!("replay {}", file.display())) else { return };
        t.wait_for(&[said], "the replay says how it opened the recording");
        // Read whole, it still goes anywhere.
        t.keys(&[":goto 180000", "Enter"]);
        t.wait_for(&["replay 180001/200000"], "a far jump");
        t.keys(&["q"]);
        assert_eq!(t.wait_status(), "EXIT=0");
        t.assert_restored();
    }
    for f in [&trace, &bare, &lying] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn devices_screen_shows_a_live_guests_virtqueues() {
    if !kvm_or_skip("devices_screen_shows_a_live_guests_virtqueues") {
        return;
    }
    let disk = std::env::temp_dir().join(format!("kvmscope-tmux-disk-{}.img", std::process::id()));
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let guest = common::guest("virtio.elf");
    // The guest writes and flushes, then spins: its devices stay as it left them.
    let args = format!(
        "run --kernel {} --disk {} --virtio rng,console --cmdline spin-after-flush",
        guest.display(),
        disk.display()
    );
    let Some(t) = Tmux::start_with("devices", 160, 45, &args) else { return };
    t.wait_for(&["virtio: flushed"], "the guest's console");
    t.keys(&["4"]);
    t.wait_for(
        &[
            "Virtqueues",
            "virtio-blk0: virtio-blk (device id 2) at 0xd0000000",
            "ACKNOWLEDGE|DRIVER|DRIVER_OK|FEATURES_OK",
            "chain 0: flush -> ok",
            "Device and in-kernel events",
            "virtio-blk0 q0 took chain 0: write sector 2",
        ],
        "the devices screen",
    );
    t.keys(&["Enter"]);
    t.wait_for(&["virtqueue buffer: guest-physical 0x"], "a descriptor's buffer in the memory pane");
    t.keys(&["q"]);
    assert_eq!(t.wait_status(), "EXIT=0", "stderr: {}", t.stderr());
    let _ = std::fs::remove_file(disk);
}

#[test]
fn the_tui_stays_responsive_with_kernel_events_at_full_rate() {
    if !kvm_or_skip("the_tui_stays_responsive_with_kernel_events_at_full_rate") {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED the_tui_stays_responsive_with_kernel_events_at_full_rate: --kernel-events needs root");
        return;
    }
    // `spin` exits as fast as it can; on an emulating host each exit also costs KVM several
    // emulated instructions: the tracepoint reader parses hundreds of thousands of lines a second.
    let args = format!("run --kernel {} --kernel-events", common::guest("spin.elf").display());
    let Some(t) = Tmux::start_with("kernel-events", 160, 45, &args) else { return };
    t.wait_for(&["in KVM, tracepoints", "kvm_pio"], "the stats pane's tracepoint section");
    // Keys still work (how fast is key_latency's to measure, not a test's).
    t.keys(&["?"]);
    t.wait_for(&["Keys"], "the help, while the tracepoints stream");
    t.keys(&["x"]);
    t.wait_until(|s| !s.contains("Keys"), "the help closes");
    t.keys(&["q"]);
    assert_eq!(t.wait_status(), "EXIT=0", "stderr: {}", t.stderr());
}

#[test]
fn the_memory_screen_turns_the_dirty_log_on_while_it_shows() {
    if !kvm_or_skip("the_memory_screen_turns_the_dirty_log_on_while_it_shows") {
        return;
    }
    // The guest writes 16 pages at 4 MiB forever; no --dirty-log: the screen turns the log on.
    let args = format!("run --kernel {}", common::guest("dirty.elf").display());
    let Some(t) = Tmux::start_with("dirty", 160, 45, &args) else { return };
    t.wait_for(&["Exits"], "the TUI");
    t.keys(&["3"]);
    // The hottest pages are the guest's 16 (which of them first depends on the interval the log
    // was turned on in).
    let s = t.wait_for(
        &["Dirty pages (last interval: 16;", "hottest (intervals dirty): 0x40"],
        "the dirty log, read while the screen shows",
    );
    let hottest = s.split("hottest (intervals dirty): ").nth(1).unwrap_or_default();
    let page = hottest.split(' ').next().unwrap_or_default();
    let page = u64::from_str_radix(page.trim_start_matches("0x"), 16).unwrap_or(0);
    assert!((0x400000..0x410000).contains(&page), "the hottest page is one the guest writes: {s}");
    t.keys(&["q"]);
    assert_eq!(t.wait_status(), "EXIT=0", "stderr: {}", t.stderr());
}

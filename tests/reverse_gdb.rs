//! What real gdb sees going back in time, where answers used to be wrong: a step over an
//! instruction that exits ends right after it, forward and back; reverse-continue after reverse
//! steps stops at the last hit; the ends of the history and failures reach gdb as such, with a
//! line saying why; a long reverse command answers, and Ctrl-C (or gdb going away) stops it; a
//! big guest attaches as fast as a small one; summaries count each exit once; a disk goes back
//! with every checkpoint after a reverse-continue; instructions kvmscope finishes for the host
//! are gone back over; data no exit carries (rdtsc) is said, never shown wrong.

mod common;

use std::time::{Duration, Instant};

use common::gdb_stub::*;
use common::*;

#[test]
fn a_step_over_an_exiting_instruction_ends_right_after_it_both_ways() {
    if !gdb_or_skip("a_step_over_an_exiting_instruction_ends_right_after_it_both_ways") {
        return;
    }
    // gdbtest's bump: `mov $'.', %al` (0x200028), `out %al, (%dx)` (0x20002a), `ret` (0x20002b).
    let stub = Stub::start("gdbtest.elf", true);
    let out = stub.gdb(
        Some("gdbtest.elf"),
        &[
            "break *0x20002a",
            "continue",
            "stepi",
            "info registers rip",
            "monitor timeline",
            "reverse-stepi",
            "info registers rip",
            "reverse-stepi",
            "info registers rip",
            "stepi",
            "stepi",
            "info registers rip",
            "kill",
        ],
    );
    stub.finish();
    let (_, rips) = printed(&out);
    assert_eq!(rips, ["0x20002b", "0x20002a", "0x200028", "0x20002b"], "{out}");
    assert!(out.contains("after exit 1\n"), "the step ended at the out's exit: {out}");

    // clock: `out %al, $0x70` (0x100013), `in $0x71, %al` (0x100015), `out %al, $0x80` (0x100017).
    let stub = Stub::start("clock.elf", true);
    let out = stub.gdb(
        None,
        &[
            "monitor break-exit io 0x80 nth 4",
            "continue",
            "info registers rip",
            "reverse-stepi",
            "info registers rip",
            "reverse-stepi",
            "info registers rip",
            "reverse-stepi",
            "info registers rip",
            "monitor timeline",
            "kill",
        ],
    );
    stub.finish();
    let (_, rips) = printed(&out);
    assert_eq!(rips, ["0x100019", "0x100017", "0x100015", "0x100013"], "{out}");
    assert!(!out.contains("failed"), "{out}");
}

#[test]
fn reverse_continue_after_reverse_steps_stops_at_the_last_hit() {
    if !gdb_or_skip("reverse_continue_after_reverse_steps_stops_at_the_last_hit") {
        return;
    }
    let stub = Stub::start("bump.elf", true);
    let out = stub.gdb(
        Some("bump.elf"),
        &[
            "break bump",
            "continue",
            "continue",
            "continue",
            "p i",
            "next",
            "next",
            "reverse-stepi",
            "reverse-continue",
            "p i",
            "delete",
            "break bump if i == 5",
            "continue",
            "next",
            "next",
            "next",
            "reverse-next",
            "p total",
            "delete",
            "reverse-finish",
            "p i",
            "p total",
            "kill",
        ],
    );
    stub.finish();
    let (vals, _) = printed(&out);
    // bump(2), back to its own hit; bump(5) at its last line, back a line (total 15), out to the
    // call in guest_main (i still 5, total back to 10: bump(5) has not run).
    assert_eq!(vals, ["2", "2", "15", "5", "10"], "{out}");
    assert!(out.contains("in guest_main () at assets/guests/bump.elf64.c:40"), "{out}");
    assert!(!out.contains("No more reverse-execution history"), "{out}");
}

#[test]
fn the_ends_of_the_history_and_failures_reach_gdb_as_such() {
    if !gdb_or_skip("the_ends_of_the_history_and_failures_reach_gdb_as_such") {
        return;
    }
    // No checkpoint at all: a breakpoint at the present is not a hit going back.
    let stub = Stub::start_with("gdbtest.elf", true, "0", &["--checkpoint-every", "0"]);
    let out = stub.gdb(Some("gdbtest.elf"), &["break _start", "reverse-continue", "info registers rip", "kill"]);
    stub.finish();
    assert!(out.contains("No more reverse-execution history"), "{out}");
    assert!(out.contains("kvmscope: going back: no checkpoint before the present"), "{out}");
    assert!(!out.contains("Breakpoint 1, "), "{out}");

    // The TSC read going forward again is not the first one's: said, at the exit it reaches.
    let stub = Stub::start("tsc.elf", true);
    let mut commands = vec!["monitor break-exit io 0x80 nth 3", "continue", "monitor delete-exit"];
    commands.extend(["stepi"; 6]);
    commands.extend(["reverse-stepi", "info registers rbx", "monitor timeline"]);
    commands.extend(["reverse-stepi", "info registers rbx"].repeat(5));
    commands.push("kill");
    let out = stub.gdb(Some("tsc.elf"), &commands);
    stub.finish();
    assert!(out.contains("kvmscope: going back: left the history at exit"), "{out}");
    assert!(out.contains("rdtsc"), "the kind of data said: {out}");
    assert!(out.contains("No more reverse-execution history"), "{out}");
    assert!(out.contains("the last going back failed: left the history"), "{out}");
    // Going back again runs rdtsc again: it parts from the path seen at the step after it,
    // before any exit — said there too.
    assert!(out.contains("step 2 after that exit, now at rip 0x200009 with other registers"), "{out}");
}

#[test]
fn reverse_continue_from_a_watchpoint_stops_before_the_write_it_stopped_after() {
    if !gdb_or_skip("reverse_continue_from_a_watchpoint_stops_before_the_write_it_stopped_after") {
        return;
    }
    // gdbtest's bump starts with `incl counter` (0x20001e); counter is at 0x201000. Stopped
    // just after call 2's write, going back meets that very write first (as gdb and rr have it),
    // not call 1's.
    let stub = Stub::start("gdbtest.elf", true);
    let mut commands = vec!["watch *(int *)0x201000", "continue", "continue", "p *(int *)0x201000"];
    commands.extend(["reverse-continue", "info registers rip", "p *(int *)0x201000"].repeat(2));
    commands.push("kill");
    let out = stub.gdb(Some("gdbtest.elf"), &commands);
    stub.finish();
    let (vals, rips) = printed(&out);
    assert_eq!(vals, ["2", "1", "0"], "{out}");
    assert_eq!(rips, ["0x20001e", "0x20001e"], "{out}");
}

#[test]
fn a_change_made_in_gdb_starts_another_future() {
    if !gdb_or_skip("a_change_made_in_gdb_starts_another_future") {
        return;
    }
    // gdbtest calls bump until counter is 5. Back at bump's second call (counter 1), counter is
    // set to 3: the calls after it are not those of the history any more — not "left the
    // history" — and going back into the new future starts from the changed state.
    let stub = Stub::start("gdbtest.elf", true);
    let out = stub.gdb(
        Some("gdbtest.elf"),
        &[
            "break bump",
            "continue",
            "continue",
            "continue",
            "reverse-continue",
            "p (int)counter",
            "set var *(int *)&counter = 3",
            "continue",
            "p (int)counter",
            "reverse-continue",
            "p (int)counter",
            "reverse-continue",
            "p (int)counter",
            "continue",
            "p (int)counter",
            "monitor checkpoints",
            "kill",
        ],
    );
    let (_, _, stderr) = stub.finish();
    let (vals, _) = printed(&out);
    // Back to call 2; the new future's next call (3 + 1); back to the change itself; back to
    // call 1; forward again to call 2, where the change is not made again.
    assert_eq!(vals, ["1", "4", "3", "0", "1"], "{out}\n{stderr}");
    assert!(!out.contains("left the history") && !out.contains("No more reverse-execution"), "{out}");
    assert!(out.lines().any(|l| l.starts_with('#') && l.contains(" changed ")), "the changed state is kept: {out}");
}

#[test]
fn a_long_reverse_command_answers_and_ctrl_c_or_gdb_leaving_stops_it() {
    if !gdb_or_skip("a_long_reverse_command_answers_and_ctrl_c_or_gdb_leaving_stops_it") {
        return;
    }
    // longrun: 300,000 rounds of `counter += 1; out` before `done`; round 50,000 stores `marker`.
    let stub = Stub::start("longrun.elf", true);
    let out = stub.gdb(
        Some("longrun.elf"),
        &[
            "set remotetimeout 120",
            "break done",
            "continue",
            "monitor checkpoints",
            "reverse-stepi",
            "info registers rip",
            "p *(long*)&counter",
            "delete",
            "watch *(long*)&marker",
            "reverse-continue",
            "p *(long*)&counter",
            "p *(long*)&marker",
            "kill",
        ],
    );
    let (_, _, stderr) = stub.finish();
    let (vals, rips) = printed(&out);
    assert_eq!(rips, ["0x20002c"], "just before `done`, on the last jump: {out}");
    // 250,000 rounds back, before the store: the counter at 50,000, the marker not yet written.
    assert_eq!(vals, ["300000", "50000", "0"], "{out}");
    // Checkpoints were taken while the guest ran (every 50 ms of running, by default) ...
    let kept: u64 = out.lines().find_map(|l| l.split(" checkpoints: ").next()?.trim().parse().ok()).unwrap_or(0);
    assert!(kept > 10, "checkpoints while running: {out}");
    // ... so the reverse-stepi went forward from the last of them, not from the start, and the
    // reverse-continue over the 250,000 exits back to the marker, not 300,000 twice.
    let again: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("kvmscope: ")?.split(" exits were made again").next()?.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(again < 300_000, "exits made again: {again}\n{stderr}");

    // Ctrl-C during a reverse-continue that goes back to the start: it stops where it is.
    let stub = Stub::start("longrun.elf", true);
    let commands = [
        "set remotetimeout 120",
        "break done",
        "continue",
        "delete",
        "reverse-continue",
        "info registers rip",
        "monitor timeline",
        "stepi",
        "kill",
    ];
    let (gdb, seen) = spawn_reading(stub.gdb_command(Some("longrun.elf"), &commands));
    // Once it stopped at `done` and has started back (about 5 s of going forward again).
    wait_for_line(&seen, "in done ()");
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(gdb.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let out = finish_reading(gdb, seen);
    stub.finish();
    assert!(started.elapsed() < Duration::from_secs(30), "gdb got its answer: {out}");
    assert!(out.contains("Program received signal SIGINT"), "{out}");
    assert!(out.contains("interrupted by the user"), "{out}");

    // gdb killed during one: the stub is free for the next gdb at once.
    let stub = Stub::start("longrun.elf", true);
    let commands = ["set remotetimeout 120", "monitor break-exit io 0x80 nth 300000", "continue", "reverse-continue"];
    let (mut gdb, seen) = spawn_reading(stub.gdb_command(None, &commands));
    wait_for_line(&seen, "SIGTRAP");
    std::thread::sleep(Duration::from_millis(1500));
    let _ = gdb.kill();
    let _ = finish_reading(gdb, seen);
    let out = stub.gdb(None, &["info registers rip", "kill"]);
    stub.finish();
    assert!(out.contains("rip "), "a second gdb attaches: {out}");
}

/// Starts `cmd` with its output read line by line as it comes.
fn spawn_reading(mut cmd: std::process::Command) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        std::io::BufReader::new(out).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l)))
    });
    std::thread::spawn(move || {
        std::io::BufReader::new(err).lines().map_while(Result::ok).for_each(|l| drop(tx2.send(l)))
    });
    (child, rx)
}

/// Waits (up to two minutes) for a line holding `text`.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100))
            && line.contains(text)
        {
            return;
        }
    }
    panic!("gdb never printed {text:?}");
}

/// Waits for `child` to end; everything it printed.
fn finish_reading(mut child: std::process::Child, lines: std::sync::mpsc::Receiver<String>) -> String {
    let _ = child.wait();
    lines.iter().collect::<Vec<_>>().join("\n")
}

#[test]
fn a_big_guest_attaches_as_fast_as_a_small_one_with_the_readmes_recipe() {
    if !gdb_or_skip("a_big_guest_attaches_as_fast_as_a_small_one_with_the_readmes_recipe") {
        return;
    }
    for mem in ["256M", "4G"] {
        let stub = Stub::start_with("gdbtest.elf", true, "0", &["--mem", mem]);
        let started = Instant::now();
        // As the README has it: `set remotetimeout` after `target remote`.
        let mut cmd = std::process::Command::new("gdb");
        cmd.args(["-batch", "-nx", "-ex", &format!("target remote {}", stub.addr), "-ex", "set remotetimeout 60"]);
        for c in ["monitor checkpoints", "stepi", "reverse-stepi", "info registers rip"] {
            cmd.args(["-ex", c]);
        }
        let rss = resident_kib(stub.child.id());
        let o = cmd.output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        let rss = rss.max(resident_kib(stub.child.id()));
        stub.interrupt();
        stub.finish();
        assert!(started.elapsed() < Duration::from_secs(20), "--mem {mem}: {:?}\n{out}", started.elapsed());
        assert!(out.contains("rip            0x200000"), "--mem {mem}: {out}");
        assert!(out.contains("KiB held of a 2G budget"), "--mem {mem}: {out}");
        assert!(rss < 200 << 10, "--mem {mem}: {rss} KiB resident");
    }
}

#[test]
fn summaries_count_each_exit_once_and_a_restore_takes_equal_options() {
    if !gdb_or_skip("summaries_count_each_exit_once_and_a_restore_takes_equal_options") {
        return;
    }
    let plain = run_headless(&["--kernel", guest("gdbtest.elf").to_str().unwrap(), "--summary", "json"]);
    let guests = |s: &serde_json::Value| s["by_reason"]["io"].as_u64();
    let exits = guests(&plain.summary());
    let snap = std::env::temp_dir().join(format!("kvmscope-rg-{}.snap", std::process::id()));
    let stub = Stub::start_with("gdbtest.elf", true, "0", &["--summary", "json"]);
    let out = stub.gdb(
        Some("gdbtest.elf"),
        &[
            "break bump",
            "continue",
            "continue",
            "continue",
            "reverse-continue",
            "reverse-continue",
            &format!("monitor snapshot {}", snap.display()),
            "delete",
            "continue",
        ],
    );
    let (status, _, stderr) = stub.finish();
    assert_eq!(status, 11, "{out}\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    // The guest's port exits once each (the breakpoints' and steps' own exits are gdb's).
    assert_eq!(guests(&summary), exits, "each exit once, however often it was made again:\n{stderr}");
    assert!(stderr.contains("exits were made again going back in time"), "{stderr}");
    // The snapshot's machine ran with the default memory and vCPUs: saying so is no change.
    let run: Run = kvmscope()
        .args(["run", "--headless", "--mem", "256M", "--cpus", "1", "--restore"])
        .arg(&snap)
        .output()
        .unwrap()
        .into();
    assert_eq!(run.status, 11, "{}", run.stderr);
    let _ = std::fs::remove_file(snap);
}

#[test]
fn a_disk_goes_back_with_every_checkpoint_after_a_reverse_continue() {
    if !gdb_or_skip("a_disk_goes_back_with_every_checkpoint_after_a_reverse_continue") {
        return;
    }
    let disk = std::env::temp_dir().join(format!("kvmscope-rg-{}.img", std::process::id()));
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    // The virtio guest's `rounds`: round N fills sector 2 with N, writes it, then writes N to port 0x80.
    // Checkpoints by exits, none of kvmscope's own in these few hundred: the numbers are known.
    let args = [
        "--disk",
        disk.to_str().unwrap(),
        "--virtio",
        "rng,console",
        "--cmdline",
        "rounds",
        "--checkpoint-every",
        "100000",
    ];
    let sector2 = format!("shell od -An -tu1 -j1024 -N1 {}", disk.display());
    let stub = Stub::start_with("virtio.elf", true, "0", &args);
    let out = stub.gdb(
        None,
        &[
            "set remotetimeout 60",
            "monitor break-exit io 0x80",
            "continue",
            "monitor checkpoint",
            "continue",
            "monitor checkpoint",
            "continue",
            &sector2,
            "monitor delete-exit",
            "reverse-continue",
            &sector2,
            "monitor break-exit io 0x80",
            "continue",
            "continue",
            "continue",
            &sector2,
            "monitor checkpoints",
            "monitor restore 2",
            &sector2,
            "monitor restore 3",
            "kill",
        ],
    );
    stub.finish();
    let bytes: Vec<&str> =
        out.lines().map(str::trim).filter(|l| l.len() == 1 && l.chars().all(|c| c.is_ascii_digit())).collect();
    // Round 3 written; back at the start (zeros); rounds again to 3; checkpoint 2 was at round 1.
    assert_eq!(bytes, ["3", "0", "3", "1"], "sector 2's first byte at each look:\n{out}");
    assert!(out.contains("back at checkpoint #2"), "{out}");
    let _ = std::fs::remove_file(disk);
}

#[test]
fn instructions_kvmscope_finishes_for_the_host_are_gone_back_over() {
    if !gdb_or_skip("instructions_kvmscope_finishes_for_the_host_are_gone_back_over") {
        return;
    }
    // emulate: `jae fail` (0x20009e), `mov $5, %r15` (0x2000a4), `clac` (0x2000ab, finished by
    // kvmscope on a host that cannot emulate it).
    let stub = Stub::start("emulate.elf", true);
    let out = stub.gdb(
        None,
        &[
            "break *0x2000ae",
            "continue",
            "reverse-stepi",
            "info registers rip",
            "reverse-stepi",
            "info registers rip",
            "reverse-stepi",
            "info registers rip",
            "delete",
            "monitor break-exit reason internal_error",
            "continue",
            "monitor timeline",
            "kill",
        ],
    );
    stub.finish();
    let (_, rips) = printed(&out);
    assert_eq!(rips, ["0x2000ab", "0x2000a4", "0x20009e"], "{out}");
    if is_pvm() {
        // lock cmpxchg16b, the next instruction the host cannot emulate, stops at its exit
        // breakpoint (finished by kvmscope first).
        assert!(out.contains("Program received signal SIGTRAP"), "{out}");
        assert!(!out.contains("exited with code"), "{out}");
    }
}

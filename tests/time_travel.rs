//! Going back in time: real gdb's reverse-continue, reverse-stepi and a watchpoint hit backwards
//! on the project's looping guest; checkpoints taken and restored; snapshots written by gdb and
//! restored by `run --restore` (with a disk too), finishing as an uninterrupted run does; and what
//! is refused — damaged snapshots, another machine's options, a checkpoint that is not there.

mod common;

use std::path::PathBuf;

use common::gdb_stub::*;
use common::*;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("kvmscope-tt-{}-{name}", std::process::id()))
}

#[test]
fn gdb_goes_back_over_breakpoints_steps_and_a_watchpoint_then_runs_to_the_end() {
    if !gdb_or_skip("gdb_goes_back_over_breakpoints_steps_and_a_watchpoint_then_runs_to_the_end") {
        return;
    }
    // gdbtest: `_start` calls `bump` five times; `bump` adds one to `counter` and writes a dot to
    // the serial port; the run ends with the counter through isa-debug-exit (status 11).
    let stub = Stub::start("gdbtest.elf", true);
    let out = stub.gdb(
        Some("gdbtest.elf"),
        &[
            "set remotetimeout 60",
            "monitor timeline",
            "break bump",
            "continue",
            "continue",
            "continue",
            "p *(int*)&counter",
            "reverse-continue",
            "p *(int*)&counter",
            "stepi",
            "info registers rip",
            "p $rdx",
            "reverse-stepi",
            "info registers rip",
            "p *(int*)&counter",
            "stepi",
            "info registers rip",
            "p $rdx",
            "reverse-stepi",
            "reverse-stepi",
            "info registers rip",
            "delete",
            "watch *(int*)&counter",
            "reverse-continue",
            "p *(int*)&counter",
            "info registers rip",
            "delete",
            "monitor timeline",
            "continue",
        ],
    );
    let (status, stdout, stderr) = stub.finish();
    assert!(out.contains("1 checkpoint(s), the first at exit 0"), "one taken as gdb attached:\n{out}");
    let (vals, rips) = printed(&out);
    // Third hit: counter 2; back to the second: 1.
    assert_eq!(vals[..2], ["2", "1"], "{out}");
    // stepi then reverse-stepi: the same place and registers.
    assert_eq!(rips[..2], ["0x200024", "0x20001e"], "bump+6, then back at bump: {out}");
    assert_eq!(vals[3], "1", "the counter as it was: {out}");
    assert_eq!((rips[2].as_str(), vals[2].as_str(), vals[4].as_str()), ("0x200024", "1016", "1016"), "{out}");
    // Two instructions back from bump+6: before bump, in _start (the call).
    assert_eq!(rips[3], "0x200007", "{out}");
    // Backwards, a write watchpoint stops at the write that made the value, before it.
    assert!(out.contains("Old value = 1") && out.contains("New value = 0"), "{out}");
    assert_eq!((vals[5].as_str(), rips[4].as_str()), ("0", "0x20001e"), "{out}");
    // Then on to the guest's normal end, its output written once (the past gone over is muted).
    assert!(out.contains("exited with code 013"), "{out}");
    assert_eq!(status, 11, "{stderr}");
    assert_eq!(stdout, "..".to_string() + ".....", "two dots before going back, five after:\n{stderr}");
}

/// Runs hello to its end; (stdout, status, exits).
fn uninterrupted(guest_file: &str, extra: &[&str]) -> (String, i32, u64) {
    let kernel = guest(guest_file);
    let run = run_headless(&[&["--kernel", kernel.to_str().unwrap(), "--summary", "json"], extra].concat());
    (run.stdout.clone(), run.status, run.summary()["exits"].as_u64().unwrap())
}

#[test]
fn a_snapshot_taken_in_gdb_and_restored_finishes_as_an_uninterrupted_run() {
    if !gdb_or_skip("a_snapshot_taken_in_gdb_and_restored_finishes_as_an_uninterrupted_run") {
        return;
    }
    let (whole, whole_status, whole_exits) = uninterrupted("hello.elf", &[]);
    let snap = temp("hello.snap");
    let stub = Stub::start("hello.elf", true);
    let out = stub.gdb(
        None,
        &[
            "set remotetimeout 60",
            "monitor break-exit io 0x3f8 nth 20",
            "continue",
            &format!("monitor snapshot {}", snap.display()),
            "kill",
        ],
    );
    assert!(out.contains("wrote ") && out.contains("after exit 40"), "{out}");
    let (_, before, _) = stub.finish();
    let run = kvmscope().args(["run", "--headless", "--summary", "json", "--restore"]).arg(&snap).output().unwrap();
    let run: Run = run.into();
    // The rest of the output, the same status, the same exits in all.
    assert_eq!(before.clone() + &run.stdout, whole, "stderr: {}", run.stderr);
    assert_eq!(run.status, whole_status, "{}", run.stderr);
    assert_eq!(40 + run.summary()["exits"].as_u64().unwrap(), whole_exits, "{}", run.stderr);
    // A snapshot keeps the pages that are not zeros: small for a small guest.
    let size = std::fs::metadata(&snap).unwrap().len();
    assert!(size < 1 << 20, "{size} bytes");
    let _ = std::fs::remove_file(snap);
}

#[test]
fn a_snapshot_with_a_disk_comes_back_with_the_disk_as_it_was() {
    if !gdb_or_skip("a_snapshot_with_a_disk_comes_back_with_the_disk_as_it_was") {
        return;
    }
    let disk = |name: &str| {
        let p = temp(name);
        std::fs::write(&p, vec![0u8; 1 << 20]).unwrap();
        p
    };
    let (whole_disk, split_disk, snap) = (disk("whole.img"), disk("split.img"), temp("disk.snap"));
    let devices =
        |d: &PathBuf| vec!["--disk".to_string(), d.display().to_string(), "--virtio".into(), "rng,console".into()];
    let whole = devices(&whole_disk);
    let whole: Vec<&str> = whole.iter().map(String::as_str).collect();
    let (whole_out, whole_status, _) = uninterrupted("virtio.elf", &whole);
    assert_eq!(whole_status, 99, "{whole_out}");
    // Stopped at the driver's second queue notification: the write of sector 2 is under way.
    let split = devices(&split_disk);
    let split: Vec<&str> = split.iter().map(String::as_str).collect();
    let stub = Stub::start_with("virtio.elf", true, "0", &split);
    let out = stub.gdb(
        None,
        &[
            "set remotetimeout 60",
            "monitor break-exit mmio 0xd0000050 nth 2",
            "continue",
            &format!("monitor snapshot {}", snap.display()),
            "kill",
        ],
    );
    assert!(out.contains("wrote "), "{out}");
    stub.finish();
    let run: Run = kvmscope().args(["run", "--headless", "--restore"]).arg(&snap).output().unwrap().into();
    assert_eq!(run.status, 99, "every check of the guest passed after the restore:\n{}\n{}", run.stdout, run.stderr);
    assert_eq!(std::fs::read(&split_disk).unwrap(), std::fs::read(&whole_disk).unwrap(), "the same disk");
    // The snapshot names the disk it needs.
    std::fs::remove_file(&split_disk).unwrap();
    let missing: Run = kvmscope().args(["run", "--headless", "--restore"]).arg(&snap).output().unwrap().into();
    assert_eq!(missing.status, 2, "{}", missing.stderr);
    assert!(missing.stderr.contains(&split_disk.display().to_string()), "{}", missing.stderr);
    for f in [whole_disk, snap] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn a_disk_goes_back_with_the_checkpoint_and_the_guest_writes_it_again() {
    if !gdb_or_skip("a_disk_goes_back_with_the_checkpoint_and_the_guest_writes_it_again") {
        return;
    }
    let (disk, zero) = (temp("undo.img"), temp("undo-zero.img"));
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    std::fs::write(&zero, vec![0u8; 1 << 20]).unwrap();
    let args = ["--disk", disk.to_str().unwrap(), "--virtio", "rng,console"];
    let (_, whole_status, _) = uninterrupted("virtio.elf", &args);
    assert_eq!(whole_status, 99);
    let written = std::fs::read(&disk).unwrap();
    assert_ne!(written, vec![0u8; 1 << 20], "the guest writes its disk");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let compare =
        format!("shell cmp -s {} {} && echo DISK-AS-AT-START || echo DISK-WRITTEN", disk.display(), zero.display());
    let stub = Stub::start_with("virtio.elf", true, "0", &args);
    let out = stub.gdb(
        None,
        &[
            "set remotetimeout 60",
            // Past the driver's writes (checkpoint #1 was taken at gdb's attach, at exit 0).
            "monitor break-exit mmio 0xd0000050 nth 3",
            "continue",
            "monitor checkpoint",
            &compare,
            "monitor checkpoints",
            "monitor restore 1",
            &compare,
            "monitor delete-exit",
            "continue",
        ],
    );
    let (status, _, stderr) = stub.finish();
    let said: Vec<&str> = out.lines().filter(|l| l.starts_with("DISK-")).collect();
    assert_eq!(said, ["DISK-WRITTEN", "DISK-AS-AT-START"], "{out}");
    assert!(out.contains("the disks' undo logs"), "the log's size is shown: {out}");
    assert_eq!(status, 99, "the guest ran again from the start and every check passed: {stderr}");
    assert_eq!(std::fs::read(&disk).unwrap(), written, "and wrote its disk again");
    for f in [disk, zero] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn going_back_a_read_of_the_clock_gets_the_value_it_read_the_first_time() {
    if !gdb_or_skip("going_back_a_read_of_the_clock_gets_the_value_it_read_the_first_time") {
        return;
    }
    let stub = Stub::start("clock.elf", true);
    let out = stub.gdb(
        None,
        &[
            "set remotetimeout 60",
            // Stopped after the third POST write: AL holds the third reading of the seconds.
            "monitor break-exit io 0x80 nth 3",
            "continue",
            "p/x $al",
            "shell sleep 1.2",
            // From the checkpoint at gdb's attach, forward again past three clock reads: a second
            // later each read must get what it got then, or AL would hold another value.
            "reverse-stepi",
            "stepi",
            "p/x $al",
            "monitor timeline",
            "monitor delete-exit",
            "continue",
        ],
    );
    let (status, _, stderr) = stub.finish();
    let (vals, _) = printed(&out);
    assert_eq!(vals.len(), 2, "{out}");
    assert_eq!(vals[0], vals[1], "the same seconds as the first time: {out}");
    assert!(!out.contains("diverged") && !out.contains("another path"), "{out}");
    assert_eq!(status, 3, "{stderr}");
}

#[test]
fn checkpoints_in_gdb_go_back_and_bad_requests_are_refused_with_the_vm_unharmed() {
    if !gdb_or_skip("checkpoints_in_gdb_go_back_and_bad_requests_are_refused_with_the_vm_unharmed") {
        return;
    }
    let stub = Stub::start("gdbtest.elf", true);
    let out = stub.gdb(
        Some("gdbtest.elf"),
        &[
            "set remotetimeout 60",
            "monitor restore 99",
            "reverse-stepi",
            "break bump",
            "continue",
            "continue",
            "monitor checkpoint",
            "p *(int*)&counter",
            "continue",
            "continue",
            "p *(int*)&counter",
            "monitor checkpoints",
            "monitor restore 2",
            "maintenance flush register-cache",
            "p *(int*)&counter",
            "info registers rip",
            "delete",
            "continue",
        ],
    );
    let (status, stdout, stderr) = stub.finish();
    assert!(out.contains("error: no checkpoint #99 (monitor checkpoints lists them)"), "{out}");
    assert!(out.contains("No more reverse-execution history"), "nothing before the start: {out}");
    assert!(out.contains("checkpoint #2 at rip 0x20001e after exit 1"), "{out}");
    assert!(out.contains("back at checkpoint #2: at rip 0x20001e after exit 1"), "{out}");
    let (vals, rips) = printed(&out);
    assert_eq!(vals, ["1", "3", "1"], "the counter back as it was at the checkpoint: {out}");
    assert_eq!(rips, ["0x20001e"], "{out}");
    assert_eq!(status, 11, "{stderr}");
    assert!(stdout.ends_with("....."), "{stdout}");
}

#[test]
fn damaged_snapshots_and_another_machines_options_are_refused() {
    if !gdb_or_skip("damaged_snapshots_and_another_machines_options_are_refused") {
        return;
    }
    let snap = temp("bad.snap");
    let stub = Stub::start("hello.elf", true);
    stub.gdb(None, &["set remotetimeout 60", &format!("monitor snapshot {}", snap.display()), "kill"]);
    stub.finish();
    let good = std::fs::read(&snap).unwrap();
    let restore = |extra: &[&str]| -> Run {
        kvmscope().args(["run", "--headless", "--restore"]).arg(&snap).args(extra).output().unwrap().into()
    };
    let run = restore(&[]);
    assert_eq!(run.status, 33, "the good one runs: {}", run.stderr);
    let run = restore(&["--mem", "512M"]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--mem 512M: the snapshot's machine has"), "{}", run.stderr);
    let run = restore(&["--cpus", "2"]);
    assert!(run.status == 2 && run.stderr.contains("--cpus 2: the snapshot's machine has"), "{}", run.stderr);
    // The file's options are checked before a machine is built: a terabyte is refused at once.
    let started = std::time::Instant::now();
    let run = restore(&["--mem", "1T"]);
    assert!(run.status == 2 && run.stderr.contains("--mem 1T: the snapshot's machine has"), "{}", run.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "refused after {:?}", started.elapsed());
    let cut = good.len() / 2;
    std::fs::write(&snap, &good[..cut]).unwrap();
    let run = restore(&[]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("damaged at byte"), "{}", run.stderr);
    let mut flipped = good.clone();
    let at = good.len() - 100;
    flipped[at] ^= 0x40;
    std::fs::write(&snap, &flipped).unwrap();
    let run = restore(&[]);
    assert!(run.status == 2 && run.stderr.contains("checksum does not match"), "{}", run.stderr);
    let mut newer = good.clone();
    newer[18] = 7;
    std::fs::write(&snap, &newer).unwrap();
    let run = restore(&[]);
    assert!(run.stderr.contains("snapshot format version 7; this kvmscope reads version 1"), "{}", run.stderr);
    std::fs::write(&snap, b"not a snapshot").unwrap();
    assert!(restore(&[]).stderr.contains("not a kvmscope snapshot"));
    let _ = std::fs::remove_file(snap);
}

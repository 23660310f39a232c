//! Recordings anyone can re-execute: `run --record FILE --replayable`, moved elsewhere with the
//! guest's image and disk deleted, re-executed by `replay FILE --exec` — headless to the same end
//! and status, with gdb going backwards inside it — and a recording whose inputs were changed
//! diverges loudly, one damaged is refused.

mod common;

use std::path::{Path, PathBuf};

use common::gdb_stub::{gdb_or_skip, printed};
use common::*;
use kvmscope::recording::format::{encode_chunk, encode_header};
use kvmscope::recording::{Record, TraceReader};
use kvmscope::trace::{Dir, ExitKind};

/// A directory of the test's own.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kvmscope-replayable-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Records `guest` (copied into a directory of its own, with `extra` options run there)
/// replayable; the recording, moved to another directory, with the guest's directory deleted.
fn record_and_move(name: &str, guest_file: &str, extra: &[&str], want_status: i32) -> PathBuf {
    let here = dir(&format!("{name}-recorded"));
    std::fs::copy(guest(guest_file), here.join(guest_file)).unwrap();
    let out = kvmscope()
        .current_dir(&here)
        .args(["run", "--headless", "--summary", "none", "--kernel", guest_file, "--record", "run.trace"])
        .arg("--replayable")
        .args(extra)
        .output()
        .unwrap();
    let run = Run::from(out);
    assert_eq!(run.status, want_status, "{}", run.stderr);
    let elsewhere = dir(&format!("{name}-elsewhere"));
    let moved = elsewhere.join("run.trace");
    std::fs::rename(here.join("run.trace"), &moved).unwrap();
    std::fs::remove_dir_all(&here).unwrap();
    moved
}

fn replay_headless(trace: &Path) -> Run {
    kvmscope().args(["replay", "--exec", "--headless", "--summary", "none"]).arg(trace).output().unwrap().into()
}

#[test]
fn the_clock_guest_is_re_executed_elsewhere_with_the_values_it_read() {
    if !kvm_or_skip("the_clock_guest_is_re_executed_elsewhere_with_the_values_it_read") {
        return;
    }
    // clock writes each CMOS seconds value it reads to port 0x80: a second later, only the
    // recorded values make the same writes.
    let trace = record_and_move("clock", "clock.elf", &[], 3);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let run = replay_headless(&trace);
    assert_eq!(run.status, 3, "the recorded run's status: {}", run.stderr);
    assert!(
        run.stderr.contains("replay --exec: followed the recording exactly: 13 exits, the last io 0xf4"),
        "{}",
        run.stderr
    );
    // The recording still reads as any other.
    let stats = kvmscope().args(["stats", "--json"]).arg(&trace).output().unwrap();
    let s: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(s["exits"], 13, "{s}");

    // The second read made to return another value (the chunk re-encoded, its checksum right):
    // the guest writes that value, not the recorded one, and that is said.
    let changed = trace.with_file_name("changed.trace");
    rewrite(&trace, &changed, |kind, nth_read| {
        if let ExitKind::Io { port: 0x71, dir: Dir::In, data, .. } = kind
            && nth_read == 1
        {
            *data = (*data + 1) & 0x59;
        }
    });
    let run = replay_headless(&changed);
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert!(run.stderr.contains("replay --exec: left the recording at exit 6 of 13: io 0x80 at rip"), "{}", run.stderr);

    // A damaged recording is refused before anything runs.
    let mut bytes = std::fs::read(&trace).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&changed, &bytes).unwrap();
    let run = replay_headless(&changed);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("replay --exec:"), "{}", run.stderr);
    let _ = std::fs::remove_dir_all(trace.parent().unwrap());
}

/// Writes `from` again to `to` with `change` applied to each exit's kind (with how many port
/// 0x71 reads came before it).
fn rewrite(from: &Path, to: &Path, mut change: impl FnMut(&mut ExitKind, usize)) {
    let mut reader = TraceReader::open(from).unwrap();
    let mut out = encode_header(&reader.header);
    let mut reads = 0;
    while let Some((_, mut records)) = reader.next_chunk().unwrap() {
        for r in &mut records {
            if let Record::Exit(e) = r {
                let is_read = matches!(e.kind, ExitKind::Io { port: 0x71, dir: Dir::In, .. });
                change(&mut e.kind, reads);
                reads += usize::from(is_read);
            }
        }
        out.extend(encode_chunk(&records));
    }
    std::fs::write(to, out).unwrap();
}

#[test]
fn a_disk_guest_is_re_executed_with_its_disk_deleted() {
    if !kvm_or_skip("a_disk_guest_is_re_executed_with_its_disk_deleted") {
        return;
    }
    // The virtio guest writes, flushes and reads back sectors of its disk: the recording carries
    // the disk as it was at the start.
    let disk = std::env::temp_dir().join(format!("kvmscope-replayable-disk-{}.img", std::process::id()));
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let trace =
        record_and_move("disk", "virtio.elf", &["--disk", disk.to_str().unwrap(), "--virtio", "rng,console"], 99);
    std::fs::remove_file(&disk).unwrap();
    let run = replay_headless(&trace);
    assert_eq!(run.status, 99, "{}", run.stderr);
    assert!(run.stdout.contains("virtio: all checks passed"), "{}", run.stdout);
    assert!(run.stderr.contains("followed the recording exactly"), "{}", run.stderr);
    // A machine with a network card cannot be recorded so: what it receives is not recorded.
    let refused = kvmscope()
        .args(["run", "--headless", "--kernel", guest("net.elf").to_str().unwrap(), "--net", "tap=kvmsrp0"])
        .args(["--record", trace.to_str().unwrap(), "--replayable"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    // Nor is a recording without its start re-executable, which is said.
    let plain = trace.with_file_name("plain.trace");
    let out = kvmscope()
        .args(["run", "--headless", "--summary", "none", "--kernel", guest("hello.elf").to_str().unwrap(), "--record"])
        .arg(&plain)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(33));
    let run = replay_headless(&plain);
    assert!(run.status == 2 && run.stderr.contains("is not a replayable recording"), "{}", run.stderr);
    let _ = std::fs::remove_dir_all(trace.parent().unwrap());
}

#[test]
fn gdb_goes_backwards_inside_a_re_executed_recording() {
    if !gdb_or_skip("gdb_goes_backwards_inside_a_re_executed_recording") {
        return;
    }
    // longrun: 300,000 rounds of `counter += 1; out`, round 50,000 stores `marker`; its symbols
    // from the project's build (the recording needs no image, gdb wants one for the names).
    let trace = record_and_move("longrun", "longrun.elf", &[], 15);
    let mut child = kvmscope()
        .args(["replay", "--exec", "--gdb", "127.0.0.1:0", "--gdb-wait", "--headless", "--summary", "none"])
        .arg(&trace)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = read_stub_address(&mut child);
    let out = std::process::Command::new("gdb")
        .args(["-batch", "-nx", "-ex", &format!("file {}", guest("longrun.elf").display())])
        .args(["-ex", &format!("target remote {addr}"), "-ex", "set remotetimeout 120"])
        .args(["-ex", "break done", "-ex", "continue", "-ex", "p *(long*)&counter"])
        .args(["-ex", "delete", "-ex", "watch *(long*)&marker", "-ex", "reverse-continue"])
        .args(["-ex", "p *(long*)&counter", "-ex", "p *(long*)&marker", "-ex", "kill"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let _ = child.wait();
    let (vals, _) = printed(&out);
    assert_eq!(vals, ["300000", "50000", "0"], "{out}");
    let _ = std::fs::remove_dir_all(trace.parent().unwrap());
}

/// The stub's address from kvmscope's "target remote ADDR" line.
fn read_stub_address(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let err = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(err).lines();
    let addr = loop {
        let line = lines.next().expect("kvmscope announces the stub").unwrap();
        if let Some(rest) = line.split("target remote ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // The rest of stderr drained, so that kvmscope never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    addr
}

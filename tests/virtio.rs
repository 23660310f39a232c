//! The virtio devices with a real driver: the project's guest (assets/guests/virtio.mb.c) negotiates
//! virtio-blk, virtio-rng and virtio-console, writes, flushes and reads back a `--disk`; trapped and
//! `--ioeventfd` notifications compared; a driver that breaks the rules; data flushed before a
//! SIGKILL; device events in the recording, `stats` and the exports; gdb's `monitor virtio`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::gdb_stub::*;
use common::*;

/// What the guest writes at sector 2 (then its own byte pattern).
const MARK: &[u8] = b"kvmscope virtio-blk: written by the guest, sector 2";
/// isa-debug-exit 0x31: every check passed.
const PASSED: i32 = 99;

/// A fresh 1 MiB disk image for one test.
fn disk(test: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("kvmscope-{test}-{}.img", std::process::id()));
    std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
    path
}

fn run_virtio_guest(disk: &std::path::Path, extra: &[&str]) -> Run {
    let kernel = guest("virtio.elf");
    let disk_arg = disk.to_str().unwrap();
    let mut args = vec!["--kernel", kernel.to_str().unwrap(), "--disk", disk_arg, "--virtio", "rng,console"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--timeout", "60", "--summary", "json"]);
    run_headless(&args)
}

/// The summary's `virtio` row of one device and queue.
fn row<'a>(summary: &'a serde_json::Value, device: &str, queue: u64) -> &'a serde_json::Value {
    summary["virtio"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["device"] == device && r["queue"] == queue)
        .unwrap_or_else(|| panic!("no virtio row {device} q{queue} in {}", summary["virtio"]))
}

#[test]
fn project_guest_drives_blk_rng_and_console() {
    if !kvm_or_skip("project_guest_drives_blk_rng_and_console") {
        return;
    }
    let disk = disk("drives");
    let run = run_virtio_guest(&disk, &["--trace"]);
    assert_eq!(run.status, PASSED, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    // Each queue notify is the driver's store to QueueNotify (offset 0x50), decoded as that store:
    // RIP is past it here, and the byte before RIP alone (`push`) also writes 4 bytes.
    let notifies: Vec<&str> = run.stderr.lines().filter(|l| l.contains("mmio           write 0xd0000050")).collect();
    assert_eq!(notifies.len(), 5, "{}", run.stderr);
    for line in notifies {
        assert!(line.contains("  mov [") && line.contains("+50h],"), "the notify's store: {line}");
    }
    // --trace is in time order: each device's notify line follows the exit that made it.
    let lines: Vec<&str> = run.stderr.lines().collect();
    for (i, line) in lines.iter().enumerate().filter(|(_, l)| l.contains("notify (trapped)")) {
        assert!(lines[i - 1].starts_with('#') && lines[i - 1].contains("050 4="), "{}\n{line}", lines[i - 1]);
    }
    for line in [
        "virtio-blk: wrote, flushed and read back 8 sectors",
        "virtio-rng: 32 bytes of entropy",
        "virtio-console: hello from the guest", // through virtio-console, to the same console
        "virtio: all checks passed",
    ] {
        assert!(run.stdout.contains(line), "{line:?} missing from:\n{}", run.stdout);
    }
    assert!(run.stderr.contains("virtio-blk0 (virtio-blk) at 0xd0000000-0xd0000fff, irq 5"), "{}", run.stderr);
    // The disk file holds what the guest wrote at sector 2.
    let bytes = std::fs::read(&disk).unwrap();
    assert_eq!(&bytes[1024..1024 + MARK.len()], MARK);
    assert_eq!(bytes[1024 + 512..1024 + 512 + MARK.len() - 1], MARK[..MARK.len() - 1], "sector 3 too");
    let s = run.summary();
    // GET_ID, write, flush, read, the read beyond the disk: five requests, each a trapped notify.
    let blk = row(&s, "virtio-blk0", 0);
    assert_eq!((blk["notifies_trapped"].as_u64(), blk["completed"].as_u64()), (Some(5), Some(5)), "{blk}");
    assert_eq!(blk["errors"], 1, "the read beyond the disk: {blk}");
    assert_eq!(mmio_count(&s, 0xd000_0050, "write"), 5, "each notification is an MMIO exit");
    assert_eq!(row(&s, "virtio-rng", 0)["completed"], 1);
    assert_eq!(row(&s, "virtio-console", 1)["completed"], 1);
    let _ = std::fs::remove_file(disk);
}

#[test]
fn ioeventfd_notifications_skip_userspace_exits() {
    if !kvm_or_skip("ioeventfd_notifications_skip_userspace_exits") {
        return;
    }
    let (a, b) = (disk("trapped"), disk("eventfd"));
    let trapped = run_virtio_guest(&a, &[]);
    let eventfd = run_virtio_guest(&b, &["--ioeventfd"]);
    assert_eq!((trapped.status, eventfd.status), (PASSED, PASSED), "{}\n{}", trapped.stderr, eventfd.stderr);
    assert!(eventfd.stderr.contains("notifications by KVM_IOEVENTFD"), "{}", eventfd.stderr);
    let (t, e) = (trapped.summary(), eventfd.summary());
    let blk = row(&e, "virtio-blk0", 0);
    assert_eq!((blk["notifies_trapped"].as_u64(), blk["notifies_ioeventfd"].as_u64()), (Some(0), Some(5)), "{blk}");
    assert_eq!(mmio_count(&e, 0xd000_0050, "write"), 0, "no notify reached userspace");
    // Seven notifications in all (blk 5, rng 1, console 1): seven userspace exits fewer.
    let notifies: u64 = e["virtio"].as_array().unwrap().iter().map(|r| r["notifies_ioeventfd"].as_u64().unwrap()).sum();
    assert_eq!(notifies, 7);
    let mmio = |s: &serde_json::Value| s["by_reason"]["mmio"].as_u64().unwrap();
    assert_eq!(mmio(&t) - mmio(&e), 7, "trapped {} vs ioeventfd {}", mmio(&t), mmio(&e));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "the same disk either way");
    let _ = (std::fs::remove_file(a), std::fs::remove_file(b));
}

#[test]
fn a_driver_breaking_the_rules_is_refused_and_the_vmm_lives() {
    if !kvm_or_skip("a_driver_breaking_the_rules_is_refused_and_the_vmm_lives") {
        return;
    }
    let disk = disk("hostile");
    let run = run_virtio_guest(&disk, &["--cmdline", "hostile", "--trace"]);
    // Exit 0x32: every refusal the guest checked for happened.
    assert_eq!(run.status, 101, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    for problem in [
        "FEATURES_OK refused: the driver did not accept VERSION_1",
        "queue size 3 refused",
        "rings outside guest RAM",
        "notify for queue 7, which is not ready",
        "broken chain after 8 descriptors",
        "buffer 0xd0000000+0x40 is outside guest RAM; device marked DEVICE_NEEDS_RESET",
        "a read request with a buffer the device cannot write",
        "invalid available ring index",
    ] {
        assert!(run.stderr.contains(problem), "no event for {problem:?} in:\n{}", run.stderr);
    }
    let _ = std::fs::remove_file(disk);
}

#[test]
fn what_the_guest_flushed_survives_a_sigkill() {
    if !kvm_or_skip("what_the_guest_flushed_survives_a_sigkill") {
        return;
    }
    let disk = disk("sigkill");
    let mut child = kvmscope()
        .args(["run", "--headless", "--kernel", guest("virtio.elf").to_str().unwrap()])
        .args(["--disk", disk.to_str().unwrap(), "--virtio", "rng,console", "--cmdline", "spin-after-flush"])
        .args(["--timeout", "60", "--summary", "none"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let flushed = lines.any(|l| l.is_ok_and(|l| l.contains("virtio: flushed")));
    assert!(flushed && started.elapsed() < Duration::from_secs(60), "the guest never said it flushed");
    child.kill().unwrap(); // SIGKILL: no destructor, no flush of kvmscope's own
    child.wait().unwrap();
    let bytes = std::fs::read(&disk).unwrap();
    assert_eq!(&bytes[1024..1024 + MARK.len()], MARK, "the flushed sectors are in the file");
    let _ = std::fs::remove_file(disk);
}

#[test]
fn device_events_are_recorded_counted_and_exported() {
    if !kvm_or_skip("device_events_are_recorded_counted_and_exported") {
        return;
    }
    let disk = disk("record");
    let trace = std::env::temp_dir().join(format!("kvmscope-virtio-{}.trace", std::process::id()));
    let run = run_virtio_guest(&disk, &["--record", trace.to_str().unwrap()]);
    assert_eq!(run.status, PASSED, "{}", run.stderr);
    let stats = kvmscope().args(["stats", "--json"]).arg(&trace).output().unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("stats --json prints JSON");
    assert_eq!(stats["virtio"], run.summary()["virtio"], "stats on the recording agree with the live run");
    let text = kvmscope().args(["stats"]).arg(&trace).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("virtio devices:"));
    let jsonl = kvmscope().args(["export", "--format", "jsonl"]).arg(&trace).output().unwrap();
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&jsonl.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // In time order: each trapped notify right after the exit that made it.
    let times: Vec<u64> = rows.iter().map(|r| r["t_ns"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "exports are in time order");
    for (i, r) in rows.iter().enumerate().filter(|(_, r)| r["what"] == "notify") {
        let before = &rows[i - 1];
        let queue_notify = before["addr"].as_u64().map(|a| a & 0xfff);
        assert_eq!((before["record"].as_str(), queue_notify), (Some("exit"), Some(0x50)), "{r}");
    }
    let events: Vec<serde_json::Value> = rows.into_iter().filter(|v| v["record"] == "device").collect();
    let read = events.iter().find(|e| e["what"] == "taken" && e["request"] == "read sector 2 len 4096");
    assert!(read.is_some_and(|e| e["device"] == "virtio-blk0" && e["queue"] == 0), "no read request exported");
    assert!(events.iter().any(|e| e["what"] == "completed" && e["latency_ns"].as_u64() > Some(0)));
    for format in ["csv", "chrome"] {
        let out = kvmscope().args(["export", "--format", format]).arg(&trace).output().unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(out.contains("virtio_completed") || out.contains("virtio-blk0 completed"), "{format}");
    }
    let _ = (std::fs::remove_file(disk), std::fs::remove_file(trace));
}

#[test]
fn gdb_monitor_virtio_shows_the_queues() {
    if !gdb_or_skip("gdb_monitor_virtio_shows_the_queues") {
        return;
    }
    let disk = disk("gdb");
    let disk_arg = disk.to_str().unwrap();
    let stub =
        Stub::start_with("virtio.elf", true, "0", &["--disk", disk_arg, "--virtio", "rng,console", "--timeout", "60"]);
    // Stop at the guest's first access to the entropy device: the disk's requests are all done.
    let out = stub.gdb(
        None,
        &[
            "monitor break-exit mmio 0xd0001070",
            "continue",
            "monitor virtio",
            "monitor virtio virtio-blk0",
            "monitor virtio nosuch",
            "kill",
        ],
    );
    for want in [
        "virtio-blk0: virtio-blk (device id 2) at 0xd0000000, irq 5, notifications trapped",
        "status: ACKNOWLEDGE|DRIVER|DRIVER_OK|FEATURES_OK (0xf)",
        "driver features: BLK_FLUSH VERSION_1",
        "queue 0 (requestq): size 8/256, ready",
        "avail idx: last seen 5, guest 5; used idx 5; in flight 0; event idx off",
        "notifications 5 (trapped 5, ioeventfd 0), interrupts 5, taken 5, completed 5, errors 1",
        "virtio-rng: virtio-rng (device id 4)",
        "status: reset (0x0)", // rng: the guest has not reached it yet
        "chain 0: read sector 2 len 4096 -> ok, 4097 bytes written",
        "desc 1: addr 0x",
        "flags NEXT|WRITE next 2",
        "error: no virtio device \"nosuch\"; there are: virtio-blk0, virtio-rng, virtio-console",
    ] {
        assert!(out.contains(want), "{want:?} missing from gdb's output:\n{out}");
    }
    drop(stub.finish());
    let _ = std::fs::remove_file(disk);
}

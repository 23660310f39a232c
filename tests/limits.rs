//! Ending a run that would not end: --timeout, --max-exits, Ctrl-C — always with the summary.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn max_exits_stops_after_exactly_n() {
    if !kvm_or_skip("max_exits_stops_after_exactly_n") {
        return;
    }
    let run =
        run_headless(&["--kernel", guest("spin.elf").to_str().unwrap(), "--max-exits", "500", "--summary", "json"]);
    assert_eq!(run.status, 124, "{}", run.stderr);
    let s = run.summary();
    assert_eq!(s["exits"], 500);
    assert_eq!(io_count(&s, 0x80, "out"), 500);
    assert_eq!(s["end"], "max-exits");
}

#[test]
fn timeout_ends_a_spinning_guest_with_its_summary() {
    if !kvm_or_skip("timeout_ends_a_spinning_guest_with_its_summary") {
        return;
    }
    let start = Instant::now();
    let run = run_headless(&["--kernel", guest("spin.elf").to_str().unwrap(), "--timeout", "1", "--summary", "text"]);
    assert_eq!(run.status, 124, "{}", run.stderr);
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(run.stderr.contains("timeout expired") && run.stderr.contains("0x80:OUT"), "{}", run.stderr);
}

#[test]
fn ctrl_c_ends_the_run_with_its_summary() {
    if !kvm_or_skip("ctrl_c_ends_the_run_with_its_summary") {
        return;
    }
    let child = kvmscope()
        .args(["run", "--headless", "--kernel", guest("spin.elf").to_str().unwrap(), "--summary", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let run: Run = child.wait_with_output().unwrap().into();
    assert_eq!(run.status, 130, "{}", run.stderr);
    let s = run.summary();
    assert_eq!(s["end"], "interrupted");
    assert!(s["exits"].as_u64().unwrap() > 0);
}

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

/// A protected-mode image that reads each dword upward from 0xc0000000 (the MMIO hole), forever.
fn mmio_sweep_image() -> std::path::PathBuf {
    // mov esi, 0xc0000000; 1: mov eax, [esi]; add esi, 4; jmp 1b
    let code = [0xbe, 0x00, 0x00, 0x00, 0xc0, 0x8b, 0x06, 0x83, 0xc6, 0x04, 0xeb, 0xf9];
    let path = std::env::temp_dir().join(format!("kvmscope-mmio-sweep-{}.bin", std::process::id()));
    std::fs::write(&path, code).unwrap();
    path
}

/// Peak resident memory of the children waited for so far, in bytes.
fn children_peak_rss() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss as u64 * 1024
}

#[test]
fn a_guest_sweeping_mmio_addresses_gets_a_bounded_summary_and_memory() {
    if !kvm_or_skip("a_guest_sweeping_mmio_addresses_gets_a_bounded_summary_and_memory") {
        return;
    }
    let image = mmio_sweep_image();
    let run = run_raw(&image, "0x100000", "protected", &["--max-exits", "60000", "--summary", "text"]);
    assert_eq!(run.status, 124, "{}", run.stderr);
    let lines = run.stderr.lines().count();
    assert!(lines < 200, "the text summary is bounded: {lines} lines");
    assert!(run.stderr.contains("more addresses)"), "the rest totalled: {}", run.stderr);
    assert!(run.stderr.contains("counted per 4 KiB page"), "and the coarsening said: {}", run.stderr);
    let run = run_raw(&image, "0x100000", "protected", &["--max-exits", "60000", "--summary", "json"]);
    let s = run.summary();
    assert_eq!(s["exits"], 60000);
    let mmio = s["mmio"].as_array().unwrap();
    assert!(mmio.len() <= 100, "{} entries", mmio.len());
    let listed: u64 = mmio.iter().map(|e| e["count"].as_u64().unwrap()).sum();
    assert_eq!(listed + s["mmio_more"]["count"].as_u64().unwrap(), s["by_reason"]["mmio"].as_u64().unwrap());
    assert!(children_peak_rss() < 200 << 20, "peak RSS {} MB", children_peak_rss() >> 20);
    let _ = std::fs::remove_file(image);
}

#[test]
fn the_summary_says_what_kvm_counted_itself() {
    if !kvm_or_skip("the_summary_says_what_kvm_counted_itself") {
        return;
    }
    let spin = guest("spin.elf");
    let run = run_headless(&["--kernel", spin.to_str().unwrap(), "--max-exits", "3000", "--summary", "json"]);
    let s = run.summary();
    let kvm = &s["kvm"];
    assert!(kvm.get("unavailable").is_none(), "this host has binary statistics: {kvm}");
    assert_eq!(kvm["userspace_exits"], 3000);
    let exits = kvm["exits"].as_u64().unwrap();
    assert!(exits >= 3000, "KVM counts every exit, also those it kept: {exits}");
    assert_eq!(kvm["vcpu"]["exits"].as_u64(), Some(exits));
    // Where KVM counts port exits (VT-x does; an emulating host may not), it counts at least ours.
    let io = kvm["vcpu"]["io_exits"].as_u64().unwrap_or(0);
    assert!(io == 0 || io >= 3000, "io_exits {io}");
    assert!(kvm["vm"].as_object().is_some_and(|m| !m.is_empty()), "the VM's own statistics: {kvm}");
    let text = run_headless(&["--kernel", spin.to_str().unwrap(), "--max-exits", "3000"]);
    assert!(text.stderr.contains("In KVM (its own statistics, all vCPUs): of "), "{}", text.stderr);
    assert!(
        text.stderr.contains("3000 reached userspace") && text.stderr.contains("insn_emulation"),
        "{}",
        text.stderr
    );
}

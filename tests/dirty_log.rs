//! Dirty pages, live (`--dirty-log`): a guest that writes exactly 16 known pages, forever
//! (assets/guests/dirty.mb.S), has exactly those pages dirty in every interval; the counts are in the
//! summary and, per interval, in the recording.

mod common;

use common::*;

#[test]
fn the_pages_a_guest_writes_are_the_dirty_ones() {
    if !kvm_or_skip("the_pages_a_guest_writes_are_the_dirty_ones") {
        return;
    }
    let kernel = guest("dirty.elf");
    let trace = std::env::temp_dir().join(format!("kvmscope-dirty-{}.trace", std::process::id()));
    let args = ["--kernel", kernel.to_str().unwrap(), "--dirty-log", "--timeout", "2.5", "--summary", "json"];
    let run = run_headless(&[&args[..], &["--record", trace.to_str().unwrap()]].concat());
    assert_eq!(run.status, 124, "the run ends by its timeout: {}", run.stderr);
    let d = &run.summary()["dirty_log"];
    let intervals = d["intervals"].as_u64().unwrap();
    assert!(intervals >= 2, "{d}");
    let hot: Vec<u64> = d["hottest"].as_array().unwrap().iter().map(|h| h["gpa"].as_u64().unwrap()).collect();
    let want: Vec<u64> = (0..16).map(|i| 0x40_0000 + i * 0x1000).collect();
    assert_eq!(hot, want, "exactly the 16 pages it writes: {d}");
    assert!(
        d["hottest"].as_array().unwrap().iter().all(|h| h["intervals"] == intervals),
        "dirty in every interval: {d}"
    );
    assert_eq!(d["max"], 16);
    // Each interval's count is in the recording.
    let stats = kvmscope().args(["stats", "--json"]).arg(&trace).output().unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let recorded = stats["dirty_pages_per_interval"].as_array().unwrap();
    assert!(!recorded.is_empty() && recorded.iter().all(|n| n == 16), "{recorded:?}");
    let _ = std::fs::remove_file(&trace);
    // Without --dirty-log there is no dirty log.
    let plain = run_headless(&args.iter().filter(|a| **a != "--dirty-log").copied().collect::<Vec<_>>());
    assert!(plain.summary().get("dirty_log").is_none());
}

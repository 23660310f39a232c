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
    // The hottest pages named by the guest's symbols: here a System.map given with --symbols.
    let map = std::env::temp_dir().join(format!("kvmscope-dirty-{}.map", std::process::id()));
    std::fs::write(&map, "0000000000100000 T _start\n0000000000400000 B pages\n0000000000408000 b second_half\n0000000000410000 b after\n").unwrap();
    let named = run_headless(&[&args[..], &["--symbols", map.to_str().unwrap()]].concat());
    let _ = std::fs::remove_file(&map);
    let hot = named.summary()["dirty_log"]["hottest"].clone();
    let names = |i: usize| hot[i]["symbols"].clone();
    assert_eq!(
        (names(0), names(7), names(8), names(15)),
        (
            serde_json::json!(["pages"]),
            serde_json::json!(["pages"]),
            serde_json::json!(["second_half"]),
            serde_json::json!(["second_half"]),
        ),
        "each page named by the symbol it lies in: {hot}"
    );
    // Without --dirty-log there is no dirty log.
    let plain = run_headless(&args.iter().filter(|a| **a != "--dirty-log").copied().collect::<Vec<_>>());
    assert!(plain.summary().get("dirty_log").is_none());
}

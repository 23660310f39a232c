//! Dirty pages, live (`--dirty-log`): a guest that writes exactly 16 known pages, forever
//! (assets/guests/dirty.mb.S), has exactly those pages dirty in every interval; the counts are in the
//! summary and, per interval, in the recording.

mod common;

use common::gdb_stub::*;
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
    let recorded = stats["dirty_log"]["per_interval"].as_array().unwrap();
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

#[test]
fn a_page_under_a_gdb_write_watchpoint_is_still_dirty() {
    if !gdb_or_skip("a_page_under_a_gdb_write_watchpoint_is_still_dirty") {
        return;
    }
    // The watched page's writes are completed by kvmscope (a read-only slot on this host, or a
    // debug register elsewhere): KVM's log alone would miss them, and count 15 pages, not 16.
    let trace = std::env::temp_dir().join(format!("kvmscope-dirty-watch-{}.trace", std::process::id()));
    let extra = ["--dirty-log", "--timeout", "3.5", "--record", trace.to_str().unwrap()];
    let stub = Stub::start_with("dirty.elf", false, "0", &extra);
    let script = std::env::temp_dir().join(format!("kvmscope-dirty-watch-{}.gdb", std::process::id()));
    std::fs::write(&script, "watch *(int*)0x400000\ncommands\nsilent\ncontinue\nend\ncontinue\n").unwrap();
    let mut gdb = stub.gdb_command(None, &[]);
    let out = gdb.args(["-x", script.to_str().unwrap()]).output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.contains("atchpoint 1: *(int*)0x400000"), "{out}");
    let (status, _, stderr) = stub.finish();
    assert_eq!(status, 124, "{stderr}");
    let stats = kvmscope().args(["stats", "--json"]).arg(&trace).output().unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let per_interval: Vec<u64> =
        stats["dirty_log"]["per_interval"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect();
    // The whole intervals; the last is cut short by the run's end.
    let whole = &per_interval[..per_interval.len().saturating_sub(1)];
    assert!(!whole.is_empty(), "{per_interval:?}");
    assert!(whole.iter().all(|&n| n == 16), "16 pages dirty in every interval: {per_interval:?}");
    let _ = (std::fs::remove_file(&trace), std::fs::remove_file(&script));
}

//! The exit profile by guest function and the call stacks: a guest with frame pointers and known
//! call paths (assets/guests/stacks.mb.c) recorded with `--stacks`, then `stats --by symbol` and
//! `export --format folded` on the recording.

mod common;

use common::*;

fn record(test: &str, stacks: &str) -> std::path::PathBuf {
    let trace = std::env::temp_dir().join(format!("kvmscope-{test}-{}.trace", std::process::id()));
    let kernel = guest("stacks.elf");
    let mut args = vec!["--kernel", kernel.to_str().unwrap(), "--record", trace.to_str().unwrap()];
    if !stacks.is_empty() {
        args.push(stacks);
    }
    let run = run_headless(&args);
    assert_eq!(run.status, 163, "{}", run.stderr);
    trace
}

fn kvmscope_out(args: &[&str], trace: &std::path::Path) -> (i32, String) {
    let out = kvmscope().args(args).arg(trace).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn folded_stacks_are_exactly_the_guests_call_paths() {
    if !kvm_or_skip("folded_stacks_are_exactly_the_guests_call_paths") {
        return;
    }
    let trace = record("folded", "--stacks=all");
    let (status, folded) = kvmscope_out(&["export", "--format", "folded"], &trace);
    assert_eq!(status, 0);
    assert_eq!(
        folded,
        "_start;guest_main;[io] 1\n\
         _start;guest_main;outer_a;inner;[io] 3\n\
         _start;guest_main;outer_b;[io] 1\n\
         _start;guest_main;outer_b;inner;[io] 2\n"
    );
    let (_, profile) = kvmscope_out(&["stats", "--by", "symbol"], &trace);
    let lines: Vec<&str> = profile.lines().collect();
    assert!(lines[2].contains("71.43%") && lines[2].contains("inner") && lines[2].contains("io 5"), "{profile}");
    // The flame graph: an SVG with those functions in it.
    let svg = trace.with_extension("svg");
    let out = kvmscope().arg("flamegraph").arg(&trace).arg("-o").arg(&svg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<?xml") && text.contains("<svg") && text.trim_end().ends_with("</svg>"));
    for name in ["guest_main", "outer_a", "outer_b", "inner", "[io]"] {
        assert!(text.contains(name), "{name} not in the flame graph");
    }
    let _ = std::fs::remove_file(svg);
    let (_, json) = kvmscope_out(&["stats", "--by", "symbol", "--json"], &trace);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["by_symbol"][0]["function"], "inner");
    let _ = std::fs::remove_file(trace);
}

#[test]
fn stacks_are_sampled_one_exit_in_64_by_default() {
    if !kvm_or_skip("stacks_are_sampled_one_exit_in_64_by_default") {
        return;
    }
    let trace = record("sampled", "--stacks");
    // Seven exits: only the first (sequence 0) is sampled.
    let (_, folded) = kvmscope_out(&["export", "--format", "folded"], &trace);
    assert_eq!(folded, "_start;guest_main;outer_a;inner;[io] 1\n");
    let plain = record("plain", "");
    let (status, folded) = kvmscope_out(&["export", "--format", "folded"], &plain);
    assert_eq!((status, folded.as_str()), (2, ""), "no stacks without --stacks, and that is said");
    let out = kvmscope().arg("flamegraph").arg(&plain).args(["-o", "/tmp/kvmscope-never.svg"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no call stacks recorded (record with `run --record FILE --stacks`)")
    );
    let (status, _) = kvmscope_out(&["stats", "--by", "symbol", "--symbols", "/nonexistent"], &plain);
    assert_eq!(status, 2, "a symbol file that is not there is bad input");
    let _ = (std::fs::remove_file(trace), std::fs::remove_file(plain));
}

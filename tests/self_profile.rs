//! `--self-profile`: the vCPU loop times its stages and the summary says where an exit's time went.

mod common;

use common::*;

const STAGES: [&str; 8] = ["kvm_run", "dispatch", "registers", "decode", "count", "sinks", "debugger", "loop"];

#[test]
fn every_exit_is_timed_stage_by_stage() {
    if !kvm_or_skip("every_exit_is_timed_stage_by_stage") {
        return;
    }
    let spin = guest("spin.elf");
    let args = ["--kernel", spin.to_str().unwrap(), "--max-exits", "20000", "--self-profile", "--summary", "json"];
    let run = run_headless(&args);
    let s = run.summary();
    let p = &s["self_profile"];
    assert_eq!(p["exits"], s["exits"], "every exit profiled: {p}");
    assert_eq!(s["exits"], 20000);
    let ns = |stage: &str| p["ns_per_exit"][stage].as_f64().unwrap_or_else(|| panic!("no {stage} in {p}"));
    for stage in STAGES {
        assert!(ns(stage) >= 0.0, "{stage}: {p}");
    }
    let userspace: f64 = STAGES[1..].iter().map(|s| ns(s)).sum();
    assert!((p["userspace_ns_per_exit"].as_f64().unwrap() - userspace).abs() < 1e-6, "{p}");
    // A round trip through KVM takes microseconds; kvmscope's handling of a port write, hundreds of
    // nanoseconds at most.
    assert!(ns("kvm_run") > 200.0, "{p}");
    assert!(userspace > 0.0 && userspace < ns("kvm_run"), "{p}");

    let text = run_headless(&args[..5]);
    assert!(text.stderr.contains("Self-profile of the vCPU loop (20000 exits)"), "{}", text.stderr);
    assert!(text.stderr.contains("decode the instruction"), "{}", text.stderr);
}

#[test]
fn self_profile_is_for_headless_runs() {
    let run: Run = kvmscope().args(["run", "--self-profile"]).output().expect("kvmscope runs").into();
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--headless"), "{}", run.stderr);
}

#[test]
fn without_the_flag_nothing_is_profiled() {
    if !kvm_or_skip("without_the_flag_nothing_is_profiled") {
        return;
    }
    let spin = guest("spin.elf");
    let run = run_headless(&["--kernel", spin.to_str().unwrap(), "--max-exits", "100", "--summary", "json"]);
    assert!(run.summary().get("self_profile").is_none());
}

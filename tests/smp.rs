//! A guest that is not Linux starting its own CPUs: `--cpus N --irqchip` and the `smp` guest's
//! INIT and STARTUP IPIs, every vCPU then exiting on its own thread.

mod common;

use common::*;

/// Runs the `smp` guest headless with `args`.
fn smp(args: &[&str]) -> Run {
    let kernel = guest("smp.elf");
    run_headless(&[&["--kernel", kernel.to_str().unwrap()], args].concat())
}

#[test]
fn the_guest_starts_its_second_cpu_and_both_exit() {
    if !kvm_or_skip("the_guest_starts_its_second_cpu_and_both_exit") {
        return;
    }
    let run = smp(&["--max-exits", "20000", "--summary", "json", "--cpus", "2", "--irqchip"]);
    assert_eq!(run.stdout, "smp: 2 of 2 cpus running\n", "stderr: {}", run.stderr);
    let s = run.summary();
    // The limit ends the run; the other vCPU may finish the exit it is in.
    let exits = s["exits"].as_u64().unwrap();
    assert!((20000..=20001).contains(&exits), "{s}");
    let per_vcpu: Vec<u64> = s["per_vcpu"].as_array().unwrap().iter().map(|v| v["exits"].as_u64().unwrap()).collect();
    assert_eq!(per_vcpu.len(), 2, "{s}");
    assert!(per_vcpu.iter().all(|&n| n > 1000), "both vCPUs spin: {per_vcpu:?}");
    assert_eq!(per_vcpu.iter().sum::<u64>(), exits);

    let text = smp(&["--max-exits", "5000", "--cpus", "2", "--irqchip"]);
    let vcpu_table = text.stderr.split("VCPU    Samples").nth(1).expect("a per-vCPU table");
    let rows: Vec<&str> = vcpu_table.lines().skip(1).take_while(|l| !l.trim().is_empty()).collect();
    assert_eq!(rows.len(), 2, "{}", text.stderr);
    assert!(rows[0].trim_start().starts_with("0 ") && rows[1].trim_start().starts_with("1 "), "{rows:?}");
}

#[test]
fn one_cpu_has_nothing_to_start() {
    if !kvm_or_skip("one_cpu_has_nothing_to_start") {
        return;
    }
    let run = smp(&["--max-exits", "20000", "--summary", "json", "--irqchip"]);
    assert_eq!(run.stdout, "smp: 1 of 1 cpus running\n", "stderr: {}", run.stderr);
    let s = run.summary();
    assert_eq!(s["per_vcpu"], serde_json::json!([{"vcpu": 0, "exits": 20000, "by_reason": {"io": 20000}}]), "{s}");
}

#[test]
fn more_cpus_without_an_apic_are_refused() {
    if !kvm_or_skip("more_cpus_without_an_apic_are_refused") {
        return;
    }
    let run = smp(&["--max-exits", "20000", "--summary", "json", "--cpus", "2"]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--cpus 2 needs a Linux kernel, or --irqchip"), "{}", run.stderr);
}

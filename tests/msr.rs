//! MSR traces (`--trap-msr`): the chosen MSRs' rdmsr/wrmsr exit to kvmscope, are counted, decoded
//! by name and recorded, and are completed on the real MSR so the guest sees no difference
//! (assets/guests/msr.mb.S checks the values it reads); an exit breakpoint on an MSR stops gdb.

mod common;

use common::gdb_stub::*;
use common::*;

/// isa-debug-exit 0x41: every check passed.
const PASSED: i32 = 131;

fn run_msr_guest(extra: &[&str]) -> Run {
    let kernel = guest("msr.elf");
    let mut args = vec!["--kernel", kernel.to_str().unwrap(), "--summary", "json"];
    args.extend_from_slice(extra);
    run_headless(&args)
}

#[test]
fn trapped_msrs_are_exits_and_the_guest_sees_no_difference() {
    if !kvm_or_skip("trapped_msrs_are_exits_and_the_guest_sees_no_difference") {
        return;
    }
    let plain = run_msr_guest(&[]);
    assert_eq!((plain.status, plain.stdout.as_str()), (PASSED, "msr ok\n"), "{}", plain.stderr);
    assert!(plain.summary()["by_reason"].get("x86_rdmsr").is_none(), "nothing trapped without --trap-msr");

    let traced = run_msr_guest(&["--trap-msr", "APIC_BASE,pat", "--trace"]);
    assert_eq!((traced.status, traced.stdout.as_str()), (PASSED, "msr ok\n"), "{}", traced.stderr);
    let s = traced.summary();
    assert_eq!((s["by_reason"]["x86_rdmsr"].as_u64(), s["by_reason"]["x86_wrmsr"].as_u64()), (Some(3), Some(1)));
    let count = |name: &str, dir: &str| {
        let rows = s["msr"].as_array().unwrap();
        rows.iter().find(|r| r["name"] == name && r["dir"] == dir).map_or(0, |r| r["count"].as_u64().unwrap())
    };
    assert_eq!((count("APIC_BASE", "read"), count("PAT", "write"), count("PAT", "read")), (2, 1, 1), "{}", s["msr"]);
    // Decoded by name, with the value the guest wrote and the one it read back.
    assert!(traced.stderr.contains("x86_wrmsr      write msr 0x277 PAT = 0x7010600070106  wrmsr"), "{}", traced.stderr);
    assert!(traced.stderr.contains("x86_rdmsr      read msr 0x277 PAT = 0x7010600070106  rdmsr"), "{}", traced.stderr);
    assert!(traced.stderr.contains("read msr 0x1b APIC_BASE = 0xfee00"), "{}", traced.stderr);
}

#[test]
fn bad_msr_lists_are_refused() {
    let out = kvmscope().args(["run", "--headless", "--kernel", "x", "--trap-msr", "NOSUCH"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown MSR \"NOSUCH\""));
    let many: Vec<String> = (0..17).map(|i| format!("{:#x}", 0x200 + i)).collect();
    let out = kvmscope().args(["run", "--headless", "--kernel", "x", "--trap-msr", &many.join(",")]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KVM's filter holds 16"));
    for (list, want) in [("0x100000000", "MSR numbers are 32 bits"), ("", "names no MSR"), (",,,", "names no MSR")] {
        let out = kvmscope().args(["run", "--headless", "--kernel", "x", "--trap-msr", list]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code() == Some(2) && err.contains(want), "{list:?}: {err}");
    }
}

#[test]
fn an_exit_breakpoint_on_an_untrapped_msr_traps_it() {
    if !gdb_or_skip("an_exit_breakpoint_on_an_untrapped_msr_traps_it") {
        return;
    }
    // No --trap-msr: the breakpoint traps PAT itself (it would never fire otherwise).
    let stub = Stub::start_with("msr.elf", true, "0", &[]);
    let out = stub.gdb(None, &["monitor break-exit msr PAT write", "continue", "p/x $ecx", "kill"]);
    for want in [
        "exit breakpoint #1 msr PAT write",
        "PAT is trapped from now on",
        "Program received signal SIGTRAP",
        "$1 = 0x277",
    ] {
        assert!(out.contains(want), "{want:?} missing from gdb's output:\n{out}");
    }
    drop(stub.finish());
}

#[test]
fn an_exit_breakpoint_on_an_msr_stops_gdb_there() {
    if !gdb_or_skip("an_exit_breakpoint_on_an_msr_stops_gdb_there") {
        return;
    }
    let stub = Stub::start_with("msr.elf", true, "0", &["--trap-msr", "PAT"]);
    let out = stub.gdb(None, &["monitor break-exit msr PAT write", "continue", "p/x $ecx", "monitor exits", "kill"]);
    for want in [
        "exit breakpoint #1 msr PAT write",
        "Program received signal SIGTRAP",
        "$1 = 0x277",
        "x86_wrmsr          1",
        "PAT:WRITE          1",
    ] {
        assert!(out.contains(want), "{want:?} missing from gdb's output:\n{out}");
    }
    drop(stub.finish());
}

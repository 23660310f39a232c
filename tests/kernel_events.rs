//! KVM's tracepoints for this VM (`--kernel-events`, root and tracefs): the in-kernel events of a
//! known guest, counted by kind, agreeing with kvmscope's own count where both see the same exits.

mod common;

use common::*;

#[test]
fn the_in_kernel_stream_of_a_known_guest_has_its_events() {
    if !kvm_or_skip("the_in_kernel_stream_of_a_known_guest_has_its_events") {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var("KVMSCOPE_REQUIRE_KVM").as_deref() != Ok("1"), "CI runs as root");
        eprintln!("SKIPPED: --kernel-events needs root");
        return;
    }
    let instances = || -> Vec<String> {
        let dir = std::fs::read_dir("/sys/kernel/tracing/instances").into_iter().flatten().flatten();
        dir.map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("kvmscope-")).collect()
    };
    let before = instances();
    let kernel = guest("hello.elf");
    let run = run_headless(&["--kernel", kernel.to_str().unwrap(), "--kernel-events", "--summary", "json"]);
    assert_eq!(run.status, 33, "{}", run.stderr);
    let s = run.summary();
    let events = &s["kernel_events"]["by_event"];
    let count = |name: &str| events[name].as_u64().unwrap_or(0);
    // Every port exit passes kvm_pio in the kernel before it reaches kvmscope, and leaves by
    // kvm_userspace_exit.
    assert_eq!(count("kvm_pio"), s["by_reason"]["io"].as_u64().unwrap(), "{events}");
    assert!(count("kvm_userspace_exit") >= s["exits"].as_u64().unwrap() - 1, "{events}");
    // What KVM does that userspace never sees: on an emulating host (PVM) every guest kernel
    // instruction is emulated; on VT-x/AMD-V the hardware exits are kvm_exit.
    assert!(count("kvm_emulate_insn") + count("kvm_exit") > 0, "{events}");
    assert!(s["kernel_events"]["top_rips"].as_array().is_some_and(|r| !r.is_empty()));
    // In the stream: `--trace` prints each one while they are few, marked as in-kernel.
    let traced =
        run_headless(&["--kernel", kernel.to_str().unwrap(), "--kernel-events", "--trace", "--summary", "none"]);
    assert!(traced.stderr.contains("kernel    kvm_pio: pio_write at 0x3f8 size 1"), "{}", traced.stderr);
    // KVM's MMU events in the stream too, with the guest frame, level and permissions: a guest with
    // page tables of its own makes the host map them (on PVM, shadow pages: kvm_mmu_get_page; with
    // TDP, the SPTE events).
    let paging = guest("higherhalf.elf");
    let traced =
        run_headless(&["--kernel", paging.to_str().unwrap(), "--kernel-events", "--trace", "--summary", "none"]);
    let mmu = ["kvm_mmu_get_page: ", "kvm_tdp_mmu_spte_changed: ", "kvm_mmu_set_spte: "];
    let line = traced.stderr.lines().find(|l| l.starts_with("kernel ") && mmu.iter().any(|e| l.contains(e)));
    assert!(line.is_some_and(|l| l.contains("gfn ")), "no MMU event with its guest frame: {}", traced.stderr);
    // Recorded: `stats` on the recording shows them, and `--by symbol` names the guest functions
    // the in-kernel events came from (putc makes the port exits on any host).
    let trace = std::env::temp_dir().join(format!("kvmscope-kernel-{}.trace", std::process::id()));
    let rec = run_headless(&[
        "--kernel",
        kernel.to_str().unwrap(),
        "--kernel-events",
        "--record-kernel-events",
        "--record",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(rec.status, 33, "{}", rec.stderr);
    let stats = kvmscope().arg("stats").arg(&trace).output().unwrap();
    assert!(String::from_utf8_lossy(&stats.stdout).contains("In-kernel events (KVM's tracepoints"));
    let by_symbol = kvmscope().args(["stats", "--by", "symbol"]).arg(&trace).output().unwrap();
    let by_symbol = String::from_utf8_lossy(&by_symbol.stdout);
    let in_kernel = by_symbol.split("# In-kernel events").nth(1).unwrap_or_else(|| panic!("{by_symbol}"));
    assert!(in_kernel.contains("putc"), "{by_symbol}");
    let _ = std::fs::remove_file(trace);
    // Our runs' tracefs instances are gone afterwards (other processes' may come and go meanwhile;
    // those of processes that died are removed by the next run).
    let left: Vec<String> = instances().into_iter().filter(|i| !before.contains(i)).collect();
    let alive = |i: &String| std::path::Path::new(&format!("/proc/{}", &i["kvmscope-".len()..])).exists();
    assert!(left.iter().all(alive), "instances left behind: {left:?}");
}

//! `kvmscope probe` against what was measured on this project's machines (DESIGN.md), and the
//! choice of mechanisms that must follow from any host's answers.

mod common;

use common::*;

#[test]
fn probe_reports_measurements_and_consistent_choices() {
    if !kvm_or_skip("probe_reports_measurements_and_consistent_choices") {
        return;
    }
    let run: Run = kvmscope().args(["probe", "--json"]).output().unwrap().into();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let p: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let works = |k: &str| p[k]["works"].as_bool().unwrap();
    assert!(p["api_version"].as_i64().unwrap() == 12);
    // Every host kvmscope supports single-steps and has debug registers for execution.
    assert!(works("single_step"), "{}", p["single_step"]);
    assert!(works("hw_breakpoint"), "{}", p["hw_breakpoint"]);
    let sw = p["use_sw_breakpoints"].as_str().unwrap();
    let want_sw = if works("sw_breakpoint") {
        "int3-guest-debug"
    } else if works("int3_at_cpl0") {
        "int3-emulation-failure"
    } else {
        "unavailable"
    };
    assert_eq!(sw, want_sw);
    let want_watch = if works("dr7_write_watchpoint") {
        "debug-registers"
    } else if works("readonly_slot") {
        "read-only-slot"
    } else {
        "unavailable"
    };
    assert_eq!(p["use_write_watchpoints"], want_watch);
    if is_pvm() {
        // Measured on PVM (DESIGN.md): no USE_SW_BP, int3 at CPL0 fails in the emulator at the
        // int3 itself, DR7 watchpoints never fire, read-only slots turn writes into MMIO exits.
        assert!(!works("sw_breakpoint"));
        assert!(works("int3_at_cpl0"), "{}", p["int3_at_cpl0"]);
        assert!(!works("dr7_write_watchpoint") && !works("dr7_access_watchpoint"));
        assert!(works("readonly_slot"), "{}", p["readonly_slot"]);
        assert_eq!(sw, "int3-emulation-failure");
        assert_eq!(p["use_write_watchpoints"], "read-only-slot");
    }
    let text: Run = kvmscope().arg("probe").output().unwrap().into();
    assert!(text.stdout.contains("kvmscope uses:") && text.stdout.contains("single-step"), "{}", text.stdout);
    // How it learns which pages the guest wrote: with manual protect where the host has it.
    let manual =
        text.stdout.lines().any(|l| l.starts_with("  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2") && !l.ends_with(" 0"));
    let uses =
        if manual { "then KVM_CLEAR_DIRTY_LOG re-protects only the pages read" } else { "KVM_GET_DIRTY_LOG, which" };
    assert!(text.stdout.contains("pages written (checkpoints, views) KVM_GET_DIRTY_LOG"), "{}", text.stdout);
    assert!(text.stdout.contains(uses), "{}", text.stdout);
    // Whether a step can take an interrupt along with its instruction, from KVM's own answer.
    let block_irq = text.stdout.lines().any(|l| {
        l.strip_prefix("  KVM_CAP_SET_GUEST_DEBUG2")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .is_some_and(|v| v & kvm_bindings::KVM_GUESTDBG_BLOCKIRQ != 0)
    });
    let step_irqs = if block_irq { "held back until it is over" } else { "delivered in it" };
    assert!(text.stdout.contains(&format!("interrupts during a step           {step_irqs}")), "{}", text.stdout);
}

#[test]
fn probe_says_which_kvm_tracepoints_fire() {
    if !kvm_or_skip("probe_says_which_kvm_tracepoints_fire") {
        return;
    }
    let run: Run = kvmscope().args(["probe", "--json"]).output().unwrap().into();
    let p: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let t = &p["tracepoints"];
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(t["unavailable"].as_str().is_some_and(|w| w.contains("root")), "{t}");
        return;
    }
    let fired = |e: &str| t[e].as_u64().unwrap_or_else(|| panic!("{e} missing from {t}"));
    // Any host: the probe's port writes and its MMIO write pass these on their way to userspace.
    assert!(fired("kvm_pio") >= 2 && fired("kvm_mmio") >= 1 && fired("kvm_userspace_exit") >= 3, "{t}");
    if is_pvm() {
        // Measured on PVM: kvm_exit is silent, every guest kernel instruction is emulated.
        assert_eq!(fired("kvm_exit"), 0, "{t}");
        assert!(fired("kvm_emulate_insn") >= 3, "{t}");
        // Its shadow MMU allocates page-table pages, but reports no SPTE changes.
        assert!(fired("kvm_mmu_get_page") >= 1 && fired("kvm_mmu_set_spte") == 0, "{t}");
    } else {
        assert!(fired("kvm_exit") >= 3, "VT-x/AMD-V: the hardware exits are kvm_exit: {t}");
    }
}

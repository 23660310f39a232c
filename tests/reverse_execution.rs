//! Going back must land where going forward was, state for state: the harness in
//! `common::reverse` on the project's guests — every kind of exit, a C guest, real mode, a guest
//! that reads the clock — from their entry, from a breakpoint the guest ran freely to, and from
//! an exit breakpoint.

mod common;

use common::reverse::{Guest, Start, check};
use common::*;

fn checked(name: &str, guest: Guest, start: Start, steps: usize, probes: usize) -> usize {
    let report = check(&guest, start, steps, probes, 0x5eed ^ steps as u64);
    assert!(report.failures.is_empty(), "{name}: {} of {} states differ:\n{}", report.failures.len(), report.compared, report.failures.join("\n"));
    eprintln!("{name}: {} states compared", report.compared);
    report.compared
}

#[test]
fn every_kind_of_exit_forward_and_back() {
    if !kvm_or_skip("every_kind_of_exit_forward_and_back") {
        return;
    }
    let guest = || Guest { trap_msrs: vec![0x277], ..Guest::kernel("stepping.elf") };
    checked("stepping from its entry", guest(), Start::Entry, 120, 8);
    checked("stepping from an exit breakpoint", guest(), Start::ExitBreakpoint { spec: "mmio 0xe0001004", nth: 2 }, 60, 6);
}

#[test]
fn gdbtest_from_a_breakpoint_it_ran_to() {
    if !kvm_or_skip("gdbtest_from_a_breakpoint_it_ran_to") {
        return;
    }
    // `bump` is at 0x20001e (assets/guests/gdbtest.elf64.S).
    checked("gdbtest from bump's third call", Guest::kernel("gdbtest.elf"), Start::Breakpoint { gva: 0x20001e, hits: 3 }, 20, 6);
}

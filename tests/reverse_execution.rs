//! Going back must land where going forward was, state for state: the harness in
//! `common::reverse` on the project's guests — every kind of exit, instructions kvmscope finishes
//! for the host, a C guest built for gdb, real mode and a switch to protected mode, trapped MSRs,
//! a guest that reads the clock — from their entry, from a breakpoint the guest ran freely to,
//! and from an exit breakpoint.

mod common;

use std::time::{Duration, Instant};

use common::reverse::{Guest, Start, check};
use common::*;
use kvmscope::debug::ExitSpec;
use kvmscope::vmm::RunEnd;
use kvmscope::vmm::loader::BootMode;
use kvmscope::vmm::snapshot::every::Every;

fn checked(name: &str, guest: Guest, start: Start, steps: usize, probes: usize) -> usize {
    checked_with(name, guest, start, steps, probes, 0x5eed ^ steps as u64)
}

fn checked_with(name: &str, guest: Guest, start: Start, steps: usize, probes: usize, seed: u64) -> usize {
    let report = check(&guest, start, steps, probes, seed);
    if let Some(said) = &report.said {
        eprintln!("{name}: kvmscope said the guest left the history: {said}");
    }
    assert!(
        report.failures.is_empty(),
        "{name}: {} of {} checks failed:\n{}",
        report.failures.len(),
        report.compared,
        report.failures.join("\n")
    );
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
    checked(
        "stepping from an exit breakpoint",
        guest(),
        Start::ExitBreakpoint { spec: "mmio 0xe0001004", nth: 2 },
        60,
        6,
    );
}

#[test]
fn instructions_kvmscope_finishes_for_the_host() {
    if !kvm_or_skip("instructions_kvmscope_finishes_for_the_host") {
        return;
    }
    // The guest takes a #BP through its own IDT: its frames go on the stack, which a write
    // watchpoint would keep read-only.
    let guest = || Guest { watch_stack: false, ..Guest::kernel("emulate.elf") };
    checked("emulate from its entry (int3, popcnt, stac/clac, iretq)", guest(), Start::Entry, 70, 6);
    checked("emulate from a breakpoint", guest(), Start::Breakpoint { gva: 0x2000a4, hits: 1 }, 60, 6);
}

#[test]
fn gdbtest_and_the_c_guest_from_breakpoints_they_ran_to() {
    if !kvm_or_skip("gdbtest_and_the_c_guest_from_breakpoints_they_ran_to") {
        return;
    }
    // `bump` is at 0x20001e (assets/guests/gdbtest.elf64.S); the C guest's `bump` at 0x200028.
    checked(
        "gdbtest from bump's third call",
        Guest::kernel("gdbtest.elf"),
        Start::Breakpoint { gva: 0x20001e, hits: 3 },
        20,
        6,
    );
    checked("bump.c from its entry", Guest::kernel("bump.elf"), Start::Entry, 100, 6);
    checked("bump.c from bump(4)", Guest::kernel("bump.elf"), Start::Breakpoint { gva: 0x200028, hits: 5 }, 60, 8);
}

#[test]
fn paths_that_hang_on_data_no_exit_carries_are_said_to_part() {
    if !kvm_or_skip("paths_that_hang_on_data_no_exit_carries_are_said_to_part") {
        return;
    }
    // The demo waits on the TSC between rounds and leaves no time in its registers: the exits
    // after the wait are the same, the steps inside it are not. Going back over them must say
    // so, never land on a state going forward never had.
    let demo = Guest { may_diverge: true, ..Guest::kernel("demo.elf") };
    let compared =
        checked("the demo's wait on the TSC", demo, Start::ExitBreakpoint { spec: "io 0x80", nth: 3 }, 200, 6);
    assert!(compared > 200, "the window was gone over");
    // The virtio guest polls used rings its devices' threads fill in their own time.
    let disk = std::env::temp_dir().join(format!("kvmscope-reverse-{}.img", std::process::id()));
    std::fs::write(&disk, vec![0x5a; 1 << 20]).unwrap();
    let virtio = Guest { may_diverge: true, ..Guest::virtio_with_disk(&disk) };
    checked("virtio rings polled", virtio, Start::ExitBreakpoint { spec: "mmio 0xd0000050", nth: 2 }, 300, 8);
    let _ = std::fs::remove_file(&disk);
}

#[test]
fn interrupts_wait_for_the_step_under_way() {
    if !kvm_or_skip("interrupts_wait_for_the_step_under_way") {
        return;
    }
    // The timer guest with the in-kernel PIC and PIT: ticks at 100 Hz while it is stepped in its
    // `hlt` loop. A tick arriving during a step comes after it (KVM_GUESTDBG_BLOCKIRQ), never
    // with its handler's first instruction in the same step; going back over the ticks, their
    // timing differs and kvmscope says so. `tick` is at 0x10009a (assets/guests/timer.mb.S).
    let timer = Guest { irqchip: true, may_diverge: true, watch_stack: false, ..Guest::kernel("timer.elf") };
    checked("the timer's loop, ticking", timer, Start::Breakpoint { gva: 0x10009a, hits: 2 }, 40, 4);
}

#[test]
fn real_mode_a_mode_switch_msrs_and_the_clock() {
    if !kvm_or_skip("real_mode_a_mode_switch_msrs_and_the_clock") {
        return;
    }
    let raw = |file: &str| Guest::raw(guest(file), 0x7c00, BootMode::Real);
    checked("real mode", raw("real.bin"), Start::Entry, 12, 4);
    checked("real to protected mode", raw("modeswitch.bin"), Start::Entry, 14, 4);
    let msr = Guest { trap_msrs: vec![0x1b, 0x277], ..Guest::kernel("msr.elf") };
    checked("trapped MSRs", msr, Start::Entry, 16, 4);
    checked("the clock, read again going forward", Guest::kernel("clock.elf"), Start::Entry, 22, 4);
}

#[test]
fn seabios_in_real_mode() {
    let test = "seabios_in_real_mode";
    if !kvm_or_skip(test) {
        return;
    }
    let Some(dir) = script_dir(test, "assets/real/fetch.sh", "fetching Debian's packages") else { return };
    let bios = || Guest::raw_at(dir.join("bios.bin"), 0xe0000, 0xffff0, BootMode::Real);
    checked("SeaBIOS from its reset vector", bios(), Start::Entry, 150, 6);
    // Its POST, a few hundred exits in: the CMOS, the PIC, PCI probes.
    let far = Guest { checkpoint_window: true, ..bios() };
    checked("SeaBIOS in its POST", far, Start::ExitBreakpoint { spec: "io 0x402", nth: 20 }, 150, 6);
}

#[test]
fn the_projects_linux_with_one_vcpu_until_it_diverges() {
    let test = "the_projects_linux_with_one_vcpu_until_it_diverges";
    if !kvm_or_skip(test) {
        return;
    }
    let Some(dir) = script_dir(test, "assets/linux/build.sh", "building the test kernel") else { return };
    let linux = Guest {
        image: kvmscope::vmm::Image::Kernel(dir.join("vmlinux")),
        cmdline: "console=ttyS0 earlyprintk=serial".into(),
        may_diverge: true,
        checkpoint_window: true,
        // Its interrupts and exceptions go on the stack a watchpoint would keep read-only.
        watch_stack: false,
        ..Guest::kernel("hello.elf")
    };
    // Early in the boot, its first lines on the serial port.
    checked("Linux at its first console lines", linux, Start::ExitBreakpoint { spec: "io 0x3f8", nth: 200 }, 200, 6);
}

#[test]
fn going_back_starts_from_the_nearest_checkpoint_on_the_timeline() {
    if !kvm_or_skip("going_back_starts_from_the_nearest_checkpoint_on_the_timeline") {
        return;
    }
    // spin, a checkpoint every 2,000 exits while it runs, to exit 40,000.
    let guest = Guest { checkpoint_every: Every::Exits(2_000), ..Guest::kernel("spin.elf") };
    let launched = common::reverse::launch(&guest);
    let c = &launched.controller;
    let bp = c.add_exit_breakpoint(ExitSpec::parse("io 0x80").unwrap(), 40_000);
    let since = c.stop_serial();
    c.resume();
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.wait_for_stop(since, Duration::from_millis(20)).is_none() {
        assert!(Instant::now() < deadline, "spin reaches its 40,000th exit");
    }
    c.delete_exit_breakpoint(Some(bp.id));
    // Anywhere, in any order: a goto and a reverse-stepi from there each start from the nearest
    // checkpoint before, never one kept by an earlier reverse-stepi further back.
    for target in [10_000, 30_000, 20_000, 35_000, 5_000] {
        let before = c.reexecuted();
        c.go_back_to_exit(target).unwrap();
        c.reverse_step().unwrap();
        let made = c.reexecuted() - before;
        assert!(made < 6_500, "going back to exit {target} and a reverse-stepi made {made} exits again");
    }
    launched.finish(RunEnd::Quit).unwrap();
}

/// More of the same than CI runs: longer windows and more probes on every project guest, each
/// with several seeds (`cargo test --release --test reverse_execution -- --ignored`, minutes).
#[test]
#[ignore]
fn a_longer_sweep_of_every_guest() {
    if !kvm_or_skip("a_longer_sweep_of_every_guest") {
        return;
    }
    let kernel = Guest::kernel;
    let diverging = |file| Guest { may_diverge: true, watch_stack: false, ..Guest::kernel(file) };
    let disk = std::env::temp_dir().join(format!("kvmscope-sweep-{}.img", std::process::id()));
    std::fs::write(&disk, vec![0x5a; 1 << 20]).unwrap();
    let cases = [
        ("hello", kernel("hello.elf"), Start::Entry, 200),
        ("higherhalf", kernel("higherhalf.elf"), Start::Entry, 60),
        ("stacks", kernel("stacks.elf"), Start::Entry, 60),
        ("long", kernel("long.elf"), Start::Entry, 30),
        ("smp on one vCPU", kernel("smp.elf"), Start::Entry, 150),
        ("dirty", kernel("dirty.elf"), Start::Entry, 300),
        ("spin", kernel("spin.elf"), Start::ExitBreakpoint { spec: "io 0x80", nth: 1000 }, 300),
        ("bump.c", kernel("bump.elf"), Start::Entry, 250),
        ("stepping", Guest { trap_msrs: vec![0x277], ..kernel("stepping.elf") }, Start::Entry, 120),
        ("emulate", Guest { watch_stack: false, ..kernel("emulate.elf") }, Start::Entry, 70),
        ("clock", kernel("clock.elf"), Start::Entry, 22),
        // Guests whose path hangs on what no exit carries (their own code read with a breakpoint
        // planted in it, the TSC, device threads, interrupts): said where they part, or exact.
        ("hostile", diverging("hostile.elf"), Start::Entry, 120),
        ("demo", diverging("demo.elf"), Start::ExitBreakpoint { spec: "io 0x80", nth: 3 }, 400),
        ("tsc", diverging("tsc.elf"), Start::Entry, 40),
        ("timer", Guest { irqchip: true, ..diverging("timer.elf") }, Start::Breakpoint { gva: 0x10009a, hits: 2 }, 80),
        (
            "virtio",
            Guest { may_diverge: true, ..Guest::virtio_with_disk(&disk) },
            Start::ExitBreakpoint { spec: "mmio 0xd0000050", nth: 2 },
            600,
        ),
    ];
    let mut compared = 0;
    for (name, guest, start, steps) in &cases {
        for seed in [1u64, 2, 3] {
            compared += checked_with(name, guest.clone(), start.clone(), *steps, 12, seed.wrapping_mul(0x9e37_79b9));
        }
    }
    eprintln!("{compared} states compared in all");
    let _ = std::fs::remove_file(&disk);
}

//! Booting the project's guests under /dev/kvm: exact exit counts, console output, exit status.

mod common;

use common::*;

const GREETING: &str = "Hello from kvmscope's multiboot guest! cmdline: ";

#[test]
fn multiboot_guest_counts_every_exit() {
    if !kvm_or_skip("multiboot_guest_counts_every_exit") {
        return;
    }
    let kernel = guest("hello.elf");
    let kernel = kernel.to_str().unwrap();
    let run = run_headless(&["--kernel", kernel, "--cmdline", "console=ttyS0 answer=42", "--summary", "json"]);
    // Multiboot: the command line is the image name and the arguments, as GRUB and QEMU pass it.
    let printed = format!("{GREETING}{kernel} console=ttyS0 answer=42\n");
    assert_eq!(run.stdout, printed, "stderr: {}", run.stderr);
    assert_eq!(run.status, 33, "isa-debug-exit 0x10 -> (0x10 << 1) | 1; stderr: {}", run.stderr);
    let s = run.summary();
    let bytes = printed.len() as u64;
    assert_eq!(io_count(&s, 0x3f8, "out"), bytes);
    assert_eq!(io_count(&s, 0x3fd, "in"), bytes);
    assert_eq!(io_count(&s, 0x80, "out"), 3);
    assert_eq!(io_count(&s, 0x510, "in"), 1);
    assert_eq!(io_count(&s, 0xf4, "out"), 1);
    assert_eq!(mmio_count(&s, 0xd000_0000, "write"), 1);
    assert_eq!(mmio_count(&s, 0xd000_0004, "read"), 1);
    let io = 2 * bytes + 3 + 1 + 1;
    assert_eq!(s["by_reason"]["io"], io);
    assert_eq!(s["by_reason"]["mmio"], 2);
    assert_eq!(s["exits"], io + 2);
    assert_eq!(s["status"], 33);
}

#[test]
fn long_mode_elf64_runs_on_the_identity_map_and_halts() {
    if !kvm_or_skip("long_mode_elf64_runs_on_the_identity_map_and_halts") {
        return;
    }
    let run = run_headless(&["--kernel", guest("long.elf").to_str().unwrap(), "--summary", "json"]);
    assert_eq!(run.stdout, "long mode ok\n", "stderr: {}", run.stderr);
    assert_eq!(run.status, 0, "HLT with interrupts off ends the run cleanly");
    let s = run.summary();
    assert_eq!(io_count(&s, 0x3f8, "out"), 13);
    assert_eq!(mmio_count(&s, 0xd000_1000, "write"), 1);
    assert_eq!(s["by_reason"]["hlt"], 1);
    assert_eq!(s["exits"], 15);
    assert_eq!(s["end"], "halted");
}

#[test]
fn raw_real_mode_image() {
    if !kvm_or_skip("raw_real_mode_image") {
        return;
    }
    let run = run_raw(&guest("real.bin"), "0x7c00", "real", &["--summary", "json"]);
    assert_eq!(run.stdout, "real\n", "stderr: {}", run.stderr);
    assert_eq!(run.status, 11);
    assert_eq!(run.summary()["exits"], 6);
}

#[test]
fn exits_are_decoded_through_the_guests_own_page_tables() {
    if !kvm_or_skip("exits_are_decoded_through_the_guests_own_page_tables") {
        return;
    }
    let run = run_headless(&["--kernel", guest("higherhalf.elf").to_str().unwrap(), "--trace", "--summary", "none"]);
    assert_eq!(run.status, 67, "stderr: {}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(lines.len(), 3, "{}", run.stderr);
    // Higher half, 2 MiB pages, 4-level long mode.
    assert!(lines[0].contains("rip 0xffff8000001") && lines[0].contains("out dx,al"), "{}", lines[0]);
    // A 4 KiB page of the guest's own page table, at 16 GiB.
    assert!(lines[1].contains("rip 0x00000004000000") && lines[1].contains("out dx,al"), "{}", lines[1]);
    assert!(lines[2].contains("out 0F4h,eax"), "{}", lines[2]);
}

#[test]
fn triple_fault_is_reported_with_registers_instruction_and_last_exits() {
    if !kvm_or_skip("triple_fault_is_reported_with_registers_instruction_and_last_exits") {
        return;
    }
    let run = run_headless(&["--kernel", guest("triple.elf").to_str().unwrap()]);
    assert_eq!(run.status, 3, "stderr: {}", run.stderr);
    let e = &run.stderr;
    assert!(e.contains("triple-faulted"), "{e}");
    assert!(e.contains("at rip: ud2  (0f 0b)"), "{e}");
    assert!(e.contains("rip 0000000000100"), "{e}");
    assert!(e.contains("last exits:") && e.contains("out 0x0080 1=0x42"), "{e}");
    assert!(e.contains("VM-EXIT") && e.contains("shutdown"), "the summary follows: {e}");
}

#[test]
fn hostile_guest_ends_in_a_report_not_a_panic() {
    if !kvm_or_skip("hostile_guest_ends_in_a_report_not_a_panic") {
        return;
    }
    let run = run_headless(&["--kernel", guest("hostile.elf").to_str().unwrap(), "--summary", "json"]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(run.status, 3, "{}", run.stderr);
    let s = run.summary();
    // Every element of the string I/O reached the bus and was counted, whatever the batching.
    assert!(io_count(&s, 0x512, "out") >= 1);
    assert_eq!(mmio_count(&s, 0xffff_fffc, "write"), 1);
    assert_eq!(mmio_count(&s, 0xffff_fffc, "read"), 1);
    assert!(matches!(s["end"].as_str(), Some("guest-error" | "triple-fault")), "{s}");
}

#[test]
fn instructions_the_host_cannot_emulate_are_finished_or_handed_to_the_guest() {
    if !kvm_or_skip("instructions_the_host_cannot_emulate_are_finished_or_handed_to_the_guest") {
        return;
    }
    let run = run_headless(&["--kernel", guest("emulate.elf").to_str().unwrap(), "--summary", "json"]);
    assert_eq!(run.stdout, "emulate ok\n", "stderr: {}", run.stderr);
    assert_eq!(run.status, 67, "every check passed: {}", run.stderr);
    if is_pvm() {
        // int3, two popcnt, stac, clac, two cmpxchg16b, fwait, two ldmxcsr, stmxcsr, fldcw, fnclex,
        // fnstsw, three lsl, two lar, two verr and two verw: each an emulation failure, each an exit
        // event, each dealt with.
        assert_eq!(run.summary()["by_reason"]["internal_error"], 23, "{}", run.stderr);
    }
}

/// A real-mode image that writes `value` to the debug-exit port: `mov eax, value; out 0xf4, eax`.
fn debug_exit_image(value: u32) -> std::path::PathBuf {
    let mut code = vec![0x66, 0xb8];
    code.extend_from_slice(&value.to_le_bytes());
    code.extend_from_slice(&[0x66, 0xe7, 0xf4, 0xf4]);
    let path = std::env::temp_dir().join(format!("kvmscope-debug-exit-{value:x}-{}.bin", std::process::id()));
    std::fs::write(&path, code).unwrap();
    path
}

#[test]
fn debug_exit_values_are_unsigned_and_the_status_wraps_as_qemus() {
    if !kvm_or_skip("debug_exit_values_are_unsigned_and_the_status_wraps_as_qemus") {
        return;
    }
    for (value, full, status) in [(16u32, 33u64, 33), (0x80, 257, 1), (u32::MAX, 8_589_934_591, 255)] {
        let image = debug_exit_image(value);
        let text = run_raw(&image, "0x1000", "real", &[]);
        assert_eq!(text.status, status, "{}", text.stderr);
        assert!(text.stderr.contains(&format!("guest wrote {value} to the debug-exit port")), "{}", text.stderr);
        if full > 0xff {
            assert!(text.stderr.contains(&format!("= {full} exits as {status} (status {status})")), "{}", text.stderr);
        }
        let json = run_raw(&image, "0x1000", "real", &["--summary", "json"]);
        let v: serde_json::Value = serde_json::from_str(json.stderr.lines().last().unwrap()).unwrap();
        assert_eq!(
            (v["status"].as_i64(), v["debug_exit"]["value"].as_u64()),
            (Some(status as i64), Some(value as u64))
        );
        assert_eq!(v["debug_exit"]["full_status"].as_u64(), Some(full));
        let _ = std::fs::remove_file(image);
    }
}

#[test]
fn a_crash_on_code_overwritten_with_ff_shows_the_bytes() {
    if !kvm_or_skip("a_crash_on_code_overwritten_with_ff_shows_the_bytes") {
        return;
    }
    let image = std::env::temp_dir().join(format!("kvmscope-ff-{}.bin", std::process::id()));
    std::fs::write(&image, [0xff; 16]).unwrap();
    let run = run_raw(&image, "0x100000", "protected", &[]);
    assert_eq!(run.status, 3, "{}", run.stderr);
    assert!(run.stderr.contains("at rip: undecodable bytes ff ff ff"), "{}", run.stderr);
    let _ = std::fs::remove_file(image);
}

#[test]
fn a_mode_change_between_exits_is_seen_by_the_decoder() {
    if !kvm_or_skip("a_mode_change_between_exits_is_seen_by_the_decoder") {
        return;
    }
    let image = guest("modeswitch.bin");
    let run = run_raw(&image, "0x7c00", "real", &["--trace"]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    let outs: Vec<&str> = run.stderr.lines().filter(|l| l.contains("out 0x0080")).collect();
    assert_eq!(outs.len(), 2, "{}", run.stderr);
    // `ef` in 16-bit code, `66 ef` in 32-bit code: decoded with the mode each was run in.
    assert!(outs[0].ends_with("out dx,ax @0x7c07") || outs[0].contains("out dx,ax @0x7c07 "), "real mode: {}", outs[0]);
    let bytes = std::fs::read(&image).unwrap();
    let at = 0x7c00 + bytes.windows(2).position(|w| w == [0x66, 0xef]).expect("the 32-bit out") as u64;
    assert!(outs[1].contains(&format!("out dx,ax @{at:#x}")), "protected mode, from its 66 prefix: {}", outs[1]);
}

#[test]
fn the_debug_console_ports_reach_the_console_or_a_file() {
    if !kvm_or_skip("the_debug_console_ports_reach_the_console_or_a_file") {
        return;
    }
    let image = guest("debugcon.bin");
    let run = run_raw(&image, "0x7c00", "real", &[]);
    assert_eq!(run.status, 1, "port 0xe9 read back as 0xe9: {}", run.stderr);
    assert_eq!(run.stdout, "qemu debugcon\nbochs e9\n", "{}", run.stderr);
    let file = std::env::temp_dir().join(format!("kvmscope-debugcon-{}.log", std::process::id()));
    let run = run_raw(&image, "0x7c00", "real", &["--debugcon", file.to_str().unwrap()]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert_eq!(run.stdout, "", "the console has none of it");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "qemu debugcon\nbochs e9\n");
    let _ = std::fs::remove_file(file);
}

#[test]
fn a_kernel_s_timer_ticks_with_the_in_kernel_pic_and_pit() {
    if !kvm_or_skip("a_kernel_s_timer_ticks_with_the_in_kernel_pic_and_pit") {
        return;
    }
    let timer = guest("timer.elf");
    let args = ["--kernel", timer.to_str().unwrap(), "--timeout", "30", "--summary", "json"];
    let run = run_headless(&[&args[..], &["--irqchip"]].concat());
    assert!(run.stdout.starts_with("timer ok: "), "ten ticks of IRQ 0 at 100 Hz: {}\n{}", run.stdout, run.stderr);
    assert_eq!(run.status, 67, "{}", run.stderr);
    if is_pvm() {
        // Each tick's handler returns with a 32-bit iretd, which kvmscope finishes for the host.
        let finished = run.summary()["by_reason"]["internal_error"].as_u64().unwrap_or(0);
        assert!(finished >= 10, "{}", run.stderr);
    }
    // Without the interrupt controllers nothing wakes its first hlt.
    let run = run_headless(&args);
    assert_eq!(run.summary()["end"], "halted", "{}", run.stderr);
    assert_eq!(run.stdout, "");
}

#[test]
fn the_first_exit_does_not_carry_start_up_work() {
    if !kvm_or_skip("the_first_exit_does_not_carry_start_up_work") {
        return;
    }
    // The decoder's tables used to be built during the first exit: 2-3 ms, every run's max.
    let first_cost = || {
        let run = run_headless(&["--kernel", guest("hello.elf").to_str().unwrap(), "--trace", "--summary", "none"]);
        let line = run.stderr.lines().find(|l| l.starts_with("#0 ")).expect("the first exit's line").to_string();
        let ns = line.rsplit('[').next().and_then(|c| c.strip_suffix("ns]")).expect("its cost");
        ns.parse::<u64>().unwrap()
    };
    let best = (0..3).map(|_| first_cost()).min().unwrap();
    assert!(best < 500_000, "the first exit took {best} ns at best of three runs");
}

#[test]
fn the_json_summary_can_go_to_a_file_of_its_own() {
    if !kvm_or_skip("the_json_summary_can_go_to_a_file_of_its_own") {
        return;
    }
    let file = std::env::temp_dir().join(format!("kvmscope-summary-{}.json", std::process::id()));
    let hello = guest("hello.elf");
    let args = ["--kernel", hello.to_str().unwrap(), "--summary", "json", "--summary-file", file.to_str().unwrap()];
    let run = run_headless(&args);
    assert_eq!(run.status, 33, "{}", run.stderr);
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(summary["debug_exit"]["value"], 16);
    assert!(!run.stderr.contains("\"exits\""), "stderr keeps only the run's lines: {}", run.stderr);
    let _ = std::fs::remove_file(file);
}

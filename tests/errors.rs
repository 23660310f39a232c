//! Bad input gets one clear message naming what is wrong, exit status 2, and no panic.

mod common;

use common::*;

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kvmscope-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn refused(args: &[&str], want: &[&str]) {
    let run = run_headless(args);
    assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    for w in want {
        assert!(run.stderr.contains(w), "{args:?}: want {w:?} in: {}", run.stderr);
    }
}

#[test]
fn missing_image() {
    if !kvm_or_skip("missing_image") {
        return;
    }
    refused(&["--kernel", "/nonexistent/kernel.elf"], &["/nonexistent/kernel.elf", "No such file"]);
}

#[test]
fn not_a_kernel() {
    if !kvm_or_skip("not_a_kernel") {
        return;
    }
    let p = temp_file("garbage.bin", b"this is not a kernel at all");
    refused(&["--kernel", p.to_str().unwrap()], &["garbage.bin", "not a multiboot kernel", "--image"]);
    let empty = temp_file("empty.bin", b"");
    refused(&["--kernel", empty.to_str().unwrap()], &["empty.bin", "is empty"]);
    refused(&["--kernel", "/tmp"], &["directory"]);
}

#[test]
fn truncated_and_malformed_elf() {
    if !kvm_or_skip("truncated_and_malformed_elf") {
        return;
    }
    let good = std::fs::read(guest("long.elf")).unwrap();
    let t = temp_file("truncated.elf", &good[..100]);
    refused(&["--kernel", t.to_str().unwrap()], &["truncated.elf", "truncated"]);
    let mut bad = good.clone();
    bad[18] = 40; // e_machine = ARM
    let b = temp_file("arm.elf", &bad);
    refused(&["--kernel", b.to_str().unwrap()], &["arm.elf", "not x86"]);
    // A multiboot kernel cut short: its header is intact, its segments are not.
    let mb = std::fs::read(guest("hello.elf")).unwrap();
    let cut = temp_file("cut.elf", &mb[..mb.len() / 2]);
    let run = run_headless(&["--kernel", cut.to_str().unwrap()]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("cut.elf"), "{}", run.stderr);
}

#[test]
fn oversized_image_and_addresses_outside_ram() {
    if !kvm_or_skip("oversized_image_and_addresses_outside_ram") {
        return;
    }
    let big = temp_file("big.bin", &vec![0x90; 3 << 20]);
    refused(
        &[
            "--image",
            big.to_str().unwrap(),
            "--load",
            "0x100000",
            "--entry",
            "0x100000",
            "--mode",
            "protected",
            "--mem",
            "2M",
        ],
        &["big.bin", "larger than guest RAM"],
    );
    let raw = guest("real.bin");
    refused(
        &["--image", raw.to_str().unwrap(), "--load", "0x20000000", "--entry", "0x20000000", "--mode", "long"],
        &["raw image (--image)", "real.bin", "outside guest RAM"],
    );
    refused(
        &["--image", raw.to_str().unwrap(), "--load", "0x1000", "--entry", "0x1000", "--mode", "long"],
        &["boot area"],
    );
    refused(&["--kernel", "x", "--mem", "lots"], &["lots"]);
    refused(&["--image", raw.to_str().unwrap(), "--load", "zz", "--entry", "0", "--mode", "real"], &["zz"]);
}

#[test]
fn elf32_without_multiboot_header() {
    if !kvm_or_skip("elf32_without_multiboot_header") {
        return;
    }
    let mut elf = std::fs::read(guest("hello.elf")).unwrap();
    // Break the multiboot magic wherever it is.
    let pos = elf.windows(4).position(|w| w == 0x1bad_b002u32.to_le_bytes()).unwrap();
    elf[pos] = 0;
    let p = temp_file("nomb.elf", &elf);
    refused(&["--kernel", p.to_str().unwrap()], &["nomb.elf", "32-bit ELF without a multiboot header"]);
}

#[test]
fn no_kvm_device_is_one_clear_line() {
    let run: Run = kvmscope()
        .env("KVMSCOPE_KVM_DEVICE", "/nonexistent/kvm")
        .args(["run", "--headless", "--kernel", guest("hello.elf").to_str().unwrap()])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.status, 1);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("cannot open /nonexistent/kvm") && run.stderr.contains("kvm group"), "{}", run.stderr);
}

#[test]
fn devices_and_fifos_are_not_images_and_nothing_waits_on_them() {
    if !kvm_or_skip("devices_and_fifos_are_not_images_and_nothing_waits_on_them") {
        return;
    }
    let fifo = std::env::temp_dir().join(format!("kvmscope-fifo-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let not_regular = "not an image file";
    refused(&["--kernel", "/dev/zero"], &["kernel image /dev/zero: is a character device", not_regular]);
    refused(
        &["--image", "/dev/zero", "--load", "0x1000", "--entry", "0x1000", "--mode", "real"],
        &["raw image (--image) /dev/zero", not_regular],
    );
    refused(&["--kernel", fifo.to_str().unwrap()], &[fifo.to_str().unwrap(), "is a FIFO", not_regular]);
    let _ = std::fs::remove_file(&fifo);
}

#[test]
fn numeric_options_out_of_range_get_one_clear_message() {
    let spin = guest("spin.elf");
    let spin = spin.to_str().unwrap();
    for (args, want) in [
        (&["--timeout", "1e30"][..], "at most"),
        (&["--timeout", "-1"], "positive number of seconds"),
        (&["--timeout=NaN"], "positive number of seconds"),
        (&["--timeout", "inf"], "positive number of seconds"),
        (&["--mem", "-1"], "memory size \"-1\""),
        (&["--mem=-1"], "memory size \"-1\""),
        (&["--mem", "64K"], "memory size 64K (65536 bytes): must be between 2M and 1T"),
        (&["--mem", "4097K"], "must be a whole number of 4K pages"),
        (&["--cpus", "-1"], "not in 1..=64"),
        (&["--max-exits", "0"], "0 is not in 1.."),
        (&["--max-exits", "-5"], "invalid"),
    ] {
        let mut all = vec!["--kernel", spin];
        all.extend_from_slice(args);
        refused(&all, &[want]);
    }
    let trace = std::env::temp_dir().join("kvmscope-no-such.trace");
    for args in [["--from", "-1"], ["--to", "NaN"], ["--from", "inf"]] {
        let out = kvmscope().arg("stats").arg(&trace).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("seconds"), "{args:?}: {err}");
    }
}

#[test]
fn values_that_start_with_a_dash_work_where_they_are_valid() {
    if !kvm_or_skip("values_that_start_with_a_dash_work_where_they_are_valid") {
        return;
    }
    let spin = guest("spin.elf");
    let run =
        run_headless(&["--kernel", spin.to_str().unwrap(), "--cpu-features", "-cx16,+x2apic", "--max-exits", "5"]);
    assert_eq!(run.status, 124, "the README's --cpu-features example is taken: {}", run.stderr);
}

#[test]
fn options_that_would_do_nothing_are_said() {
    if !kvm_or_skip("options_that_would_do_nothing_are_said") {
        return;
    }
    let hello = guest("hello.elf");
    let hello = hello.to_str().unwrap();
    refused(
        &["--kernel", hello, "--virtio", "none,rng"],
        &["--virtio none cannot be given with other devices (none,rng)"],
    );
    refused(&["--kernel", hello, "--stacks"], &["--record"]);
    refused(&["--kernel", hello, "--symbols", "/nonexistent/vmlinux"], &["symbols /nonexistent/vmlinux"]);
    let run = run_headless(&["--kernel", hello, "--ioeventfd"]);
    assert_eq!(run.status, 33, "{}", run.stderr);
    assert!(run.stderr.contains("--ioeventfd: this VM has no virtio device"), "{}", run.stderr);
}

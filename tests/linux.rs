//! Booting the project's own Linux test kernel (assets/linux: tinyconfig 6.1 plus a fragment, a
//! busybox initramfs), built by assets/linux/build.sh and cached outside the repository.
//! On a host where user mode runs, init prints its marker and reboots; on an emulating host (PVM)
//! the boot ends at init's first system call, so the test looks for "Run /init as init process".

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Builds (or finds) the test kernel; its directory.
fn kernel_dir(test: &str) -> Option<PathBuf> {
    let out = Command::new("bash").arg("assets/linux/build.sh").output().expect("bash runs");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if std::env::var("KVMSCOPE_REQUIRE_KVM").as_deref() == Ok("1") {
            panic!("{test}: building the test kernel failed:\n{err}");
        }
        eprintln!("SKIPPED {test}: the test kernel could not be built:\n{err}");
        return None;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Some(PathBuf::from(stdout.lines().last().unwrap().trim()))
}

const CMDLINE: &str = "console=ttyS0 earlyprintk=serial reboot=k panic=-1";

fn boot(dir: &Path, image: &str, cpus: &str) -> Run {
    run_headless(&[
        "--kernel",
        dir.join(image).to_str().unwrap(),
        "--initrd",
        dir.join("initramfs.cpio").to_str().unwrap(),
        "--cmdline",
        CMDLINE,
        "--cpus",
        cpus,
        "--mem",
        "256M",
        "--timeout",
        "900",
        "--summary",
        "json",
    ])
}

fn reached_init(run: &Run) -> bool {
    run.stdout.contains("kvmscope-initramfs: init is running") || run.stdout.contains("Run /init as init process")
}

#[test]
fn linux_vmlinux_boots_to_init_on_two_cpus() {
    if !kvm_or_skip("linux_vmlinux_boots_to_init_on_two_cpus") {
        return;
    }
    let Some(dir) = kernel_dir("linux_vmlinux_boots_to_init_on_two_cpus") else { return };
    let run = boot(&dir, "vmlinux", "2");
    let tail: String =
        run.stdout.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(run.stdout.contains("Linux version 6.1"), "stderr: {}\nconsole tail:\n{tail}", run.stderr);
    assert!(run.stdout.contains("smp: Brought up 1 node, 2 CPUs"), "console tail:\n{tail}");
    assert!(reached_init(&run), "console tail:\n{tail}\nstderr: {}", run.stderr);
    let s = run.summary();
    assert!(s["end"] == "reset" || s["end"] == "halted", "the kernel ended the run: {s}\n{tail}");
    assert!(!run.stderr.contains("panicked"));
}

#[test]
fn linux_bzimage_of_the_same_kernel_boots() {
    if !kvm_or_skip("linux_bzimage_of_the_same_kernel_boots") {
        return;
    }
    let Some(dir) = kernel_dir("linux_bzimage_of_the_same_kernel_boots") else { return };
    let run = boot(&dir, "bzImage", "1");
    let tail: String =
        run.stdout.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(run.stdout.contains("Linux version 6.1"), "stderr: {}\nconsole tail:\n{tail}", run.stderr);
    assert!(reached_init(&run), "console tail:\n{tail}\nstderr: {}", run.stderr);
}

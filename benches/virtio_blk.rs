//! virtio-blk requests per second from the project's guest (assets/guests/virtio.mb.c, `bench`):
//! 20000 reads of 4 KiB, one at a time, timed by the guest's TSC, with notifications trapped (an
//! MMIO exit to userspace each) and with `--ioeventfd` (KVM signals the device's eventfd), rounds
//! interleaved in one run; and, where `qemu-system-x86_64` is installed, the same guest on QEMU's
//! `microvm` machine with `virtio-blk-device` (the guest finds its transports there too). Prints
//! each one's cycles and microseconds per request (median and minimum) and the ratios.

use std::process::Command;
use std::time::{Duration, Instant};

const READS: f64 = 20000.0;
const ROUNDS: usize = 7;

/// The cycle count in the guest's console line.
fn cycles(stdout: &[u8]) -> f64 {
    let text = String::from_utf8_lossy(stdout);
    let hex = text.lines().find_map(|l| l.strip_prefix("virtio-bench reads 20000 cycles ")).expect("count");
    // Printed as two 32-bit halves, each with its 0x.
    u64::from_str_radix(&hex.trim().replace("0x", ""), 16).expect("hex") as f64
}

/// The same guest on QEMU's microvm (KVM, virtio-blk-device on virtio-mmio, ioeventfd as QEMU
/// has it by default), when QEMU is installed and can run it.
fn qemu(disk: &std::path::Path) -> Option<f64> {
    let guest = kvmscope::guests::guest_path("virtio.elf");
    let drive = format!("id=d0,file={},format=raw,if=none", disk.display());
    let out = Command::new("qemu-system-x86_64")
        .args(["-M", "microvm", "-enable-kvm", "-m", "64M", "-nodefaults", "-no-user-config", "-nographic"])
        .args(["-serial", "stdio", "-global", "virtio-mmio.force-legacy=false", "-kernel"])
        .arg(&guest)
        .args(["-append", "bench", "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-drive", &drive])
        .args(["-device", "virtio-blk-device,drive=d0,serial=kvmscope"])
        .output()
        .ok()?;
    (out.status.code() == Some(103)).then(|| cycles(&out.stdout))
}

/// The guest's TSC cycles for its reads, from its console line.
fn run(ioeventfd: bool, disk: &std::path::Path) -> f64 {
    let guest = kvmscope::guests::guest_path("virtio.elf");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kvmscope"));
    cmd.args(["run", "--headless", "--kernel"]).arg(&guest);
    cmd.args(["--disk"]).arg(disk).args(["--virtio", "none", "--cmdline", "bench", "--summary", "none"]);
    if ioeventfd {
        cmd.arg("--ioeventfd");
    }
    let out = cmd.output().expect("kvmscope runs");
    assert_eq!(out.status.code(), Some(103), "bench guest: {}", String::from_utf8_lossy(&out.stderr));
    cycles(&out.stdout)
}

/// TSC ticks per second, measured against the monotonic clock.
fn tsc_hz() -> f64 {
    // SAFETY: rdtsc has no preconditions on x86_64.
    let tsc = || unsafe { core::arch::x86_64::_rdtsc() };
    let (t0, c0) = (Instant::now(), tsc());
    std::thread::sleep(Duration::from_millis(200));
    (tsc() - c0) as f64 / t0.elapsed().as_secs_f64()
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

fn main() {
    let disk = std::env::temp_dir().join(format!("kvmscope-bench-disk-{}.img", std::process::id()));
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let hz = tsc_hz();
    let (mut trapped, mut eventfd, mut on_qemu) = (Vec::new(), Vec::new(), Vec::new());
    run(false, &disk); // warm the page cache and the binary
    let has_qemu = qemu(&disk).is_some();
    for _ in 0..ROUNDS {
        trapped.push(run(false, &disk) / READS);
        eventfd.push(run(true, &disk) / READS);
        if has_qemu {
            on_qemu.extend(qemu(&disk).map(|c| c / READS));
        }
    }
    let (tm, tmin) = stats(trapped);
    let (em, emin) = stats(eventfd);
    let us = |c: f64| c / hz * 1e6;
    println!("virtio-blk, 4 KiB reads one at a time ({ROUNDS} rounds, TSC {:.2} GHz):", hz / 1e9);
    println!("  {:<22} {:>10} {:>10} {:>11} {:>12}", "", "median cyc", "min cyc", "us/request", "requests/s");
    let mut rows = vec![("kvmscope trapped", tm, tmin), ("kvmscope --ioeventfd", em, emin)];
    if !on_qemu.is_empty() {
        let (qm, qmin) = stats(on_qemu);
        rows.push(("QEMU 7.2 microvm", qm, qmin));
    }
    for (name, m, min) in &rows {
        println!("  {name:<22} {m:>10.0} {min:>10.0} {:>11.2} {:>12.0}", us(*m), 1e6 / us(*m));
    }
    println!("  --ioeventfd / trapped: median {:.3}, min {:.3}", em / tm, emin / tmin);
    match rows.get(2) {
        Some((_, qm, qmin)) => println!("  --ioeventfd / QEMU:    median {:.3}, min {:.3}", em / qm, emin / qmin),
        None => println!("  QEMU: not installed (or it could not run the guest on microvm): not compared"),
    }
    let _ = std::fs::remove_file(disk);
}

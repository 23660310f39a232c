//! virtio-net frames per second between the project's guest (assets/guests/net.mb.c, `pingpong`)
//! and the host, on a TAP in a network namespace of the bench's own (root): the guest sends an ICMP
//! echo request to the namespace's address and waits for the reply before the next, 2000 times,
//! timed by its TSC — each round trip is one frame to the TAP and one back. With notifications
//! trapped and with `--ioeventfd`, rounds interleaved in one run; and, where
//! `qemu-system-x86_64` is installed, the same guest on QEMU's `microvm` machine with
//! `virtio-net-device` on the same TAP. Prints cycles and microseconds per round trip (median and
//! minimum), frames per second, and the ratios.

use std::process::Command;
use std::time::{Duration, Instant};

const ROUND_TRIPS: f64 = 2000.0;
const ROUNDS: usize = 5;
/// The guest's isa-debug-exit status after its round trips.
const DONE: i32 = 109;

/// The cycle count in the guest's console line.
fn cycles(stdout: &[u8]) -> Option<f64> {
    let text = String::from_utf8_lossy(stdout);
    let hex = text.lines().find_map(|l| l.strip_prefix("net-bench round-trips 2000 cycles "))?;
    u64::from_str_radix(hex.trim(), 16).ok().map(|c| c as f64)
}

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// The bench's namespace with its TAP, removed when dropped.
struct Netns(String);

impl Netns {
    fn new() -> Self {
        let name = format!("kvs-bench-{}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Self(name);
        ip(&["-n", &ns.0, "tuntap", "add", "dev", "tap0", "mode", "tap"]);
        ip(&["-n", &ns.0, "addr", "add", "10.0.2.2/24", "dev", "tap0"]);
        ip(&["-n", &ns.0, "link", "set", "tap0", "up"]);
        ns
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn run(ns: &Netns, ioeventfd: bool) -> f64 {
    let guest = kvmscope::guests::guest_path("net.elf");
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_kvmscope"));
    cmd.args(["run", "--headless", "--kernel"]).arg(&guest);
    cmd.args(["--net", "tap=tap0", "--cmdline", "pingpong=2000", "--summary", "none", "--timeout", "120"]);
    if ioeventfd {
        cmd.arg("--ioeventfd");
    }
    let out = cmd.output().expect("kvmscope runs");
    assert_eq!(out.status.code(), Some(DONE), "bench guest: {}", String::from_utf8_lossy(&out.stderr));
    cycles(&out.stdout).expect("the guest's count")
}

/// The same guest on QEMU's microvm (KVM, virtio-net-device on the TAP, no vhost: this host has
/// no /dev/vhost-net), when QEMU is installed and can run it.
fn qemu(ns: &Netns) -> Option<f64> {
    let guest = kvmscope::guests::guest_path("net.elf");
    let out = ns
        .command("qemu-system-x86_64")
        .args(["-M", "microvm", "-enable-kvm", "-m", "64M", "-nodefaults", "-no-user-config", "-nographic"])
        .args(["-serial", "stdio", "-global", "virtio-mmio.force-legacy=false", "-kernel"])
        .arg(&guest)
        .args(["-append", "pingpong=2000", "-device", "isa-debug-exit,iobase=0xf4,iosize=4"])
        .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=off"])
        .args(["-device", "virtio-net-device,netdev=n0,mac=52:54:00:12:34:56"])
        .output()
        .ok()?;
    if out.status.code() != Some(DONE) {
        eprintln!("QEMU: status {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
        return None;
    }
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
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("virtio_net: needs root (a network namespace and a TAP); not run");
        return;
    }
    let ns = Netns::new();
    let hz = tsc_hz();
    let (mut trapped, mut eventfd, mut on_qemu) = (Vec::new(), Vec::new(), Vec::new());
    run(&ns, false); // warm up
    let has_qemu = qemu(&ns).is_some();
    for _ in 0..ROUNDS {
        trapped.push(run(&ns, false) / ROUND_TRIPS);
        eventfd.push(run(&ns, true) / ROUND_TRIPS);
        if has_qemu {
            on_qemu.extend(qemu(&ns).map(|c| c / ROUND_TRIPS));
        }
    }
    let (tm, tmin) = stats(trapped);
    let (em, emin) = stats(eventfd);
    let us = |c: f64| c / hz * 1e6;
    println!("virtio-net, ICMP echo round trips guest -> TAP -> guest ({ROUNDS} rounds, TSC {:.2} GHz):", hz / 1e9);
    println!("  {:<22} {:>10} {:>10} {:>9} {:>10}", "", "median cyc", "min cyc", "us/trip", "frames/s");
    let mut rows = vec![("kvmscope trapped", tm, tmin), ("kvmscope --ioeventfd", em, emin)];
    if !on_qemu.is_empty() {
        let (qm, qmin) = stats(on_qemu);
        rows.push(("QEMU microvm", qm, qmin));
    }
    for (name, m, min) in &rows {
        println!("  {name:<22} {m:>10.0} {min:>10.0} {:>9.2} {:>10.0}", us(*m), 2e6 / us(*m));
    }
    println!("  --ioeventfd / trapped: median {:.3}, min {:.3}", em / tm, emin / tmin);
    match rows.get(2) {
        Some((_, qm, qmin)) => println!("  --ioeventfd / QEMU:    median {:.3}, min {:.3}", em / qm, emin / qmin),
        None => println!("  QEMU: not installed (or it could not run the guest on microvm): not compared"),
    }
}

//! Whether busy vCPUs scale: the `smp` guest keeps every vCPU writing to a port (one exit per
//! write), under `kvmscope run --headless --irqchip` with one vCPU and with two, interleaved, each
//! run for a few seconds; exits per second from the run's own summary. Two vCPUs should reach
//! 1.8× one where the host has two cores free for them — on a 2-core machine the bench itself, the
//! host's other work and kvmscope's other threads share those cores. Beside it, the floor: bare
//! `KVM_RUN` loops on the same guest, one thread per vCPU, answering only the ports — how far the
//! host itself lets two vCPUs scale.
//!
//! `cargo bench --bench vcpu_scaling` prints exits per second for each, per vCPU, and the ratios.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kvm_ioctls::VcpuExit;
use kvmscope::guests::guest_path;
use kvmscope::vmm::memory::GuestRam;

const ROUNDS: usize = 7;
const SECONDS: &str = "3";

/// One run with `cpus` vCPUs: (exits per second in all, exits of each vCPU).
fn run(cpus: u32) -> (f64, Vec<u64>) {
    let out = Command::new(env!("CARGO_BIN_EXE_kvmscope"))
        .args(["run", "--headless", "--irqchip", "--summary", "json", "--mem", "64M", "--timeout", SECONDS])
        .args(["--cpus", &cpus.to_string(), "--kernel"])
        .arg(guest_path("smp.elf"))
        .output()
        .expect("kvmscope runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains(&format!("smp: {cpus} of {cpus} cpus running")), "{stdout}\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap_or_default()).expect("summary");
    let exits = summary["exits"].as_f64().unwrap();
    let secs = summary["elapsed_ns"].as_f64().unwrap() / 1e9;
    let per_vcpu = summary["per_vcpu"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    (exits / secs, per_vcpu)
}

/// The floor with `cpus` vCPUs: bare loops on their own threads, exits per second in all.
fn floor(cpus: u32) -> f64 {
    let ram = GuestRam::new(64 << 20).unwrap();
    let (_vm, vcpus) = common::bare_vm(&ram, "smp.elf", cpus, true);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let exits: u64 = std::thread::scope(|s| {
        let threads: Vec<_> = vcpus
            .into_iter()
            .map(|mut vcpu| {
                let stop = &stop;
                s.spawn(move || {
                    let mut exits = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        match vcpu.run() {
                            Ok(VcpuExit::IoIn(0x3fd, data)) => data[0] = 0x20, // the UART is always ready
                            Ok(VcpuExit::IoIn(0x71, data)) => data[0] = cpus as u8 - 1, // CMOS: CPUs - 1
                            Ok(VcpuExit::IoOut(..) | VcpuExit::IoIn(..)) => {}
                            // An AP woken by its STARTUP IPI.
                            Err(e) if e.errno() == libc::EAGAIN => continue,
                            other => panic!("floor loop: unexpected exit {other:?}"),
                        }
                        exits += 1;
                    }
                    exits
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(SECONDS.parse().unwrap()));
        stop.store(true, Ordering::Relaxed);
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    exits as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if std::fs::metadata("/dev/kvm").is_err() {
        eprintln!("vcpu_scaling: /dev/kvm not available, nothing measured");
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "vcpu_scaling: {cores} host cores, load average {}",
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    let (mut one, mut two, mut split) = (Vec::new(), Vec::new(), Vec::new());
    let (mut floor_one, mut floor_two) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        floor_one.push(floor(1));
        floor_two.push(floor(2));
        one.push(run(1).0);
        let (rate, per_vcpu) = run(2);
        two.push(rate);
        split.push(per_vcpu);
    }
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let line = |name: &str, v: &[f64]| println!("  {name:<36} {:>14.0} {:>16.0}", median(v.to_vec()), best(v));
    let ratio = |name: &str, a: &[f64], b: &[f64], target: &str| {
        let (ma, mb) = (median(a.to_vec()), median(b.to_vec()));
        println!("  {name:<36} {:>14.3} {:>16.3}{target}", ma / mb, best(a) / best(b));
    };
    println!("  ({ROUNDS} rounds of {SECONDS} s, interleaved)      median exits/s     best exits/s");
    line("floor, 1 vCPU (bare KVM_RUN loop)", &floor_one);
    line("floor, 2 vCPUs", &floor_two);
    line("kvmscope, 1 vCPU spinning", &one);
    line("kvmscope, 2 vCPUs spinning", &two);
    println!("  exits of each vCPU, last round      {:?}", split.last().unwrap());
    ratio("ratio floor 2 vCPUs / 1 vCPU", &floor_two, &floor_one, "");
    ratio("ratio kvmscope 2 vCPUs / 1 vCPU", &two, &one, "  (target >= 1.8)");
}

//! Where the userspace time of one exit goes: each stage of kvmscope's exit path, run alone in a
//! tight loop on the `bench` guest's own exit (`out %al, $0x80` in 32-bit protected mode, its code
//! in guest memory), beside the `KVM_RUN` round trip of the bare loop measured in the same run. The
//! stages are the vCPU loop's: reading the clock, translating the exit and dispatching it to the bus,
//! decoding its instruction, counting it, building the event and keeping it for a crash report.
//!
//! `cargo bench --bench exit_breakdown` prints nanoseconds per exit for each stage and its share of
//! the round trip; the next regression shows up here as one line that grew.

mod common;

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kvm_ioctls::VcpuExit;
use kvmscope::decode::{CpuMode, ExitRegs, InsnDecoder};
use kvmscope::guests::guest_path;
use kvmscope::trace::{Counters, Dir, ExitEvent, ExitKind};
use kvmscope::vmm::bus::Buses;
use kvmscope::vmm::clock::Clock;
use kvmscope::vmm::devices::PostCode;
use kvmscope::vmm::exit::{RunDetail, translate};
use kvmscope::vmm::loader;
use kvmscope::vmm::memory::GuestRam;

const N: u32 = 200_000;
const MEM: u64 = 64 << 20;

/// Nanoseconds per call of `f`, the best of five runs of `N` calls.
fn per_call(mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..N {
                f();
            }
            t.elapsed().as_nanos() as f64 / N as f64
        })
        .fold(f64::MAX, f64::min)
}

/// The bare loop's round trip per exit, in nanoseconds (the bench guest, 20000 port exits).
fn round_trip(ram: &GuestRam) -> f64 {
    let (_vm, mut vcpu) = common::bare_vcpu(ram);
    // Timed over the guest's port loop: from its second `out` to its first MMIO write.
    let (mut posts, mut start, mut end) = (0u32, None, None);
    loop {
        match vcpu.run().unwrap() {
            VcpuExit::IoOut(0x80, _) => {
                posts += 1;
                if posts == 2 {
                    start = Some(Instant::now());
                }
            }
            VcpuExit::MmioWrite(..) => {
                if end.is_none() {
                    end = start.map(|t: Instant| t.elapsed());
                }
            }
            VcpuExit::IoOut(0xf4, _) => break,
            VcpuExit::IoIn(0x3fd, data) => data[0] = 0x20, // the UART is always ready
            VcpuExit::IoOut(..) | VcpuExit::IoIn(..) => {}
            other => panic!("unexpected exit {other:?}"),
        }
    }
    end.map_or(0.0, |t| t.as_nanos() as f64 / (posts - 2) as f64)
}

fn main() {
    if std::fs::metadata("/dev/kvm").is_err() {
        eprintln!("exit_breakdown: /dev/kvm not available, nothing measured");
        return;
    }
    let ram = GuestRam::new(MEM).unwrap();
    let trip = round_trip(&ram);
    // The guest's loop: `1: out %al, $0x80; dec %ecx; jnz 1b` — find the `out` in its code.
    let boot = loader::load_kernel(&guest_path("bench.elf"), &ram, "", None).unwrap();
    let mut code = vec![0u8; 256];
    assert!(kvmscope::decode::PhysRead::read_phys(&ram, boot.entry, &mut code));
    let out_at = code.windows(2).position(|w| w == [0xe6, 0x80]).expect("the out in the bench guest") as u64;
    let rip = boot.entry + out_at + 2; // past the `out`, as KVM leaves it
    let mode = CpuMode { cr0: 0x11, cs_db: true, ..Default::default() };

    let mut buses = Buses::default();
    buses.pio.insert("post", 0x80, 1, Arc::new(Mutex::new(PostCode::default()))).unwrap();
    let detail = RunDetail { io_size: 1, ..Default::default() };
    let vcpu_clock = Clock::start();
    let clock = per_call(|| {
        let t = vcpu_clock.now();
        black_box(vcpu_clock.ns_since_start(t));
        black_box(vcpu_clock.ns_between(t, vcpu_clock.now()));
    });
    let dispatch = per_call(|| {
        black_box(translate(VcpuExit::IoOut(0x80, black_box(&[0u8])), &detail, &buses, &ram));
    });
    let kind = ExitKind::Io { port: 0x80, dir: Dir::Out, size: 1, count: 1, data: 0 };
    let mut decoder = InsnDecoder::default();
    let regs = kvm_bindings::kvm_regs { rip, ..Default::default() };
    let sregs = kvm_bindings::kvm_sregs::default();
    let at = ExitRegs { regs: &regs, sregs: &sregs };
    let insn = decoder.decode_exit(&ram, &mode, at, &kind);
    assert!(insn.as_ref().is_some_and(|i| i.text.starts_with("out")), "{insn:?}");
    let decode = per_call(|| {
        black_box(decoder.decode_exit(&ram, &mode, black_box(at), &kind));
    });
    let event = ExitEvent { seq: 0, vcpu: 0, t_ns: 0, rip, kind: kind.clone(), device: Some("post"), insn, cost_ns: 1 };
    let mut counters = Counters::default();
    let count = per_call(|| counters.record(black_box(&event)));
    let mut recent: VecDeque<ExitEvent> = VecDeque::with_capacity(16);
    let keep = per_call(|| {
        if recent.len() == 16 {
            recent.pop_front();
        }
        recent.push_back(black_box(event.clone()));
    });

    let stages = [
        ("clock (TSC: timestamp and cost)", clock),
        ("translate + dispatch to the bus", dispatch),
        ("decode the instruction", decode),
        ("count", count),
        ("build and keep the event", keep),
    ];
    let total: f64 = stages.iter().map(|s| s.1).sum();
    println!("per-exit userspace cost of kvmscope's stages, beside the KVM_RUN round trip:");
    println!("  {:<36} {:>9.0} ns", "KVM_RUN round trip (bare loop)", trip);
    for (name, ns) in stages {
        println!("  {name:<36} {ns:>9.1} ns  {:>5.2}% of the round trip", ns / trip * 100.0);
    }
    println!("  {:<36} {total:>9.1} ns  {:>5.2}% of the round trip", "all stages", total / trip * 100.0);
}

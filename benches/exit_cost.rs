//! Per-exit cost of kvmscope against the floor: a bare `KVM_RUN` loop that only answers the ports,
//! on the same guest, in the same run. The guest (assets/guests/bench.mb.S) reads its TSC around
//! 20000 port exits and prints the cycle count, so boot time and host noise stay outside the window.
//!
//! `cargo bench --bench exit_cost` prints the median cycles per exit of each and their ratio.

use std::io::Write;
use std::sync::{Arc, Mutex};

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};
use kvmscope::guests::guest_path;
use kvmscope::vmm::loader::{self, BootMode};
use kvmscope::vmm::memory::GuestRam;
use kvmscope::vmm::{Image, RunLimits, Vm, VmConfig, boot_cpu};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

const EXITS: f64 = 20000.0;
const ROUNDS: usize = 11;
const MEM: u64 = 64 << 20;

/// The cycle count the guest printed.
fn cycles(console: &[u8]) -> f64 {
    let text = String::from_utf8_lossy(console);
    let hex = text.lines().find_map(|l| l.strip_prefix("tsc-cycles ")).expect("guest printed its count");
    u64::from_str_radix(hex.trim(), 16).expect("hex count") as f64
}

/// The floor: KVM_RUN in a loop, serial bytes collected, nothing traced, counted or decoded.
fn floor_run() -> f64 {
    let kvm = Kvm::new().expect("/dev/kvm");
    let vm = kvm.create_vm().unwrap();
    let ram = GuestRam::new(MEM).unwrap();
    for (slot, r) in ram.mem.iter().enumerate() {
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: r.start_addr().0,
            memory_size: r.len(),
            userspace_addr: r.as_ptr() as u64,
        };
        // SAFETY: `ram` outlives the VM in this function.
        unsafe { vm.set_user_memory_region(region) }.unwrap();
    }
    let boot = loader::load_kernel(&guest_path("bench.elf"), &ram, "").unwrap();
    assert_eq!(boot.mode, BootMode::Protected);
    boot_cpu::write_boot_tables(&ram, boot.mode);
    let mut vcpu = vm.create_vcpu(0).unwrap();
    vcpu.set_cpuid2(&kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).unwrap()).unwrap();
    let mut sregs = vcpu.get_sregs().unwrap();
    let regs = boot_cpu::entry_state(&boot, &mut sregs);
    vcpu.set_sregs(&sregs).unwrap();
    vcpu.set_regs(&regs).unwrap();
    let mut console = Vec::new();
    loop {
        match vcpu.run().unwrap() {
            VcpuExit::IoOut(0x3f8, data) => console.extend_from_slice(data),
            VcpuExit::IoIn(0x3fd, data) => data[0] = 0x20,
            VcpuExit::IoOut(0xf4, _) => break,
            VcpuExit::IoOut(..) | VcpuExit::IoIn(..) => {}
            other => panic!("floor loop: unexpected exit {other:?}"),
        }
    }
    cycles(&console)
}

/// Guest output captured for the benchmark.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// kvmscope's own headless path: classify, dispatch, decode, time and count every exit.
fn kvmscope_run() -> f64 {
    let capture = Capture::default();
    let vm = Vm::new(VmConfig {
        image: Image::Kernel(guest_path("bench.elf")),
        mem_size: MEM,
        cmdline: String::new(),
        cpus: 1,
        console: Box::new(capture.clone()),
    })
    .unwrap();
    let report = vm.run(RunLimits::default(), Vec::new()).unwrap();
    assert_eq!(report.end.status(), 1, "{}", report.end);
    let console = capture.0.lock().unwrap().clone();
    cycles(&console)
}

/// Median and minimum.
fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0])
}

fn main() {
    if std::fs::metadata("/dev/kvm").is_err() {
        eprintln!("exit_cost: /dev/kvm not available, nothing measured");
        return;
    }
    let (mut floor, mut scope) = (Vec::new(), Vec::new());
    // Interleaved, so drift in host load hits both alike.
    for _ in 0..ROUNDS {
        floor.push(floor_run() / EXITS);
        scope.push(kvmscope_run() / EXITS);
    }
    let ((f_med, f_min), (s_med, s_min)) = (stats(floor), stats(scope));
    println!("exit cost, guest TSC cycles per exit ({ROUNDS} rounds of {EXITS} exits each):");
    println!("                                           median        min");
    println!("  floor (bare KVM_RUN loop)            {f_med:>10.0} {f_min:>10.0}");
    println!("  kvmscope --headless (count, decode)  {s_med:>10.0} {s_min:>10.0}");
    println!(
        "  ratio kvmscope / floor               {:>10.3} {:>10.3}  (target <= 1.10)",
        s_med / f_med,
        s_min / f_min
    );
}

//! Per-exit cost of kvmscope against the floor: a bare `KVM_RUN` loop that only answers the ports,
//! on the same guest, in the same run. The guest (assets/guests/bench.mb.S) reads its TSC around
//! 100000 port exits and 100000 MMIO writes and prints the cycle count, so boot time and host noise
//! stay outside the window.
//!
//! kvmscope is measured twice: as a user runs it (`kvmscope run --headless`, the release binary in
//! a process of its own) and in the bench's process through `session::launch`, the way the variants
//! that look at more (the TUI, `--record`, ...) run, so that each of those is compared with a
//! headless run made the same way.
//!
//! `cargo bench --bench exit_cost` prints the median and minimum cycles per exit of each variant,
//! rounds interleaved, and each variant's ratio to its baseline taken round by round (so the host's
//! drift between rounds cancels): kvmscope run --headless against the floor (and against QEMU with
//! KVM on the same guest, where `qemu-system-x86_64` is installed); the floor with KVM_SYNC_REGS on
//! (what KVM's copy of the registers costs) and, as well, on a thread of its own (the floor of any
//! VMM that looks at every exit, against which kvmscope's own work shows); the TUI attached and
//! `--record` against headless; the port exits as console bytes (COM1), with `--record` against
//! without (each byte is also a console record).
//! `cargo bench --bench exit_cost -- all` adds what the optional features cost: `--stacks`, an MSR
//! filter, `--kernel-events`, `--dirty-log`, the TUI's memory screen.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvm_ioctls::VcpuExit;
use kvmscope::guests::guest_path;
use kvmscope::session::{self, Session};
use kvmscope::sink::ExitSink;
use kvmscope::sink::live::{LIVE_CAPACITY, LiveFeed};
use kvmscope::ui::app::App;
use kvmscope::ui::screen::Screen;
use kvmscope::ui::{reader, view};
use kvmscope::vmm::memory::GuestRam;
use kvmscope::vmm::{Image, RunEnd, VmConfig};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// Exits in the guest's measured window: 100000 port writes and 100000 MMIO writes.
const EXITS: f64 = 200000.0;
const ROUNDS: usize = 11;
const MEM: u64 = 64 << 20;

/// The floor: KVM_RUN in a loop, serial bytes collected, nothing traced, counted or decoded; with
/// `sync`, KVM also copies the registers into `kvm_run` on every exit, as kvmscope has it do.
fn floor_run(sync: bool) -> f64 {
    let ram = GuestRam::new(MEM).unwrap();
    let (_vm, mut vcpu) = common::bare_vcpu(&ram);
    if sync {
        vcpu.set_sync_valid_reg(kvm_ioctls::SyncReg::Register);
        vcpu.set_sync_valid_reg(kvm_ioctls::SyncReg::SystemRegister);
    }
    let mut console = Vec::new();
    loop {
        match vcpu.run().unwrap() {
            VcpuExit::IoOut(0x3f8, data) => console.extend_from_slice(data),
            VcpuExit::IoIn(0x3fd, data) => data[0] = 0x20,
            VcpuExit::IoOut(0xf4, _) => break,
            VcpuExit::IoOut(..) | VcpuExit::IoIn(..) | VcpuExit::MmioWrite(..) => {}
            other => panic!("floor loop: unexpected exit {other:?}"),
        }
    }
    common::cycles(&console)
}

/// The floor as a VMM that looks at every exit must run it: KVM_SYNC_REGS on (the RIP and the
/// mode of each exit) and the loop on a thread of its own (the process's first thread stays free
/// for the UI). What kvmscope adds beyond this is its own work per exit.
fn looking_floor_run() -> f64 {
    std::thread::spawn(|| floor_run(true)).join().unwrap()
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

/// What a kvmscope run looks at besides counting and decoding.
#[derive(Clone, Copy, Default)]
struct Looking {
    /// The live feed drained by the TUI's own loop (App updates and drawing, 30 frames a second,
    /// into a 160x45 TestBackend).
    ui: bool,
    record: bool,
    /// `--stacks`: a frame-pointer walk on one exit in N.
    stacks: Option<u64>,
    /// An MSR filter installed (trapping PAT, which the guest never touches).
    msr_filter: bool,
    /// `--kernel-events`: KVM's tracepoints followed (root).
    kernel_events: bool,
    /// `--dirty-log`: KVM logs the pages the guest writes; read every second.
    dirty_log: bool,
    /// With `ui`: the memory screen shows, as in the TUI's loop (map read every second, dirty log on).
    memory_screen: bool,
    /// The guest's port exits are bytes to the serial port (`console` on its command line).
    console: bool,
}

/// kvmscope's own headless path: classify, dispatch, decode, time and count every exit, and what
/// `looking` adds.
fn kvmscope_run(looking: Looking) -> f64 {
    let Looking { ui, record, stacks, msr_filter, kernel_events, dirty_log, memory_screen, console } = looking;
    let capture = Capture::default();
    let config = VmConfig {
        debugcon: None,
        image: Image::Kernel(guest_path("bench.elf")),
        mem_size: MEM,
        cmdline: if console { "console".into() } else { String::new() },
        cpus: 1,
        console: Box::new(capture.clone()),
        initrd: None,
        host_workarounds: true,
        cpu_features: Vec::new(),
        virtio: Default::default(),
        trap_msrs: if msr_filter { vec![0x277] } else { Vec::new() },
        dirty_log,
        irqchip: false,
        machine_args: Vec::new(),
    };
    let (feed, events) = LiveFeed::new(LIVE_CAPACITY);
    let feed = Arc::new(feed);
    let sinks: Vec<Arc<dyn ExitSink>> = if ui { vec![feed.clone()] } else { Vec::new() };
    let trace = std::env::temp_dir().join(format!("kvmscope-bench-{}.trace", std::process::id()));
    let limits = kvmscope::vmm::RunLimits { stacks_every: stacks, ..Default::default() };
    let session = Session { record: record.then(|| trace.clone()), limits, kernel_events, ..Default::default() };
    let mut launched = session::launch(config, session, sinks, |_| {}).unwrap();
    let report = if ui {
        let controller = launched.controller.clone();
        let mut app = App::new("bench");
        // The exits screen: every exit explained in its device/register column.
        app.screen = Screen::Exits;
        if memory_screen {
            app.screen = Screen::Memory;
            controller.set_dirty_logging(true).unwrap();
            app.memmap.dirty_on = true;
        }
        let mut term = Terminal::new(TestBackend::new(160, 45)).unwrap();
        loop {
            if launched.poll(Duration::from_millis(33)).is_some() {
                break launched.finish(RunEnd::Quit).unwrap();
            }
            app.exits.push(events.try_iter());
            app.exits.dropped = feed.dropped();
            app.stats.update(controller.counters(), Instant::now());
            app.stats.kvm.sample(controller.kvm_counts(), Instant::now());
            app.set_stops(&controller.stops(), controller.is_paused());
            reader::refresh(&mut app, controller.memory());
            if app.screen == Screen::Memory && app.memmap.due(Instant::now()) {
                let _ = controller.sample_dirty();
                app.memmap.show(controller.memory_map(), Instant::now());
            }
            term.draw(|f| {
                app.pane_rects = view::draw(f, &app);
            })
            .unwrap();
        }
    } else {
        launched.wait().unwrap()
    };
    assert_eq!(report.end.status(), 1, "{}", report.end);
    let _ = std::fs::remove_file(&trace);
    let console = capture.0.lock().unwrap().clone();
    common::cycles(&console)
}

/// `kvmscope run --headless` as a user runs it: the release binary, in its own process.
fn binary_run() -> f64 {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kvmscope"))
        .args(["run", "--headless", "--summary", "none", "--mem", "64M", "--kernel"])
        .arg(guest_path("bench.elf"))
        .output()
        .expect("kvmscope runs");
    common::cycles(&out.stdout)
}

/// QEMU with KVM on the same guest, when `qemu-system-x86_64` is installed (its multiboot loader
/// runs the bench guest unchanged, with isa-debug-exit where the guest expects it).
fn qemu_run() -> Option<f64> {
    let out = std::process::Command::new("qemu-system-x86_64")
        .args(["-enable-kvm", "-m", "64", "-nodefaults", "-no-reboot", "-display", "none"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-serial", "stdio", "-kernel"])
        .arg(guest_path("bench.elf"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.contains("tsc-cycles ").then(|| common::cycles(&out.stdout))
}

/// The variants others are compared with (by name), and QEMU's.
const FLOOR: &str = "floor (bare KVM_RUN loop)";
const LOOKING_FLOOR: &str = "floor on its own thread, KVM_SYNC_REGS";
const BINARY: &str = "kvmscope run --headless";
const IN_PROCESS: &str = "headless, in-process";
const TUI: &str = "TUI attached (exits screen)";
const RECORD: &str = "--record";
const CONSOLE: &str = "console bytes (port exits to COM1)";
const QEMU: &str = "QEMU -enable-kvm";

/// One way of running the bench guest, and what it is compared with.
struct Variant {
    name: &'static str,
    /// Guest TSC cycles in the measured window; `None` when it cannot run here (QEMU missing).
    run: Box<dyn Fn() -> Option<f64>>,
    /// The variant (by name) this one is a ratio against, and the target for that ratio.
    against: Option<(&'static str, Option<f64>)>,
    /// Cycles per exit of each round.
    rounds: Vec<f64>,
}

fn variant(
    name: &'static str,
    against: Option<(&'static str, Option<f64>)>,
    run: impl Fn() -> Option<f64> + 'static,
) -> Variant {
    Variant { name, run: Box::new(run), against, rounds: Vec::new() }
}

/// Median and minimum.
fn stats(v: &[f64]) -> (f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0])
}

/// `f` of each round's pair, its median, and `f` of the two minimums.
fn paired(a: &[f64], b: &[f64], f: impl Fn(f64, f64) -> f64) -> (f64, f64) {
    let per_round: Vec<f64> = a.iter().zip(b).map(|(x, y)| f(*x, *y)).collect();
    (stats(&per_round).0, f(stats(a).1, stats(b).1))
}

fn main() {
    if std::fs::metadata("/dev/kvm").is_err() {
        eprintln!("exit_cost: /dev/kvm not available, nothing measured");
        return;
    }
    // `cargo bench --bench exit_cost -- all` adds what the optional features cost.
    let all = std::env::args().any(|a| a == "all");
    let rounds = if all { ROUNDS } else { 2 * ROUNDS - 1 };
    let scope = |looking: Looking| move || Some(kvmscope_run(looking));
    let mut variants = vec![
        variant(FLOOR, None, || Some(floor_run(false))),
        variant("floor with KVM_SYNC_REGS", Some((FLOOR, None)), || Some(floor_run(true))),
        variant(LOOKING_FLOOR, Some((FLOOR, None)), || Some(looking_floor_run())),
        variant(BINARY, Some((FLOOR, Some(1.05))), || Some(binary_run())),
        variant(QEMU, Some((FLOOR, None)), qemu_run),
        variant(IN_PROCESS, Some((BINARY, None)), scope(Looking::default())),
        variant(TUI, Some((IN_PROCESS, Some(1.05))), scope(Looking { ui: true, ..Default::default() })),
        variant(RECORD, Some((IN_PROCESS, Some(1.05))), scope(Looking { record: true, ..Default::default() })),
        variant(CONSOLE, Some((IN_PROCESS, None)), scope(Looking { console: true, ..Default::default() })),
        variant(
            "console bytes, --record",
            Some((CONSOLE, Some(1.05))),
            scope(Looking { console: true, record: true, ..Default::default() }),
        ),
    ];
    if all {
        let record = |more: Looking| scope(Looking { record: true, ..more });
        variants.extend([
            variant(
                "--stacks 64 --record",
                Some((RECORD, None)),
                record(Looking { stacks: Some(64), ..Default::default() }),
            ),
            variant(
                "--stacks all --record",
                Some((RECORD, None)),
                record(Looking { stacks: Some(1), ..Default::default() }),
            ),
            variant(
                "MSR filter, none trapped",
                Some((IN_PROCESS, None)),
                scope(Looking { msr_filter: true, ..Default::default() }),
            ),
            variant(
                "--kernel-events",
                Some((IN_PROCESS, None)),
                scope(Looking { kernel_events: true, ..Default::default() }),
            ),
            variant("--dirty-log", Some((IN_PROCESS, None)), scope(Looking { dirty_log: true, ..Default::default() })),
            variant(
                "TUI on the memory screen",
                Some((TUI, None)),
                scope(Looking { ui: true, memory_screen: true, ..Default::default() }),
            ),
        ]);
    }
    if qemu_run().is_none() {
        variants.retain(|v| v.name != QEMU);
    }
    // Interleaved, so drift in host load hits all alike; every other round in reverse order, so a
    // drift within a round does not always favour the variants that run first.
    let n = variants.len();
    for round in 0..rounds {
        for i in 0..n {
            let v = &mut variants[if round % 2 == 0 { i } else { n - 1 - i }];
            let cycles = (v.run)().expect("the variant ran before");
            v.rounds.push(cycles / EXITS);
        }
    }
    println!("exit cost, guest TSC cycles per exit ({rounds} rounds of {EXITS} exits each):");
    println!("  {:<64} {:>10} {:>10}", "", "median", "min");
    for v in &variants {
        let (med, min) = stats(&v.rounds);
        println!("  {:<64} {med:>10.0} {min:>10.0}", v.name);
    }
    if !variants.iter().any(|v| v.name == QEMU) {
        println!("  {QEMU:<64} (qemu-system-x86_64 not installed)");
    }
    // Each round's ratio is taken against the baseline of the same round, so that the host's drift
    // between rounds cancels; the median of those is the figure to quote. Beside it, the ratio of
    // the two minimums: each at its least disturbed.
    println!("  {:<64} {:>10} {:>10}", "ratio", "median", "of mins");
    for v in &variants {
        let Some((base, target)) = v.against else { continue };
        let Some(b) = variants.iter().find(|b| b.name == base) else { continue };
        let (med, min) = paired(&v.rounds, &b.rounds, |x, y| x / y);
        let target = target.map_or(String::new(), |t| format!("  (target <= {t:.2})"));
        println!("  {:<64} {med:>10.3} {min:>10.3}{target}", format!("{} / {}", v.name, base));
    }
    // What each adds to an exit, in cycles: a ratio depends on how dear the host makes an exit, the
    // cycles a VMM adds much less.
    println!("  {:<64} {:>10} {:>10}", "cycles added per exit", "median", "of mins");
    let floor = &variants[0];
    for v in variants.iter().filter(|v| v.against.is_some_and(|(base, _)| base == FLOOR)) {
        let (med, min) = paired(&v.rounds, &floor.rounds, |x, y| x - y);
        println!("  {:<64} {med:>10.0} {min:>10.0}", format!("{} - floor", v.name));
    }
    let by_name = |name: &str| variants.iter().find(|v| v.name == name);
    // kvmscope's own work: what it adds to the floor a VMM that looks at every exit must pay.
    if let (Some(k), Some(f)) = (by_name(BINARY), by_name(LOOKING_FLOOR)) {
        let (med, min) = paired(&k.rounds, &f.rounds, |x, y| x / y);
        println!("  {:<64} {med:>10.3} {min:>10.3}", format!("{BINARY} / {LOOKING_FLOOR}"));
    }
    if let (Some(k), Some(q)) = (by_name(BINARY), by_name(QEMU)) {
        let (med, min) = paired(&k.rounds, &q.rounds, |x, y| x / y);
        println!("  {:<64} {med:>10.3} {min:>10.3}  (target <= 1.00)", format!("{BINARY} / QEMU"));
    }
}

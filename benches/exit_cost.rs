//! Per-exit cost of kvmscope against the floor: a bare `KVM_RUN` loop that only answers the ports,
//! on the same guest, in the same run. The guest (assets/guests/bench.mb.S) reads its TSC around
//! 20000 port exits and 20000 MMIO writes and prints the cycle count, so boot time and host noise
//! stay outside the window.
//!
//! `cargo bench --bench exit_cost` prints the median and minimum cycles per exit of each, and the
//! ratios: kvmscope headless against the floor, and with the TUI attached or `--record` against
//! headless; the floor again with KVM_SYNC_REGS on (what KVM's copy of the registers costs);
//! `--dirty-log` against headless, and the TUI on its memory screen (the map read every second, the
//! dirty log on while it shows) against the TUI on its exits screen; and, where
//! `qemu-system-x86_64` is installed, QEMU with KVM on the same guest.

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

/// Exits in the guest's measured window: 20000 port writes and 20000 MMIO writes.
const EXITS: f64 = 40000.0;
const ROUNDS: usize = 11;
const MEM: u64 = 64 << 20;

/// The cycle count the guest printed.
fn cycles(console: &[u8]) -> f64 {
    let text = String::from_utf8_lossy(console);
    let hex = text.lines().find_map(|l| l.strip_prefix("tsc-cycles ")).expect("guest printed its count");
    u64::from_str_radix(hex.trim(), 16).expect("hex count") as f64
}

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
}

/// kvmscope's own headless path: classify, dispatch, decode, time and count every exit, and what
/// `looking` adds.
fn kvmscope_run(looking: Looking) -> f64 {
    let Looking { ui, record, stacks, msr_filter, kernel_events, dirty_log, memory_screen } = looking;
    let capture = Capture::default();
    let config = VmConfig {
        debugcon: None,
        image: Image::Kernel(guest_path("bench.elf")),
        mem_size: MEM,
        cmdline: String::new(),
        cpus: 1,
        console: Box::new(capture.clone()),
        initrd: None,
        host_workarounds: true,
        cpu_features: Vec::new(),
        virtio: Default::default(),
        trap_msrs: if msr_filter { vec![0x277] } else { Vec::new() },
        dirty_log,
        irqchip: false,
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
    cycles(&console)
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
    text.contains("tsc-cycles ").then(|| cycles(&out.stdout))
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
    let (mut floor, mut scope, mut tui, mut rec) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut synced, mut stacks64, mut stacks_all, mut msr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut tracepoints, mut dirty, mut memory_tui) = (Vec::new(), Vec::new(), Vec::new());
    let mut qemu = Vec::new();
    let has_qemu = qemu_run().is_some();
    // Interleaved, so drift in host load hits all alike.
    for _ in 0..ROUNDS {
        if has_qemu {
            qemu.extend(qemu_run().map(|c| c / EXITS));
        }
        floor.push(floor_run(false) / EXITS);
        synced.push(floor_run(true) / EXITS);
        scope.push(kvmscope_run(Looking::default()) / EXITS);
        tui.push(kvmscope_run(Looking { ui: true, ..Default::default() }) / EXITS);
        rec.push(kvmscope_run(Looking { record: true, ..Default::default() }) / EXITS);
        stacks64.push(kvmscope_run(Looking { stacks: Some(64), record: true, ..Default::default() }) / EXITS);
        stacks_all.push(kvmscope_run(Looking { stacks: Some(1), record: true, ..Default::default() }) / EXITS);
        msr.push(kvmscope_run(Looking { msr_filter: true, ..Default::default() }) / EXITS);
        tracepoints.push(kvmscope_run(Looking { kernel_events: true, ..Default::default() }) / EXITS);
        dirty.push(kvmscope_run(Looking { dirty_log: true, ..Default::default() }) / EXITS);
        memory_tui.push(kvmscope_run(Looking { ui: true, memory_screen: true, ..Default::default() }) / EXITS);
    }
    let ((f_med, f_min), (s_med, s_min), (t_med, t_min)) = (stats(floor), stats(scope), stats(tui));
    let (r_med, r_min) = stats(rec);
    let (y_med, y_min) = stats(synced);
    println!("exit cost, guest TSC cycles per exit ({ROUNDS} rounds of {EXITS} exits each):");
    println!("                                           median        min");
    println!("  floor (bare KVM_RUN loop)            {f_med:>10.0} {f_min:>10.0}");
    println!("  floor with KVM_SYNC_REGS             {y_med:>10.0} {y_min:>10.0}");
    println!("  kvmscope --headless (count, decode)  {s_med:>10.0} {s_min:>10.0}");
    println!("  kvmscope with the TUI attached       {t_med:>10.0} {t_min:>10.0}");
    println!("  kvmscope --record                    {r_med:>10.0} {r_min:>10.0}");
    let q = (!qemu.is_empty()).then(|| stats(qemu));
    match q {
        Some((q_med, q_min)) => println!("  QEMU -enable-kvm                     {q_med:>10.0} {q_min:>10.0}"),
        None => println!("  QEMU -enable-kvm                     (qemu-system-x86_64 not installed)"),
    }
    let ratio = |what: &str, a: f64, b: f64, c: f64, d: f64| {
        println!("  ratio {what:<30} {:>10.3} {:>10.3}  (target <= 1.10)", a / b, c / d);
    };
    ratio("kvmscope / floor", s_med, f_med, s_min, f_min);
    if let Some((q_med, q_min)) = q {
        println!("  ratio {:<30} {:>10.3} {:>10.3}", "QEMU / floor", q_med / f_med, q_min / f_min);
        println!("  ratio {:<30} {:>10.3} {:>10.3}", "kvmscope / QEMU", s_med / q_med, s_min / q_min);
    }
    ratio("TUI attached / headless", t_med, s_med, t_min, s_min);
    println!("  ratio {:<30} {:>10.3} {:>10.3}  (target <= 1.15)", "--record / headless", r_med / s_med, r_min / s_min);
    for (what, v) in
        [("--stacks (1 in 64) --record / --record", stacks64), ("--stacks all --record / --record", stacks_all)]
    {
        let (m, n) = stats(v);
        println!("  ratio {what:<30} {:>10.3} {:>10.3}", m / r_med, n / r_min);
    }
    let (m, n) = stats(msr);
    println!("  ratio {:<30} {:>10.3} {:>10.3}", "MSR filter, none trapped / headless", m / s_med, n / s_min);
    let (m, n) = stats(tracepoints);
    println!("  ratio {:<30} {:>10.3} {:>10.3}", "--kernel-events / headless", m / s_med, n / s_min);
    let (m, n) = stats(dirty);
    println!("  ratio {:<30} {:>10.3} {:>10.3}", "--dirty-log / headless", m / s_med, n / s_min);
    let (m, n) = stats(memory_tui);
    println!("  ratio {:<30} {:>10.3} {:>10.3}", "TUI on memory screen / TUI", m / t_med, n / t_min);
}

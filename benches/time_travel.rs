//! What going back in time costs. On the `spin` guest (a port write per loop, never ending), with
//! half of its RAM (above 16 MiB) filled with random bytes so that there is something to keep:
//!
//! - for 256 MiB and 1 GiB guests: the first checkpoint (all of RAM) and an incremental one (after
//!   10,000 exits and 4 MiB rewritten), their size, a restore, a snapshot file written and read back
//!   (time and size); where `qemu-system-x86_64` is installed, QEMU's migration of the same guest
//!   with the same bytes (`-device loader`) to a file (`migrate "exec:cat > FILE"`) and back
//!   (`-incoming "exec:cat FILE"`), side by side;
//! - `reverse-stepi` (the controller's, without gdb's round trip) as a function of the exits since
//!   the checkpoint it goes back to (checkpoints only where taken: `--checkpoint-every 0`);
//! - with checkpoints while the guest runs (`--checkpoint-every 50ms`, the default): after a minute
//!   of `spin` (`KVMSCOPE_BENCH_SECONDS`), `:goto` to random exits of that minute and a
//!   reverse-stepi from each, how many checkpoints and what they hold;
//! - what they cost going forward: the `bench` guest's cycles per exit and the project's Linux
//!   boot to init (one vCPU; where the kernel builds), time travel on against off, side by side.
//!
//! `cargo bench --bench time_travel`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kvmscope::console::ConsoleBuffer;
use kvmscope::debug::ExitSpec;
use kvmscope::guests::guest_path;
use kvmscope::session::{self, Launched, Session};
use kvmscope::vmm::snapshot::every::Every;
use kvmscope::vmm::{Image, RunEnd, RunLimits, VmConfig};

const MIB: u64 = 1 << 20;
/// Where the random bytes start (above the guest's image and boot tables).
const FILL_AT: u64 = 16 * MIB;

/// Pseudo-random bytes (xorshift), the same in every run.
fn random_bytes(len: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len as usize);
    while (out.len() as u64) < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len as usize);
    out
}

/// `spin` with `mem` of RAM, held before its first instruction.
fn launch(mem: u64) -> Launched {
    launch_with(Image::Kernel(guest_path("spin.elf")), mem, Every::Off, None, Box::new(std::io::sink()))
}

/// A guest held before its first instruction, checkpoints of kvmscope's own `every` interval.
fn launch_with(
    image: Image,
    mem: u64,
    every: Every,
    initrd: Option<std::path::PathBuf>,
    console: Box<dyn Write + Send>,
) -> Launched {
    let config = VmConfig {
        debugcon: None,
        image,
        mem_size: mem,
        cmdline: if initrd.is_some() { LINUX_CMDLINE.into() } else { String::new() },
        cpus: 1,
        console,
        initrd,
        host_workarounds: true,
        cpu_features: Vec::new(),
        virtio: Default::default(),
        trap_msrs: Vec::new(),
        dirty_log: false,
        irqchip: false,
        machine_args: vec!["--mem".into(), format!("{}M", mem / MIB)],
    };
    let limits = RunLimits { start_paused: true, checkpoint_every: every, ..Default::default() };
    let launched = session::launch(config, Session { limits, ..Default::default() }, Vec::new(), |_| {}).unwrap();
    assert!(launched.controller.wait_all_stopped(Duration::from_secs(10)));
    launched
}

/// Runs the held guest `exits` more exits and waits for it to stop there.
fn run_exits(l: &Launched, exits: u64) {
    let c = &l.controller;
    let bp = c.add_exit_breakpoint(ExitSpec::parse("io 0x80").unwrap(), exits);
    let since = c.stop_serial();
    c.resume();
    // (Right after the resume the vCPU may not have left its park: an old stop does not count.)
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.wait_for_stop(since, Duration::from_millis(20)).is_none() {
        assert!(Instant::now() < deadline, "the guest stops at its exit breakpoint");
    }
    c.delete_exit_breakpoint(Some(bp.id));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Times `f` (its result kept).
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, ms(t.elapsed()))
}

struct Sizes {
    first_ms: f64,
    first_bytes: u64,
    incremental_ms: f64,
    incremental_bytes: u64,
    restore_ms: f64,
    snapshot_ms: f64,
    snapshot_bytes: u64,
    from_file_ms: f64,
}

fn kvmscope_sizes(mem: u64, blob: &[u8]) -> Sizes {
    let l = launch(mem);
    let c = &l.controller;
    for (i, chunk) in blob.chunks(MIB as usize).enumerate() {
        c.write_memory(0, FILL_AT + i as u64 * MIB, chunk).unwrap();
    }
    let (first, first_ms) = timed(|| c.checkpoint(true).unwrap());
    run_exits(&l, 10_000);
    // A guest that rewrote 4 MiB meanwhile.
    let fresh = random_bytes(4 * MIB).iter().map(|b| b ^ 0x5a).collect::<Vec<u8>>();
    c.write_memory(0, FILL_AT, &fresh).unwrap();
    let (_, incremental_ms) = timed(|| c.checkpoint(true).unwrap());
    let list = c.checkpoints();
    let first_bytes = mem; // the newest keeps all of RAM; the first's own bytes are now its delta
    let incremental_bytes = list.checkpoints.iter().find(|k| k.id == first).map_or(0, |k| k.size);
    let (_, restore_ms) = timed(|| c.restore_checkpoint(first).unwrap());
    let file = std::env::temp_dir().join(format!("kvmscope-bench-{}.snap", std::process::id()));
    let (snapshot_bytes, snapshot_ms) = timed(|| c.snapshot(&file).unwrap());
    let (_, from_file_ms) = timed(|| c.restore_snapshot(&file).unwrap());
    let _ = std::fs::remove_file(&file);
    l.finish(RunEnd::Quit).unwrap();
    Sizes {
        first_ms,
        first_bytes,
        incremental_ms,
        incremental_bytes,
        restore_ms,
        snapshot_ms,
        snapshot_bytes,
        from_file_ms,
    }
}

/// QEMU's human monitor on a Unix socket: sends a command, returns what it printed up to the prompt.
struct Hmp(BufReader<UnixStream>);

impl Hmp {
    fn connect(path: &std::path::Path) -> Option<Hmp> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = UnixStream::connect(path) {
                let mut h = Hmp(BufReader::new(s));
                h.until_prompt();
                return Some(h);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn until_prompt(&mut self) -> String {
        let mut out = Vec::new();
        let mut byte = [0u8];
        while !out.ends_with(b"(qemu) ") {
            if std::io::Read::read(&mut self.0, &mut byte).unwrap_or(0) == 0 {
                break;
            }
            out.push(byte[0]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn cmd(&mut self, c: &str) -> String {
        writeln!(self.0.get_mut(), "{c}").unwrap();
        self.until_prompt()
    }

    /// Polls `info` until its answer contains `want`.
    fn wait_for(&mut self, info: &str, want: &str) {
        while !self.cmd(info).contains(want) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// QEMU (microvm, KVM) running `spin` with the same bytes: migration to a file and back, in ms;
/// the file's size. `None` without QEMU.
fn qemu(mem: u64, blob: &std::path::Path) -> Option<(f64, f64, u64)> {
    Command::new("qemu-system-x86_64").arg("--version").output().ok()?;
    let dir = std::env::temp_dir();
    let (sock, file) =
        (dir.join(format!("kvmscope-bench-qemu-{}.sock", std::process::id())), dir.join("kvmscope-bench-qemu.mig"));
    let start = |extra: &[&str]| {
        let _ = std::fs::remove_file(&sock);
        Command::new("qemu-system-x86_64")
            .args(["-M", "microvm", "-enable-kvm", "-m", &format!("{}M", mem / MIB), "-nodefaults", "-no-user-config"])
            .args(["-display", "none", "-kernel"])
            .arg(guest_path("spin.elf"))
            .arg("-device")
            .arg(format!("loader,file={},addr={FILL_AT:#x}", blob.display()))
            .arg("-monitor")
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()
    };
    let mut out = start(&[])?;
    let mut hmp = Hmp::connect(&sock)?;
    hmp.wait_for("info status", "running");
    let t = Instant::now();
    hmp.cmd(&format!("migrate \"exec:cat > {}\"", file.display()));
    hmp.wait_for("info migrate", "completed");
    let save = ms(t.elapsed());
    let _ = hmp.cmd("quit");
    let _ = out.wait();
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let incoming = format!("exec:cat {}", file.display());
    let t = Instant::now();
    let mut back = start(&["-incoming", &incoming])?;
    let mut hmp = Hmp::connect(&sock)?;
    hmp.wait_for("info status", "running");
    let load = ms(t.elapsed());
    let _ = hmp.cmd("quit");
    let _ = back.wait();
    if let Some(err) = back.stderr.take() {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("qemu: {line}");
        }
    }
    let _ = std::fs::remove_file(&file);
    Some((save, load, size))
}

/// `reverse-stepi` after `distance` exits since a checkpoint, in ms (median of `rounds`).
fn reverse_stepi(l: &Launched, distance: u64, rounds: usize) -> f64 {
    let c = &l.controller;
    let mut times = Vec::new();
    for _ in 0..rounds {
        c.checkpoint(true).unwrap();
        run_exits(l, distance);
        let (_, t) = timed(|| c.reverse_step().unwrap());
        times.push(t);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The project's Linux boots with this (its init powers off: the run ends).
const LINUX_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1";

/// A reproducible pseudo-random number below `n` (xorshift).
fn below(state: &mut u64, n: u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state % n.max(1)
}

/// Median and maximum.
fn median_max(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() - 1])
}

/// Checkpoints while `spin` runs for `seconds`: then `:goto` to random exits of that time and a
/// reverse-stepi from each. Prints the latencies, how many checkpoints and what they hold.
fn while_running(seconds: u64) {
    let l = launch_with(
        Image::Kernel(guest_path("spin.elf")),
        256 * MIB,
        Every::Running(Duration::from_millis(50)),
        None,
        Box::new(std::io::sink()),
    );
    let c = &l.controller;
    // Time travel on, as gdb's attach or the TUI's start turns it on.
    c.checkpoint(false).unwrap();
    let since = c.stop_serial();
    c.resume();
    std::thread::sleep(Duration::from_secs(seconds));
    c.pause();
    while c.wait_for_stop(since, Duration::from_millis(20)).is_none() {}
    let end = c.position();
    let list = c.checkpoints();
    let (mut gotos, mut steps) = (Vec::new(), Vec::new());
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20 {
        let target = end - below(&mut seed, end);
        let (_, t) = timed(|| c.go_back_to_exit(target).unwrap());
        gotos.push(t);
        let (_, t) = timed(|| c.reverse_step().unwrap());
        steps.push(t);
    }
    let (goto_median, goto_max) = median_max(gotos);
    let (step_median, step_max) = median_max(steps);
    println!(
        "  after {seconds} s of spin ({end} exits, {:.0} exits/s): {} checkpoints, {:.1} MiB held ({} thinned)",
        end as f64 / seconds as f64,
        list.checkpoints.len(),
        list.bytes as f64 / MIB as f64,
        list.thinned
    );
    println!(
        "  :goto a random exit of that time  median {goto_median:>7.1} ms   max {goto_max:>7.1} ms   (target < 100 ms)"
    );
    println!(
        "  reverse-stepi from there          median {step_median:>7.1} ms   max {step_max:>7.1} ms   (target < 100 ms)"
    );
    l.finish(RunEnd::Quit).unwrap();
}

/// Runs `image` from its start to its end with time travel on (a first checkpoint, then
/// kvmscope's own every 50 ms) or off; the seconds it took and what it wrote to the console.
fn forward(image: Image, initrd: Option<std::path::PathBuf>, on: bool) -> (f64, String) {
    let console = ConsoleBuffer::default();
    let every = if on { Every::Running(Duration::from_millis(50)) } else { Every::Off };
    let l = launch_with(image, 256 * MIB, every, initrd, Box::new(console.clone()));
    if on {
        l.controller.checkpoint(false).unwrap();
    }
    let t = Instant::now();
    l.controller.resume();
    l.wait().unwrap();
    (t.elapsed().as_secs_f64(), console.text())
}

/// The `bench` guest's cycles per exit (its 200,000 exits timed by its TSC).
fn cycles_per_exit(console: &str) -> f64 {
    common::cycles(console.as_bytes()) / 200_000.0
}

/// What checkpoints while running cost going forward, on against off, rounds interleaved.
fn forward_overhead() {
    let bench = || Image::Kernel(guest_path("bench.elf"));
    let mut ratios = Vec::new();
    let (mut offs, mut ons) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let off = cycles_per_exit(&forward(bench(), None, false).1);
        let on = cycles_per_exit(&forward(bench(), None, true).1);
        ratios.push(on / off);
        offs.push(off);
        ons.push(on);
    }
    let (off, on, ratio) = (median_max(offs).0, median_max(ons).0, median_max(ratios).0);
    println!(
        "  bench guest, cycles per exit      off {off:>9.0}   on {on:>9.0}   on/off {ratio:.3}   (target <= 1.10)"
    );
    let built = Command::new("bash").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/linux/build.sh")).output();
    let Some(dir) = built.ok().filter(|o| o.status.success()).and_then(|o| {
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        out.lines().last().map(|l| std::path::PathBuf::from(l.trim()))
    }) else {
        println!("  Linux boot: the test kernel did not build here (assets/linux/build.sh): not measured");
        return;
    };
    // The uncompressed kernel (its PVH entry): no decompressor to run emulated. This host's KVM
    // (PVM) cannot take a system call from user mode into the guest kernel: the boot ends at
    // init's first one (the kernel panics and, with reboot=k panic=-1, resets).
    let linux = || Image::Kernel(dir.join("vmlinux"));
    let initrd = || Some(dir.join("initramfs.cpio"));
    let reached = |c: &str| c.contains("Run /init as init process");
    let (off, console) = forward(linux(), initrd(), false);
    assert!(reached(&console), "the kernel reached init: {console}");
    let (on, console) = forward(linux(), initrd(), true);
    assert!(reached(&console), "the kernel reached init with time travel on: {console}");
    println!(
        "  Linux boot to init                off {off:>8.2} s   on {on:>8.2} s   on/off {:.3}   (target <= 1.10)",
        on / off
    );
}

fn main() {
    if !std::path::Path::new("/dev/kvm").exists() {
        println!("time_travel: no /dev/kvm, nothing measured");
        return;
    }
    let mib = |b: u64| b as f64 / MIB as f64;
    println!("  checkpoints, restores and snapshots (half of each guest's RAM random bytes)");
    println!(
        "  {:<10} {:>10} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10}",
        "RAM", "first ms", "MiB", "increm. ms", "MiB", "restore", "snap ms", "MiB"
    );
    for mem in [256 * MIB, 1024 * MIB] {
        let blob = random_bytes(mem / 2 - FILL_AT);
        let s = kvmscope_sizes(mem, &blob);
        println!(
            "  {:<10} {:>10.1} {:>10.1} {:>12.1} {:>10.2} {:>10.1} {:>10.1} {:>10.1}   from the file {:.1} ms",
            format!("{} MiB", mem / MIB),
            s.first_ms,
            mib(s.first_bytes),
            s.incremental_ms,
            mib(s.incremental_bytes),
            s.restore_ms,
            s.snapshot_ms,
            mib(s.snapshot_bytes),
            s.from_file_ms
        );
        let path = std::env::temp_dir().join(format!("kvmscope-bench-blob-{}", std::process::id()));
        std::fs::write(&path, &blob).unwrap();
        match qemu(mem, &path) {
            Some((save, load, size)) => println!(
                "  {:<10} QEMU migrate to a file {save:.1} ms ({:.1} MiB), -incoming {load:.1} ms (from its start)   kvmscope snapshot / QEMU: {:.2}",
                "",
                mib(size),
                s.snapshot_ms / save
            ),
            None => println!("  {:<10} (qemu-system-x86_64 is not installed: no comparison)", ""),
        }
        let _ = std::fs::remove_file(path);
    }
    println!();
    println!("  reverse-stepi (256 MiB guest), median of 5, by exits since the checkpoint it goes back to");
    let l = launch(256 * MIB);
    for distance in [1, 1_000, 10_000, 100_000] {
        let t = reverse_stepi(&l, distance, 5);
        println!("  {distance:>8} exits   {t:>8.1} ms   (target < 100 ms within 100,000 exits)");
    }
    l.finish(RunEnd::Quit).unwrap();
    println!();
    println!("  checkpoints while the guest runs (--checkpoint-every 50ms, 256 MiB), 20 random points");
    let seconds = std::env::var("KVMSCOPE_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    while_running(seconds);
    println!();
    println!("  going forward with checkpoints while running (on) and without (off), median of 5");
    forward_overhead();
}

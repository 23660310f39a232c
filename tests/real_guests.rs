//! Guests nobody here wrote, from Debian's own packages (fetched by assets/real/fetch.sh and cached
//! beside the test kernel): memtest86+, SeaBIOS, Debian's 6.1 cloud kernel. Each runs until the
//! furthest milestone the README states for this host, so a regression shows as a milestone missed.
//! Without the packages (no network, no apt) the tests say so and skip, unless KVMSCOPE_REQUIRE_KVM=1.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Fetches (or finds) the images; their directory.
fn images(test: &str) -> Option<PathBuf> {
    script_dir(test, "assets/real/fetch.sh", "fetching Debian's packages")
}

/// One guest at a time: they run under emulation, CPU-bound, on 2 shared cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `kvmscope run --headless ARGS` to its end, alone.
fn run_alone(args: &[&str]) -> Run {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    run_headless(args)
}

/// Runs `kvmscope run --headless ARGS` until its stdout holds `milestone` (then stops it) or the run
/// ends by itself; its output so far, and whether the milestone came.
fn run_until(args: &[&str], milestone: &str) -> (Run, bool) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut child = kvmscope()
        .arg("run")
        .arg("--headless")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kvmscope runs");
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let (mut pipe, stdout) = (child.stdout.take().unwrap(), stdout.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                stdout.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    let seen = |out: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&out.lock().unwrap()).contains(milestone);
    let started = Instant::now();
    let mut reached = false;
    while child.try_wait().unwrap().is_none() {
        if seen(&stdout) {
            reached = true;
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let stdout = String::from_utf8_lossy(&stdout.lock().unwrap()).into_owned();
    reached |= stdout.contains(milestone);
    eprintln!("{milestone:?}: {} after {:.0?}", if reached { "reached" } else { "missed" }, started.elapsed());
    let run = Run { status: status.code().unwrap_or(-1), stdout, stderr: stderr.join().unwrap() };
    (run, reached)
}

/// The text of a terminal program's output, its escape sequences turned into line breaks.
fn plain(screen: &str) -> String {
    let mut out = String::new();
    let mut chars = screen.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-byte
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            out.push('\n');
        } else {
            out.push(c);
        }
    }
    out
}

/// The x87 instruction a run ended on as the host's emulation failure, from kvmscope's last line.
fn x87_emulation_failure(stderr: &str) -> Option<&str> {
    let line = stderr.lines().find(|l| l.contains("(instruction emulation failed) at rip"))?;
    let insn = line.split('`').nth(1)?.split_whitespace().next()?;
    insn.starts_with('f').then_some(insn)
}

#[test]
fn memtest86plus_gets_past_fwait_and_runs_its_tests() {
    if !kvm_or_skip("memtest86plus_gets_past_fwait_and_runs_its_tests") {
        return;
    }
    let Some(dir) = images("memtest86plus_gets_past_fwait_and_runs_its_tests") else { return };
    let image = dir.join("memtest86+x64.bin");
    let args = ["--kernel", image.to_str().unwrap(), "--cmdline", "console=ttyS0,115200", "--mem", "32M"];
    let milestone = "[Moving inversions, 1s & 0s]";
    let (run, reached) = run_until(&[&args[..], &["--timeout", "300"]].concat(), milestone);
    let screen = plain(&run.stdout);
    if !reached && let Some(insn) = x87_emulation_failure(&run.stderr) {
        // Some PVM hosts' emulators also fail on the x87 arithmetic memtest runs next (seen on
        // 2026-12-02: `fldz`, where QEMU on the same host stops at the fwait already). kvmscope
        // cannot finish that in userspace; what it must do there is get past the fwait and say
        // which instruction the host failed on.
        eprintln!(
            "memtest86+: this host's KVM fails on `{insn}`, after the fwait kvmscope finished: its tests cannot run here"
        );
        assert!(insn != "fwait" && insn != "wait", "kvmscope did not finish the fwait:\n{}", run.stderr);
        return;
    }
    assert!(reached, "memtest86+ did not reach test #3 {milestone}:\n{screen}\n{}", run.stderr);
    // (Test #2 is not always on screen: it can start and end between two of memtest's refreshes.)
    for earlier in ["Memory  :   32MB", "[Address test, walking ones, no cache]"] {
        assert!(screen.contains(earlier), "no {earlier:?} on memtest86+'s screen:\n{screen}");
    }
    assert!(
        screen.lines().all(|l| !l.contains("Errors:") || l.contains("Errors: 0")),
        "memtest86+ found errors:\n{screen}"
    );
    // The fwait it stops at under PVM's emulator is finished in userspace; nothing else stopped it.
    assert!(!run.stderr.contains("run ended"), "the run ended before the milestone:\n{}", run.stderr);
    // Linux's command-line workarounds are not memtest's.
    assert!(!run.stderr.contains("command line +="), "memtest86+ was given Linux's command line:\n{}", run.stderr);
}

#[test]
fn seabios_writes_its_banner_to_the_debug_console_and_runs_its_post() {
    let test = "seabios_writes_its_banner_to_the_debug_console_and_runs_its_post";
    if !kvm_or_skip(test) {
        return;
    }
    let Some(dir) = images(test) else { return };
    let bios = dir.join("bios.bin");
    let args = ["--image", bios.to_str().unwrap(), "--load", "0xe0000", "--entry", "0xffff0", "--mode", "real"];
    let run = run_alone(&[&args[..], &["--timeout", "120", "--summary", "json"]].concat());
    assert!(run.stdout.starts_with("SeaBIOS (version 1.16"), "no banner first on the debug console:\n{}", run.stdout);
    assert!(run.stdout.contains("\nBUILD: gcc:"), "no build line:\n{}", run.stdout);
    assert!(run.stdout.contains("Unable to unlock ram - bridge not found"), "{}", run.stdout);
    // Its whole log: port 0x402 reads back 0xe9, so SeaBIOS keeps writing it after its check.
    for later in [
        "Running on KVM",
        "Found 1 cpu(s)",
        "Scan for VGA option rom",
        "Found 1 serial ports",
        "Press ESC for boot menu.",
    ] {
        assert!(run.stdout.contains(later), "SeaBIOS's later log line {later:?} is missing:\n{}", run.stdout);
    }
    // Past its SMP scan (the CMOS says one CPU) and through its probes of the parallel and serial
    // ports, SeaBIOS waits for a timer interrupt no device of a raw image raises: the run ends there
    // (a halt that nothing can wake).
    let s = run.summary();
    assert!(io_count(&s, 0x378, "in") >= 1, "SeaBIOS never probed the parallel port: {}", run.stderr);
    assert!(io_count(&s, 0x2f9, "out") >= 1, "SeaBIOS never probed COM2: {}", run.stderr);
    assert!(run.stderr.contains("halted and no interrupt source can wake it"), "{}", run.stderr);
    assert_eq!(run.status, 0, "{}", run.stderr);

    // With the in-kernel PIC and PIT its timer runs: it finds nothing to boot and, at its boot
    // retry about a minute later, resets the PC through port 0xcf9 — the run ends as a reset.
    let run = run_alone(&[&args[..], &["--irqchip", "--timeout", "300", "--summary", "json"]].concat());
    let s = run.summary();
    assert_eq!(s["end"], "reset", "{}", run.stderr);
    assert!(io_count(&s, 0xcf9, "out") >= 1, "reset through the reset control register: {}", run.stderr);
    assert!(run.stdout.starts_with("SeaBIOS (version 1.16"), "{}", run.stdout);

    explains_seabios(&args);

    // --debugcon FILE takes the same bytes to a file.
    let file = std::env::temp_dir().join(format!("kvmscope-seabios-{}.log", std::process::id()));
    let run = run_alone(&[&args[..], &["--debugcon", file.to_str().unwrap(), "--timeout", "120"]].concat());
    let log = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    assert!(log.starts_with("SeaBIOS (version") && log.contains("bridge not found"), "--debugcon file:\n{log}");
    assert!(!run.stdout.contains("SeaBIOS"), "with --debugcon the log still went to stdout:\n{}", run.stdout);
}

/// SeaBIOS's exits until it waits for its timer, recorded and explained: each port and MMIO access
/// named by device and register, the values as its datasheet reads them.
fn explains_seabios(args: &[&str]) {
    let trace = std::env::temp_dir().join(format!("kvmscope-seabios-{}.trace", std::process::id()));
    let run = run_alone(&[args, &["--timeout", "120", "--record", trace.to_str().unwrap()]].concat());
    assert!(run.stderr.contains("kvmscope: recorded"), "{}", run.stderr);
    let jsonl = kvmscope().args(["export", "--format", "jsonl"]).arg(&trace).output().unwrap();
    let jsonl = String::from_utf8_lossy(&jsonl.stdout);
    let mut explained = Vec::new();
    for r in jsonl_as_serde_prints(&jsonl) {
        if r["reason"] == "io" || r["reason"] == "mmio" {
            let x = r["explain"].as_str().filter(|x| !x.is_empty());
            explained.push(x.unwrap_or_else(|| panic!("an exit without an explanation: {r}")).to_string());
        }
    }
    for want in [
        // The PCI scan: an address as lspci writes it, then nothing there.
        "PCI configuration (mechanism #1): CONFIG_ADDRESS write 0x80000000: select 00:00.0 register 0x00 (VENDOR_ID)",
        "PCI configuration (mechanism #1): VENDOR_ID read 0xffff: no device at 00:00.0",
        // The PIC programmed in order, the CMOS by name, QEMU's bytes too.
        "8259 PIC (master): ICW1 write 0x11: initialise: edge-triggered, cascaded, ICW4 follows",
        "8259 PIC (master): ICW2 write 0x08: IRQ 0-7 at vectors 0x08-0x0f",
        "8259 PIC (slave): ICW2 write 0x70: IRQ 8-15 at vectors 0x70-0x77",
        "CMOS RTC/NVRAM: INDEX write 0xdf: select CPUS (0x5f: QEMU: the number of CPUs less one); NMI disabled",
        // Its SMP scan: INIT and STARTUP to every other CPU.
        "local APIC: ICR_LO write 0x000c4500: INIT to all excluding self (physical destination, edge)",
        "local APIC: ICR_LO write 0x000c4610: STARTUP at 0x10000 to all excluding self (physical destination, edge)",
        "QEMU fw_cfg: SELECTOR write 0x0000: select SIGNATURE",
        "QEMU debug console (0x402): DATA write 0x53: print 'S'",
        "ATA primary channel: STATUS read 0xff: all ones: nothing drives the bus (no controller or drive)",
    ] {
        assert!(explained.iter().any(|x| x == want), "no exit explained as {want:?}");
    }
    let coverage = kvmscope().args(["stats", "--by", "register", "--json"]).arg(&trace).output().unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&coverage.stdout).unwrap();
    let pic = rows["by_register"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["device"] == "8259 PIC (master)" && r["register"] == "ICW1");
    assert!(pic.is_some_and(|r| r["writes"] == 1), "{rows}");
    let _ = std::fs::remove_file(&trace);
}

/// Debian's kernel, to the end of what this host lets it do (about 3 minutes here): its ACPI tables
/// found, both CPUs up, core and device init; on PVM it ends in a `kernel_fpu_begin()` section, past
/// the `ldmxcsr` kvmscope finishes, at the first SSE instruction that works on data, which PVM's
/// emulator refuses and kvmscope does not emulate. Elsewhere the boot goes on to its missing root.
#[test]
fn debian_cloud_kernel_finds_both_cpus_through_acpi_and_runs_until_the_host_stops_it() {
    let test = "debian_cloud_kernel_finds_both_cpus_through_acpi_and_runs_until_the_host_stops_it";
    if !kvm_or_skip(test) {
        return;
    }
    let Some(dir) = images(test) else { return };
    let kernel = dir.join("vmlinux");
    let trace = std::env::temp_dir().join(format!("kvmscope-debian-{}.trace", std::process::id()));
    let args = ["--kernel", kernel.to_str().unwrap(), "--cpus", "2", "--mem", "512M", "--summary", "json"];
    let cmdline =
        ["--cmdline", "console=ttyS0 reboot=k panic=-1", "--timeout", "900", "--record", trace.to_str().unwrap()];
    let pvm = is_pvm();
    // Where user mode runs, the kernel gets to mounting its (missing) root: stop there.
    let milestone = if pvm { "no milestone: the run ends by itself" } else { "VFS: Unable to mount root fs" };
    let (run, _) = run_until(&[&args[..], &cmdline].concat(), milestone);
    let log = &run.stdout;
    let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    for line in [
        "ACPI: RSDP 0x00000000000E0000",
        "ACPI: Using ACPI (MADT) for SMP configuration information",
        "smpboot: Allowing 2 CPUs",
        "smp: Brought up 1 node, 2 CPUs",
        "clocksource: Switched to clocksource tsc",
        "rtc_cmos",
    ] {
        assert!(log.contains(line), "no {line:?} in the kernel's log; its last lines:\n{tail}\n{}", run.stderr);
    }
    assert!(!log.contains("A valid RSDP was not found"), "{log}");
    // Its port and MMIO accesses, every one with a device (or "no known device"): the UART, the RTC.
    let coverage = kvmscope().args(["stats", "--by", "register", "--json"]).arg(&trace).output().unwrap();
    let _ = std::fs::remove_file(&trace);
    let rows: serde_json::Value = serde_json::from_slice(&coverage.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&coverage.stderr)));
    let rows = rows["by_register"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["device"].as_str().is_some_and(|d| !d.is_empty())), "{rows:?}");
    for (device, register) in [("16550 UART (COM1)", "THR"), ("16550 UART (COM1)", "LSR"), ("CMOS RTC/NVRAM", "INDEX")]
    {
        assert!(
            rows.iter().any(|r| r["device"] == device && r["register"] == register),
            "no {device} {register}: {rows:?}"
        );
    }
    if pvm {
        let s = run.summary();
        let finished = s["by_reason"]["internal_error"].as_u64().unwrap_or(0);
        assert!(finished >= 2, "the fwait and ldmxcsr it meets are finished in userspace: {}", run.stderr);
        let end = s["end_detail"].as_str().unwrap_or_default();
        assert!(end.contains("instruction emulation failed") && end.contains("xmm"), "{}", run.stderr);
        // (here `movd xmm15,ecx`; another package version may stop at another SSE instruction)
        let at = run.stderr.lines().find(|l| l.trim_start().starts_with("at rip: ")).unwrap_or_default();
        assert!(at.contains("xmm"), "the report names the instruction: {}", run.stderr);
    }
}

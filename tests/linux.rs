//! Booting the project's own Linux test kernel (assets/linux: tinyconfig 6.1 plus a fragment, a
//! busybox initramfs), built by assets/linux/build.sh and cached outside the repository.
//! On a host where user mode runs, init prints its marker and reboots; on an emulating host (PVM)
//! the boot ends at init's first system call, so the test looks for "Run /init as init process".

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::gdb_stub::gdb_or_skip;
use common::*;

/// Builds (or finds) the test kernel; its directory.
fn kernel_dir(test: &str) -> Option<PathBuf> {
    script_dir(test, "assets/linux/build.sh", "building the test kernel")
}

const CMDLINE: &str = "console=ttyS0 earlyprintk=serial reboot=k panic=-1";

/// One kernel at a time: boots under emulation are CPU-bound, and 2 cores are shared.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn boot(dir: &Path, image: &str, cpus: &str, cmdline: &str, extra: &[&str]) -> Run {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let kernel = dir.join(image);
    let initrd = dir.join("initramfs.cpio");
    let mut args = vec!["--kernel", kernel.to_str().unwrap(), "--initrd", initrd.to_str().unwrap()];
    args.extend_from_slice(&["--cmdline", cmdline, "--cpus", cpus, "--mem", "256M", "--timeout", "900"]);
    args.extend_from_slice(&["--summary", "json"]);
    args.extend_from_slice(extra);
    run_headless(&args)
}

/// The summary's count `field` of a virtio device's queue (0 when it has no row).
fn virtio_count(summary: &serde_json::Value, device: &str, queue: u64, field: &str) -> u64 {
    let rows = summary["virtio"].as_array().unwrap();
    rows.iter().find(|r| r["device"] == device && r["queue"] == queue).map_or(0, |r| r[field].as_u64().unwrap())
}

/// The kernel held before its first instruction for gdb (`extra` options besides): the process,
/// the address it announces for `target remote`, and its stderr (kept open while it runs).
fn held_for_gdb(vmlinux: &Path, extra: &[&str]) -> (std::process::Child, String, impl Sized) {
    let mut child = kvmscope()
        .args(["run", "--headless", "--summary", "none", "--gdb", "0", "--gdb-wait", "--kernel"])
        .arg(vmlinux)
        .args(["--cmdline", CMDLINE])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(err));
    let addr = loop {
        let line = lines.next().expect("kvmscope announces the stub").unwrap();
        if let Some(rest) = line.split("target remote ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    (child, addr, lines)
}

fn reached_init(run: &Run) -> bool {
    run.stdout.contains("kvmscope-initramfs: init is running") || run.stdout.contains("Run /init as init process")
}

/// The `explain` of every port and MMIO exit in a JSON Lines export; panics on one without.
pub fn explanations(jsonl: &str) -> Vec<String> {
    let rows = jsonl.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"));
    rows.filter(|r| r["reason"] == "io" || r["reason"] == "mmio")
        .map(|r| match r["explain"].as_str() {
            Some(x) if !x.is_empty() => x.to_string(),
            _ => panic!("an exit without an explanation: {r}"),
        })
        .collect()
}

#[test]
fn linux_vmlinux_boots_to_init_on_two_cpus() {
    if !kvm_or_skip("linux_vmlinux_boots_to_init_on_two_cpus") {
        return;
    }
    let Some(dir) = kernel_dir("linux_vmlinux_boots_to_init_on_two_cpus") else { return };
    // With a disk: virtio-blk is found, and the partition scan's read reaches the device.
    let disk = std::env::temp_dir().join(format!("kvmscope-linux-disk-{}.img", std::process::id()));
    std::fs::write(&disk, vec![0u8; 8 << 20]).unwrap();
    let trace = std::env::temp_dir().join(format!("kvmscope-linux-{}.trace", std::process::id()));
    let extra = ["--disk", disk.to_str().unwrap(), "--record", trace.to_str().unwrap()];
    let run = boot(&dir, "vmlinux", "2", CMDLINE, &extra);
    let tail: String =
        run.stdout.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(run.stdout.contains("Linux version 6.1"), "stderr: {}\nconsole tail:\n{tail}", run.stderr);
    assert!(run.stdout.contains("smp: Brought up 1 node, 2 CPUs"), "console tail:\n{tail}");
    assert!(reached_init(&run), "console tail:\n{tail}\nstderr: {}", run.stderr);
    let s = run.summary();
    assert!(s["end"] == "reset" || s["end"] == "halted", "the kernel ended the run: {s}\n{tail}");
    assert!(!run.stderr.contains("panicked"));
    assert!(run.stdout.contains("virtio_blk virtio0: [vda] 16384 512-byte logical blocks"), "{tail}");
    assert!(virtio_count(&s, "virtio-blk0", 0, "completed") >= 1, "{}", s["virtio"]);
    assert!(virtio_count(&s, "virtio-rng", 0, "completed") >= 1, "the kernel took entropy: {}", s["virtio"]);
    // The partition scan's read of sector 0, in the recording as the device took it.
    let jsonl = kvmscope().args(["export", "--format", "jsonl"]).arg(&trace).output().unwrap();
    let jsonl = String::from_utf8_lossy(&jsonl.stdout);
    jsonl_as_serde_prints(&jsonl);
    let read = jsonl.lines().filter(|l| l.contains(r#""record":"device""#)).find(|l| l.contains("read sector 0 len"));
    assert!(read.is_some_and(|l| l.contains(r#""device":"virtio-blk0""#)), "no read of sector 0 recorded");
    // Every port and MMIO exit the kernel made is explained: its UART, its RTC, its virtio devices.
    let explained = explanations(&jsonl);
    for device in
        ["16550 UART (COM1): ", "CMOS RTC/NVRAM: ", "virtio-mmio #0 (virtio-blk0): ", "virtio-mmio #1 (virtio-rng): "]
    {
        assert!(explained.iter().any(|x| x.starts_with(device)), "no exit explained as {device:?}");
    }
    assert!(explained.iter().any(|x| x.contains("QueueNotify write")), "the driver's notifications");
    // The exit profile names the kernel's own functions: the 8250 driver's port I/O, virtio-mmio's
    // notification (the PIT is in KVM: its port I/O never reaches kvmscope).
    let profile = kvmscope().args(["stats", "--by", "symbol"]).arg(&trace).output().unwrap();
    let profile = String::from_utf8_lossy(&profile.stdout);
    for function in ["io_serial_out", "io_serial_in", "vm_notify"] {
        assert!(profile.contains(function), "{function} missing from the profile:\n{profile}");
    }
    let _ = (std::fs::remove_file(disk), std::fs::remove_file(trace));
}

#[test]
fn linux_bzimage_logs_through_virtio_console_and_netconsole() {
    if !kvm_or_skip("linux_bzimage_logs") || !common::netns::root_or_skip("linux_bzimage_logs") {
        return;
    }
    let Some(dir) = kernel_dir("linux_bzimage_logs") else { return };
    // The kernel's console is virtio-console this time: its log arrives through the device.
    // (What the kernel prints before the virtio console is probed is lost, as under QEMU: hvc0
    // has no backend yet.) Its network card is on a TAP in a namespace of the test's own, where a
    // UDP listener takes what netconsole sends.
    let ns = common::netns::Netns::new("netconsole");
    ns.tap("tap0", "10.0.2.2/24");
    let log = ns.udp_listener("10.0.2.2:6666");
    let (pcap, trace) = (
        std::env::temp_dir().join(format!("kvmscope-netconsole-{}.pcap", std::process::id())),
        std::env::temp_dir().join(format!("kvmscope-netconsole-{}.trace", std::process::id())),
    );
    let cmdline = "console=hvc0 reboot=k panic=-1 ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off \
                   netconsole=6665@10.0.2.15/eth0,6666@10.0.2.2/";
    let run = {
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let (kernel, initrd) = (dir.join("bzImage"), dir.join("initramfs.cpio"));
        let out = ns
            .command(env!("CARGO_BIN_EXE_kvmscope"))
            .args(["run", "--headless", "--kernel"])
            .arg(&kernel)
            .arg("--initrd")
            .arg(&initrd)
            .args(["--cmdline", cmdline, "--mem", "256M", "--timeout", "900", "--summary", "json"])
            .args(["--net", "tap=tap0,mac=52:54:00:12:34:56", "--pcap"])
            .arg(&pcap)
            .arg("--record")
            .arg(&trace)
            .output()
            .unwrap();
        Run::from(out)
    };
    let tail: String =
        run.stdout.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(reached_init(&run), "console tail:\n{tail}\nstderr: {}", run.stderr);
    let s = run.summary();
    let sent = virtio_count(&s, "virtio-console", 1, "completed");
    assert!(sent > 10, "the log went through virtio-console's transmit queue: {}", s["virtio"]);
    assert_eq!(io_count(&s, 0x3f8, "out"), 0, "and not through the UART");
    assert!(run.stdout.contains("IP-Config: Complete:"), "ip= configured the card:\n{tail}");
    // netconsole: the kernel's lines arrived over UDP, the last before init among them.
    let lines: Vec<String> = log.try_iter().collect();
    let all = lines.concat();
    assert!(all.contains("Run /init as init process"), "netconsole's datagrams:\n{all}");
    // The same datagrams, as frames: in the pcap (tcpdump reads it) and the recording.
    let out = Command::new("tcpdump").args(["-r", pcap.to_str().unwrap(), "-n", "udp port 6666"]).output().unwrap();
    let frames = String::from_utf8_lossy(&out.stdout);
    let udp = frames.lines().filter(|l| l.contains("10.0.2.15.6665 > 10.0.2.2.6666: UDP")).count();
    assert!(udp >= lines.len() && udp > 0, "{udp} frames for {} datagrams:\n{frames}", lines.len());
    let stats = kvmscope().args(["stats", "--json"]).arg(&trace).output().unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert!(virtio_count(&stats, "virtio-net", 1, "frames") >= udp as u64, "{}", stats["virtio"]);
    // Linux took the offloads (handed to the TAP without a complaint).
    let net_rows = s["virtio"].as_array().unwrap().iter().filter(|r| r["device"] == "virtio-net");
    assert_eq!(net_rows.map(|r| r["errors"].as_u64().unwrap()).sum::<u64>(), 0, "{}", s["virtio"]);
    let jsonl = kvmscope().args(["export", "--format", "jsonl"]).arg(&trace).output().unwrap();
    let accepted = String::from_utf8_lossy(&jsonl.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|r| r["explain"].as_str().map(str::to_string))
        .find(|x| {
            x.starts_with("virtio-mmio #") && x.contains("(virtio-net): DriverFeatures write") && x.contains("NET_")
        })
        .expect("the driver's features, explained");
    for feature in ["NET_GUEST_CSUM", "NET_MAC", "NET_GUEST_TSO4", "NET_STATUS"] {
        assert!(accepted.contains(feature), "{feature} in {accepted}");
    }
    let _ = (std::fs::remove_file(pcap), std::fs::remove_file(trace));
}

#[test]
fn gdb_stops_the_kernel_at_start_kernel() {
    if !kvm_or_skip("gdb_stops_the_kernel_at_start_kernel") {
        return;
    }
    let Some(dir) = kernel_dir("gdb_stops_the_kernel_at_start_kernel") else { return };
    let vmlinux = dir.join("vmlinux");
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (mut child, addr, _stderr) = held_for_gdb(&vmlinux, &[]);
    let out = Command::new("gdb")
        .args(["-batch", "-nx", "-ex"])
        .arg(format!("file {}", vmlinux.display()))
        .args(["-ex", &format!("target remote {addr}"), "-ex", "hbreak start_kernel", "-ex", "continue"])
        .args(["-ex", "bt", "-ex", "p/x $cr3", "-ex", "monitor regs"])
        .args(["-ex", r#"eval "monitor translate 0x%lx", start_kernel"#, "-ex", "monitor info mem", "-ex", "detach"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap().code();
    assert!(
        out.contains("Hardware assisted breakpoint 1 at ")
            && out.contains("Breakpoint 1, start_kernel () at init/main.c"),
        "{out}"
    );
    assert!(out.contains("#0  start_kernel () at init/main.c"), "a backtrace with sources: {out}");
    assert!(out.contains("long, 4-level"), "{out}");
    // Every layer of start_kernel's address: the kernel is linked at __START_KERNEL_map
    // (0xffffffff80000000) + its physical address, and its early page tables map it so.
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let at = out.split("Hardware assisted breakpoint 1 at ").nth(1).unwrap().split(':').next().unwrap();
    let gva = hex(at);
    let gpa = gva - 0xffff_ffff_8000_0000;
    assert!(out.contains(&format!("guest-physical {gpa:#x} (")), "translate reaches {gpa:#x}: {out}");
    for layer in ["PML4 entry at ", "PDPT entry at ", "PD   entry at ", "memory slot    0", "host-virtual   0x"] {
        assert!(out.contains(layer), "no {layer:?} in the translation: {out}");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert!(out.contains("host page      host frame 0x"), "as root, the host frame from pagemap: {out}");
    }
    // `monitor info mem` (QEMU's format): one range holds the kernel's text, supervisor read/write.
    let text = out.lines().find_map(|l| {
        let (range, rest) = l.split_once(' ')?;
        let (start, end) = range.split_once('-')?;
        let (start, end) = (u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?);
        (start <= gva && gva < end).then(|| rest.split_whitespace().last().unwrap_or_default().to_string())
    });
    assert_eq!(text.as_deref(), Some("-rw"), "info mem covers start_kernel: {out}");
    assert_eq!(status, Some(130));
}

#[test]
fn a_checkpoint_at_start_kernel_brings_the_boot_to_setup_arch_again() {
    if !gdb_or_skip("a_checkpoint_at_start_kernel_brings_the_boot_to_setup_arch_again") {
        return;
    }
    let Some(dir) = kernel_dir("a_checkpoint_at_start_kernel_brings_the_boot_to_setup_arch_again") else {
        return;
    };
    let vmlinux = dir.join("vmlinux");
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (mut child, addr, _stderr) = held_for_gdb(&vmlinux, &["--checkpoint-every", "0"]);
    let out = Command::new("gdb")
        .args(["-batch", "-nx", "-ex", "set remotetimeout 120", "-ex"])
        .arg(format!("file {}", vmlinux.display()))
        .args(["-ex", &format!("target remote {addr}"), "-ex", "hbreak start_kernel", "-ex", "continue"])
        // With --checkpoint-every 0 the only checkpoint is this one. From start_kernel to
        // setup_arch the kernel prints its banner (earlyprintk: an exit per character).
        .args(["-ex", "monitor checkpoint", "-ex", "delete", "-ex", "hbreak setup_arch", "-ex", "continue"])
        .args(["-ex", "p/x $rsp", "-ex", "monitor restore 1", "-ex", "maintenance flush register-cache"])
        .args(["-ex", "bt 1"])
        .args(["-ex", "continue", "-ex", "p/x $rsp", "-ex", "monitor checkpoints", "-ex", "kill"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let _ = child.wait();
    assert!(out.contains("Breakpoint 1, start_kernel () at init/main.c"), "{out}");
    assert!(out.contains("checkpoint #1 at rip ") && out.contains(" after exit "), "{out}");
    assert!(out.contains("back at checkpoint #1"), "{out}");
    assert!(out.contains("#0  start_kernel () at init/main.c"), "back at start_kernel: {out}");
    let milestones = out.matches(", setup_arch (").count();
    assert_eq!(milestones, 2, "setup_arch reached again after the restore: {out}");
    let rsps: Vec<&str> = out.lines().filter(|l| l.starts_with('$')).collect();
    assert_eq!(rsps.len(), 2, "{out}");
    assert_eq!(rsps[0].split(" = ").nth(1), rsps[1].split(" = ").nth(1), "the same stack both times: {out}");
}

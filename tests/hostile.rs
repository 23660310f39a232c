//! The hostile pass, kept: odd files for every path option (a FIFO, a device, a directory) are
//! refused at once and nothing waits on them; output to a full device or a closed pipe is an error
//! or nothing, never a panic; crafted recordings are read or refused, never a panic or a hang; a
//! block device is a disk of its size, and one image is not two writable disks, in one process or
//! two.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kvmscope-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn fifo(name: &str) -> PathBuf {
    let path = temp(name);
    let _ = std::fs::remove_file(&path);
    assert!(Command::new("mkfifo").arg(&path).status().unwrap().success());
    path
}

/// Runs `cmd` to its end, or kills it after `limit` (then the test fails: it hung). Its output is
/// read as it comes, so that a full pipe never holds it up.
fn finish_within(mut cmd: Command, limit: Duration) -> Run {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} hung; stderr: {}", err.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run { status: status.code().unwrap_or(-1), stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

fn run_args(args: &[&str]) -> Run {
    let mut cmd = kvmscope();
    cmd.args(args);
    finish_within(cmd, Duration::from_secs(20))
}

#[test]
fn odd_files_for_every_path_option_are_refused_at_once() {
    if !kvm_or_skip("odd_files_for_every_path_option_are_refused_at_once") {
        return;
    }
    let f = fifo("fifo");
    let (f, dir) = (f.to_str().unwrap(), std::env::temp_dir());
    let dir = dir.to_str().unwrap();
    let hello = guest("hello.elf");
    let hello = hello.to_str().unwrap();
    let virtio = guest("virtio.elf");
    let virtio = virtio.to_str().unwrap();
    let (fifo_ro, dir_ro) = (format!("{f},ro"), format!("{dir},ro"));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--kernel", f], "is a FIFO"),
        (vec!["--kernel", "/dev/zero"], "is a character device"),
        (vec!["--kernel", dir], "is a directory"),
        (vec!["--image", f, "--load", "0x7c00", "--entry", "0x7c00", "--mode", "real"], "is a FIFO"),
        (vec!["--kernel", virtio, "--disk", f], "is a FIFO; a disk is a regular file or a block device"),
        (vec!["--kernel", virtio, "--disk", &fifo_ro], "is a FIFO"),
        (vec!["--kernel", virtio, "--disk", "/dev/zero"], "is a character device"),
        (vec!["--kernel", virtio, "--disk", &dir_ro], "is a directory"),
        (vec!["--kernel", hello, "--record", f], "is a FIFO"),
        (vec!["--kernel", hello, "--record", dir], "is a directory"),
        (vec!["--kernel", hello, "--debugcon", f], "a FIFO with no reader"),
        (vec!["--kernel", hello, "--symbols", f], "is a FIFO"),
        (vec!["--kernel", hello, "--symbols", "/dev/zero"], "is a character device"),
        (vec!["--kernel", hello, "--summary-file", f], "a FIFO with no reader"),
    ];
    for (args, want) in cases {
        let mut all = vec!["run", "--headless", "--timeout", "10"];
        all.extend(args.iter().copied());
        let run = run_args(&all);
        assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{args:?}: want {want:?} in {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    // A recording whose header names a FIFO or a device as its guest image: refused, not read.
    let trace = temp("names-a-fifo.trace");
    let rec = run_args(&["run", "--headless", "--kernel", hello, "--record", trace.to_str().unwrap()]);
    assert_eq!(rec.status, 33, "{}", rec.stderr);
    // Every command that reads a recording or writes a file: a FIFO (no writer, no reader), a
    // device or a directory refused at once, the recording itself never written over.
    let t = trace.to_str().unwrap();
    let out = temp("out.svg");
    let o = out.to_str().unwrap();
    let reading: Vec<(Vec<&str>, &str)> = vec![
        (vec!["stats", f], "is a FIFO"),
        (vec!["stats", "/dev/zero"], "is a character device"),
        (vec!["export", "--format", "jsonl", f], "is a FIFO"),
        (vec!["export", "--format", "parquet", f, "-o", o], "is a FIFO"),
        (vec!["diff", f, t], "is a FIFO"),
        (vec!["diff", t, dir], "is a directory"),
        (vec!["flamegraph", f, "-o", o], "is a FIFO"),
        (vec!["replay", f], "is a FIFO"),
        (vec!["export", "--format", "jsonl", t, "-o", f], "is a FIFO"),
        (vec!["export", "--format", "csv", t, "-o", "/dev/null"], "is a character device"),
        (vec!["export", "--format", "folded", t, "-o", dir], "is a directory"),
        (vec!["flamegraph", t, "-o", f], "is a FIFO"),
        (vec!["run", "--headless", "--restore", f], "is a FIFO"),
    ];
    let size = std::fs::metadata(&trace).unwrap().len();
    for format in ["jsonl", "csv", "chrome", "folded", "parquet"] {
        let run = run_args(&["export", "--format", format, t, "-o", t]);
        assert_eq!(run.status, 2, "export -o its own input ({format}): {}", run.stderr);
        assert!(run.stderr.contains("is the file being read"), "{format}: {}", run.stderr);
        assert_eq!(std::fs::metadata(&trace).unwrap().len(), size, "the recording is untouched ({format})");
    }
    for (args, want) in reading {
        let run = run_args(&args);
        assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{args:?}: want {want:?} in {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    let _ = std::fs::remove_file(&out);
    for named in [f, "/dev/zero"] {
        let crafted = retarget(&trace, named);
        for cmd in [&["stats", "--by", "symbol"][..], &["export", "--format", "folded"]] {
            let mut args = cmd.to_vec();
            args.push(crafted.to_str().unwrap());
            let run = run_args(&args);
            assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
            assert!(run.stderr.contains("not a regular file"), "{args:?}: {}", run.stderr);
        }
    }
    let _ = std::fs::remove_file(f);
}

/// A copy of the recording `trace` whose header names `image` as its guest image.
fn retarget(trace: &Path, image: &str) -> PathBuf {
    let bytes = std::fs::read(trace).unwrap();
    let (mut header, used, _) = kvmscope::recording::reader::parse_header(&bytes).unwrap();
    header.guest_image = image.to_string();
    let mut out = kvmscope::recording::format::encode_header(&header);
    out.extend_from_slice(&bytes[used..]);
    let path = temp(&format!("retargeted-{}.trace", image.replace('/', "_")));
    std::fs::write(&path, out).unwrap();
    path
}

/// `kvmscope ARGS` with stdout (or stderr) going to /dev/full.
fn to_full(args: &[&str], stderr_too: bool) -> Run {
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let mut cmd = kvmscope();
    cmd.args(args).stdout(full());
    if stderr_too {
        cmd.stderr(full());
    }
    let out = cmd.output().unwrap();
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

#[test]
fn output_to_a_full_device_or_a_closed_pipe_is_never_a_panic() {
    if !kvm_or_skip("output_to_a_full_device_or_a_closed_pipe_is_never_a_panic") {
        return;
    }
    let hello = guest("hello.elf");
    let hello = hello.to_str().unwrap();
    let trace = temp("out.trace");
    let rec = run_args(&["run", "--headless", "--kernel", hello, "--record", trace.to_str().unwrap()]);
    assert_eq!(rec.status, 33, "{}", rec.stderr);
    let trace = trace.to_str().unwrap();
    // A full device: one line and status 1.
    for args in
        [&["stats", trace][..], &["stats", "--json", trace], &["export", "--format", "jsonl", trace], &["probe"]]
    {
        let run = to_full(args, false);
        assert_eq!(run.status, 1, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("cannot write the output"), "{args:?}: {}", run.stderr);
    }
    // stderr full in a run: no panic (status 101); the run ends as the guest made it, or 1 when
    // its summary could not be written.
    let run = to_full(&["run", "--headless", "--kernel", hello], true);
    assert!(run.status == 1 || run.status == 33, "{}", run.status);
    // A reader that went away: nothing to say, no panic.
    for args in [&["stats", trace][..], &["export", "--format", "csv", trace]] {
        let mut child = kvmscope().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // `run --trace | head -c 100`: the console's reader goes; the run goes on to its end.
    let mut child = kvmscope()
        .args(["run", "--headless", "--kernel", hello, "--trace"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(33), "{err}");
}

#[test]
fn crafted_recordings_are_read_or_refused_never_a_panic_or_a_hang() {
    if !kvm_or_skip("crafted_recordings_are_read_or_refused_never_a_panic_or_a_hang") {
        return;
    }
    let trace = temp("fuzz-base.trace");
    let disk = temp("fuzz.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let virtio = guest("virtio.elf");
    let args = [
        "run",
        "--headless",
        "--kernel",
        virtio.to_str().unwrap(),
        "--disk",
        disk.to_str().unwrap(),
        "--virtio",
        "rng,console",
    ];
    let rec = run_args(&[&args[..], &["--record", trace.to_str().unwrap(), "--stacks=all"]].concat());
    assert_eq!(rec.status, 99, "{}", rec.stderr);
    let bytes = std::fs::read(&trace).unwrap();
    // Deterministic xorshift mutations: flipped bytes, a cut, a stretch of garbage.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let crafted = temp("fuzz.trace");
    for round in 0..120 {
        let mut b = bytes.clone();
        match round % 3 {
            0 => (0..1 + next() % 8).for_each(|_| {
                let at = next() as usize % b.len();
                b[at] ^= next() as u8 | 1;
            }),
            1 => b.truncate(next() as usize % b.len()),
            _ => {
                let at = next() as usize % b.len();
                let junk: Vec<u8> = (0..next() % 64).map(|_| next() as u8).collect();
                b.splice(at..at, junk);
            }
        }
        std::fs::write(&crafted, &b).unwrap();
        let path = crafted.to_str().unwrap();
        for args in [
            &["stats", "--json", path][..],
            &["export", "--format", "jsonl", path],
            &["export", "--format", "folded", path],
        ] {
            let run = run_args(args);
            assert!(matches!(run.status, 0..=2), "round {round} {args:?}: status {}: {}", run.status, run.stderr);
            assert!(!run.stderr.contains("panicked"), "round {round} {args:?}: {}", run.stderr);
        }
    }
    let _ = (std::fs::remove_file(&trace), std::fs::remove_file(&crafted), std::fs::remove_file(&disk));
}

#[test]
fn a_block_device_is_a_disk_of_its_size_and_an_image_is_not_two_writable_disks() {
    if !kvm_or_skip("a_block_device_is_a_disk_of_its_size_and_an_image_is_not_two_writable_disks") {
        return;
    }
    let virtio = guest("virtio.elf");
    let virtio = virtio.to_str().unwrap();
    let image = temp("disk.img");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let img = image.to_str().unwrap();
    // One image given twice, once writable: refused.
    let run = run_args(&["run", "--headless", "--kernel", virtio, "--disk", img, "--disk", &format!("{img},ro")]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("given twice, once writable"), "{}", run.stderr);
    // A partial sector is said; the capacity is on the device line.
    let odd = temp("odd.img");
    std::fs::write(&odd, vec![0u8; 513]).unwrap();
    let run = run_args(&[
        "run",
        "--headless",
        "--kernel",
        virtio,
        "--disk",
        &format!("{},ro", odd.display()),
        "--timeout",
        "20",
    ]);
    assert!(run.stderr.contains("its last 1 byte (less than a 512-byte sector)"), "{}", run.stderr);
    assert!(run.stderr.contains("1 sectors (512), read-only"), "{}", run.stderr);
    // Two processes: the second may not write what the first writes (an advisory lock).
    let mut first = kvmscope()
        .args([
            "run",
            "--headless",
            "--kernel",
            virtio,
            "--disk",
            img,
            "--cmdline",
            "spin-after-flush",
            "--timeout",
            "30",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let second = run_args(&["run", "--headless", "--kernel", virtio, "--disk", img]);
    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(second.status, 2, "{}", second.stderr);
    assert!(second.stderr.contains("another process has it open"), "{}", second.stderr);
    // A block device: its size from the device (as root, with a loop device).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED the block-device part: losetup needs root");
        return;
    }
    let lo = Command::new("losetup").args(["-f", "--show", img]).output().unwrap();
    if !lo.status.success() {
        assert!(
            std::env::var("KVMSCOPE_REQUIRE_KVM").as_deref() != Ok("1"),
            "losetup: {}",
            String::from_utf8_lossy(&lo.stderr)
        );
        eprintln!("SKIPPED the block-device part: no loop device ({})", String::from_utf8_lossy(&lo.stderr));
        return;
    }
    let dev = String::from_utf8_lossy(&lo.stdout).trim().to_string();
    let run = run_args(&[
        "run",
        "--headless",
        "--kernel",
        virtio,
        "--disk",
        &dev,
        "--virtio",
        "rng,console",
        "--timeout",
        "60",
    ]);
    let _ = Command::new("losetup").args(["-d", &dev]).status();
    assert!(run.stderr.contains("2048 sectors (1M), read-write"), "{}", run.stderr);
    assert_eq!(run.status, 99, "the guest's disk checks pass on the device: {}", run.stderr);
}

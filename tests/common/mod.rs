//! Helpers for tests that boot the project's guests under /dev/kvm.

#![allow(dead_code)]

pub mod gdb_stub;
pub mod netns;
pub mod reverse;

use std::path::PathBuf;
use std::process::{Command, Output};

/// Whether /dev/kvm can be used. Without it a test skips, saying so — unless
/// `KVMSCOPE_REQUIRE_KVM=1`, where it fails.
pub fn kvm_or_skip(test: &str) -> bool {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("KVMSCOPE_REQUIRE_KVM").as_deref() == Ok("1") {
                panic!("{test}: /dev/kvm is required (KVMSCOPE_REQUIRE_KVM=1) but cannot be opened: {e}");
            }
            eprintln!("SKIPPED {test}: /dev/kvm cannot be opened ({e})");
            false
        }
    }
}

/// Whether the host's KVM is PVM (the software KVM of this project's machines), where some results
/// differ from VT-x/AMD-V.
pub fn is_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

/// Runs `bash SCRIPT` (a build or fetch of what the tests need, cached outside the repository) and
/// returns the directory it prints on its last line. When it fails the test says so and skips —
/// unless `KVMSCOPE_REQUIRE_KVM=1`, where it fails; `what` names the thing in those messages.
pub fn script_dir(test: &str, script: &str, what: &str) -> Option<PathBuf> {
    let out = Command::new("bash").arg(script).output().expect("bash runs");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if std::env::var("KVMSCOPE_REQUIRE_KVM").as_deref() == Ok("1") {
            panic!("{test}: {what} failed:\n{err}");
        }
        eprintln!("SKIPPED {test}: {what} failed:\n{err}");
        return None;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Some(PathBuf::from(stdout.lines().last().expect("the script prints its directory last").trim()))
}

/// Path of one of the project's built guests.
pub fn guest(file: &str) -> PathBuf {
    kvmscope::guests::guest_path(file)
}

/// The kvmscope binary.
pub fn kvmscope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kvmscope"))
}

/// A finished run: status, stdout, stderr.
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The JSON summary: the last line of stderr.
    pub fn summary(&self) -> serde_json::Value {
        let last = self.stderr.lines().last().unwrap_or_default();
        serde_json::from_str(last).unwrap_or_else(|e| panic!("no JSON summary ({e}) in stderr:\n{}", self.stderr))
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            status: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `kvmscope run --headless ARGS`.
pub fn run_headless(args: &[&str]) -> Run {
    kvmscope().arg("run").arg("--headless").args(args).output().expect("kvmscope runs").into()
}

/// Runs a raw image headless: loaded and entered at `at` in `mode`, with `extra` arguments after.
pub fn run_raw(image: &std::path::Path, at: &str, mode: &str, extra: &[&str]) -> Run {
    let image = image.to_str().expect("a UTF-8 path");
    let mut args = vec!["--image", image, "--load", at, "--entry", at, "--mode", mode];
    args.extend_from_slice(extra);
    run_headless(&args)
}

/// Count of the `io` entry for (port, dir) in a JSON summary (0 when absent).
pub fn io_count(summary: &serde_json::Value, port: u64, dir: &str) -> u64 {
    summary["io"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["port"] == port && e["dir"] == dir)
        .map_or(0, |e| e["count"].as_u64().unwrap())
}

/// Count of the `mmio` entry for (addr, dir) in a JSON summary (0 when absent).
pub fn mmio_count(summary: &serde_json::Value, addr: u64, dir: &str) -> u64 {
    summary["mmio"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["addr"] == addr && e["dir"] == dir)
        .map_or(0, |e| e["count"].as_u64().unwrap())
}

/// Checks that every line of a JSON Lines export is what serde_json prints of the line's value
/// (the rows are written straight into a buffer: their keys sorted, their strings escaped, as
/// serde_json writes them); the lines' values.
#[allow(dead_code)]
pub fn jsonl_as_serde_prints(jsonl: &str) -> Vec<serde_json::Value> {
    jsonl
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(v.to_string(), line, "a row differs from the JSON value it holds printed");
            v
        })
        .collect()
}

/// Where the index a finished recording ends with starts (its footer's offset): the bytes before
/// it are the recording as a crash would leave it.
pub fn index_offset(recording: &[u8]) -> usize {
    let footer = &recording[recording.len() - 16..];
    assert_eq!(&footer[8..], b"KSIDXEND", "the recording ends with its index");
    u64::from_le_bytes(footer[..8].try_into().unwrap()) as usize
}

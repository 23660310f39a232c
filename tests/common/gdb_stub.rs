//! kvmscope with its gdb stub, and GNU gdb against it, for the tests that need both.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::*;

/// kvmscope serving gdb on a port the OS picked.
pub struct Stub {
    pub child: Child,
    /// What gdb's `target remote` takes.
    pub addr: String,
    pub stderr: mpsc::Receiver<String>,
}

impl Stub {
    /// On a port the OS picks.
    pub fn start(guest_file: &str, wait: bool) -> Stub {
        Stub::start_on(guest_file, wait, "0")
    }

    /// On `listen` (`PORT`, `ADDR:PORT`, `unix:PATH`).
    pub fn start_on(guest_file: &str, wait: bool, listen: &str) -> Stub {
        Stub::start_with(guest_file, wait, listen, &[])
    }

    /// On `listen`, with more arguments for `kvmscope run`.
    pub fn start_with(guest_file: &str, wait: bool, listen: &str, extra: &[&str]) -> Stub {
        let mut cmd = kvmscope();
        cmd.args(["run", "--headless", "--kernel", guest(guest_file).to_str().unwrap(), "--gdb", listen]);
        if !extra.contains(&"--summary") {
            cmd.args(["--summary", "none"]);
        }
        if wait {
            cmd.arg("--gdb-wait");
        }
        cmd.args(extra);
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let addr = loop {
            let line = rx.recv_timeout(Duration::from_secs(20)).expect("kvmscope announces the stub");
            if let Some(rest) = line.split("target remote ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        Stub { child, addr, stderr: rx }
    }

    /// Runs gdb in batch mode with these commands; returns what it printed.
    pub fn gdb(&self, file: Option<&str>, commands: &[&str]) -> String {
        let out = self.gdb_command(file, commands).output().expect("gdb runs");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// gdb in batch mode, attached to this stub, to run these commands.
    pub fn gdb_command(&self, file: Option<&str>, commands: &[&str]) -> Command {
        let mut cmd = Command::new("gdb");
        cmd.args(["-batch", "-nx"]);
        if let Some(f) = file {
            cmd.args(["-ex", &format!("file {}", guest(f).display())]);
        }
        cmd.args(["-ex", &format!("target remote {}", self.addr)]);
        for c in commands {
            cmd.args(["-ex", c]);
        }
        cmd
    }

    /// Waits for kvmscope to end: status, stdout, stderr.
    pub fn finish(mut self) -> (i32, String, String) {
        let status = self.child.wait().unwrap().code().unwrap_or(-1);
        let mut out = String::new();
        self.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let err: Vec<String> = self.stderr.iter().collect();
        (status, out, err.join("\n"))
    }

    pub fn interrupt(&self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
    }
}

pub fn gdb_or_skip(test: &str) -> bool {
    if !kvm_or_skip(test) {
        return false;
    }
    if Command::new("gdb").arg("--version").output().is_err() {
        assert!(std::env::var("KVMSCOPE_REQUIRE_KVM").as_deref() != Ok("1"), "{test}: gdb is required");
        eprintln!("SKIPPED {test}: gdb is not installed");
        return false;
    }
    true
}

/// The values gdb printed (`$N = V`) in order, and the addresses of its `info registers rip` lines.
pub fn printed(out: &str) -> (Vec<String>, Vec<String>) {
    let vals =
        out.lines().filter_map(|l| l.split_once(" = ").filter(|(k, _)| k.starts_with('$'))).map(|(_, v)| v.to_string());
    let rips =
        out.lines().filter(|l| l.starts_with("rip ")).filter_map(|l| l.split_whitespace().nth(1)).map(String::from);
    (vals.collect(), rips.collect())
}

/// Resident memory of process `pid`, in KiB.
pub fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

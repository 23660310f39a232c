//! The gdb stub against stray connections and a second client, as QEMU's `-s -S` copes with them:
//! port probes, a scanner and half a packet before gdb attaches to a held guest (TCP and Unix
//! sockets); a killed gdb, then a new one; a second gdb refused while the first goes on.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::gdb_stub::*;

/// What the probes send before closing: nothing (connect and close), a newline, an HTTP request,
/// half of gdb's first packet.
const PROBES: [&[u8]; 4] = [b"", b"\n", b"GET / HTTP/1.0\r\n\r\n", b"+$qSupported:multiprocess+;swbr"];

/// Waits until the stub's stderr has said `n` lines containing `what`; returns everything it said.
fn wait_lines(stub: &Stub, what: &str, n: usize, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.iter().filter(|l| l.contains(what)).count() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match stub.stderr.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("want {n} lines with {what:?} from the stub; it said:\n{}", seen.join("\n")),
        }
    }
}

/// Probes, then gdb at the held guest's entry, then the guest runs to its end after detach.
fn probes_then_gdb(stub: Stub, connect: impl Fn() -> Box<dyn Write>) {
    for probe in PROBES {
        let mut c = connect();
        let _ = c.write_all(probe);
    }
    let mut said = Vec::new();
    wait_lines(&stub, "ignored a connection", PROBES.len(), &mut said);
    let out = stub.gdb(Some("gdbtest.elf"), &["info registers rip", "detach"]);
    assert!(
        out.contains("rip            0x200000            0x200000 <_start>"),
        "the guest was still held at its entry: {out}"
    );
    assert!(out.contains("[Inferior 1 (process 1) detached]"), "{out}");
    let (status, stdout, stderr) = stub.finish();
    assert_eq!(status, 11, "after detach the guest ran to its end: {stderr}");
    assert_eq!(stdout, ".....", "and ran once: {stderr}");
    let said = said.join("\n");
    for what in ["closed (or went quiet) before a complete gdb packet (no bytes)", "not a gdb packet (1 byte: \"\\n\")"]
    {
        assert!(said.contains(what), "{what:?} in:\n{said}");
    }
    assert!(said.contains("18 bytes: \"GET / HTTP/1.0"), "{said}");
    assert!(!said.contains("gdb connection ended"), "no probe took the session: {said}");
}

#[test]
fn probes_before_gdb_leave_the_guest_held_over_tcp() {
    if !gdb_or_skip("probes_before_gdb_leave_the_guest_held_over_tcp") {
        return;
    }
    let stub = Stub::start("gdbtest.elf", true);
    let addr = stub.addr.clone();
    probes_then_gdb(stub, || Box::new(TcpStream::connect(&addr).expect("the stub listens")));
}

#[test]
fn probes_before_gdb_leave_the_guest_held_over_a_unix_socket() {
    if !gdb_or_skip("probes_before_gdb_leave_the_guest_held_over_a_unix_socket") {
        return;
    }
    let path = std::env::temp_dir().join(format!("kvmscope-gdb-{}.sock", std::process::id()));
    let stub = Stub::start_on("gdbtest.elf", true, &format!("unix:{}", path.display()));
    assert_eq!(stub.addr, path.display().to_string());
    probes_then_gdb(stub, || Box::new(UnixStream::connect(&path).expect("the stub listens")));
    assert!(!path.exists(), "the socket is removed at the end");
}

/// A gdb that runs `commands` and then waits, killed later; its stdout read line by line.
struct LingeringGdb {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl LingeringGdb {
    fn start(stub: &Stub, commands: &[&str]) -> Self {
        let mut cmd = stub.gdb_command(Some("gdbtest.elf"), commands);
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).process_group(0).spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines }
    }

    /// Waits for a line of gdb's output that contains `what`; returns all it printed up to it.
    fn wait_for(&self, what: &str) -> String {
        let mut seen = String::new();
        loop {
            let line = self.lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("{what:?}: {seen}"));
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(what) {
                return seen;
            }
        }
    }

    /// SIGKILL to gdb and whatever it started.
    fn kill(mut self) {
        // SAFETY: kill(2) on the process group of our own child.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// A Unix socket path of this test's own.
fn socket(name: &str) -> String {
    let path = std::env::temp_dir().join(format!("kvmscope-gdb-{name}-{}.sock", std::process::id()));
    format!("unix:{}", path.display())
}

/// A gdb killed mid-session, then a new one, on the stub listening at `listen`.
fn killed_then_new(listen: &str) {
    let stub = Stub::start_on("gdbtest.elf", true, listen);
    // Breakpoints inserted at once (always-inserted), then gdb dies mid-session.
    let first = LingeringGdb::start(
        &stub,
        &["set breakpoint always-inserted on", "break bump", "hbreak done", "echo planted\\n", "shell sleep 60"],
    );
    first.wait_for("planted");
    first.kill();
    let mut said = Vec::new();
    wait_lines(&stub, "gdb connection ended", 1, &mut said);
    // The next gdb finds the guest where it was, and no breakpoint of the dead session stops it.
    let out = stub.gdb(Some("gdbtest.elf"), &["info registers rip", "continue"]);
    assert!(out.contains("rip            0x200000            0x200000 <_start>"), "still stopped: {out}");
    assert!(!out.contains("Breakpoint"), "the dead session's breakpoints are gone: {out}");
    assert!(out.contains("exited with code"), "the guest ran to its end: {out}");
    let (status, stdout, stderr) = stub.finish();
    assert_eq!(status, 11, "{stderr}");
    assert_eq!(stdout, ".....", "{stderr}");
}

#[test]
fn a_killed_gdb_leaves_the_guest_stopped_without_breakpoints_for_the_next() {
    if !gdb_or_skip("a_killed_gdb_leaves_the_guest_stopped_without_breakpoints_for_the_next") {
        return;
    }
    killed_then_new("0");
    killed_then_new(&socket("killed"));
}

/// A second gdb refused while the first goes on to a breakpoint; `peer` is how the stub names it.
fn second_refused(listen: &str, peer: &str) {
    let stub = Stub::start_on("gdbtest.elf", true, listen);
    let first = LingeringGdb::start(
        &stub,
        &["echo attached\\n", "shell sleep 3", "break bump", "continue", "p *(int*)&counter", "detach"],
    );
    first.wait_for("attached");
    let second = stub.gdb(Some("gdbtest.elf"), &["info registers rip"]);
    assert!(!second.contains("0x200000 <_start>"), "the second gdb got no session: {second}");
    assert!(second.contains("another gdb is attached to this VM"), "and was told why: {second}");
    let out = first.wait_for("detached");
    assert!(out.contains("Breakpoint 1, 0x000000000020001e in bump ()"), "the first went on to its breakpoint: {out}");
    assert!(out.contains("$1 = 0"), "{out}");
    first.kill();
    let (status, _, stderr) = stub.finish();
    assert!(stderr.contains(&format!("refused a second gdb from {peer}")), "{stderr}");
    assert_eq!(status, 11, "{stderr}");
}

#[test]
fn a_second_gdb_is_refused_while_the_first_goes_on() {
    if !gdb_or_skip("a_second_gdb_is_refused_while_the_first_goes_on") {
        return;
    }
    second_refused("0", "127.0.0.1:");
    let unix = socket("second");
    second_refused(&unix, unix.trim_start_matches("unix:"));
}

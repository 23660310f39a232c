//! A network namespace of a test's own, with a TAP in it: made with `ip netns add` under a name
//! unique to the run, removed (with all its interfaces) when dropped. The machine's own
//! interfaces are never touched.

use std::process::{Command, Output};

/// A network namespace that goes when dropped.
pub struct Netns {
    pub name: String,
}

/// Whether this process may make namespaces (root). Without it a test skips, saying so — unless
/// `KVMSCOPE_REQUIRE_KVM=1` (CI, which runs as root), where it fails.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("KVMSCOPE_REQUIRE_KVM").as_deref() == Ok("1") {
        panic!("{test}: network namespaces need root (KVMSCOPE_REQUIRE_KVM=1)");
    }
    eprintln!("SKIPPED {test}: network namespaces need root");
    false
}

fn ok(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

impl Netns {
    /// `kvs-TEST-PID`, with its loopback up.
    pub fn new(test: &str) -> Self {
        let name = format!("kvs-{test}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ok(Command::new("ip").args(["netns", "add", &name]).output().expect("ip runs"), "ip netns add");
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> Output {
        let out = Command::new("ip").arg("-n").arg(&self.name).args(args).output().expect("ip runs");
        ok(out, &format!("ip {}", args.join(" ")))
    }

    /// A persistent TAP `tap` with address `cidr`, up (as a user sets one up by hand).
    pub fn tap(&self, tap: &str, cidr: &str) {
        self.ip(&["tuntap", "add", "dev", tap, "mode", "tap"]);
        self.ip(&["addr", "add", cidr, "dev", tap]);
        self.ip(&["link", "set", tap, "up"]);
    }

    /// Whether interface `name` exists in the namespace.
    pub fn has(&self, name: &str) -> bool {
        Command::new("ip").args(["-n", &self.name, "link", "show", name]).output().is_ok_and(|o| o.status.success())
    }

    /// A UDP socket bound to `addr` inside the namespace, on a thread of its own: each datagram
    /// arrives on the receiver as text (until the receiver is dropped, or an hour has passed).
    pub fn udp_listener(&self, addr: &str) -> std::sync::mpsc::Receiver<String> {
        let (path, addr) = (format!("/run/netns/{}", self.name), addr.to_string());
        let (tx, rx) = std::sync::mpsc::channel();
        let (bound_tx, bound) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("the namespace's file");
            // SAFETY: setns on this thread with a namespace file it holds open.
            let entered = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
            assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
            let socket = std::net::UdpSocket::bind(&addr).expect("bind in the namespace");
            socket.set_read_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
            bound_tx.send(()).unwrap();
            let mut buf = [0u8; 2048];
            for _ in 0..3600 {
                if let Ok(n) = socket.recv(&mut buf)
                    && tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err()
                {
                    return;
                }
            }
        });
        bound.recv().expect("the listener is bound");
        rx
    }

    /// `COMMAND ARGS` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

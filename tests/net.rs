//! virtio-net on a TAP, end to end: the project's guest (assets/guests/net.mb.c) answers `ping`
//! from a network namespace of the test's own; every frame is in the trace, the recording, `stats`,
//! the exports and a pcap that tcpdump reads; a TAP kvmscope makes goes with the run; one that
//! goes away mid-run, and a user without the rights to make one, are said in a line.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::netns::{Netns, root_or_skip};
use common::*;

/// isa-debug-exit 0x35: the guest answered the pings it was told to.
const ANSWERED: i32 = 107;

fn temp(test: &str, ext: &str) -> PathBuf {
    std::env::temp_dir().join(format!("kvmscope-net-{test}-{}.{ext}", std::process::id()))
}

/// kvmscope running the net guest in `ns`, its stdout's lines arriving on the receiver.
struct Guest {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Guest {
    fn start(ns: &Netns, args: &[&str]) -> Self {
        let kernel = guest("net.elf");
        let mut child = ns
            .command(env!("CARGO_BIN_EXE_kvmscope"))
            .args(["run", "--headless", "--kernel", kernel.to_str().unwrap()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kvmscope runs");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || BufReader::new(out).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
        Self { child, lines }
    }

    /// Waits for a console line starting with `prefix`.
    fn wait_for(&self, prefix: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(e) => panic!("no console line {prefix:?} ({e})"),
            }
        }
    }

    fn finish(self) -> Run {
        let out = self.child.wait_with_output().expect("kvmscope ends");
        Run {
            status: out.status.code().unwrap_or(-1),
            stdout: String::new(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }
}

/// `tcpdump -r FILE -n -t`: one line per frame, without times.
fn tcpdump(file: &Path) -> String {
    let out =
        Command::new("tcpdump").args(["-r", file.to_str().unwrap(), "-n", "-t", "-e"]).output().expect("tcpdump runs");
    assert!(out.status.success(), "tcpdump -r {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The summary's `virtio` row of the card's queue `queue`.
fn net_row(summary: &serde_json::Value, queue: u64) -> serde_json::Value {
    summary["virtio"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["device"] == "virtio-net" && r["queue"] == queue)
        .cloned()
        .unwrap_or_else(|| panic!("no virtio-net q{queue} row in {}", summary["virtio"]))
}

#[test]
fn ping_from_a_namespace_gets_five_replies_and_every_frame_is_kept() {
    if !kvm_or_skip("ping_from_a_namespace") || !root_or_skip("ping_from_a_namespace") {
        return;
    }
    let ns = Netns::new("ping");
    ns.tap("tap0", "10.0.2.2/24");
    let (pcap, trace) = (temp("ping", "pcap"), temp("ping", "trace"));
    let g = Guest::start(
        &ns,
        &[
            "--net",
            "tap=tap0,mac=52:54:00:12:34:56",
            "--cmdline",
            "ip=10.0.2.15 replies=5",
            "--pcap",
            pcap.to_str().unwrap(),
            "--record",
            trace.to_str().unwrap(),
            "--trace",
            "--timeout",
            "120",
            "--summary",
            "json",
        ],
    );
    assert_eq!(g.wait_for("net: up"), "net: up 52:54:00:12:34:56 10.0.2.15");
    let ping = ns.command("ping").args(["-c", "5", "-i", "0.2", "-W", "10", "10.0.2.15"]).output().unwrap();
    let said = String::from_utf8_lossy(&ping.stdout);
    assert!(said.contains("5 packets transmitted, 5 received"), "{said}");
    let run = g.finish();
    assert_eq!(run.status, ANSWERED, "{}", run.stderr);

    // The pcap: the ARP exchange and ten ICMP frames, as tcpdump reads them.
    let frames = tcpdump(&pcap);
    let count = |what: &str| frames.lines().filter(|l| l.contains(what)).count();
    assert_eq!(count("ICMP echo request"), 5, "{frames}");
    assert_eq!(count("10.0.2.15 > 10.0.2.2: ICMP echo reply"), 5, "{frames}");
    assert!(count("Request who-has 10.0.2.15 tell 10.0.2.2") >= 1, "{frames}");
    assert!(count("Reply 10.0.2.15 is-at 52:54:00:12:34:56") >= 1, "{frames}");
    // The recording holds the same frames: its pcap export reads the same.
    let exported = temp("ping-export", "pcap");
    let out = kvmscope().args(["export", "--format", "pcap"]).arg(&trace).arg("-o").arg(&exported).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(tcpdump(&exported), frames, "the recording's frames are the live pcap's");

    // The trace shows each frame in tcpdump's words.
    let reply = "virtio-net q1 tx frame: 52:54:00:12:34:56 > ";
    assert_eq!(
        run.stderr.lines().filter(|l| l.contains(reply) && l.contains("ICMP echo reply")).count(),
        5,
        "{}",
        run.stderr
    );
    // Counts per direction: live, and from the recording.
    let summary = run.summary();
    let (rx, tx) = (net_row(&summary, 0), net_row(&summary, 1));
    assert!(rx["frames"].as_u64().unwrap() >= 6 && tx["frames"].as_u64().unwrap() >= 6, "{rx} {tx}");
    let stats = kvmscope().args(["stats", "--json"]).arg(&trace).output().unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("stats --json prints JSON");
    assert_eq!(net_row(&stats, 1)["frames"], tx["frames"], "stats on the recording agree with the live run");
    let text = String::from_utf8_lossy(&kvmscope().args(["stats"]).arg(&trace).output().unwrap().stdout).into_owned();
    assert!(text.contains(&format!("virtio-net tx: {} frames", tx["frames"])), "{text}");
    // The JSON export carries each frame's bytes and summary.
    let jsonl = kvmscope().args(["export", "--format", "jsonl"]).arg(&trace).output().unwrap();
    let jsonl = String::from_utf8_lossy(&jsonl.stdout);
    let echo = jsonl.lines().find(|l| l.contains("ICMP echo reply")).expect("a frame in the JSON export");
    let echo: serde_json::Value = serde_json::from_str(echo).unwrap();
    assert_eq!(
        (echo["what"].as_str(), echo["dir"].as_str(), echo["len"].as_u64()),
        (Some("frame"), Some("tx"), Some(98))
    );
    assert!(
        echo["bytes"].as_str().unwrap().starts_with("02") || echo["bytes"].as_str().unwrap().len() == 196,
        "{echo}"
    );
    for f in [&pcap, &trace, &exported] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn a_tap_kvmscope_makes_is_up_during_the_run_and_gone_after() {
    if !kvm_or_skip("a_tap_kvmscope_makes") || !root_or_skip("a_tap_kvmscope_makes") {
        return;
    }
    let ns = Netns::new("made");
    assert!(!ns.has("made0"));
    let g = Guest::start(&ns, &["--net", "tap=made0", "--timeout", "4", "--summary", "none"]);
    g.wait_for("net: up");
    let link = String::from_utf8_lossy(&ns.ip(&["-br", "link", "show", "made0"]).stdout).into_owned();
    assert!(link.contains("UP"), "the TAP kvmscope made is up: {link}");
    let run = g.finish();
    assert!(run.stderr.contains("TAP made0, made by kvmscope, MAC "), "{}", run.stderr);
    assert!(!ns.has("made0"), "the TAP went with the run");
}

#[test]
fn without_the_rights_to_make_a_tap_one_line_says_what_to_run() {
    if !kvm_or_skip("without_the_rights") || !root_or_skip("without_the_rights") {
        return;
    }
    let ns = Netns::new("rights");
    let out = ns
        .command("setpriv")
        .args(["--bounding-set=-net_admin", "--inh-caps=-net_admin", env!("CARGO_BIN_EXE_kvmscope")])
        .args(["run", "--headless", "--kernel", guest("net.elf").to_str().unwrap(), "--net", "tap=mine0"])
        .output()
        .unwrap();
    let run = Run::from(out);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert_eq!(
        run.stderr.trim(),
        "kvmscope: --net tap=mine0: creating a TAP needs CAP_NET_ADMIN; create it once as root: ip tuntap add dev \
         mine0 mode tap user $USER && ip link set mine0 up"
    );
    let bad = run_headless(&["--demo", "--net", "tap=far-too-long-a-name"]);
    assert_eq!(bad.status, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("an interface name is 1 to 15 characters"), "{}", bad.stderr);
    let no_net = run_headless(&["--demo", "--pcap", "/tmp/x.pcap"]);
    assert_eq!(no_net.status, 2);
    assert!(no_net.stderr.contains("--net"), "{}", no_net.stderr);
}

#[test]
fn a_tap_that_goes_away_mid_run_is_an_event_and_the_run_goes_on() {
    if !kvm_or_skip("a_tap_that_goes_away") || !root_or_skip("a_tap_that_goes_away") {
        return;
    }
    let ns = Netns::new("gone");
    ns.tap("tap0", "10.0.2.2/24");
    let g = Guest::start(&ns, &["--net", "tap=tap0", "--trace", "--timeout", "5", "--summary", "json"]);
    g.wait_for("net: up");
    ns.ip(&["link", "del", "tap0"]);
    let run = g.finish();
    assert_eq!(run.summary()["end"], "timeout", "{}", run.stderr);
    assert!(run.stderr.contains("virtio-net error: the TAP tap0 has gone"), "{}", run.stderr);
    let errors: u64 = run.summary()["virtio"].as_array().unwrap().iter().map(|r| r["errors"].as_u64().unwrap()).sum();
    assert_eq!(errors, 1);
}

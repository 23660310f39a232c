//! Key latency of the TUI under load: tmux runs `kvmscope run --kernel spin.elf` (a guest that exits as
//! fast as it can); the bench presses `?` and times until the help overlay is on the screen, then
//! closes it, 20 times, and prints the exit rate the status line showed and the latencies.
//! The target: a key shows within 100 ms while the guest makes over 100k exits/s (where the host is
//! fast enough to make that many). Needs tmux and /dev/kvm.

use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(socket: &str, args: &[&str]) -> String {
    let out = Command::new("tmux").args(["-L", socket]).args(args).output().expect("tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_until(socket: &str, ok: impl Fn(&str) -> bool) -> (Duration, String) {
    let start = Instant::now();
    loop {
        let screen = tmux(socket, &["capture-pane", "-p"]);
        if ok(&screen) {
            return (start.elapsed(), screen);
        }
        assert!(start.elapsed() < Duration::from_secs(20), "timed out; screen:\n{screen}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The "N/s" rate on the status line.
fn rate(screen: &str) -> u64 {
    let status = screen.lines().rev().find(|l| l.contains(" exits ")).unwrap_or_default();
    status.split_whitespace().find_map(|w| w.strip_suffix("/s")?.parse().ok()).unwrap_or(0)
}

fn main() {
    if std::fs::metadata("/dev/kvm").is_err() || Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("key_latency: needs /dev/kvm and tmux; nothing measured");
        return;
    }
    let socket = format!("kvmscope-latency-{}", std::process::id());
    let guest = kvmscope::guests::guest_path("spin.elf");
    let cmd = format!("{} run --kernel {} 2>/dev/null", env!("CARGO_BIN_EXE_kvmscope"), guest.display());
    tmux(&socket, &["new-session", "-d", "-x", "160", "-y", "45", &cmd]);
    // Let the rate settle (it is computed over one-second intervals).
    wait_until(&socket, |s| s.contains("RUNNING"));
    std::thread::sleep(Duration::from_secs(3));
    let mut latencies = Vec::new();
    let mut rates = Vec::new();
    for _ in 0..20 {
        let before = tmux(&socket, &["capture-pane", "-p"]);
        rates.push(rate(&before));
        tmux(&socket, &["send-keys", "?"]);
        let (t, _) = wait_until(&socket, |s| s.contains("any key closes"));
        latencies.push(t);
        tmux(&socket, &["send-keys", "x"]);
        wait_until(&socket, |s| !s.contains("any key closes"));
        std::thread::sleep(Duration::from_millis(200));
    }
    tmux(&socket, &["send-keys", "q"]);
    std::thread::sleep(Duration::from_millis(500));
    tmux(&socket, &["kill-server"]);
    latencies.sort();
    rates.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("TUI key latency under load (20 presses of `?`, measured through tmux capture-pane):");
    println!("  guest exit rate shown: median {} exits/s", rates[rates.len() / 2]);
    println!(
        "  key to screen: median {:.1} ms, max {:.1} ms (target <= 100 ms)",
        ms(latencies[latencies.len() / 2]),
        ms(*latencies.last().unwrap())
    );
}

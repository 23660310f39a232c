//! CPU time of the TUI's own thread (the process's main thread; the vCPUs run on others): tmux runs
//! the TUI for 10 s each on the demo guest paused (the baseline: drawing with nothing changing), on
//! the demo guest running (about 900 exits/s) and on `spin` (as many exits as the host gives), and
//! the bench prints each as a share of one core and as a ratio to the baseline of the same run.
//! The target: at most 10% of a core at the demo's rate. Needs tmux and /dev/kvm.

use std::process::Command;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(10);

fn tmux(socket: &str, args: &[&str]) -> String {
    let out = Command::new("tmux").args(["-L", socket]).args(args).output().expect("tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(socket: &str, what: &str) {
    let start = Instant::now();
    while !tmux(socket, &["capture-pane", "-p"]).contains(what) {
        assert!(start.elapsed() < Duration::from_secs(30), "{what} never showed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// User plus system time of one thread, in clock ticks.
fn thread_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat")).expect("the TUI runs");
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0)
}

/// The TUI's main thread's share of one core over `WINDOW`, with `args`; `pause` first.
fn ui_share(args: &str, pause: bool) -> f64 {
    let socket = format!("kvmscope-ui-cpu-{}", std::process::id());
    // `exec`: the pane's process is the TUI itself, not a shell around it.
    let cmd = format!("exec {} {args} 2>/dev/null", env!("CARGO_BIN_EXE_kvmscope"));
    tmux(&socket, &["new-session", "-d", "-x", "160", "-y", "45", &cmd]);
    wait_for(&socket, "RUNNING");
    if pause {
        tmux(&socket, &["send-keys", "Space"]);
        wait_for(&socket, "PAUSED");
    }
    std::thread::sleep(Duration::from_secs(2));
    let pid: u32 = tmux(&socket, &["list-panes", "-F", "#{pane_pid}"]).trim().parse().expect("a pane pid");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (t0, start) = (thread_ticks(pid), Instant::now());
    std::thread::sleep(WINDOW);
    let share = (thread_ticks(pid) - t0) as f64 / hz / start.elapsed().as_secs_f64();
    tmux(&socket, &["send-keys", "q"]);
    std::thread::sleep(Duration::from_millis(500));
    tmux(&socket, &["kill-server"]);
    share
}

fn main() {
    if std::fs::metadata("/dev/kvm").is_err() || Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("ui_cpu: needs /dev/kvm and tmux; nothing measured");
        return;
    }
    let spin = format!("run --kernel {}", kvmscope::guests::guest_path("spin.elf").display());
    let paused = ui_share("", true);
    let demo = ui_share("", false);
    let busy = ui_share(&spin, false);
    let pct = |s: f64| s * 100.0;
    let ratio = |s: f64| s / paused.max(1e-3);
    println!("TUI thread CPU, share of one core over {} s (160x45, through tmux):", WINDOW.as_secs());
    println!("  demo guest, paused (baseline)   {:5.1}%", pct(paused));
    println!("  demo guest, running             {:5.1}%   {:4.1}x baseline  (target <= 10%)", pct(demo), ratio(demo));
    println!("  spin guest, running             {:5.1}%   {:4.1}x baseline", pct(busy), ratio(busy));
}

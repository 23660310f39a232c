//! Export throughput: records the `spin` guest for 1,000,000 exits (`KVMSCOPE_BENCH_EXITS` to
//! change it: 20,000,000 for the flat-memory check), then runs each reader of the recording
//! as a user would (release build): `stats`, `diff` of the recording against itself, and `export`
//! in each format — exits per second beside the target and the speed before explanations were
//! looked up and rows written straight (measured on this project's machine), peak RSS, and the
//! output's bytes per exit beside the native trace's; where DuckDB's Python package is installed,
//! the same query over the Parquet file and over the JSON Lines, in the same run. Then the replay:
//! its first screen and a far jump, opened by the recording's index against the same recording
//! without it (read whole: the baseline, same run). Last, in process, the JSON Lines and CSV rows
//! of the `hello` guest's port exits with their explanations against the same rows without (the
//! baseline, same run): target >= 0.5x.

use std::process::Command;
use std::time::Instant;

/// Runs `cmd` to its end: (seconds, peak RSS in MiB), from the kernel's accounting of that child.
// wait4 reaps the child (std's `wait` would not give its rusage).
#[allow(clippy::zombie_processes)]
fn measured(cmd: &mut Command) -> (f64, f64) {
    let start = Instant::now();
    let child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for the child just spawned; status and usage live across the call.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{cmd:?} failed");
    (start.elapsed().as_secs_f64(), usage.ru_maxrss as f64 / 1024.0)
}

/// Seconds DuckDB takes for `sql` (median of 3), `None` without DuckDB or when the query fails.
fn duckdb(sql: &str) -> Option<f64> {
    let script = "import duckdb, sys, time\n\
                  ts = []\n\
                  for _ in range(3):\n    t = time.time(); duckdb.sql(sys.argv[1]).fetchall(); ts.append(time.time() - t)\n\
                  print(sorted(ts)[1])";
    let out = Command::new("python3").args(["-c", script, sql]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().parse().ok()).flatten()
}

fn main() {
    if std::fs::metadata("/dev/kvm").is_err() {
        eprintln!("export_throughput: /dev/kvm not available, nothing measured");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_kvmscope");
    let trace = std::env::temp_dir().join(format!("kvmscope-export-bench-{}.trace", std::process::id()));
    let guest = kvmscope::guests::guest_path("spin.elf");
    let exits: u64 = std::env::var("KVMSCOPE_BENCH_EXITS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let rec = Command::new(bin)
        .args(["run", "--headless", "--summary", "none", "--max-exits", &exits.to_string(), "--kernel"])
        .arg(&guest)
        .arg("--record")
        .arg(&trace)
        .output()
        .expect("kvmscope runs");
    assert!(String::from_utf8_lossy(&rec.stderr).contains("recorded"), "{}", String::from_utf8_lossy(&rec.stderr));
    let size = std::fs::metadata(&trace).map(|m| m.len()).unwrap_or(0);
    let per_exit = |bytes: u64| bytes as f64 / exits as f64;
    println!("readers of a recording of {exits} exits of `spin` (native trace {:.1} bytes/exit):", per_exit(size));
    println!(
        "  {:<16} {:>14} {:>10} {:>14} {:>12} {:>12}",
        "", "exits/s", "peak MiB", "bytes/exit", "target", "before"
    );
    let (secs, rss) = measured(Command::new(bin).arg("stats").arg(&trace));
    println!("  {:<16} {:>14.0} {rss:>10.1}", "stats", exits as f64 / secs);
    let (secs, rss) = measured(Command::new(bin).arg("diff").args([&trace, &trace]));
    println!("  {:<16} {:>14.0} {rss:>10.1}   (both runs read)", "diff", 2.0 * exits as f64 / secs);
    let out = |ext: &str| trace.with_extension(ext);
    // (format, target exits/s, before: measured on this project's machine at 1M exits)
    for (format, target, before) in [
        ("jsonl", 1_000_000, 459_365),
        ("csv", 1_500_000, 1_061_118),
        ("chrome", 0, 441_623),
        ("parquet", 2_000_000, 1_075_851),
    ] {
        let (secs, rss) =
            measured(Command::new(bin).arg("export").arg(&trace).args(["--format", format, "-o"]).arg(out(format)));
        let bytes = std::fs::metadata(out(format)).map(|m| m.len()).unwrap_or(0);
        let speed = exits as f64 / secs;
        let target = if target > 0 { format!(">= {target}") } else { "-".into() };
        println!("  export {format:<9} {speed:>14.0} {rss:>10.1} {:>14.1} {target:>12} {before:>12}", per_exit(bytes));
    }
    let query = |from: &str| format!("select reason, count(*), sum(cost_ns) from {from} group by reason");
    let parquet = format!("'{}'", out("parquet").display());
    let jsonl = format!("read_json_auto('{}')", out("jsonl").display());
    match (duckdb(&query(&parquet)), duckdb(&query(&jsonl))) {
        (Some(p), Some(j)) => println!(
            "  DuckDB, exits by reason: Parquet {:.1} ms, JSON Lines {:.1} ms ({:.0}x)",
            p * 1e3,
            j * 1e3,
            j / p
        ),
        _ => println!("  (no query times: python3 with duckdb is not installed, or a query failed)"),
    }
    for format in ["jsonl", "csv", "chrome", "parquet"] {
        let _ = std::fs::remove_file(out(format));
    }
    replay_open(&trace);
    let _ = std::fs::remove_file(&trace);
    explanation_cost(bin);
}

/// The replay's first screen and a jump to an exit far ahead, in process: opened by the
/// recording's index, and (the baseline) the same recording without its index, read whole.
fn replay_open(trace: &std::path::Path) {
    use kvmscope::ui::{app::App, replay::Replay};
    let bytes = std::fs::read(trace).expect("the recording reads");
    let at = u64::from_le_bytes(bytes[bytes.len() - 16..bytes.len() - 8].try_into().unwrap()) as usize;
    let bare = trace.with_extension("noindex.trace");
    std::fs::write(&bare, &bytes[..at]).expect("a copy without the index");
    drop(bytes);
    let time = |path: &std::path::Path| {
        let start = Instant::now();
        let (mut replay, _) = Replay::load(path).expect("the recording opens");
        let mut app = App::new("bench");
        replay.show(&mut app);
        let first = start.elapsed().as_secs_f64();
        // Far ahead, then far back: each a jump the user makes with :goto.
        let mut jumps = Vec::new();
        for at in [0.73, 0.31, 0.97] {
            let start = Instant::now();
            replay.cursor = (replay.len() as f64 * at) as usize;
            replay.show(&mut app);
            jumps.push(start.elapsed().as_secs_f64());
        }
        (first, jumps.into_iter().fold(0.0, f64::max))
    };
    let (first, jump) = time(trace);
    let (first_whole, jump_whole) = time(&bare);
    let _ = std::fs::remove_file(&bare);
    println!("replay of the recording (target: first screen < 0.5 s, a jump < 0.2 s):");
    println!(
        "  read whole (baseline)   first screen {:>8.1} ms   slowest jump {:>8.1} ms",
        first_whole * 1e3,
        jump_whole * 1e3
    );
    println!(
        "  by its index            first screen {:>8.1} ms   slowest jump {:>8.1} ms   = {:.2}x and {:.2}x the baseline's time",
        first * 1e3,
        jump * 1e3,
        first / first_whole,
        jump / jump_whole
    );
}

/// Rows with and without the explanation, in process, over the `hello` guest's exits (all port
/// I/O to a UART), repeated to 200000 rows: the ratio of their speeds.
fn explanation_cost(bin: &str) {
    use kvmscope::analysis::export::{exit_csv, exit_json};
    use kvmscope::explain::Explainer;
    use kvmscope::recording::Record;
    let trace = std::env::temp_dir().join(format!("kvmscope-explain-bench-{}.trace", std::process::id()));
    let rec = Command::new(bin)
        .args(["run", "--headless", "--summary", "none", "--kernel"])
        .arg(kvmscope::guests::guest_path("hello.elf"))
        .arg("--record")
        .arg(&trace)
        .output()
        .expect("kvmscope runs");
    assert!(String::from_utf8_lossy(&rec.stderr).contains("recorded"), "{}", String::from_utf8_lossy(&rec.stderr));
    let mut exits = Vec::new();
    kvmscope::analysis::read_all(&trace, |r| {
        if let Record::Exit(e) = r {
            exits.push(e);
        }
    })
    .expect("the recording reads");
    let _ = std::fs::remove_file(&trace);
    let rows = 200_000;
    let time = |explain: bool| {
        let start = Instant::now();
        let mut bytes = 0usize;
        let mut explainer = Explainer::default();
        for e in exits.iter().cycle().take(rows) {
            let x = if explain { explainer.explain(e) } else { None };
            bytes += exit_json(e, x.as_deref()).to_string().len() + exit_csv(e, x.as_deref()).len();
        }
        std::hint::black_box(bytes);
        rows as f64 / start.elapsed().as_secs_f64()
    };
    let (without, with) = (time(false), time(true));
    println!("rows of port exits (JSON Lines + CSV), in process:");
    println!("  without explanations {without:>12.0} rows/s (baseline)");
    println!("  with explanations    {with:>12.0} rows/s = {:.2}x the baseline (target >= 0.5x)", with / without);
}

//! Export throughput: records the `spin` guest for 200000 exits, then times `kvmscope export` of the
//! recording to /dev/null in each format (release build), in events per second; then, in process,
//! the JSON Lines and CSV rows of the `hello` guest's port exits with their explanations against
//! the same rows without (the baseline, same run): target ≥ 0.5×.

use std::process::Command;
use std::time::Instant;

fn main() {
    if std::fs::metadata("/dev/kvm").is_err() {
        eprintln!("export_throughput: /dev/kvm not available, nothing measured");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_kvmscope");
    let trace = std::env::temp_dir().join(format!("kvmscope-export-bench-{}.trace", std::process::id()));
    let guest = kvmscope::guests::guest_path("spin.elf");
    let exits = 200_000u64;
    let rec = Command::new(bin)
        .args(["run", "--headless", "--summary", "none", "--max-exits", &exits.to_string(), "--kernel"])
        .arg(&guest)
        .arg("--record")
        .arg(&trace)
        .output()
        .expect("kvmscope runs");
    assert!(String::from_utf8_lossy(&rec.stderr).contains("recorded"), "{}", String::from_utf8_lossy(&rec.stderr));
    let size = std::fs::metadata(&trace).map(|m| m.len()).unwrap_or(0);
    println!("export throughput ({exits} exits, trace {size} bytes = {:.1} bytes/exit):", size as f64 / exits as f64);
    for format in ["jsonl", "csv", "chrome"] {
        let start = Instant::now();
        let out =
            Command::new(bin).arg("export").arg(&trace).args(["--format", format, "-o", "/dev/null"]).output().unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        println!("  {format:<7} {:>12.0} events/s", exits as f64 / secs);
    }
    let _ = std::fs::remove_file(&trace);
    explanation_cost(bin);
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
            bytes += exit_json(e, x.as_ref()).to_string().len() + exit_csv(e, x.as_ref()).len();
        }
        std::hint::black_box(bytes);
        rows as f64 / start.elapsed().as_secs_f64()
    };
    let (without, with) = (time(false), time(true));
    println!("rows of port exits (JSON Lines + CSV), in process:");
    println!("  without explanations {without:>12.0} rows/s (baseline)");
    println!("  with explanations    {with:>12.0} rows/s = {:.2}x the baseline (target >= 0.5x)", with / without);
}

//! Export throughput: records the `spin` guest for 200000 exits, then times `kvmscope export` of the
//! recording to /dev/null in each format (release build), in events per second.

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
}

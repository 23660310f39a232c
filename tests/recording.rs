//! Recording a run and reading it back: `stats` equals the live summary, exports round-trip, and a
//! truncated, corrupted or killed recording is read up to the damage.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kvmscope-rec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn kvmscope_out(args: &[&str]) -> Run {
    kvmscope().args(args).output().unwrap().into()
}

/// Records `guest` headless; returns the live JSON summary.
fn record(guest_file: &str, trace: &Path, extra: &[&str]) -> serde_json::Value {
    let kernel = guest(guest_file);
    let mut args = vec!["--kernel", kernel.to_str().unwrap(), "--record", trace.to_str().unwrap(), "--summary", "json"];
    args.extend_from_slice(extra);
    let run = run_headless(&args);
    assert!(run.stderr.contains("kvmscope: recorded"), "{}", run.stderr);
    run.summary()
}

#[test]
fn stats_of_a_recording_equal_the_live_summary() {
    if !kvm_or_skip("stats_of_a_recording_equal_the_live_summary") {
        return;
    }
    let trace = temp("hello.trace");
    let live = record("hello.elf", &trace, &["--cmdline", "recorded"]);
    let stats = kvmscope_out(&["stats", trace.to_str().unwrap(), "--json"]);
    assert_eq!(stats.status, 0, "{}", stats.stderr);
    let rec: serde_json::Value = serde_json::from_str(&stats.stdout).unwrap();
    // One shape, the same numbers: the run's length, the debug-exit value and per-vCPU counts too.
    assert_eq!(rec, live, "stats --json and the live --summary json");
    assert_eq!((rec["status"].as_u64(), rec["debug_exit"]["value"].as_u64()), (Some(33), Some(16)));
    assert_eq!(rec["per_vcpu"][0]["exits"], live["exits"]);
    let text = kvmscope_out(&["stats", trace.to_str().unwrap()]);
    assert!(text.stdout.contains("VM-EXIT") && text.stdout.contains("Analyze events for all VCPUs"), "{}", text.stdout);
    // A selection is named in the report; one that holds no exit is said, with status 1.
    let half = kvmscope_out(&["stats", trace.to_str().unwrap(), "--vcpu", "0", "--from", "0"]);
    assert_eq!(half.status, 0, "{}", half.stderr);
    assert!(half.stdout.contains("Analyze events for VCPU 0 from 0.000s:"), "{}", half.stdout);
    let none = kvmscope_out(&["stats", trace.to_str().unwrap(), "--json", "--vcpu", "1"]);
    assert_eq!(none.status, 1, "{}", none.stderr);
    assert!(none.stderr.contains("--vcpu 1: the recording has exits of vCPU 0 only"), "{}", none.stderr);
    let v: serde_json::Value = serde_json::from_str(&none.stdout).unwrap();
    assert_eq!((v["exits"].as_u64(), v["selection"]["vcpu"].as_u64()), (Some(0), Some(1)));
    let window = kvmscope_out(&["stats", trace.to_str().unwrap(), "--json", "--to", "0.0000001"]);
    assert_eq!(window.status, 1, "{}", window.stderr);
    assert!(window.stderr.contains("no exits of all VCPUs before 0.000s"), "{}", window.stderr);
    let backwards = kvmscope_out(&["stats", trace.to_str().unwrap(), "--from", "1.5", "--to", "0.5"]);
    assert_eq!(backwards.status, 2, "{}", backwards.stderr);
    assert!(backwards.stderr.contains("--from 1.5s is not before --to 0.5s"), "{}", backwards.stderr);
}

#[test]
fn exports_round_trip() {
    if !kvm_or_skip("exports_round_trip") {
        return;
    }
    let trace = temp("export.trace");
    let live = record("hello.elf", &trace, &[]);
    let exits = live["exits"].as_u64().unwrap() as usize;
    let jsonl = kvmscope_out(&["export", trace.to_str().unwrap(), "--format", "jsonl"]);
    assert_eq!(jsonl.status, 0, "{}", jsonl.stderr);
    let lines: Vec<serde_json::Value> = jsonl.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), exits);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(
            (l["record"].as_str(), l["seq"].as_u64()),
            (Some("exit"), Some(i as u64)),
            "in order, each its kind"
        );
    }
    let outs = lines.iter().filter(|l| l["reason"] == "io" && l["port"] == 0x3f8 && l["dir"] == "out").count();
    assert_eq!(
        outs as u64,
        live["io"].as_array().unwrap().iter().find(|e| e["port"] == 0x3f8 && e["dir"] == "out").unwrap()["count"]
    );
    assert!(lines.iter().any(|l| l["insn"]["text"] == "out dx,al"));
    // Every port and MMIO row says what it touched; COM1's transmit register by name.
    for l in lines.iter().filter(|l| l["reason"] == "io" || l["reason"] == "mmio") {
        assert!(l["explain"].as_str().is_some_and(|x| !x.is_empty()), "explained: {l}");
        assert!(l["register"].is_string(), "{l}");
    }
    let thr = lines.iter().find(|l| l["port"] == 0x3f8 && l["dir"] == "out").unwrap();
    assert_eq!(thr["register"], "THR", "{thr}");
    assert!(thr["explain"].as_str().unwrap().starts_with("16550 UART (COM1): THR write"), "{thr}");
    let csv_path = temp("export.csv");
    let csv = kvmscope_out(&["export", trace.to_str().unwrap(), "--format", "csv", "-o", csv_path.to_str().unwrap()]);
    assert_eq!(csv.status, 0, "{}", csv.stderr);
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert!(csv.starts_with("record,seq,vcpu,t_ns,rip,reason,"));
    assert!(csv.lines().next().unwrap().ends_with(",register,explain"));
    assert_eq!(csv.lines().count(), exits + 1);
    assert!(csv.lines().any(|l| l.contains(",THR,") && l.contains("16550 UART (COM1)")), "{csv}");
    let chrome = kvmscope_out(&["export", trace.to_str().unwrap(), "--format", "chrome"]);
    let events: Vec<serde_json::Value> = serde_json::from_str(&chrome.stdout).unwrap();
    assert_eq!(events.iter().filter(|e| e["ph"] == "X").count(), exits);
    assert!(events.iter().any(|e| e["args"]["register"] == "THR" && e["args"]["explain"].is_string()));
    assert_eq!(events.iter().filter(|e| e["ph"] == "M" && e["name"] == "thread_name").count(), 1, "one track per vCPU");
    let processes: Vec<&str> =
        events.iter().filter(|e| e["name"] == "process_name").filter_map(|e| e["args"]["name"].as_str()).collect();
    assert_eq!(processes, ["vCPUs", "virtio devices"]);
    // Without --stacks there is nothing to fold: said, not an empty output with status 0.
    let folded = kvmscope_out(&["export", trace.to_str().unwrap(), "--format", "folded"]);
    assert_eq!(folded.status, 2);
    assert!(
        folded.stderr.contains("no call stacks recorded (record with `run --record FILE --stacks`)"),
        "{}",
        folded.stderr
    );
}

#[test]
fn register_coverage_of_a_recording() {
    if !kvm_or_skip("register_coverage_of_a_recording") {
        return;
    }
    let trace = temp("coverage.trace");
    record("hello.elf", &trace, &[]);
    let text = kvmscope_out(&["stats", "--by", "register", trace.to_str().unwrap()]);
    assert_eq!(text.status, 0, "{}", text.stderr);
    let header = text.stdout.lines().find(|l| l.starts_with("DEVICE")).expect("a table");
    for column in ["REGISTER", "READS", "WRITES", "VALUES", "FIRST", "LAST"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(text.stdout.lines().any(|l| l.contains("16550 UART (COM1)") && l.contains("THR")), "{}", text.stdout);
    let json = kvmscope_out(&["stats", "--by", "register", "--json", trace.to_str().unwrap()]);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let rows = rows["by_register"].as_array().expect("rows");
    let thr = rows.iter().find(|r| r["register"] == "THR").expect("COM1's THR");
    assert!(thr["writes"].as_u64().unwrap() > 10 && thr["reads"] == 0, "{thr}");
    assert!(thr["first_seq"].as_u64() <= thr["last_seq"].as_u64(), "{thr}");
    // The hello guest polls LSR before each byte: read, never written, one value or few.
    let lsr = rows.iter().find(|r| r["register"] == "LSR").expect("COM1's LSR");
    assert!(lsr["reads"].as_u64().unwrap() > 0 && lsr["writes"] == 0, "{lsr}");
    // The same breakdown in the run's own summary, by address.
    let stats = kvmscope_out(&["stats", "--json", trace.to_str().unwrap()]);
    let s: serde_json::Value = serde_json::from_str(&stats.stdout).unwrap();
    assert!(s["by_register"].as_array().is_some_and(|r| r.iter().any(|r| r["register"] == "THR")), "{s}");
}

#[test]
fn damaged_recordings_are_read_up_to_the_damage() {
    if !kvm_or_skip("damaged_recordings_are_read_up_to_the_damage") {
        return;
    }
    let trace = temp("spin.trace");
    record("spin.elf", &trace, &["--max-exits", "60000"]);
    let bytes = std::fs::read(&trace).unwrap();
    let count = |path: &Path| {
        let run = kvmscope_out(&["stats", path.to_str().unwrap(), "--json"]);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        (
            run.status,
            serde_json::from_str::<serde_json::Value>(&run.stdout).map(|v| v["exits"].as_u64().unwrap()).ok(),
            run.stderr,
        )
    };
    assert_eq!(count(&trace).1, Some(60000));
    // Cut in the middle: the whole chunks before the cut are read; the warning names file and offset.
    let cut = temp("cut.trace");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (status, exits, err) = count(&cut);
    assert_eq!(status, 0);
    let exits = exits.unwrap();
    assert!(exits > 0 && exits < 60000, "{exits}");
    assert!(
        err.contains("cut.trace") && err.contains("damaged at byte offset") && err.contains("ends inside a chunk"),
        "{err}"
    );
    // A flipped byte in the middle: its chunk's checksum fails; what came before is read.
    let flipped = temp("flipped.trace");
    let mut b = bytes.clone();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(&flipped, &b).unwrap();
    let (status, exits2, err) = count(&flipped);
    assert_eq!(status, 0);
    assert!(exits2.unwrap() < 60000 && err.contains("checksum does not match"), "{err}");
    // A chunk header claiming 0xffffffff records: damage at that chunk, never an abort.
    let first_chunk = 26 + u32::from_le_bytes(bytes[18..22].try_into().unwrap()) as usize;
    let mut b = bytes.clone();
    b[first_chunk + 8..first_chunk + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    let huge = temp("huge-count.trace");
    std::fs::write(&huge, &b).unwrap();
    let (status, exits3, err) = count(&huge);
    assert_eq!((status, exits3), (0, Some(0)), "{err}");
    assert!(err.contains(&format!("damaged at byte offset {first_chunk}")) && err.contains("4294967295"), "{err}");
    for format in ["jsonl", "csv", "chrome"] {
        let run = kvmscope_out(&["export", huge.to_str().unwrap(), "--format", format]);
        assert_eq!(run.status, 0, "{format}: {}", run.stderr);
        assert!(run.stderr.contains("damaged at byte offset"), "{format}: {}", run.stderr);
    }
    // Not a trace, a newer version: refused with the file named.
    let (status, _, err) = count(&guest("hello.elf"));
    assert_eq!(status, 2);
    assert!(err.contains("hello.elf") && err.contains("not a kvmscope trace file"), "{err}");
    let newer = temp("newer.trace");
    let mut b = bytes.clone();
    b[16] = 9;
    std::fs::write(&newer, &b).unwrap();
    let (status, _, err) = count(&newer);
    assert_eq!(status, 2);
    assert!(err.contains("version 9 is newer"), "{err}");
}

#[test]
fn fuzzed_headers_never_panic() {
    if !kvm_or_skip("fuzzed_headers_never_panic") {
        return;
    }
    let trace = temp("fuzz.trace");
    let run = run_headless(&[
        "--image",
        guest("real.bin").to_str().unwrap(),
        "--load",
        "0x7c00",
        "--entry",
        "0x7c00",
        "--mode",
        "real",
        "--record",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(run.status, 11, "{}", run.stderr);
    let bytes = std::fs::read(&trace).unwrap();
    let header_len = 26 + u32::from_le_bytes(bytes[18..22].try_into().unwrap()) as usize;
    // Deterministic xorshift mutations of the header: every one is read or refused, never a panic.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut b = bytes.clone();
        for k in 0..(1 + x % 4) {
            let at = ((x >> (8 * k)) as usize) % header_len;
            b[at] ^= (x >> 32) as u8 | 1;
        }
        match kvmscope::recording::reader::parse_header(&b) {
            Ok(_) | Err(_) => {}
        }
    }
    // And through the command, for a few: a clear refusal.
    let mut b = bytes.clone();
    b[30] ^= 0xff;
    let bad = temp("badheader.trace");
    std::fs::write(&bad, &b).unwrap();
    let run = kvmscope_out(&["stats", bad.to_str().unwrap()]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("badheader.trace") && run.stderr.contains("header"), "{}", run.stderr);
}

#[test]
fn a_killed_run_leaves_a_readable_recording() {
    if !kvm_or_skip("a_killed_run_leaves_a_readable_recording") {
        return;
    }
    let trace = temp("killed.trace");
    let mut child = kvmscope()
        .args([
            "run",
            "--headless",
            "--kernel",
            guest("spin.elf").to_str().unwrap(),
            "--record",
            trace.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    let run = kvmscope_out(&["stats", trace.to_str().unwrap(), "--json"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(v["exits"].as_u64().unwrap() > 0);
    assert_eq!(v["end"], "incomplete");
    // No index at its end: the replay reads it whole, and says so.
    let (replay, damage) = kvmscope::ui::replay::Replay::load(&trace).unwrap();
    assert_eq!(replay.how, kvmscope::recording::index::HowIndexed::NoIndex, "{damage:?}");
    assert!(replay.how.note().unwrap().contains("no index"));
    assert_eq!(replay.len() as u64, v["exits"].as_u64().unwrap());
}

#[test]
fn exports_made_on_many_cores_are_the_bytes_one_core_makes() {
    if !kvm_or_skip("exports_made_on_many_cores_are_the_bytes_one_core_makes") {
        return;
    }
    // 200,000 exits: four parts from the index's device states (every 65,536 exits).
    let trace = temp("parts.trace");
    record("spin.elf", &trace, &["--max-exits", "200000"]);
    // The same recording without its index: read by one thread, start to end.
    let bytes = std::fs::read(&trace).unwrap();
    let at = index_offset(&bytes);
    let bare = temp("parts-bare.trace");
    std::fs::write(&bare, &bytes[..at]).unwrap();
    for format in ["jsonl", "csv"] {
        let export = |path: &Path| {
            let out = kvmscope().args(["export", path.to_str().unwrap(), "--format", format]).output().unwrap();
            assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
            out.stdout
        };
        let (many, one) = (export(&trace), export(&bare));
        assert!(many == one, "{format}: the rows made in parts differ from those made in one pass");
        let rows = many.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(rows, 200_000 + usize::from(format == "csv"), "{format}");
    }
    // Its reader gone (`| head`), the parts stop: a clean end, not a hang.
    let mut child = kvmscope()
        .args(["export", trace.to_str().unwrap(), "--format", "jsonl"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert!(status.code().is_some_and(|c| c <= 1), "{status:?}");
    let _ = std::fs::remove_file(&trace);
    let _ = std::fs::remove_file(&bare);
}

#[test]
fn stats_of_a_window_read_by_the_index_are_those_of_the_whole_file() {
    if !kvm_or_skip("stats_of_a_window_read_by_the_index_are_those_of_the_whole_file") {
        return;
    }
    for (guest, args) in [("spin.elf", ["--max-exits", "200000"]), ("demo.elf", ["--timeout", "2"])] {
        let trace = temp(&format!("window-{guest}.trace"));
        record(guest, &trace, &args);
        let bytes = std::fs::read(&trace).unwrap();
        let at = index_offset(&bytes);
        let bare = temp(&format!("window-{guest}-bare.trace"));
        std::fs::write(&bare, &bytes[..at]).unwrap();
        // An index that lies with a good checksum: every chunk's time span a nanosecond longer.
        let mut index = kvmscope::recording::TraceReader::open(&trace).unwrap().trailer().unwrap().unwrap();
        index.chunks.iter_mut().for_each(|c| c.t_max += 1);
        let lying = temp(&format!("window-{guest}-lying.trace"));
        std::fs::write(&lying, [&bytes[..at], &index.encode(at as u64)].concat()).unwrap();
        let end: serde_json::Value =
            serde_json::from_str(&kvmscope_out(&["stats", "--json", trace.to_str().unwrap()]).stdout).unwrap();
        let secs = end["elapsed_ns"].as_f64().unwrap() / 1e9;
        let (a, b, c) = (format!("{:.3}", secs * 0.2), format!("{:.3}", secs * 0.6), format!("{:.3}", secs * 0.9));
        for window in [
            vec!["--from", &a, "--to", &b],
            vec!["--from", &c],
            vec!["--to", &a],
            vec!["--from", &a, "--to", &b, "--by", "register"],
            vec!["--from", &b, "--by", "register", "--vcpu", "0"],
            vec!["--from", "1000"],
        ] {
            let stats = |path: &Path| {
                let mut all = vec!["stats", "--json", path.to_str().unwrap()];
                all.extend(&window);
                let run = kvmscope_out(&all);
                (run.status, run.stdout, run.stderr.replace(path.to_str().unwrap(), "FILE"))
            };
            assert_eq!(stats(&trace), stats(&bare), "{guest} {window:?}");
            assert_eq!(stats(&lying), stats(&bare), "{guest} {window:?}: an index that lies is not trusted");
        }
        for f in [&trace, &bare, &lying] {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[test]
fn a_finished_recording_ends_with_its_index_and_opens_by_it() {
    if !kvm_or_skip("a_finished_recording_ends_with_its_index_and_opens_by_it") {
        return;
    }
    use kvmscope::recording::index::HowIndexed;
    use kvmscope::ui::replay::Replay;
    let trace = temp("indexed.trace");
    // Exits alone in every chunk but the last, which holds the end; the explainer state kept every 65,536.
    record("spin.elf", &trace, &["--max-exits", "200000"]);
    let (mut replay, damage) = Replay::load(&trace).unwrap();
    assert!(damage.is_none());
    assert_eq!((replay.how.clone(), replay.len()), (HowIndexed::Trailer, 200_000));
    assert!(replay.end.is_some(), "the end record, read from the chunk that holds it");
    // The same exits and ending as the recording read whole (the index cut off).
    let bytes = std::fs::read(&trace).unwrap();
    let at = index_offset(&bytes);
    let bare = temp("indexed-bare.trace");
    std::fs::write(&bare, &bytes[..at]).unwrap();
    let (mut whole, _) = Replay::load(&bare).unwrap();
    assert_eq!((whole.how.clone(), whole.len(), &whole.end), (HowIndexed::NoIndex, 200_000, &replay.end));
    for cursor in [0, 65_535, 65_536, 131_073, 199_999, 7] {
        replay.cursor = cursor;
        whole.cursor = cursor;
        assert_eq!(replay.current(), whole.current(), "exit {cursor}");
    }
    assert_eq!(replay.counters().total.count, 8);
    // Every reader reads it as before: no damage where the index starts.
    let run = kvmscope_out(&["stats", trace.to_str().unwrap(), "--json"]);
    assert!(!run.stderr.contains("damaged"), "{}", run.stderr);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap()["exits"], 200_000);
    let _ = std::fs::remove_file(&trace);
    let _ = std::fs::remove_file(&bare);
}

#[test]
fn analysis_checks_the_recorded_image_and_finds_it_beside_the_recording() {
    if !kvm_or_skip("analysis_checks_the_recorded_image_and_finds_it_beside_the_recording") {
        return;
    }
    let dir = temp("image-check");
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("guest.elf");
    std::fs::copy(guest("stacks.elf"), &image).unwrap();
    let trace = dir.join("run.trace");
    let run = run_headless(&["--kernel", image.to_str().unwrap(), "--record", trace.to_str().unwrap()]);
    assert!(run.stderr.contains("kvmscope: recorded"), "{}", run.stderr);
    let by_symbol = |t: &Path| kvmscope_out(&["stats", "--by", "symbol", t.to_str().unwrap()]);
    let ok = by_symbol(&trace);
    assert!(ok.status == 0 && ok.stdout.contains("inner"), "{}", ok.stderr);
    // Another build at the recorded path: used, with a warning that names both hashes.
    std::fs::copy(guest("hello.elf"), &image).unwrap();
    let other = by_symbol(&trace);
    assert!(
        other.stderr.contains("has SHA-256") && other.stderr.contains("the recording was made with"),
        "{}",
        other.stderr
    );
    // An older recording's relative name is looked for beside the recording.
    std::fs::copy(guest("stacks.elf"), &image).unwrap();
    let bytes = std::fs::read(&trace).unwrap();
    let (mut header, used, _) = kvmscope::recording::reader::parse_header(&bytes).unwrap();
    header.guest_image = "guest.elf".into();
    let mut relative = kvmscope::recording::format::encode_header(&header);
    relative.extend_from_slice(&bytes[used..]);
    let moved = dir.join("relative.trace");
    std::fs::write(&moved, relative).unwrap();
    let found = by_symbol(&moved);
    assert!(found.status == 0 && found.stdout.contains("inner"), "{}", found.stderr);
    // Gone: an error that says where it looked and what to do.
    std::fs::remove_file(&image).unwrap();
    let gone = by_symbol(&trace);
    assert_eq!(gone.status, 2);
    assert!(gone.stderr.contains("is not there: give --symbols FILE"), "{}", gone.stderr);
    let gone = by_symbol(&moved);
    assert!(gone.stderr.contains("neither in the recording's directory"), "{}", gone.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn text_from_a_recording_cannot_drive_the_terminal() {
    use kvmscope::recording::Record;
    use kvmscope::recording::format::{ChunkEncoder, ChunkFrame, encode_header};
    // A crafted recording: its end record's words carry terminal escape sequences.
    let mut bytes = encode_header(&Default::default());
    let mut enc = ChunkEncoder::default();
    enc.push(&Record::End {
        t_ns: 5,
        status: 0,
        name: "halted".into(),
        detail: "bad\u{1b}[2J\u{1b}]0;owned\u{7}".into(),
    });
    bytes.extend_from_slice(&ChunkFrame::of(&enc.payload, enc.records).encode());
    bytes.extend_from_slice(&enc.payload);
    let path = temp("escapes.trace");
    std::fs::write(&path, bytes).unwrap();
    let run = kvmscope_out(&["stats", path.to_str().unwrap()]);
    assert!(!run.stdout.contains('\u{1b}') && !run.stdout.contains('\u{7}'), "{:?}", run.stdout);
    assert!(run.stdout.contains("bad\\u{1b}[2J"), "escaped, not dropped: {}", run.stdout);
}

#[test]
fn a_replay_shows_the_console_device_events_and_stacks_as_the_recording_read_whole() {
    if !kvm_or_skip("a_replay_shows_the_console_device_events_and_stacks_as_the_recording_read_whole") {
        return;
    }
    use kvmscope::recording::{Record, TraceReader};
    use kvmscope::trace::DeviceCounters;
    use kvmscope::ui::{app::App, panes::exits::HISTORY, replay::Replay};
    let (disk, trace) = (temp("replay-events.img"), temp("replay-events.trace"));
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let extra = ["--disk", disk.to_str().unwrap(), "--virtio", "rng,console", "--stacks=all", "--timeout", "60"];
    record("virtio.elf", &trace, &extra);
    let mut all = Vec::new();
    TraceReader::open(&trace).unwrap().for_each(|r| all.push(r)).unwrap();
    let exits: Vec<_> =
        all.iter().filter_map(|r| if let Record::Exit(e) = r { Some(e.clone()) } else { None }).collect();
    // And as a recording made before its index said what each chunk's events are: read at once.
    let older = temp("replay-events-older.trace");
    let mut index = TraceReader::open(&trace).unwrap().trailer().unwrap().unwrap();
    index.chunks.iter_mut().for_each(|c| c.shown = None);
    let bytes = std::fs::read(&trace).unwrap();
    let at = index_offset(&bytes);
    std::fs::write(&older, [&bytes[..at], &index.encode(at as u64)].concat()).unwrap();
    let mut app = App::new("replay");
    for file in [&trace, &older] {
        let (mut replay, damage) = Replay::load(file).unwrap();
        assert!(damage.is_none());
        assert_eq!(replay.how, kvmscope::recording::index::HowIndexed::Trailer);
        let n = exits.len();
        for cursor in [0, n / 3, n / 2, n - 1] {
            replay.cursor = cursor;
            replay.show(&mut app);
            let now = exits[cursor].t_ns;
            let upto = |r: &&Record| r.time().is_some_and(|t| t <= now);
            let console: Vec<u8> = all
                .iter()
                .filter(upto)
                .filter_map(|r| if let Record::Console { bytes, .. } = r { Some(bytes.clone()) } else { None })
                .flatten()
                .collect();
            assert_eq!(app.console.from_bytes, console.len(), "console bytes at exit {cursor}");
            assert_eq!(app.console.text, kvmscope::out::console_text(&String::from_utf8_lossy(&console)));
            let mut devices = DeviceCounters::default();
            all.iter().filter(upto).for_each(|r| {
                if let Record::Device(d) = r {
                    devices.record(d)
                }
            });
            let seen = all.iter().filter(upto).filter(|r| matches!(r, Record::Device(_))).count();
            assert_eq!(app.devices.total, seen as u64, "device events at exit {cursor}");
            assert_eq!(app.stats.virtio.text(), devices.text(), "device counts at exit {cursor}");
            let window = &exits[(cursor + 1).saturating_sub(HISTORY)..=cursor];
            let (first, last) = (window[0].seq, window[window.len() - 1].seq);
            let stacks: std::collections::HashMap<u64, Vec<u64>> = all
                .iter()
                .filter_map(|r| if let Record::Stack(s) = r { Some((s.seq, s.frames.clone())) } else { None })
                .filter(|(seq, _)| (first..=last).contains(seq))
                .collect();
            assert!(!stacks.is_empty());
            assert_eq!(app.stacks, stacks, "the stacks of the exits shown at exit {cursor}");
        }
    }
    assert!(app.devices.total > 0 && app.console.from_bytes > 0, "the guest wrote and used its devices");
    for f in [&trace, &older, &disk] {
        let _ = std::fs::remove_file(f);
    }
}

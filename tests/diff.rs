//! `kvmscope diff` and `flamegraph --diff` on real recordings: the `hello` guest prints its command
//! line, so two runs with command lines 9 characters apart differ by exactly 9 UART writes (and 9
//! line-status reads); everything else is the same.

mod common;

use std::path::PathBuf;

use common::*;

fn record(name: &str, args: &[&str]) -> PathBuf {
    let trace = std::env::temp_dir().join(format!("kvmscope-diff-{name}-{}.trace", std::process::id()));
    let mut all = args.to_vec();
    all.extend_from_slice(&["--record", trace.to_str().unwrap()]);
    let run = run_headless(&all);
    assert!(run.status >= 0, "{}", run.stderr);
    trace
}

fn diff(args: &[&str]) -> (i32, String, String) {
    let out = kvmscope().arg("diff").args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The row of `key` in a `diff --json` answer.
fn row<'a>(json: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    let rows = json["rows"].as_array().unwrap();
    rows.iter().find(|r| r["key"].as_str().is_some_and(|k| k.contains(key))).unwrap_or_else(|| panic!("{key}: {json}"))
}

#[test]
fn diff_finds_exactly_what_a_longer_command_line_adds() {
    if !kvm_or_skip("diff_finds_exactly_what_a_longer_command_line_adds") {
        return;
    }
    let hello = guest("hello.elf");
    let hello = hello.to_str().unwrap();
    let old = record("old", &["--kernel", hello, "--cmdline", "a"]);
    let new = record("new", &["--kernel", hello, "--cmdline", "abcdefghij"]);
    let (o, n) = (old.to_str().unwrap(), new.to_str().unwrap());

    let (status, out, err) = diff(&["--by", "port", "--json", o, n]);
    assert_eq!(status, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["new"]["exits"].as_i64().unwrap() - json["old"]["exits"].as_i64().unwrap(), 18);
    for key in ["io 0x03f8 out", "io 0x03fd in"] {
        let r = row(&json, key);
        assert_eq!(r["change"], 9, "{r}");
        assert_eq!(r["new"]["count"].as_u64().unwrap() - r["old"]["count"].as_u64().unwrap(), 9);
        assert!(r["old"]["total_ns"].as_u64().unwrap() > 0, "handling time is there: {r}");
    }
    assert_eq!(row(&json, "io 0x0080 out")["change"], 0, "the POST codes are the same");
    // The largest changes first.
    assert_eq!(json["rows"][0]["change"].as_i64().unwrap().abs(), 9, "{json}");

    let (_, out, _) = diff(&["--by", "register", "--json", o, n]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(row(&json, "THR")["change"], 9, "{json}");
    assert_eq!(row(&json, "LSR")["change"], 9, "{json}");

    let (status, out, _) = diff(&[o, n]);
    assert_eq!(status, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("# kvmscope diff, by reason:") && lines[0].contains("exits) ->"), "{out}");
    let io = lines.iter().find(|l| l.trim_end().ends_with(" io")).unwrap_or_else(|| panic!("{out}"));
    assert!(io.contains("+18"), "{out}");

    // A run against itself: no change anywhere.
    let (_, out, _) = diff(&["--by", "port", "--json", o, o]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert!(!rows.is_empty() && rows.iter().all(|r| r["change"] == 0 && r["total_ns_change"] == 0), "{json}");

    // A file that is not there is named, with status 2.
    let (status, _, err) = diff(&[o, "/nonexistent/trace"]);
    assert_eq!(status, 2);
    assert!(err.contains("/nonexistent/trace"), "{err}");
    for f in [old, new] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn a_differential_flame_graph_of_two_runs() {
    if !kvm_or_skip("a_differential_flame_graph_of_two_runs") {
        return;
    }
    let stacks = guest("stacks.elf");
    let args = ["--kernel", stacks.to_str().unwrap(), "--stacks=all"];
    let (old, new) = (record("fold-old", &args), record("fold-new", &args));
    let svg = old.with_extension("svg");
    let out = kvmscope().arg("flamegraph").arg("--diff").args([&old, &new]).arg("-o").arg(&svg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<svg") && text.contains(" against "), "the title names both runs");
    for name in ["guest_main", "outer_a", "inner"] {
        assert!(text.contains(name), "{name} not in the flame graph");
    }
    let hello = guest("hello.elf");
    let plain = record("plain", &["--kernel", hello.to_str().unwrap()]);
    let out = kvmscope().arg("flamegraph").arg("--diff").args([&old, &plain]).arg("-o").arg(&svg).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a run without stacks is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no call stacks recorded"));
    for f in [old, new, plain, svg] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn diff_by_queue_counts_each_virtio_queues_events() {
    if !kvm_or_skip("diff_by_queue_counts_each_virtio_queues_events") {
        return;
    }
    let disk = std::env::temp_dir().join(format!("kvmscope-diff-disk-{}.img", std::process::id()));
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let virtio = guest("virtio.elf");
    let args = ["--kernel", virtio.to_str().unwrap(), "--disk", disk.to_str().unwrap(), "--virtio", "rng,console"];
    let (old, new) = (record("q-old", &args), record("q-new", &args));
    let (status, out, err) = diff(&["--by", "queue", "--json", old.to_str().unwrap(), new.to_str().unwrap()]);
    assert_eq!(status, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let completed = row(&json, "virtio-blk0 queue 0 completed");
    assert!(completed["old"]["count"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(completed["change"], 0, "the same guest twice makes the same requests: {json}");
    for f in [old, new, disk] {
        let _ = std::fs::remove_file(f);
    }
}

//! Parquet exports read by an independent reader, DuckDB (its Python package, which tests/run.sh
//! installs): the rows, types and per-reason sums of a recording of the virtio guest (exits and
//! device events) against `stats --json` and the JSON Lines export, and a partitioned directory of
//! three runs read as one table.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Whether DuckDB's Python package is there (tests/run.sh installs it); a skip says so, except
/// under KVMSCOPE_REQUIRE_KVM=1 (CI), where it is a failure.
fn duckdb_or_skip(test: &str) -> bool {
    let ok = Command::new("python3").args(["-c", "import duckdb"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("KVMSCOPE_REQUIRE_KVM").as_deref() != Ok("1"),
            "{test}: python3 with duckdb is needed (tests/run.sh installs it)"
        );
        eprintln!("SKIPPED {test}: python3 cannot import duckdb");
    }
    ok
}

/// One SQL query's rows, as JSON (DuckDB in Python).
fn query(sql: &str) -> Vec<serde_json::Value> {
    let script = "import duckdb, json, sys\n\
                  rel = duckdb.sql(sys.argv[1])\n\
                  cols = rel.columns\n\
                  print(json.dumps([dict(zip(cols, [str(v) if isinstance(v, int) and v > 2**53 else v for v in r])) for r in rel.fetchall()], default=str))";
    let out = Command::new("python3").args(["-c", script, sql]).output().unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("kvmscope-pq-{}-{name}", std::process::id()))
}

fn kvmscope_ok(args: &[&str]) -> String {
    let out = kvmscope().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn record(name: &str, args: &[&str]) -> PathBuf {
    let trace = temp(&format!("{name}.trace"));
    let mut all = args.to_vec();
    all.extend_from_slice(&["--record", trace.to_str().unwrap()]);
    run_headless(&all);
    trace
}

fn sql_path(p: &Path) -> String {
    p.display().to_string().replace('\'', "''")
}

#[test]
fn parquet_holds_every_exit_and_event_with_the_stats_sums_and_typed_columns() {
    if !kvm_or_skip("parquet_holds_every_exit_and_event_with_the_stats_sums_and_typed_columns")
        || !duckdb_or_skip("parquet_holds_every_exit_and_event_with_the_stats_sums_and_typed_columns")
    {
        return;
    }
    let disk = temp("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let virtio = guest("virtio.elf");
    let trace = record(
        "virtio",
        &["--kernel", virtio.to_str().unwrap(), "--disk", disk.to_str().unwrap(), "--virtio", "rng,console"],
    );
    let file = temp("virtio.parquet");
    kvmscope_ok(&["export", "--format", "parquet", trace.to_str().unwrap(), "-o", file.to_str().unwrap()]);
    let stats: serde_json::Value =
        serde_json::from_str(&kvmscope_ok(&["stats", "--json", trace.to_str().unwrap()])).unwrap();
    let f = sql_path(&file);

    let exits = query(&format!("select count(*) as n from '{f}' where record = 'exit'"));
    assert_eq!(exits[0]["n"], stats["exits"], "every exit is a row");
    let by_reason = query(&format!(
        "select reason, count(*) as n, sum(cost_ns)::BIGINT as ns from '{f}' where record = 'exit' group by reason"
    ));
    assert!(!by_reason.is_empty());
    for r in &by_reason {
        let reason = r["reason"].as_str().unwrap();
        assert_eq!(r["n"], stats["by_reason"][reason], "{reason}");
        assert_eq!(r["ns"], stats["time_by_reason"][reason]["total_ns"], "{reason}: summed handling time");
    }
    // Device events: as many as the JSON Lines export has.
    let jsonl = kvmscope_ok(&["export", "--format", "jsonl", trace.to_str().unwrap()]);
    let device_lines = jsonl.lines().filter(|l| l.contains("\"record\":\"device\"")).count();
    assert!(device_lines > 0);
    let devices = query(&format!("select count(*) as n from '{f}' where record = 'device' and reason like 'virtio_%'"));
    assert_eq!(devices[0]["n"], device_lines as u64);
    // Types as documented.
    let types = query(&format!("select column_name, column_type from (describe select * from '{f}')"));
    let type_of = |c: &str| types.iter().find(|r| r["column_name"] == c).map(|r| r["column_type"].clone()).unwrap();
    for (c, t) in [("t_ns", "UBIGINT"), ("seq", "UBIGINT"), ("vcpu", "UINTEGER"), ("port", "USMALLINT")] {
        assert_eq!(type_of(c), t, "{c}");
    }
    for (c, t) in [("addr", "UBIGINT"), ("size", "UTINYINT"), ("reason", "VARCHAR"), ("explain", "VARCHAR")] {
        assert_eq!(type_of(c), t, "{c}");
    }
    // Null where a field does not apply; the explanation where it does.
    let nulls =
        query(&format!("select count(*) as n from '{f}' where reason = 'io' and (port is null or addr is not null)"));
    assert_eq!(nulls[0]["n"], 0);
    let thr =
        query(&format!("select count(*) as n from '{f}' where register = 'THR' and explain like '16550 UART (COM1)%'"));
    assert!(thr[0]["n"].as_u64().unwrap() > 0, "{thr:?}");
    for p in [disk, trace, file] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn three_runs_partitioned_are_one_table() {
    if !kvm_or_skip("three_runs_partitioned_are_one_table") || !duckdb_or_skip("three_runs_partitioned_are_one_table") {
        return;
    }
    let hello = guest("hello.elf");
    let dir = temp("dataset");
    let _ = std::fs::remove_dir_all(&dir);
    let mut expected = Vec::new();
    for (i, cmdline) in ["a", "bb", "ccccc"].iter().enumerate() {
        let trace = record(&format!("run{i}"), &["--kernel", hello.to_str().unwrap(), "--cmdline", cmdline]);
        let id = format!("run-{i}");
        kvmscope_ok(&[
            "export",
            "--format",
            "parquet",
            trace.to_str().unwrap(),
            "--partition",
            dir.to_str().unwrap(),
            "--run-id",
            &id,
        ]);
        let stats: serde_json::Value =
            serde_json::from_str(&kvmscope_ok(&["stats", "--json", trace.to_str().unwrap()])).unwrap();
        expected.push((id.clone(), stats["exits"].as_u64().unwrap()));
        if i == 0 {
            // The same run id again: refused, and the run already there is left as it was.
            let part = dir.join(format!("run={id}/part-0.parquet"));
            let before = std::fs::read(&part).unwrap();
            let again = kvmscope()
                .args(["export", "--format", "parquet", trace.to_str().unwrap(), "--run-id", &id, "--partition"])
                .arg(&dir)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&again.stderr);
            assert_eq!(again.status.code(), Some(2), "{stderr}");
            assert!(stderr.contains("holds run run-0 already"), "{stderr}");
            assert_eq!(std::fs::read(&part).unwrap(), before);
        }
        let _ = std::fs::remove_file(trace);
    }
    let d = sql_path(&dir);
    let rows = query(&format!(
        "select run, run_id, any_value(cmdline) as cmdline, any_value(guest_cmdline) as guest_cmdline, count(*) as n \
         from read_parquet('{d}/*/*.parquet', hive_partitioning = true) where record = 'exit' group by run, run_id order by run"
    ));
    assert_eq!(rows.len(), 3, "{rows:?}");
    for ((r, (id, exits)), cmdline) in rows.iter().zip(&expected).zip(["a", "bb", "ccccc"]) {
        assert_eq!((r["run"].as_str(), r["run_id"].as_str()), (Some(id.as_str()), Some(id.as_str())));
        assert_eq!(r["guest_cmdline"], cmdline, "{r}");
        assert_eq!(r["n"], *exits, "{id}");
        assert!(r["cmdline"].as_str().unwrap().contains("--cmdline"), "{r}");
    }
    // Longer command lines print more: the same query across the runs sees it.
    assert!(expected[0].1 < expected[1].1 && expected[1].1 < expected[2].1);
    let _ = std::fs::remove_dir_all(&dir);
    // Without a place to write, a clear refusal.
    let out = kvmscope().args(["export", "--format", "parquet", "/nonexistent.trace"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_failed_partitioned_export_leaves_nothing_behind() {
    let test = "a_failed_partitioned_export_leaves_nothing_behind";
    // A file system too small for the table: a 4 KiB tmpfs (mounting one needs root).
    if !kvm_or_skip(test) || !common::netns::root_or_skip(test) {
        return;
    }
    let hello = guest("hello.elf");
    let trace = record("full", &["--kernel", hello.to_str().unwrap()]);
    let dir = temp("tiny");
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=4k", "tmpfs"]).arg(&dir).status().unwrap();
    assert!(mounted.success(), "mount a tmpfs at {}", dir.display());
    let out = kvmscope()
        .args(["export", "--format", "parquet", trace.to_str().unwrap(), "--run-id", "r1", "--partition"])
        .arg(&dir)
        .output()
        .unwrap();
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    let _ = Command::new("umount").arg(&dir).status();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    // No half-written part, no empty run directory: a dataset read over it sees no broken run.
    assert!(left.is_empty(), "left behind: {left:?}");
    let _ = std::fs::remove_dir(dir);
    let _ = std::fs::remove_file(trace);
}

/// Whether two Parquet files hold the same rows in the same order, as DuckDB reads them.
fn same_rows(a: &Path, b: &Path) -> bool {
    let script = "import duckdb, sys\n\
                  rows = [duckdb.sql(f\"select * from read_parquet('{p}')\").fetchall() for p in sys.argv[1:]]\n\
                  print(len(rows[0]), rows[0] == rows[1])";
    let out = Command::new("python3").args(["-c", script, a.to_str().unwrap(), b.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!said.starts_with("0 "), "no rows: {said}");
    said.trim().ends_with("True")
}

#[test]
fn a_parquet_export_made_on_many_cores_holds_the_rows_of_one_pass() {
    if !kvm_or_skip("a_parquet_export_made_on_many_cores_holds_the_rows_of_one_pass")
        || !duckdb_or_skip("a_parquet_export_made_on_many_cores_holds_the_rows_of_one_pass")
    {
        return;
    }
    // 200,000 exits: four parts from the index's device states; without the index, one pass.
    let trace = temp("parts.trace");
    let spin = guest("spin.elf");
    let run = run_headless(&[
        "--kernel",
        spin.to_str().unwrap(),
        "--max-exits",
        "200000",
        "--record",
        trace.to_str().unwrap(),
    ]);
    assert!(run.stderr.contains("recorded 200000 exits"), "{}", run.stderr);
    let bytes = std::fs::read(&trace).unwrap();
    let at = index_offset(&bytes);
    let bare = temp("parts-bare.trace");
    std::fs::write(&bare, &bytes[..at]).unwrap();
    for extra in [&[][..], &["--run-columns"][..]] {
        let (many, one) = (temp("many.parquet"), temp("one.parquet"));
        for (from, to) in [(&trace, &many), (&bare, &one)] {
            let mut args = vec!["export", from.to_str().unwrap(), "--format", "parquet", "-o", to.to_str().unwrap()];
            args.extend(extra);
            assert!(kvmscope_ok_stderr(&args).contains("wrote 200000 rows"), "{args:?}");
        }
        assert!(same_rows(&many, &one), "{extra:?}: the rows made in parts differ from those made in one pass");
        // Made in parts: row groups end where the parts do, not every 65,536 rows.
        let groups = |p: &Path| {
            let sql = format!(
                "select distinct row_group_id, row_group_num_rows from parquet_metadata('{}') order by 1",
                p.display()
            );
            query(&sql).iter().map(|r| r["row_group_num_rows"].as_u64().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(groups(&one), [65_536, 65_536, 65_536, 3_392]);
        assert_ne!(groups(&many), groups(&one), "made in parts");
        let _ = std::fs::remove_file(many);
        let _ = std::fs::remove_file(one);
    }
    let _ = std::fs::remove_file(trace);
    let _ = std::fs::remove_file(bare);
}

fn kvmscope_ok_stderr(args: &[&str]) -> String {
    let out = kvmscope().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

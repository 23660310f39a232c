//! Readers in flat memory: `stats`, `diff`, the exports and the replay over a recording ten times
//! longer must not take much more memory (peak RSS from the kernel's accounting of the child).
//! The recordings are written here with the recorder's own chunk encoder — exits as the `spin`
//! guest makes them, with an instruction and a device — so that a million exits take seconds, not
//! the minutes a guest on this host would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kvmscope::explain::Explainer;
use kvmscope::recording::format::{encode_chunk, encode_header};
use kvmscope::recording::trailer::{ChunkEntry, STATE_EVERY, Trailer};
use kvmscope::recording::{Record, TraceHeader};
use kvmscope::trace::{DeviceEvent, DeviceEventKind, NotifyPath, StackSample};
use kvmscope::trace::{Dir, ExitEvent, ExitKind, Insn};

/// A recording of `n` POST-code writes, in chunks of 4096 exits, ending with its index as the
/// recorder writes it (the exports make it in parts, on every core).
fn recording(name: &str, n: u64) -> PathBuf {
    recording_with(name, n, false)
}

/// The same, with (`events`) what a replay shows besides exits: a call stack for each exit, and
/// every 16 exits a console byte and a device event.
fn recording_with(name: &str, n: u64, events: bool) -> PathBuf {
    let path = std::env::temp_dir().join(format!("kvmscope-big-{name}-{}.trace", std::process::id()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    use std::io::Write;
    let header = encode_header(&TraceHeader { vcpus: 1, guest_image: "spin".into(), ..Default::default() });
    out.write_all(&header).unwrap();
    let (mut offset, mut index, mut explainer) = (header.len() as u64, Trailer::default(), Explainer::default());
    let insn = Arc::new(Insn { addr: 0x100010, bytes: vec![0xe6, 0x80], text: "out 80h,al".into() });
    for c in 0..n.div_ceil(4096) {
        let exits = (c * 4096..((c + 1) * 4096).min(n)).map(|seq| {
            let kind = ExitKind::Io { port: 0x80, dir: Dir::Out, size: 1, count: 1, data: seq & 0xff };
            Record::Exit(ExitEvent {
                seq,
                vcpu: 0,
                t_ns: seq * 12_000,
                rip: 0x100012,
                kind,
                device: Some("post"),
                insn: Some(insn.clone()),
                cost_ns: 1_500 + seq % 700,
            })
        });
        let mut records: Vec<Record> = exits.collect();
        if events {
            let more = (c * 4096..((c + 1) * 4096).min(n)).flat_map(|seq| {
                let stack =
                    Record::Stack(StackSample { seq, vcpu: 0, reason: "io".into(), frames: vec![0x100012, 0x100200] });
                let every = (seq % 16 == 0).then(|| {
                    let kind = DeviceEventKind::Notify { path: NotifyPath::Trapped, count: 1 };
                    let device = DeviceEvent { t_ns: seq * 12_000, device: "virtio-blk0".into(), queue: Some(0), kind };
                    [Record::Console { t_ns: seq * 12_000, bytes: vec![b'.'] }, Record::Device(device)]
                });
                std::iter::once(stack).chain(every.into_iter().flatten())
            });
            records.extend(more.collect::<Vec<_>>());
        }
        // The index's entry for the chunk, and the explainer's state every 65,536 exits.
        if (c * 4096) % STATE_EVERY == 0 {
            index.states.push((c * 4096, explainer.state()));
        }
        records.iter().for_each(|r| {
            if let Record::Exit(e) = r {
                explainer.explain(e);
            }
        });
        let chunk = encode_chunk(&records);
        index.chunks.push(ChunkEntry::of(offset, &records));
        out.write_all(&chunk).unwrap();
        offset += chunk.len() as u64;
    }
    out.write_all(&index.encode(offset)).unwrap();
    path
}

/// Runs kvmscope with `args` to its end; its peak RSS in MiB.
fn peak_mib(args: &[&str]) -> f64 {
    peak_mib_of(Command::new(env!("CARGO_BIN_EXE_kvmscope")).args(args).stderr(std::process::Stdio::null()))
}

/// Runs `cmd` to its end, which must be a success; its peak RSS in MiB.
// wait4 reaps the child (std's `wait` would not give its rusage).
#[allow(clippy::zombie_processes)]
fn peak_mib_of(cmd: &mut Command) -> f64 {
    let child = cmd.stdout(std::process::Stdio::null()).spawn().unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for the child just spawned; status and usage live across the call.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{cmd:?} failed");
    usage.ru_maxrss as f64 / 1024.0
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn readers_take_no_more_memory_for_a_recording_ten_times_longer() {
    let (small, large) = (recording("small", 100_000), recording("large", 1_000_000));
    let out = |p: &Path| p.with_extension("parquet");
    for (what, args) in [
        ("stats", vec!["stats"]),
        ("stats --by register", vec!["stats", "--by", "register"]),
        ("diff", vec!["diff"]),
        // On every core, in parts: a few blocks of each part waiting at most, a few parts ahead.
        ("export --format parquet", vec!["export", "--format", "parquet"]),
        ("export --format jsonl", vec!["export", "--format", "jsonl"]),
    ] {
        let run = |trace: &Path| {
            let mut a: Vec<&str> = args.clone();
            a.push(s(trace));
            let target = out(trace);
            match what {
                "diff" => a.push(s(trace)),
                "export --format parquet" => a.extend(["-o", target.to_str().unwrap()]),
                _ => {}
            }
            peak_mib(&a)
        };
        let (a, b) = (run(&small), run(&large));
        eprintln!("{what}: {a:.1} MiB for 100,000 exits, {b:.1} MiB for 1,000,000");
        assert!(b < a + 16.0 && b < 100.0, "{what}: {a:.1} MiB for 100,000 exits, {b:.1} MiB for 1,000,000");
    }
    for p in [&small, &large] {
        let _ = std::fs::remove_file(out(p));
        let _ = std::fs::remove_file(p);
    }
}

/// Set in the child that replays: the recording it opens.
const REPLAY_CHILD: &str = "KVMSCOPE_TEST_REPLAY_OF";

/// The replay, in a child of this test binary (it needs no terminal to open a recording and fill
/// the panes): opened, shown at its end, its middle and its start. Its peak RSS in MiB.
fn replay_peak_mib(trace: &Path) -> f64 {
    let mut child = Command::new(std::env::current_exe().unwrap());
    child.args(["--exact", "a_replay_takes_no_more_memory_for_a_recording_ten_times_longer", "--nocapture"]);
    peak_mib_of(child.env(REPLAY_CHILD, trace))
}

#[test]
fn a_replay_takes_no_more_memory_for_a_recording_ten_times_longer() {
    use kvmscope::ui::{app::App, replay::Replay};
    if let Some(trace) = std::env::var_os(REPLAY_CHILD) {
        let (mut replay, damage) = Replay::load(Path::new(&trace)).unwrap();
        assert!(damage.is_none());
        let mut app = App::new("replay");
        for cursor in [replay.len() - 1, replay.len() / 2, 0] {
            replay.cursor = cursor;
            replay.show(&mut app);
            assert!(cursor == 0 || (app.devices.total > 0 && app.console.from_bytes > 0 && !app.stacks.is_empty()));
        }
        return;
    }
    // With a call stack for every exit, and console output and device events all along.
    let (small, large) =
        (recording_with("small-events", 100_000, true), recording_with("large-events", 1_000_000, true));
    let (a, b) = (replay_peak_mib(&small), replay_peak_mib(&large));
    eprintln!("replay: {a:.1} MiB for 100,000 exits, {b:.1} MiB for 1,000,000");
    assert!(b < a + 16.0 && b < 150.0, "replay: {a:.1} MiB for 100,000 exits, {b:.1} MiB for 1,000,000");
    for p in [&small, &large] {
        let _ = std::fs::remove_file(p);
    }
}

/// Runs `kvmscope export` of `trace` with its output read `take` bytes at most (all of it for
/// `None`) and then closed; its CPU time (user and system) in seconds.
#[allow(clippy::zombie_processes)]
fn export_cpu_seconds(trace: &Path, take: Option<usize>) -> f64 {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvmscope"))
        .args(["export", "--format", "jsonl", s(trace)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    match take {
        Some(n) => {
            let mut buf = vec![0; n];
            out.read_exact(&mut buf).unwrap();
        }
        None => {
            std::io::copy(&mut out, &mut std::io::sink()).unwrap();
        }
    }
    drop(out);
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for the child just spawned; status and usage live across the call.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "export ended with {status:#x}");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[test]
fn export_stops_reading_when_its_reader_has_gone() {
    // `kvmscope export … | head`: once head has its lines and goes, export stops, quietly.
    let trace = recording("head", 300_000);
    let whole = export_cpu_seconds(&trace, None);
    let head = export_cpu_seconds(&trace, Some(4096));
    assert!(head < whole / 5.0, "export | head took {head:.2} s of CPU, the whole export {whole:.2} s");
    let _ = std::fs::remove_file(trace);
}

//! Recording a run: a sink the vCPU threads hand every exit to, and a writer thread that encodes
//! chunks and writes them. Each vCPU collects its exits in a batch of its own and hands the batch
//! over in one go; the queue between them blocks when full: recording may slow the guest, it never
//! loses an exit. The writer puts the records in time order (an exit before the device events it
//! caused, whichever thread handed them over first) and writes a chunk at least every 100 ms, so a
//! run that is killed leaves a file readable up to its last whole chunk.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::format::{ChunkEncoder, ChunkFrame, Record, StopRecord, TraceHeader, encode_header};
use super::trailer::{ChunkEntry, STATE_EVERY, Trailer};
use crate::debug::Stop;
use crate::explain::Explainer;
use crate::sink::ExitSink;
use crate::sync::lock;
use crate::trace::{DeviceEvent, ExitEvent, StackSample};
use crate::vmm::RunEnd;
use crate::vmm::kvm_stats::KvmCounts;

/// Batches queued for the writer at most before the vCPUs wait.
const QUEUE: usize = 256;
/// Exits a vCPU collects before handing them to the writer in one go (one wake-up per batch, not
/// per exit); the writer also collects partial batches every 100 ms.
const BATCH: usize = 256;
/// Per-vCPU batch buffers (vCPU n uses buffer n % BUFFERS), and one for the console.
const BUFFERS: usize = 64;
/// The console's batch buffer (the last: a VM with 64 vCPUs shares it with the 64th).
const CONSOLE_BUFFER: usize = BUFFERS - 1;

type Buffers = Arc<Vec<Mutex<Vec<Record>>>>;
/// A chunk is written when its payload reaches this size...
const CHUNK_BYTES: usize = 256 * 1024;
/// ...or when it is this old.
const CHUNK_AGE: Duration = Duration::from_millis(100);

/// Errors writing a recording.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot create trace file {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    /// What is at the path is not a file to record into (a FIFO, a device, a directory).
    #[error(transparent)]
    NotAFile(#[from] crate::files::FileError),
    #[error("writing trace file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// What the writer wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteStats {
    pub records: u64,
    pub exits: u64,
    pub chunks: u64,
    pub bytes: u64,
}

/// The recording sink.
pub struct Recorder {
    tx: SyncSender<Vec<Record>>,
    buffers: Buffers,
    writer: Mutex<Option<JoinHandle<Result<WriteStats, RecordError>>>>,
    start: Arc<OnceLock<Instant>>,
}

impl Recorder {
    /// Creates the file, writes the header and starts the writer thread.
    pub fn create(path: &Path, header: &TraceHeader) -> Result<Self, RecordError> {
        let create = |source| RecordError::Create { path: path.to_path_buf(), source };
        let mut file = BufWriter::new(crate::files::create_regular(path, "trace file")?);
        let head = encode_header(header);
        file.write_all(&head).and_then(|_| file.flush()).map_err(create)?;
        let (tx, rx) = sync_channel(QUEUE);
        let path = path.to_path_buf();
        let bytes = head.len() as u64;
        let buffers: Buffers = Arc::new((0..BUFFERS).map(|_| Mutex::new(Vec::new())).collect());
        let pending = buffers.clone();
        let start = Arc::new(OnceLock::new());
        let started = start.clone();
        let writer = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || write_chunks(rx, &pending, &started, file, &path, bytes))
            .map_err(create)?;
        Ok(Self { tx, buffers, writer: Mutex::new(Some(writer)), start })
    }

    /// The instant event times count from (the VM's start).
    pub fn set_start(&self, start: Instant) {
        let _ = self.start.set(start);
    }

    fn t_ns(&self) -> u64 {
        self.start.get().map_or(0, |s| s.elapsed().as_nanos() as u64)
    }

    fn send(&self, r: Record) {
        // Blocks while the writer is behind; fails only if the writer died (its error is reported
        // by `finish`).
        let _ = self.tx.send(vec![r]);
    }

    /// Records to go first, all at once (a replayable recording's files).
    pub fn send_all(&self, records: Vec<Record>) {
        let _ = self.tx.send(records);
    }

    /// What KVM has counted so far.
    pub fn kvm(&self, counts: KvmCounts) {
        self.send(Record::Kvm { t_ns: self.t_ns(), counts });
    }

    /// What KVM's tracepoints have counted (`--kernel-events`), per event and (at the end) by the
    /// busiest guest RIPs.
    pub fn kernel(&self, by_event: &std::collections::BTreeMap<String, u64>, by_rip: Vec<(u64, u64)>) {
        let by_event = by_event.iter().map(|(k, v)| (k.clone(), *v)).collect();
        self.send(Record::Kernel { t_ns: self.t_ns(), by_event, by_rip });
    }

    /// One interval's count of dirtied pages (`--dirty-log`).
    pub fn dirty(&self, pages: u64) {
        self.send(Record::Dirty { t_ns: self.t_ns(), pages });
    }

    /// Guest console output: batched like exits (a byte at a time, one hand-over each would wake
    /// the writer for every byte the guest prints).
    pub fn console(&self, bytes: &[u8]) {
        self.batch(CONSOLE_BUFFER, Record::Console { t_ns: self.t_ns(), bytes: bytes.to_vec() });
    }

    /// Adds `r` to batch buffer `slot`, handing the batch over when it is full (the writer takes
    /// partial ones every [`CHUNK_AGE`]).
    fn batch(&self, slot: usize, r: Record) {
        let mut buf = lock(&self.buffers[slot % BUFFERS]);
        buf.push(r);
        if buf.len() >= BATCH {
            let batch = std::mem::take(&mut *buf);
            drop(buf);
            let _ = self.tx.send(batch);
        }
    }

    /// Writes the end record, stamped `elapsed` into the run (when the run ended, which the
    /// summary says too, not when the recording is closed), flushes and closes the file.
    pub fn finish(&self, end: &RunEnd, elapsed: Duration) -> Result<WriteStats, RecordError> {
        let _ = self.tx.send(take_all(&self.buffers));
        self.send(Record::End {
            t_ns: elapsed.as_nanos() as u64,
            status: end.status(),
            name: end.name().into(),
            detail: end.to_string(),
        });
        let handle = lock(&self.writer).take();
        match handle.map(JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => Ok(WriteStats::default()),
        }
    }
}

impl ExitSink for Recorder {
    fn on_exit(&self, event: &ExitEvent) {
        self.batch(event.vcpu as usize, Record::Exit(event.clone()));
    }

    fn on_stop(&self, stop: &Stop) {
        self.send(Record::Stop(StopRecord::of(stop, self.t_ns())));
    }

    fn on_device(&self, event: &DeviceEvent) {
        self.send(Record::Device(event.clone()));
    }

    fn on_stack(&self, stack: &StackSample) {
        self.send(Record::Stack(stack.clone()));
    }
}

/// Every exit still waiting in a vCPU's buffer, in sequence order.
fn take_all(buffers: &Buffers) -> Vec<Record> {
    let mut all: Vec<Record> = buffers.iter().flat_map(|b| std::mem::take(&mut *lock(b))).collect();
    all.sort_by_key(|r| if let Record::Exit(e) = r { e.seq } else { 0 });
    all
}

/// How far behind the present the writer stays, so that a record handed over late (a vCPU's
/// exit still on its way while a device event it caused came at once) still goes in its place.
const SETTLE: Duration = Duration::from_millis(20);

/// Where a record goes in time order: its time, then exits before what they caused, and a call
/// stack right after its exit (`exit_times` holds the pending exits' times by sequence number).
fn order_key(r: &Record, exit_times: &rustc_hash::FxHashMap<u64, u64>) -> (u64, u8, u64) {
    match r {
        Record::Exit(e) => (e.t_ns, 0, e.seq),
        Record::Stack(s) => (exit_times.get(&s.seq).copied().unwrap_or(0), 1, s.seq),
        Record::End { .. } => (u64::MAX, u8::MAX, 0),
        Record::Console { t_ns, .. }
        | Record::Kvm { t_ns, .. }
        | Record::Kernel { t_ns, .. }
        | Record::Dirty { t_ns, .. } => (*t_ns, 2, 0),
        Record::Stop(s) => (s.t_ns, 2, 0),
        Record::Device(d) => (d.t_ns, 2, 0),
        // A replayable recording's files come first, in the order given.
        Record::File { offset, .. } => (0, 0, *offset),
    }
}

/// Records in time order: they arrive out of order (exits in per-vCPU batches, the rest at
/// once) and leave sorted once nothing earlier can still come.
#[derive(Default)]
struct Reorder {
    pending: Vec<Record>,
}

impl Reorder {
    /// The pending records up to `before` (nanoseconds into the run), in order; all of them when
    /// `before` is `None`.
    fn take(&mut self, before: Option<u64>) -> Vec<Record> {
        let exit_times: rustc_hash::FxHashMap<u64, u64> = self
            .pending
            .iter()
            .filter_map(|r| if let Record::Exit(e) = r { Some((e.seq, e.t_ns)) } else { None })
            .collect();
        let mut keyed: Vec<((u64, u8, u64), Record)> =
            self.pending.drain(..).map(|r| (order_key(&r, &exit_times), r)).collect();
        keyed.sort_by_key(|(k, _)| *k);
        let cut = before.map_or(keyed.len(), |t| keyed.partition_point(|(k, _)| k.0 < t));
        self.pending = keyed.split_off(cut).into_iter().map(|(_, r)| r).collect();
        keyed.into_iter().map(|(_, r)| r).collect()
    }
}

fn write_chunks(
    rx: Receiver<Vec<Record>>,
    buffers: &Buffers,
    start: &OnceLock<Instant>,
    mut file: BufWriter<File>,
    path: &Path,
    bytes: u64,
) -> Result<WriteStats, RecordError> {
    let err = |source| RecordError::Write { path: path.to_path_buf(), source };
    let stats = WriteStats { bytes, ..Default::default() };
    let mut out = ChunkOut { stats, chunk: ChunkEntry::new(), ..Default::default() };
    let mut order = Reorder::default();
    let mut last_round = Instant::now();
    loop {
        let ended = match rx.recv_timeout(CHUNK_AGE.saturating_sub(last_round.elapsed())) {
            Ok(batch) => {
                let end = batch.iter().any(|r| matches!(r, Record::End { .. }));
                order.pending.extend(batch);
                end
            }
            Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => false,
        };
        if ended {
            order.pending.extend(take_all(buffers));
            for r in order.take(None) {
                out.push(&r);
            }
            out.flush(&mut file).map_err(err)?;
            out.finish(&mut file).map_err(err)?;
            return Ok(out.stats);
        }
        if last_round.elapsed() >= CHUNK_AGE {
            // Exits a quiet vCPU has not handed over yet; then everything older than a moment ago,
            // in order, as one chunk at least every round.
            last_round = Instant::now();
            order.pending.extend(take_all(buffers));
            let settled = start.get().map(|s| s.elapsed().saturating_sub(SETTLE).as_nanos() as u64);
            for r in order.take(Some(settled.unwrap_or(0))) {
                out.push(&r);
                if out.enc.payload.len() >= CHUNK_BYTES {
                    out.flush(&mut file).map_err(err)?;
                }
            }
            out.flush(&mut file).map_err(err)?;
        }
    }
}

/// The chunk being filled, what has been written, and the index of it (see [`super::trailer`]).
#[derive(Default)]
struct ChunkOut {
    enc: ChunkEncoder,
    stats: WriteStats,
    /// The chunk being filled, as the index will describe it.
    chunk: ChunkEntry,
    trailer: Trailer,
    /// Follows the exits, for the device state the index keeps every so many.
    explainer: Explainer,
}

impl ChunkOut {
    fn push(&mut self, r: &Record) {
        self.stats.records += 1;
        if let Record::Exit(e) = r {
            if self.chunk.exits == 0 {
                let due = self.trailer.states.last().is_none_or(|(at, _)| self.stats.exits >= at + STATE_EVERY);
                if due {
                    self.trailer.states.push((self.stats.exits, self.explainer.state()));
                }
            }
            self.explainer.explain(e);
            self.stats.exits += 1;
        }
        self.chunk.note(r);
        self.enc.push(r);
    }

    /// Writes the chunk (if it holds anything) and starts the next.
    fn flush(&mut self, file: &mut BufWriter<File>) -> std::io::Result<()> {
        if self.enc.records == 0 {
            return Ok(());
        }
        let head = ChunkFrame::of(&self.enc.payload, self.enc.records).encode();
        file.write_all(&head)?;
        file.write_all(&self.enc.payload)?;
        file.flush()?;
        let chunk = std::mem::replace(&mut self.chunk, ChunkEntry::new());
        self.trailer.chunks.push(ChunkEntry { offset: self.stats.bytes, ..chunk });
        self.stats.bytes += (head.len() + self.enc.payload.len()) as u64;
        self.stats.chunks += 1;
        self.enc.reset();
        Ok(())
    }

    /// Ends the recording with its index.
    fn finish(&mut self, file: &mut BufWriter<File>) -> std::io::Result<()> {
        let index = self.trailer.encode(self.stats.bytes);
        file.write_all(&index)?;
        file.flush()?;
        self.stats.bytes += index.len() as u64;
        Ok(())
    }
}

/// A console writer that also records what the guest printed.
pub struct RecordingConsole {
    pub inner: Box<dyn Write + Send>,
    pub recorder: std::sync::Arc<Recorder>,
}

impl Write for RecordingConsole {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.recorder.console(buf);
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{DeviceEventKind, Dir, ExitKind};

    fn exit(seq: u64, t_ns: u64) -> Record {
        let kind = ExitKind::Io { port: 0x80, dir: Dir::Out, size: 1, count: 1, data: 0 };
        Record::Exit(ExitEvent { seq, vcpu: 0, t_ns, rip: 0, kind, device: None, insn: None, cost_ns: 1 })
    }

    fn device(t_ns: u64) -> Record {
        Record::Device(DeviceEvent { t_ns, device: "d".into(), queue: None, kind: DeviceEventKind::Interrupt })
    }

    fn times(records: &[Record]) -> Vec<(char, u64)> {
        records
            .iter()
            .map(|r| match r {
                Record::Exit(e) => ('x', e.t_ns),
                Record::Device(d) => ('d', d.t_ns),
                Record::Stack(s) => ('s', s.seq),
                _ => ('?', 0),
            })
            .collect()
    }

    #[test]
    fn records_leave_in_time_order_once_settled() {
        let mut order = Reorder::default();
        // A device event handed over before the exit batch that holds the exit it followed.
        order.pending.push(device(15));
        let stack = StackSample { seq: 1, vcpu: 0, reason: "io".into(), frames: vec![] };
        order.pending.push(Record::Stack(stack));
        order.pending.extend([exit(0, 10), exit(1, 20), exit(2, 30)]);
        let out = order.take(Some(25));
        assert_eq!(times(&out), [('x', 10), ('d', 15), ('x', 20), ('s', 1)]);
        assert_eq!(times(&order.take(None)), [('x', 30)]);
    }
}

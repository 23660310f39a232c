//! Recording a run: a sink the vCPU threads hand every exit to, and a writer thread that encodes
//! chunks and writes them. Each vCPU collects its exits in a batch of its own and hands the batch
//! over in one go; the queue between them blocks when full: recording may slow the guest, it never
//! loses an exit. Chunks are written at least every 100 ms, so a run that is killed leaves
//! a file readable up to its last whole chunk.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::format::{ChunkEncoder, ChunkFrame, Record, StopRecord, TraceHeader, encode_header};
use crate::debug::Stop;
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
/// Per-vCPU batch buffers (vCPU n uses buffer n % BUFFERS).
const BUFFERS: usize = 64;

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
    start: OnceLock<Instant>,
}

impl Recorder {
    /// Creates the file, writes the header and starts the writer thread.
    pub fn create(path: &Path, header: &TraceHeader) -> Result<Self, RecordError> {
        let create = |source| RecordError::Create { path: path.to_path_buf(), source };
        let mut file = BufWriter::new(File::create(path).map_err(create)?);
        let head = encode_header(header);
        file.write_all(&head).and_then(|_| file.flush()).map_err(create)?;
        let (tx, rx) = sync_channel(QUEUE);
        let path = path.to_path_buf();
        let bytes = head.len() as u64;
        let buffers: Buffers = Arc::new((0..BUFFERS).map(|_| Mutex::new(Vec::new())).collect());
        let pending = buffers.clone();
        let writer = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || write_chunks(rx, &pending, file, &path, bytes))
            .map_err(create)?;
        Ok(Self { tx, buffers, writer: Mutex::new(Some(writer)), start: OnceLock::new() })
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

    /// Guest console output.
    pub fn console(&self, bytes: &[u8]) {
        self.send(Record::Console { t_ns: self.t_ns(), bytes: bytes.to_vec() });
    }

    /// Writes the end record, flushes and closes the file.
    pub fn finish(&self, end: &RunEnd) -> Result<WriteStats, RecordError> {
        let _ = self.tx.send(take_all(&self.buffers));
        self.send(Record::End {
            t_ns: self.t_ns(),
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
        let mut buf = lock(&self.buffers[event.vcpu as usize % BUFFERS]);
        buf.push(Record::Exit(event.clone()));
        if buf.len() >= BATCH {
            let batch = std::mem::take(&mut *buf);
            drop(buf);
            let _ = self.tx.send(batch);
        }
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

fn write_chunks(
    rx: Receiver<Vec<Record>>,
    buffers: &Buffers,
    mut file: BufWriter<File>,
    path: &Path,
    mut bytes: u64,
) -> Result<WriteStats, RecordError> {
    let err = |source| RecordError::Write { path: path.to_path_buf(), source };
    let mut enc = ChunkEncoder::default();
    let mut stats = WriteStats { bytes, ..Default::default() };
    let mut oldest: Option<Instant> = None;
    let mut flush =
        |enc: &mut ChunkEncoder, file: &mut BufWriter<File>, stats: &mut WriteStats| -> std::io::Result<()> {
            if enc.records == 0 {
                return Ok(());
            }
            let head = ChunkFrame::of(&enc.payload, enc.records).encode();
            file.write_all(&head)?;
            file.write_all(&enc.payload)?;
            file.flush()?;
            bytes += (head.len() + enc.payload.len()) as u64;
            stats.bytes = bytes;
            stats.chunks += 1;
            enc.reset();
            Ok(())
        };
    loop {
        let wait = oldest.map_or(CHUNK_AGE, |t| CHUNK_AGE.saturating_sub(t.elapsed()));
        match rx.recv_timeout(wait) {
            Ok(batch) => {
                for r in batch {
                    let last = matches!(r, Record::End { .. });
                    stats.records += 1;
                    stats.exits += u64::from(matches!(r, Record::Exit(_)));
                    enc.push(&r);
                    oldest.get_or_insert_with(Instant::now);
                    if last {
                        flush(&mut enc, &mut file, &mut stats).map_err(err)?;
                        return Ok(stats);
                    }
                    if enc.payload.len() >= CHUNK_BYTES {
                        flush(&mut enc, &mut file, &mut stats).map_err(err)?;
                        oldest = None;
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                flush(&mut enc, &mut file, &mut stats).map_err(err)?;
                return Ok(stats);
            }
            Err(RecvTimeoutError::Timeout) => {
                // Exits a quiet vCPU has not handed over yet go into this chunk too.
                for r in take_all(buffers) {
                    stats.records += 1;
                    stats.exits += 1;
                    enc.push(&r);
                }
                flush(&mut enc, &mut file, &mut stats).map_err(err)?;
                oldest = None;
            }
        }
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

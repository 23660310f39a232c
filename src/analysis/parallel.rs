//! Rows made on many cores, written in order. A recording's index keeps the explainer's device
//! state every so many exits: from each such place the recording reads on its own, so the parts
//! between them are turned into rows by as many threads as the machine has cores, and the rows
//! are written in the recording's order — the same bytes as one thread makes. Memory stays
//! bounded: each part hands its rows over in blocks, a few at a time.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::explain::Explainer;
use crate::recording::trailer::Trailer;
use crate::recording::{ReadError, Record, TraceReader};

/// A part of a recording that reads on its own: its chunks' offsets, and the explainer's device
/// state before them.
pub struct Part {
    chunks: Vec<u64>,
    state: serde_json::Value,
}

/// Bytes of rows a part hands over at a time.
const BLOCK: usize = 1 << 20;
/// Blocks a part may have waiting to be written.
const WAITING: usize = 4;
/// Parts a thread may be ahead of the part being written, per thread: a part made whole in one
/// block (Parquet's) would otherwise let a fast thread run arbitrarily far ahead of a slow one.
const AHEAD: usize = 2;

/// The recording's parts, from its index; `None` without a trusted index, or with a single part
/// (nothing to share), or on a machine of one core.
pub fn parts(path: &Path) -> Option<Vec<Part>> {
    if threads() < 2 {
        return None;
    }
    let trailer: Trailer = TraceReader::open(path).ok()?.trailer().ok()??;
    let mut parts: Vec<Part> = Vec::new();
    let mut states = trailer.states.into_iter().peekable();
    let mut exits = 0u64;
    for c in &trailer.chunks {
        // A state kept at this chunk's first exit starts a part.
        if let Some((_, state)) = states.next_if(|(at, _)| *at == exits) {
            parts.push(Part { chunks: Vec::new(), state });
        }
        match parts.last_mut() {
            Some(part) => part.chunks.push(c.offset),
            // Records before the first exit: a part of their own, from the start.
            None => parts.push(Part { chunks: vec![c.offset], state: Explainer::default().state() }),
        }
        exits += c.exits as u64;
    }
    (parts.len() > 1).then_some(parts)
}

/// Threads to use: the machine's cores.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// What a part hands over: a block of rows, or the damage that ended the reading there.
enum Handed {
    Rows(Vec<u8>),
    Damage(ReadError),
}

/// How a part's rows are made: a maker from the part's explainer, each record's row appended to
/// the block at hand, and whatever ends a part appended last (a Parquet part's whole file).
pub struct RowsOf<S, R, E> {
    pub start: S,
    pub row: R,
    pub end: E,
}

/// Turns every record of the recording at `path` into bytes, on every core, and hands the blocks
/// to `write` in the recording's order; `write` answers false when its output has gone (reading
/// stops). The damage that ended the reading, if any, is returned: what came before it was
/// written.
pub fn rows_in_order<M, S, R, E>(
    path: &Path,
    parts: Vec<Part>,
    rows: RowsOf<S, R, E>,
    mut write: impl FnMut(Vec<u8>) -> bool,
) -> Option<ReadError>
where
    S: Fn(Explainer) -> M + Sync,
    R: Fn(&mut M, Record, &mut Vec<u8>) + Sync,
    E: Fn(M, &mut Vec<u8>) + Sync,
{
    let (senders, receivers): (Vec<SyncSender<Handed>>, Vec<Receiver<Handed>>) =
        (0..parts.len()).map(|_| sync_channel(WAITING)).unzip();
    let senders: Vec<std::sync::Mutex<Option<SyncSender<Handed>>>> =
        senders.into_iter().map(|s| std::sync::Mutex::new(Some(s))).collect();
    let (next, stop) = (AtomicUsize::new(0), AtomicBool::new(false));
    // The part being written, and a wake-up for the threads waiting to start one.
    let (writing, moved) = (std::sync::Mutex::new(0usize), std::sync::Condvar::new());
    let ahead = AHEAD * threads();
    let mut damage = None;
    std::thread::scope(|scope| {
        for _ in 0..threads().min(parts.len()) {
            scope.spawn(|| {
                let Ok(mut reader) = TraceReader::open(path) else { return };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let mut at = crate::sync::lock(&writing);
                    while i >= *at + ahead && !stop.load(Ordering::Relaxed) {
                        at = moved.wait(at).unwrap_or_else(|p| p.into_inner());
                    }
                    drop(at);
                    let (Some(part), false) = (parts.get(i), stop.load(Ordering::Relaxed)) else { return };
                    let Some(tx) = crate::sync::lock(&senders[i]).take() else { return };
                    let maker = (rows.start)(Explainer::with_state(&part.state).unwrap_or_default());
                    make_part(&mut reader, part, maker, &rows, &tx);
                }
            });
        }
        // Parts in order: each part's blocks as they come, then the next part's.
        'parts: for rx in receivers {
            for handed in rx {
                match handed {
                    Handed::Rows(block) => {
                        if !write(block) {
                            break 'parts;
                        }
                    }
                    Handed::Damage(e) => {
                        damage = Some(e);
                        break 'parts;
                    }
                }
            }
            *crate::sync::lock(&writing) += 1;
            moved.notify_all();
        }
        // The output gone or damage met: the threads still at work stop at their next block.
        stop.store(true, Ordering::Relaxed);
        let _held = crate::sync::lock(&writing);
        moved.notify_all();
    });
    damage
}

/// One part's rows, handed over block by block (until the writer stops taking them).
fn make_part<M, S, R, E>(
    reader: &mut TraceReader,
    part: &Part,
    mut maker: M,
    rows: &RowsOf<S, R, E>,
    tx: &SyncSender<Handed>,
) where
    R: Fn(&mut M, Record, &mut Vec<u8>),
    E: Fn(M, &mut Vec<u8>),
{
    let mut block = Vec::with_capacity(BLOCK + BLOCK / 4);
    for &offset in &part.chunks {
        let records = match reader.chunk_at(offset) {
            Ok(records) => records,
            Err(e) => {
                (rows.end)(maker, &mut block);
                let _ = tx.send(Handed::Rows(block));
                let _ = tx.send(Handed::Damage(e));
                return;
            }
        };
        for r in records {
            (rows.row)(&mut maker, r, &mut block);
            if block.len() >= BLOCK && tx.send(Handed::Rows(std::mem::take(&mut block))).is_err() {
                return;
            }
        }
    }
    (rows.end)(maker, &mut block);
    let _ = tx.send(Handed::Rows(block));
}

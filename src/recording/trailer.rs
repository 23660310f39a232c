//! The index a recording ends with: where each chunk is, how many records and exits it holds, the
//! first exit's number and time, whether it holds anything besides exits — and the explainer's
//! device state every so many exits. A reader opens a recording of any length by reading this and
//! the chunks it needs, not the whole file; a far jump explains from the nearest state kept.
//!
//! On disk, after the last chunk: a frame like a chunk's (`KIDX`, length, CRC of the payload),
//! the index as JSON, then a 16-byte footer (the frame's offset, `KSIDXEND`) that a reader finds
//! from the end of the file. A recording cut off by a crash has no footer; one whose index does
//! not agree with its chunks is not trusted: both are read whole, as before indexes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};

use super::events::EventSpan;
use super::format::{CHUNK_HEADER, ChunkFrame, Record};
use crate::trace::{Dir, ExitKind};

pub const INDEX_MAGIC: &[u8; 4] = b"KIDX";
pub const FOOTER_MAGIC: &[u8; 8] = b"KSIDXEND";
pub const FOOTER: usize = 16;

/// The chunks `stats --from/--to` reads (in order) and the explainer's device state
/// before the first (with `explained`: every exit from that state to the window's end is read, so
/// that the device state follows the run): the chunks with records in the window, and wherever
/// they are, those holding the end, KVM's last counters, the kernel's counts and the last write
/// to the debug-exit device. `None` when no chunk has a record in the window.
pub fn window_chunks(
    t: &Trailer,
    from: u64,
    to: u64,
    explained: bool,
) -> Option<(Vec<ChunkEntry>, Option<serde_json::Value>)> {
    let window: Vec<usize> = (0..t.chunks.len()).filter(|&i| t.chunks[i].overlaps(from, to)).collect();
    let (&first, &last) = (window.first()?, window.last()?);
    let mut needed: std::collections::BTreeSet<usize> = window.iter().copied().collect();
    let last_of = |f: fn(&ChunkEntry) -> bool| t.chunks.iter().rposition(f);
    needed.extend(last_of(|c| c.kvm));
    needed.extend(last_of(|c| c.debug_exit));
    needed.extend((0..t.chunks.len()).filter(|&i| t.chunks[i].end || t.chunks[i].kernel));
    let mut state = None;
    if explained {
        // The nearest state kept at or before the window's first chunk, and every chunk on to its last.
        // The index of each chunk's first exit.
        let starts: Vec<u64> = t
            .chunks
            .iter()
            .scan(0u64, |exits, c| {
                let first = *exits;
                *exits += c.exits as u64;
                Some(first)
            })
            .collect();
        let (at, kept) = t.states.iter().rev().find(|(at, _)| *at <= starts[first])?;
        let from_chunk = starts.iter().position(|s| s == at).unwrap_or(0);
        needed.extend(from_chunk..=last);
        state = Some(kept.clone());
    }
    Some((needed.into_iter().map(|i| t.chunks[i]).collect(), state))
}

/// Exits between the explainer states the index keeps.
pub const STATE_EVERY: u64 = 65_536;

/// One chunk, as the index describes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    pub offset: u64,
    pub records: u32,
    pub exits: u32,
    pub first_seq: u64,
    pub first_t_ns: u64,
    /// Records other than exits (console, stops, device events, the end, KVM's counters ...).
    pub others: u32,
    /// Of those, the events a replay shows (console output, stops, device events, call stacks,
    /// the end): the chunks it reads when it opens. KVM's counters, every 100 ms, are not.
    pub events: u32,
    /// The earliest and latest time of its records that have one (`t_min > t_max`: none), and of
    /// its latest exit: `stats --from/--to` reads only the chunks a window needs.
    pub t_min: u64,
    pub t_max: u64,
    pub last_exit_t: u64,
    /// It holds the run's end, KVM's counters, the kernel's event counts, a write to the
    /// debug-exit device: what `stats` reads wherever the window is.
    pub end: bool,
    pub kvm: bool,
    pub kernel: bool,
    pub debug_exit: bool,
    /// What its events are (a replay reads the chunk only when a screen needs them); absent
    /// when it holds none, and in recordings made before the index said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shown: Option<EventSpan>,
}

impl ChunkEntry {
    /// An empty chunk's entry, before its records are noted.
    pub fn new() -> Self {
        Self { t_min: u64::MAX, ..Self::default() }
    }

    /// The entry of the chunk at `offset` holding `records`.
    pub fn of(offset: u64, records: &[Record]) -> Self {
        let mut entry = ChunkEntry { offset, ..ChunkEntry::new() };
        records.iter().for_each(|r| entry.note(r));
        entry
    }

    /// Notes a record of the chunk: counted, and what it tells of the chunk.
    pub fn note(&mut self, r: &Record) {
        self.records += 1;
        if let Some(t) = r.time() {
            (self.t_min, self.t_max) = (self.t_min.min(t), self.t_max.max(t));
        }
        if r.is_event() {
            self.shown.get_or_insert_with(EventSpan::default).note(r);
        }
        match r {
            Record::Exit(e) => {
                if self.exits == 0 {
                    (self.first_seq, self.first_t_ns) = (e.seq, e.t_ns);
                }
                self.exits += 1;
                self.last_exit_t = self.last_exit_t.max(e.t_ns);
                self.debug_exit |=
                    e.device == Some("debug-exit") && matches!(e.kind, ExitKind::Io { dir: Dir::Out, .. });
            }
            Record::End { .. } => self.end = true,
            Record::Kvm { .. } => self.kvm = true,
            Record::Kernel { .. } => self.kernel = true,
            _ => {}
        }
        if !matches!(r, Record::Exit(_)) {
            self.others += 1;
            self.events += u32::from(r.is_event());
        }
    }

    /// Whether `records`, read from the chunk, are what the index says of it (its counts, first
    /// exit, time span, flags and events): a reader that skips chunks by the index checks those
    /// it reads.
    pub fn describes(&self, records: &[Record]) -> bool {
        let read = ChunkEntry::of(self.offset, records);
        // An index made before it said what the events are leaves them unchecked.
        let old = self.shown.is_none() && self.events > 0;
        ChunkEntry { shown: if old { None } else { read.shown }, ..read } == *self
    }

    /// Whether it may hold a record timed in `from..to`.
    pub fn overlaps(&self, from: u64, to: u64) -> bool {
        self.t_min <= self.t_max && self.t_min < to && self.t_max >= from
    }
}

/// A recording's index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trailer {
    pub chunks: Vec<ChunkEntry>,
    /// (exit index, the explainer's device state before that exit), in order.
    pub states: Vec<(u64, serde_json::Value)>,
}

impl Trailer {
    /// The index frame, its payload and the footer, for an index frame written at `offset`.
    pub fn encode(&self, offset: u64) -> Vec<u8> {
        let payload = serde_json::to_vec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(CHUNK_HEADER + payload.len() + FOOTER);
        out.extend_from_slice(INDEX_MAGIC);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(FOOTER_MAGIC);
        out
    }

    /// The index at the end of `file`, whose chunks start at `first_chunk`: `Ok(None)` when it has
    /// none (an older recording, or one cut off), `Err` saying what is wrong when it has one that
    /// does not agree with the chunks it describes.
    pub fn read(file: &mut File, first_chunk: u64) -> Result<Option<Trailer>, String> {
        let size = file.metadata().map_err(|e| e.to_string())?.len();
        if size < first_chunk + (CHUNK_HEADER + FOOTER) as u64 {
            return Ok(None);
        }
        let mut footer = [0u8; FOOTER];
        read_at(file, size - FOOTER as u64, &mut footer)?;
        if &footer[8..] != FOOTER_MAGIC {
            return Ok(None);
        }
        let at = u64::from_le_bytes(footer[..8].try_into().unwrap_or_default());
        if at < first_chunk || at + (CHUNK_HEADER + FOOTER) as u64 > size {
            return Err(format!("its index is said to be at offset {at}, outside the file"));
        }
        let mut head = [0u8; CHUNK_HEADER];
        read_at(file, at, &mut head)?;
        let len = u32::from_le_bytes(head[4..8].try_into().unwrap_or_default()) as u64;
        if &head[..4] != INDEX_MAGIC || at + CHUNK_HEADER as u64 + len + FOOTER as u64 != size {
            return Err(format!("no index frame of the right length at offset {at}"));
        }
        let mut payload = vec![0u8; len as usize];
        read_at(file, at + CHUNK_HEADER as u64, &mut payload)?;
        if crc32fast::hash(&payload).to_le_bytes() != head[8..12] {
            return Err("its index's checksum does not match".into());
        }
        let trailer: Trailer =
            serde_json::from_slice(&payload).map_err(|e| format!("its index does not parse: {e}"))?;
        trailer.agrees(file, first_chunk, at)?;
        Ok(Some(trailer))
    }

    /// Whether the chunks are where the index says, one after another from `first_chunk` up to
    /// the index at `end`, each with the records the index counts.
    fn agrees(&self, file: &mut File, first_chunk: u64, end: u64) -> Result<(), String> {
        let mut next = first_chunk;
        let exits: u64 = self.chunks.iter().map(|c| c.exits as u64).sum();
        for (i, c) in self.chunks.iter().enumerate() {
            if c.offset != next || c.offset + CHUNK_HEADER as u64 > end {
                return Err(format!("its index puts chunk {i} at offset {}, where none starts", c.offset));
            }
            let mut head = [0u8; CHUNK_HEADER];
            read_at(file, c.offset, &mut head)?;
            let frame = ChunkFrame::parse(&head).map_err(|e| format!("its index's chunk {i}: {e}"))?;
            if c.shown.is_some() && c.events == 0 {
                return Err(format!("its index says what the events of chunk {i} are, and that it holds none"));
            }
            if frame.records != c.records || c.exits + c.others != c.records || c.events > c.others {
                return Err(format!(
                    "its index counts {} records in chunk {i}, which holds {}",
                    c.records, frame.records
                ));
            }
            next = c.offset + (CHUNK_HEADER + frame.len) as u64;
        }
        if next != end {
            return Err(format!("its index ends its chunks at offset {next}, the index is at {end}"));
        }
        if self.states.windows(2).any(|w| w[0].0 >= w[1].0) || self.states.last().is_some_and(|s| s.0 > exits) {
            return Err("its index's explainer states are out of order".into());
        }
        Ok(())
    }
}

fn read_at(file: &mut File, offset: u64, buf: &mut [u8]) -> Result<(), String> {
    file.seek(SeekFrom::Start(offset)).and_then(|_| file.read_exact(buf)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunk `i` at offset `i`, 100 exits from `t_min` to `t_max`.
    fn chunk(i: u64, t_min: u64, t_max: u64) -> ChunkEntry {
        ChunkEntry { offset: i, exits: 100, records: 100, t_min, t_max, ..ChunkEntry::new() }
    }

    #[test]
    fn a_window_reads_its_chunks_and_those_holding_what_stats_reads_anywhere() {
        let mut chunks: Vec<ChunkEntry> = (0..10).map(|i| chunk(i, i * 10, i * 10 + 9)).collect();
        // A late record: chunk 7 holds one from time 31.
        chunks[7].t_min = 31;
        (chunks[2].kvm, chunks[5].kvm, chunks[4].debug_exit, chunks[9].end) = (true, true, true, true);
        let states = vec![(0, serde_json::json!(0)), (300, serde_json::json!(3)), (800, serde_json::json!(8))];
        let t = Trailer { chunks, states };
        let offsets = |(read, state): (Vec<ChunkEntry>, _)| (read.iter().map(|c| c.offset).collect::<Vec<_>>(), state);
        let (read, state) = offsets(window_chunks(&t, 30, 40, false).unwrap());
        assert_eq!(
            (read, state),
            (vec![3, 4, 5, 7, 9], None),
            "the window's, the late one's, the last KVM, debug-exit, end"
        );
        // Explained: from the state kept at or before the window's first chunk (5), every chunk to
        // its last (7, the late one).
        let (read, state) = offsets(window_chunks(&t, 55, 60, true).unwrap());
        assert_eq!((read, state), (vec![3, 4, 5, 6, 7, 9], Some(serde_json::json!(3))));
        assert!(window_chunks(&t, 1000, 2000, false).is_none(), "nothing there: read whole");
    }

    #[test]
    fn a_chunk_read_is_checked_against_what_the_index_says_of_it() {
        let exit = |t_ns| {
            let kind = ExitKind::Io { port: 0x80, dir: Dir::Out, size: 1, count: 1, data: 0 };
            Record::Exit(crate::trace::ExitEvent {
                seq: 0,
                vcpu: 0,
                t_ns,
                rip: 0,
                kind,
                device: None,
                insn: None,
                cost_ns: 0,
            })
        };
        let records = vec![exit(5), Record::Kvm { t_ns: 9, counts: Default::default() }, exit(7)];
        let said = ChunkEntry::of(0, &records);
        assert_eq!((said.records, said.exits, said.others, said.first_t_ns), (3, 2, 1, 5));
        assert!(said.describes(&records));
        assert_eq!((said.t_min, said.t_max, said.last_exit_t, said.kvm), (5, 9, 7, true));
        for lie in [ChunkEntry { t_max: 10, ..said }, ChunkEntry { exits: 1, ..said }, ChunkEntry { end: true, ..said }]
        {
            assert!(!lie.describes(&records), "{lie:?}");
        }
    }
}

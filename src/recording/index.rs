//! Random access to a recording's exits without holding them: one pass notes where each chunk's
//! exits start (file offset, index, first sequence number and time); an exit is then read by
//! decoding its chunk again, a few recently used chunks kept. A recording far larger than memory
//! opens with a few bytes per chunk in memory, and any exit is a chunk away.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use super::{ReadError, Record, TraceReader};
use crate::trace::ExitEvent;

/// Decoded chunks kept (a chunk holds up to 256 KiB of records: some ten thousand exits).
const CACHED: usize = 4;

/// Where one chunk's exits are.
#[derive(Debug, Clone, Copy)]
struct ChunkExits {
    offset: u64,
    /// The index of its first exit among all the recording's exits.
    first: usize,
    count: usize,
    first_seq: u64,
    first_t_ns: u64,
}

/// A recording's exits, by index.
pub struct ExitIndex {
    reader: TraceReader,
    chunks: Vec<ChunkExits>,
    len: usize,
    cache: VecDeque<(usize, Arc<Vec<ExitEvent>>)>,
    /// The file changed since it was indexed (a chunk no longer reads as it did): the exits are
    /// cut where it stopped agreeing.
    pub changed: bool,
}

/// An index, and the damage that ended the pass early (everything before it is indexed).
pub struct Indexed {
    pub index: ExitIndex,
    pub damage: Option<ReadError>,
}

impl ExitIndex {
    /// Reads the recording once: its exits indexed, every other record handed to `other`.
    pub fn build(path: &Path, mut other: impl FnMut(Record)) -> Result<Indexed, ReadError> {
        let mut reader = TraceReader::open(path)?;
        let mut chunks = Vec::new();
        let mut len = 0;
        let damage = loop {
            match reader.next_chunk() {
                Ok(Some((offset, records))) => {
                    let mut here: Option<ChunkExits> = None;
                    for r in records {
                        match r {
                            Record::Exit(e) => {
                                let c = here.get_or_insert(ChunkExits {
                                    offset,
                                    first: len,
                                    count: 0,
                                    first_seq: e.seq,
                                    first_t_ns: e.t_ns,
                                });
                                c.count += 1;
                                len += 1;
                            }
                            other_record => other(other_record),
                        }
                    }
                    chunks.extend(here);
                }
                Ok(None) => break None,
                Err(e) if e.is_damage() => break Some(e),
                Err(e) => return Err(e),
            }
        };
        let index = ExitIndex { reader, chunks, len, cache: VecDeque::new(), changed: false };
        Ok(Indexed { index, damage })
    }

    /// What the recording says about itself.
    pub fn header(&self) -> &super::TraceHeader {
        &self.reader.header
    }

    /// Exits in the recording.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunk that holds exit `i`.
    fn chunk_of(&self, i: usize) -> Option<usize> {
        (i < self.len).then(|| self.chunks.partition_point(|c| c.first + c.count <= i))
    }

    /// Chunk `c`'s exits, decoded (again, unless recently used).
    fn exits_of(&mut self, c: usize) -> Arc<Vec<ExitEvent>> {
        if let Some(hit) = self.cache.iter().position(|(k, _)| *k == c).and_then(|at| self.cache.remove(at)) {
            self.cache.push_front(hit.clone());
            return hit.1;
        }
        // The pass read this chunk whole: reading it again fails only if the file changed since.
        let records = self.reader.chunk_at(self.chunks[c].offset).unwrap_or_default();
        let exits: Arc<Vec<ExitEvent>> = Arc::new(
            records
                .into_iter()
                .filter_map(|r| match r {
                    Record::Exit(e) => Some(e),
                    _ => None,
                })
                .collect(),
        );
        // Not what the pass found: the file changed. What came before still holds; from here on
        // the index is cut to what this chunk still gives.
        if exits.len() != self.chunks[c].count {
            self.changed = true;
            self.len = self.len.min(self.chunks[c].first + exits.len());
        }
        self.cache.push_front((c, exits.clone()));
        self.cache.truncate(CACHED);
        exits
    }

    /// Exit `i`.
    pub fn get(&mut self, i: usize) -> Option<ExitEvent> {
        let c = self.chunk_of(i)?;
        let first = self.chunks[c].first;
        self.exits_of(c).get(i - first).cloned()
    }

    /// Exits `from..to`, in order, chunk by chunk, while `each` says to go on.
    pub fn for_range(&mut self, from: usize, to: usize, mut each: impl FnMut(usize, &ExitEvent) -> bool) {
        let mut i = from;
        while i < to.min(self.len) {
            let Some(c) = self.chunk_of(i) else { break };
            let first = self.chunks[c].first;
            let exits = self.exits_of(c);
            let end = (to - first).min(exits.len());
            for (k, e) in exits.iter().enumerate().take(end).skip(i - first) {
                if !each(first + k, e) {
                    return;
                }
            }
            i = first + self.chunks[c].count.max(1);
        }
    }

    /// The nearest exit after (`forward`) or before `from` that `keep` accepts.
    pub fn find_from(&mut self, from: usize, forward: bool, keep: impl Fn(&ExitEvent) -> bool) -> Option<usize> {
        if forward {
            let mut found = None;
            self.for_range(from + 1, self.len, |i, e| {
                found = keep(e).then_some(i);
                found.is_none()
            });
            return found;
        }
        // Backwards, a chunk at a time.
        let mut end = from.min(self.len);
        while end > 0 {
            let c = self.chunk_of(end - 1)?;
            let first = self.chunks[c].first;
            let exits = self.exits_of(c);
            if let Some(k) = (0..end - first).rev().find(|&k| exits.get(k).is_some_and(&keep)) {
                return Some(first + k);
            }
            end = first;
        }
        None
    }

    /// The index of the exit numbered `seq` (the recording's exits are in sequence order).
    pub fn find_seq(&mut self, seq: u64) -> Option<usize> {
        let c = self.chunks.partition_point(|c| c.first_seq <= seq).checked_sub(1)?;
        let first = self.chunks[c].first;
        let exits = self.exits_of(c);
        exits.binary_search_by_key(&seq, |e| e.seq).ok().map(|k| first + k)
    }

    /// The index of the first exit at or after `t_ns`.
    pub fn find_time(&mut self, t_ns: u64) -> Option<usize> {
        let c = self.chunks.partition_point(|c| c.first_t_ns < t_ns).saturating_sub(1);
        let mut found = None;
        let from = self.chunks.get(c)?.first;
        self.for_range(from, self.len, |i, e| {
            found = (e.t_ns >= t_ns).then_some(i);
            found.is_none()
        });
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::TraceHeader;
    use crate::recording::format::{encode_chunk, encode_header};
    use crate::trace::{Dir, ExitKind};

    /// A recording of these chunks.
    fn write_chunks(name: &str, chunks: &[Vec<Record>]) -> std::path::PathBuf {
        let mut bytes = encode_header(&TraceHeader { vcpus: 1, ..Default::default() });
        chunks.iter().for_each(|records| bytes.extend(encode_chunk(records)));
        let path = std::env::temp_dir().join(format!("kvmscope-{name}-{}.trace", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn exit(seq: u64) -> Record {
        let kind = ExitKind::Io { port: 0x80, dir: Dir::Out, size: 1, count: 1, data: seq };
        Record::Exit(ExitEvent { seq, vcpu: 0, t_ns: 10 * seq, rip: 0, kind, device: None, insn: None, cost_ns: 1 })
    }

    #[test]
    fn a_file_that_shrinks_under_the_index_is_read_as_far_as_it_agrees() {
        let chunks: Vec<Vec<Record>> = (0..4u64).map(|c| (c * 100..(c + 1) * 100).map(exit).collect()).collect();
        let path = write_chunks("shrinks", &chunks);
        let Indexed { mut index, .. } = ExitIndex::build(&path, |_| {}).unwrap();
        assert_eq!(index.len(), 400);
        // Recorded again over it, shorter (another `run --record` to the same file).
        let again = write_chunks("shrinks", &chunks[..1]);
        assert_eq!(again, path);
        assert_eq!(index.get(50).map(|e| e.seq), Some(50), "the first chunk still agrees");
        assert_eq!(index.get(250), None, "a chunk no longer there");
        assert_eq!(index.find_from(399, false, |_| true).map(|i| i < 100), Some(true), "back to what is there");
        let mut seen = 0;
        index.for_range(0, 400, |_, _| {
            seen += 1;
            true
        });
        assert!(index.changed && seen <= 400);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn any_exit_of_many_chunks_is_read_back() {
        // 5 chunks of 1000 exits, a console record between.
        let chunks: Vec<Vec<Record>> = (0..5u64)
            .map(|c| {
                let mut v: Vec<Record> = (c * 1000..(c + 1) * 1000).map(exit).collect();
                v.insert(500, Record::Console { t_ns: c, bytes: vec![b'x'] });
                v
            })
            .collect();
        let path = write_chunks("index", &chunks);
        let mut consoles = 0;
        let Indexed { mut index, damage } =
            ExitIndex::build(&path, |r| consoles += matches!(r, Record::Console { .. }) as u32).unwrap();
        assert!(damage.is_none());
        assert_eq!((index.len(), consoles), (5000, 5));
        for i in [0, 999, 1000, 2500, 4999] {
            assert_eq!(index.get(i).map(|e| e.seq), Some(i as u64));
        }
        assert_eq!(index.get(5000), None);
        assert_eq!(index.find_seq(3141), Some(3141));
        assert_eq!(index.find_seq(9999), None);
        assert_eq!(index.find_time(31_405), Some(3141));
        assert_eq!(index.find_time(1 << 40), None);
        assert_eq!(index.find_from(10, true, |e| e.seq % 1000 == 0), Some(1000));
        assert_eq!(index.find_from(4500, false, |e| e.seq == 7), Some(7));
        let mut seen = Vec::new();
        index.for_range(998, 1002, |i, e| {
            seen.push((i, e.seq));
            true
        });
        assert_eq!(seen, [(998, 998), (999, 999), (1000, 1000), (1001, 1001)]);
        let _ = std::fs::remove_file(path);
    }
}

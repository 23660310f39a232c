//! Random access to a recording's exits without holding them: one pass notes where each chunk's
//! exits start (file offset, index, first sequence number and time); an exit is then read by
//! decoding its chunk again, a few recently used chunks kept. A recording far larger than memory
//! opens with a few bytes per chunk in memory, and any exit is a chunk away.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use super::events::EventSpan;
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
    /// What its events are (as the index says, or as read), to check when it is read again.
    events: Option<EventSpan>,
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
    /// A chunk read for its exits whose events are not what the index said (why): the events
    /// are not to be found by the index either (see [`super::events::EventChunks::distrust`]).
    pub events_disagree: Option<String>,
}

/// An index, and the damage that ended the pass early (everything before it is indexed).
pub struct Indexed {
    pub index: ExitIndex,
    pub damage: Option<ReadError>,
    /// Whether the recording's own index was read, or the file was read whole, and why.
    pub how: HowIndexed,
    /// The explainer's device state every so many exits, from the recording's index: (exit
    /// index, state before it).
    pub states: Vec<(usize, serde_json::Value)>,
    /// The chunks that hold events a replay shows (offset, what they are), in file order: see
    /// [`super::events::EventChunks`].
    pub events: Vec<(u64, EventSpan)>,
}

/// How a recording was indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HowIndexed {
    /// From the index it ends with: only the chunks that hold more than exits were read.
    Trailer,
    /// Read whole: it has no index (older, or cut off before its end).
    NoIndex,
    /// Read whole: its index does not agree with its chunks (why), and is not trusted.
    Untrusted(String),
}

impl HowIndexed {
    /// What a reader says of it, if anything: a recording read whole when it could have been
    /// opened at once.
    pub fn note(&self) -> Option<String> {
        match self {
            HowIndexed::Trailer => None,
            HowIndexed::NoIndex => Some("it has no index (an older recording, or one cut off): read it whole".into()),
            HowIndexed::Untrusted(why) => {
                Some(format!("{why}: the index is not trusted, the recording was read whole"))
            }
        }
    }
}

impl ExitIndex {
    /// Opens a recording by the index it ends with: what each chunk's events are is read from the
    /// index (or from the chunk, in recordings whose index does not say); without a trustworthy
    /// index, by reading it whole ([`ExitIndex::build`]).
    pub fn open(path: &Path) -> Result<Indexed, ReadError> {
        let mut reader = TraceReader::open(path)?;
        let trailer = match reader.trailer() {
            Ok(Some(t)) => t,
            Ok(None) => return Self::build(path, HowIndexed::NoIndex),
            Err(why) => return Self::build(path, HowIndexed::Untrusted(why)),
        };
        let (mut chunks, mut len, mut events) = (Vec::new(), 0, Vec::new());
        for c in &trailer.chunks {
            let span = match c.shown {
                Some(span) => Some(span),
                None if c.events > 0 => {
                    let records = match reader.chunk_at(c.offset) {
                        Ok(records) => records,
                        Err(e) if e.is_damage() => return Self::build(path, HowIndexed::Untrusted(e.to_string())),
                        Err(e) => return Err(e),
                    };
                    if !c.describes(&records) {
                        let why = format!("its index does not describe the chunk at offset {}", c.offset);
                        return Self::build(path, HowIndexed::Untrusted(why));
                    }
                    EventSpan::of(&records)
                }
                None => None,
            };
            events.extend(span.map(|span| (c.offset, span)));
            if c.exits > 0 {
                let (offset, count, first_seq, first_t_ns) = (c.offset, c.exits as usize, c.first_seq, c.first_t_ns);
                chunks.push(ChunkExits { offset, first: len, count, first_seq, first_t_ns, events: span });
                len += count;
            }
        }
        let states = trailer.states.into_iter().map(|(at, state)| (at as usize, state)).collect();
        let index = ExitIndex { reader, chunks, len, cache: VecDeque::new(), changed: false, events_disagree: None };
        Ok(Indexed { index, damage: None, how: HowIndexed::Trailer, states, events })
    }

    /// Reads the recording once: its exits indexed, what each chunk's events are noted.
    pub fn build(path: &Path, how: HowIndexed) -> Result<Indexed, ReadError> {
        let mut reader = TraceReader::open(path)?;
        let (mut chunks, mut len, mut events) = (Vec::new(), 0, Vec::new());
        let damage = loop {
            match reader.next_chunk() {
                Ok(Some((offset, records))) => {
                    let mut here: Option<ChunkExits> = None;
                    let span = EventSpan::of(&records);
                    for r in &records {
                        if let Record::Exit(e) = r {
                            let c = here.get_or_insert(ChunkExits {
                                offset,
                                first: len,
                                count: 0,
                                first_seq: e.seq,
                                first_t_ns: e.t_ns,
                                events: span,
                            });
                            c.count += 1;
                            len += 1;
                        }
                    }
                    chunks.extend(here);
                    events.extend(span.map(|span| (offset, span)));
                }
                Ok(None) => break None,
                Err(e) if e.is_damage() => break Some(e),
                Err(e) => return Err(e),
            }
        };
        let index = ExitIndex { reader, chunks, len, cache: VecDeque::new(), changed: false, events_disagree: None };
        Ok(Indexed { index, damage, how, states: Vec::new(), events })
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
        if EventSpan::of(&records) != self.chunks[c].events && self.events_disagree.is_none() {
            let offset = self.chunks[c].offset;
            self.events_disagree =
                Some(format!("the chunk at offset {offset} does not hold the events the recording's index says"));
        }
        let exits: Arc<Vec<ExitEvent>> = Arc::new(
            records
                .into_iter()
                .filter_map(|r| match r {
                    Record::Exit(e) => Some(e),
                    _ => None,
                })
                .collect(),
        );
        // Not what the pass found (or the recording's index said): the file changed, or its index
        // is wrong. What came before still holds; from here on the index is cut to what this
        // chunk still gives.
        let here = &self.chunks[c];
        let first_agrees = exits.first().is_none_or(|e| (e.seq, e.t_ns) == (here.first_seq, here.first_t_ns));
        if exits.len() != here.count || !first_agrees {
            self.changed = true;
            let agreeing = if first_agrees { exits.len() } else { 0 };
            self.len = self.len.min(here.first + agreeing);
            if !first_agrees {
                return Arc::new(Vec::new());
            }
        }
        self.cache.push_front((c, exits.clone()));
        self.cache.truncate(CACHED);
        exits
    }

    /// Exit `i`.
    pub fn get(&mut self, i: usize) -> Option<ExitEvent> {
        let c = self.chunk_of(i)?;
        let first = self.chunks[c].first;
        let exits = self.exits_of(c);
        exits.get(i - first).filter(|_| i < self.len).cloned()
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
    use crate::recording::test_files::{exit, write_chunks, write_indexed};
    use crate::recording::trailer::Trailer;

    #[test]
    fn a_file_that_shrinks_under_the_index_is_read_as_far_as_it_agrees() {
        let chunks: Vec<Vec<Record>> = (0..4u64).map(|c| (c * 100..(c + 1) * 100).map(exit).collect()).collect();
        let path = write_chunks("shrinks", &chunks);
        let Indexed { mut index, .. } = ExitIndex::open(&path).unwrap();
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

    /// 5 chunks of 1000 exits, a console record in the middle of the third.
    fn five_chunks() -> Vec<Vec<Record>> {
        (0..5u64)
            .map(|c| {
                let mut v: Vec<Record> = (c * 1000..(c + 1) * 1000).map(exit).collect();
                if c == 2 {
                    v.insert(500, Record::Console { t_ns: c, bytes: vec![b'x'] });
                }
                v
            })
            .collect()
    }

    fn opened(path: &Path) -> (Indexed, u32) {
        let indexed = ExitIndex::open(path).unwrap();
        let consoles = indexed.events.iter().map(|(_, span)| span.console as u32).sum();
        (indexed, consoles)
    }

    #[test]
    fn a_recording_with_its_index_opens_by_it_and_reads_the_same() {
        let path = write_indexed("trailer", &five_chunks(), |_| {});
        let (Indexed { mut index, how, states, .. }, consoles) = opened(&path);
        assert_eq!((how, index.len(), consoles, states.len()), (HowIndexed::Trailer, 5000, 1, 5));
        for i in [0, 999, 1000, 2500, 4999] {
            assert_eq!(index.get(i).map(|e| e.seq), Some(i as u64));
        }
        assert_eq!(index.find_seq(3141), Some(3141));
        assert_eq!(index.find_time(31_405), Some(3141));
        // The sequential readers stop at the index: the same records, no damage.
        let mut n = 0;
        let mut reader = TraceReader::open(&path).unwrap();
        reader.for_each(|_| n += 1).unwrap();
        assert_eq!(n, 5001);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn an_index_that_lies_is_not_trusted_and_the_recording_is_read_whole() {
        type Lie = (&'static str, fn(&mut Trailer));
        let lies: [Lie; 5] = [
            ("an offset past the end", |t| t.chunks[3].offset = 1 << 40),
            ("a chunk's record count", |t| t.chunks[1].records += 1),
            // In an index that does not say what the events are, whose chunks are read at once.
            ("exits counted as others", |t| {
                (t.chunks[2].exits, t.chunks[2].others, t.chunks[2].shown) = (999, 2, None)
            }),
            ("a chunk left out", |t| {
                t.chunks.remove(1);
            }),
            ("states out of order", |t| t.states.swap(1, 2)),
        ];
        for (what, lie) in lies {
            let path = write_indexed("lies", &five_chunks(), lie);
            let (Indexed { mut index, how, .. }, consoles) = opened(&path);
            assert!(matches!(how, HowIndexed::Untrusted(_)), "{what}: {how:?}");
            assert!(how.note().unwrap().contains("not trusted"), "{what}");
            assert_eq!((index.len(), consoles), (5000, 1), "{what}: read whole, every exit and record once");
            assert_eq!(index.get(4321).map(|e| e.seq), Some(4321), "{what}");
            let _ = std::fs::remove_file(path);
        }
        // Exits said to be elsewhere in a chunk read only on demand: cut there, never served shifted.
        let path = write_indexed("lies-late", &five_chunks(), |t| {
            (t.chunks[3].first_seq, t.chunks[3].first_t_ns) = (3001, 30_010);
        });
        let (Indexed { mut index, how, .. }, _) = opened(&path);
        assert_eq!(how, HowIndexed::Trailer);
        assert_eq!(index.get(3500), None);
        assert!(index.changed);
        let _ = std::fs::remove_file(path);
        // Exits counted as others in a chunk whose events the index says: cut when it is read.
        let path = write_indexed("lies-count", &five_chunks(), |t| (t.chunks[2].exits, t.chunks[2].others) = (999, 2));
        let (Indexed { mut index, how, .. }, _) = opened(&path);
        assert_eq!(how, HowIndexed::Trailer);
        assert_eq!(index.get(2500).map(|e| e.seq), Some(2500));
        assert!(index.changed && index.len() <= 3000);
        let _ = std::fs::remove_file(path);
        // A damaged index (its checksum) and none at all.
        let path = write_indexed("damaged", &five_chunks(), |_| {});
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 30] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(opened(&path).0.how, HowIndexed::Untrusted(why) if why.contains("checksum")));
        std::fs::write(&path, &bytes[..n - 40]).unwrap();
        let (Indexed { index, how, .. }, _) = opened(&path);
        assert_eq!((how, index.len()), (HowIndexed::NoIndex, 5000));
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
        let Indexed { mut index, damage, events, .. } = ExitIndex::open(&path).unwrap();
        let consoles: u64 = events.iter().map(|(_, span)| span.console).sum();
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

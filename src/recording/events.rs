//! The events a replay shows besides exits — console output, stops, device events, call stacks,
//! the end — read from the recording as the cursor needs them, never held: each chunk that holds
//! some is known by an [`EventSpan`] (when its events are, how many of each kind), which says
//! whether a screen needs it; the chunks a screen needs are read again, a few kept.
//!
//! The spans come from the index the recording ends with (`trailer.rs`) or, without one, from
//! reading it whole. A chunk that does not read as its span says means the index lied (or the
//! file changed): the spans are then made again from every chunk, and that is said.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::format::StopRecord;
use super::{ReadError, Record, TraceReader};
use crate::trace::DeviceEvent;

/// Event records kept decoded, at most (the chunks most recently read).
const HELD: usize = 1 << 16;

/// What one chunk holds of the events a replay shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSpan {
    /// The earliest and latest time of its timed events (`t_min > t_max`: none has a time).
    pub t_min: u64,
    pub t_max: u64,
    /// Console bytes.
    pub console: u64,
    pub devices: u32,
    /// The vCPUs with a stop in it, a bit each (vCPU 63 and above share the last).
    pub stops: u64,
    /// Its call stacks, and the sequence numbers of their exits (first, last).
    pub stacks: u32,
    pub stack_seqs: (u64, u64),
    /// It holds the run's end.
    pub end: bool,
}

impl Default for EventSpan {
    fn default() -> Self {
        Self {
            t_min: u64::MAX,
            t_max: 0,
            console: 0,
            devices: 0,
            stops: 0,
            stacks: 0,
            stack_seqs: (u64::MAX, 0),
            end: false,
        }
    }
}

impl EventSpan {
    /// Notes one of the chunk's records (those that are no event leave it as it is).
    pub fn note(&mut self, r: &Record) {
        if !r.is_event() {
            return;
        }
        if let Some(t) = r.time() {
            (self.t_min, self.t_max) = (self.t_min.min(t), self.t_max.max(t));
        }
        match r {
            Record::Console { bytes, .. } => self.console += bytes.len() as u64,
            Record::Device(_) => self.devices += 1,
            Record::Stop(s) => self.stops |= stop_bit(s.vcpu),
            Record::Stack(s) => {
                self.stacks += 1;
                self.stack_seqs = (self.stack_seqs.0.min(s.seq), self.stack_seqs.1.max(s.seq));
            }
            Record::End { .. } => self.end = true,
            _ => {}
        }
    }

    /// The span of a chunk's records; `None` when none is an event.
    pub fn of(records: &[Record]) -> Option<Self> {
        let mut span = EventSpan::default();
        let mut any = false;
        for r in records.iter().filter(|r| r.is_event()) {
            span.note(r);
            any = true;
        }
        any.then_some(span)
    }

    /// Whether it may hold an event timed at or before `now`.
    fn before(&self, now: u64) -> bool {
        self.t_min <= now
    }

    /// Whether every timed event in it is at or before `now`.
    fn all_before(&self, now: u64) -> bool {
        self.t_max <= now
    }
}

fn stop_bit(vcpu: u32) -> u64 {
    1 << vcpu.min(63)
}

/// A recording's events, by chunk.
pub struct EventChunks {
    path: PathBuf,
    reader: TraceReader,
    /// The chunks that hold events: their offset and span, in file order.
    chunks: Vec<(u64, EventSpan)>,
    /// Decoded events of recently read chunks (by position in `chunks`), newest first.
    cache: VecDeque<(usize, Arc<Vec<Record>>)>,
    /// Why the spans were made again from every chunk, if they were.
    pub untrusted: Option<String>,
    /// Times the spans were made again (a query under way when it happens starts over).
    remade: u32,
}

impl EventChunks {
    /// The events of the recording at `path`, whose chunks at these offsets hold these spans.
    pub fn open(path: &Path, chunks: Vec<(u64, EventSpan)>) -> Result<Self, ReadError> {
        let reader = TraceReader::open(path)?;
        Ok(Self { path: path.to_path_buf(), reader, chunks, cache: VecDeque::new(), untrusted: None, remade: 0 })
    }

    /// Chunk `k`'s events, read again unless recently read; `None` when the chunk did not hold
    /// what its span says, and the spans were made again (the query starts over).
    fn events_of(&mut self, k: usize) -> Option<Arc<Vec<Record>>> {
        if let Some(hit) = self.cache.iter().position(|(c, _)| *c == k).and_then(|at| self.cache.remove(at)) {
            self.cache.push_front(hit.clone());
            return Some(hit.1);
        }
        let (offset, said) = self.chunks[k];
        let events: Vec<Record> =
            self.reader.chunk_at(offset).unwrap_or_default().into_iter().filter(Record::is_event).collect();
        if EventSpan::of(&events) != Some(said) && self.untrusted.is_none() {
            let why = format!("the chunk at offset {offset} does not hold the events the recording's index says");
            self.remake(why);
            return None;
        }
        let events = Arc::new(events);
        self.cache.push_front((k, events.clone()));
        let mut held = 0;
        let keep = self.cache.iter().take_while(|(_, e)| {
            held += e.len();
            held <= HELD
        });
        let keep = keep.count().max(1);
        self.cache.truncate(keep);
        Some(events)
    }

    /// Finds the events by reading every chunk from now on, for this reason (a chunk read for
    /// its exits did not hold the events the index says), unless that is done already.
    pub fn distrust(&mut self, why: String) {
        if self.untrusted.is_none() {
            self.remake(why);
        }
    }

    /// Makes the spans again from every chunk, as read (up to any damage).
    fn remake(&mut self, why: String) {
        self.untrusted = Some(why);
        self.remade += 1;
        self.cache.clear();
        self.chunks.clear();
        let Ok(mut reader) = TraceReader::open(&self.path) else { return };
        while let Ok(Some((offset, records))) = reader.next_chunk() {
            self.chunks.extend(EventSpan::of(&records).map(|span| (offset, span)));
        }
    }

    /// Runs `query` until it is not interrupted by the spans being made again.
    fn settled<T>(&mut self, mut query: impl FnMut(&mut Self) -> T) -> T {
        loop {
            let before = self.remade;
            let out = query(self);
            if self.remade == before {
                return out;
            }
        }
    }

    /// The events timed at or before `now` of the chunks `wanted` picks, newest first (in file
    /// order, backwards), while `each` says to go on.
    fn back(&mut self, now: u64, wanted: impl Fn(&EventSpan) -> bool, mut each: impl FnMut(&Record) -> bool) {
        for k in (0..self.chunks.len()).rev() {
            let span = self.chunks[k].1;
            if !span.before(now) || !wanted(&span) {
                continue;
            }
            let Some(events) = self.events_of(k) else { return };
            for r in events.iter().rev().filter(|r| r.time().is_some_and(|t| t <= now)) {
                if !each(r) {
                    return;
                }
            }
        }
    }

    /// How many of something there are at or before `now`: `in_span` of the chunks wholly before
    /// it, `in_record` of the records of those partly before it.
    fn count(&mut self, now: u64, in_span: impl Fn(&EventSpan) -> u64, in_record: impl Fn(&Record) -> u64) -> u64 {
        let mut n = 0;
        for k in 0..self.chunks.len() {
            let span = self.chunks[k].1;
            if span.all_before(now) {
                n += in_span(&span);
            } else if span.before(now) && in_span(&span) > 0 {
                let Some(events) = self.events_of(k) else { return n };
                n += events.iter().filter(|r| r.time().is_some_and(|t| t <= now)).map(&in_record).sum::<u64>();
            }
        }
        n
    }

    /// The console output up to `now`: its last `keep` bytes (at least), and how many bytes in all.
    pub fn console(&mut self, now: u64, keep: usize) -> (Vec<u8>, u64) {
        self.settled(|me| {
            let mut pieces: Vec<Vec<u8>> = Vec::new();
            let mut held = 0;
            me.back(
                now,
                |s| s.console > 0,
                |r| {
                    if let Record::Console { bytes, .. } = r {
                        held += bytes.len();
                        pieces.push(bytes.clone());
                    }
                    held < keep
                },
            );
            let tail: Vec<u8> = pieces.into_iter().rev().flatten().collect();
            let total = me.count(
                now,
                |s| s.console,
                |r| if let Record::Console { bytes, .. } = r { bytes.len() as u64 } else { 0 },
            );
            (tail, total)
        })
    }

    /// vCPU `vcpu`'s last stop at or before `now`.
    pub fn last_stop(&mut self, now: u64, vcpu: u32) -> Option<StopRecord> {
        self.settled(|me| {
            let mut found = None;
            me.back(
                now,
                |s| s.stops & stop_bit(vcpu) != 0,
                |r| {
                    if let Record::Stop(s) = r
                        && s.vcpu == vcpu
                    {
                        found = Some(s.clone());
                    }
                    found.is_none()
                },
            );
            found
        })
    }

    /// The last `keep` device events at or before `now`, in order, and how many there are in all.
    pub fn devices(&mut self, now: u64, keep: usize) -> (Vec<DeviceEvent>, u64) {
        self.settled(|me| {
            let mut last = Vec::new();
            if keep > 0 {
                me.back(
                    now,
                    |s| s.devices > 0,
                    |r| {
                        if let Record::Device(d) = r {
                            last.push(d.clone());
                        }
                        last.len() < keep
                    },
                );
            }
            last.reverse();
            let total = me.count(now, |s| s.devices as u64, |r| matches!(r, Record::Device(_)) as u64);
            (last, total)
        })
    }

    /// Calls `each` for every device event timed after `after` (all, when `None`) and at or before
    /// `upto`, in file order.
    pub fn each_device(&mut self, after: Option<u64>, upto: u64, mut each: impl FnMut(&DeviceEvent)) {
        let in_window = |t: u64| after.is_none_or(|a| t > a) && t <= upto;
        // By offset, so that spans made again on the way go on after the last chunk given.
        let (mut done, mut from): (Option<u64>, usize) = (None, 0);
        while let Some(k) = self.chunks[from..].iter().position(|(offset, span)| {
            done.is_none_or(|d| *offset > d)
                && span.devices > 0
                && span.t_min <= upto
                && after.is_none_or(|a| span.t_max > a)
        }) {
            let k = from + k;
            let offset = self.chunks[k].0;
            let Some(events) = self.events_of(k) else {
                from = 0;
                continue;
            };
            (done, from) = (Some(offset), k + 1);
            for r in events.iter() {
                if let Record::Device(d) = r
                    && in_window(d.t_ns)
                {
                    each(d);
                }
            }
        }
    }

    /// The call stacks recorded for exits `first..=last` (by sequence number).
    pub fn stacks(&mut self, first: u64, last: u64) -> HashMap<u64, Vec<u64>> {
        self.settled(|me| {
            let mut stacks = HashMap::new();
            for k in 0..me.chunks.len() {
                let span = me.chunks[k].1;
                if span.stacks == 0 || span.stack_seqs.1 < first || span.stack_seqs.0 > last {
                    continue;
                }
                let Some(events) = me.events_of(k) else { return stacks };
                for r in events.iter() {
                    if let Record::Stack(s) = r
                        && (first..=last).contains(&s.seq)
                    {
                        stacks.insert(s.seq, s.frames.clone());
                    }
                }
            }
            stacks
        })
    }

    /// How the run ended, if the recording says: (status, name, detail).
    pub fn end(&mut self) -> Option<(i32, String, String)> {
        self.settled(|me| {
            let k = me.chunks.iter().rposition(|(_, s)| s.end)?;
            me.events_of(k)?.iter().rev().find_map(|r| match r {
                Record::End { status, name, detail, .. } => Some((*status, name.clone(), detail.clone())),
                _ => None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::index::{ExitIndex, HowIndexed};
    use crate::recording::test_files::{exit, write_chunks, write_indexed};
    use crate::trace::StackSample;
    use crate::trace::{DeviceEventKind, NotifyPath};

    fn console(t_ns: u64, text: &str) -> Record {
        Record::Console { t_ns, bytes: text.as_bytes().to_vec() }
    }

    fn stop(t_ns: u64, vcpu: u32) -> Record {
        let reason = format!("stop at {t_ns}");
        Record::Stop(StopRecord { t_ns, vcpu, reason, regs: [t_ns; 18], sys: [0; 6], cs_db: false, cs_l: true })
    }

    fn device(t_ns: u64) -> Record {
        let kind = DeviceEventKind::Notify { path: NotifyPath::Trapped, count: 1 };
        Record::Device(DeviceEvent { t_ns, device: "virtio-blk0".into(), queue: Some(0), kind })
    }

    fn stack(seq: u64) -> Record {
        Record::Stack(StackSample { seq, vcpu: 0, reason: "exit".into(), frames: vec![seq, seq + 1] })
    }

    /// 6 chunks of 500 exits (exit n at 10·n ns), events among them.
    fn chunks() -> Vec<Vec<Record>> {
        let mut chunks: Vec<Vec<Record>> = (0..6u64).map(|c| (c * 500..(c + 1) * 500).map(exit).collect()).collect();
        chunks[1].extend([console(5_000, "hello "), console(7_000, "there "), stop(7_500, 0)]);
        chunks[2].extend((0..5).map(|k| device(10_000 + 1000 * k)));
        chunks[3].extend([stop(16_000, 1), device(16_500), console(17_000, "world")]);
        chunks[3].extend((1500..1510).map(stack));
        chunks[4].extend([stop(21_000, 0), device(24_000)]);
        chunks[5].push(Record::End { t_ns: 29_990, status: 3, name: "debug-exit".into(), detail: "3".into() });
        chunks
    }

    /// What the queries answer, as found by going over every record.
    struct Truth(Vec<Record>);

    impl Truth {
        fn upto(&self, now: u64) -> impl Iterator<Item = &Record> {
            self.0.iter().filter(move |r| r.is_event() && r.time().is_some_and(|t| t <= now))
        }
        fn console(&self, now: u64) -> Vec<u8> {
            self.upto(now)
                .filter_map(|r| if let Record::Console { bytes, .. } = r { Some(bytes) } else { None })
                .flatten()
                .copied()
                .collect()
        }
        fn devices(&self, now: u64) -> Vec<DeviceEvent> {
            self.upto(now).filter_map(|r| if let Record::Device(d) = r { Some(d.clone()) } else { None }).collect()
        }
        fn stop(&self, now: u64, vcpu: u32) -> Option<StopRecord> {
            self.upto(now)
                .filter_map(|r| if let Record::Stop(s) = r { Some(s.clone()) } else { None })
                .filter(|s| s.vcpu == vcpu)
                .last()
        }
    }

    /// Every query at every moment, as the truth has it.
    fn answers_as_read_whole(events: &mut EventChunks, truth: &Truth, what: &str) {
        for now in (0..31_000).step_by(250) {
            let all = truth.console(now);
            let (tail, total) = events.console(now, 8);
            assert_eq!(total, all.len() as u64, "{what}: console bytes at {now}");
            assert!(tail.len() >= all.len().min(8) && all.ends_with(&tail), "{what}: console tail at {now}");
            let all = truth.devices(now);
            let (last, total) = events.devices(now, 2);
            assert_eq!(
                (total, &last[..]),
                (all.len() as u64, &all[all.len().saturating_sub(2)..]),
                "{what}: devices at {now}"
            );
            for vcpu in 0..2 {
                assert_eq!(events.last_stop(now, vcpu), truth.stop(now, vcpu), "{what}: vCPU {vcpu}'s stop at {now}");
            }
        }
        // Device events counted window by window, each once.
        let mut seen = Vec::new();
        let mut after = None;
        for upto in [9_999, 12_000, 12_000, 16_500, 40_000] {
            events.each_device(after, upto, |d| seen.push(d.t_ns));
            after = Some(upto);
        }
        let all: Vec<u64> = truth.devices(u64::MAX).iter().map(|d| d.t_ns).collect();
        assert_eq!(seen, all, "{what}: device events by windows");
        let stacks = events.stacks(1505, 2000);
        assert_eq!(stacks.len(), 5, "{what}");
        assert_eq!(stacks.get(&1507), Some(&vec![1507, 1508]), "{what}");
        assert!(events.stacks(0, 1499).is_empty(), "{what}");
        assert_eq!(events.end(), Some((3, "debug-exit".into(), "3".into())), "{what}");
    }

    fn opened(path: &Path) -> (EventChunks, HowIndexed) {
        let indexed = ExitIndex::open(path).unwrap();
        (EventChunks::open(path, indexed.events).unwrap(), indexed.how)
    }

    #[test]
    fn events_read_by_their_spans_are_those_read_whole() {
        let chunks = chunks();
        let truth = Truth(chunks.concat());
        let path = write_indexed("events", &chunks, |_| {});
        let (mut events, how) = opened(&path);
        assert_eq!((how, events.chunks.len()), (HowIndexed::Trailer, 5), "spans from the index, no chunk read");
        assert!(events.cache.is_empty());
        answers_as_read_whole(&mut events, &truth, "by the index");
        assert!(events.untrusted.is_none());
        assert!(events.cache.iter().map(|(_, e)| e.len()).sum::<usize>() <= HELD);
        let path = write_chunks("events-bare", &chunks);
        let (mut events, how) = opened(&path);
        assert_eq!(how, HowIndexed::NoIndex);
        answers_as_read_whole(&mut events, &truth, "read whole");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_chunk_that_is_not_what_the_index_says_has_every_chunk_read_again() {
        let chunks = chunks();
        let truth = Truth(chunks.concat());
        // More console output said to be in the second chunk than it holds, with a good checksum.
        let path = write_indexed("events-lie", &chunks, |t| t.chunks[1].shown.as_mut().unwrap().console += 10);
        let (mut events, how) = opened(&path);
        assert_eq!(how, HowIndexed::Trailer);
        answers_as_read_whole(&mut events, &truth, "a lying index");
        assert!(events.untrusted.as_deref().is_some_and(|why| why.contains("does not hold")), "{:?}", events.untrusted);
        // Device events in the third chunk said to be later: found again mid-count, each once.
        let path = write_indexed("events-lie2", &chunks, |t| t.chunks[2].shown.as_mut().unwrap().t_max += 1);
        let (mut events, _) = opened(&path);
        let mut seen = Vec::new();
        events.each_device(None, u64::MAX, |d| seen.push(d.t_ns));
        assert_eq!(seen, truth.devices(u64::MAX).iter().map(|d| d.t_ns).collect::<Vec<_>>());
        assert!(events.untrusted.is_some());
        let _ = std::fs::remove_file(path);
        // Events said to be in the first chunk, which holds none: once read, one chunk fewer.
        let path = write_indexed("events-lie3", &chunks, |t| {
            let c = &mut t.chunks[0];
            let span = EventSpan { t_min: 0, t_max: 100, console: 3, ..EventSpan::default() };
            (c.exits, c.others, c.events, c.shown) = (c.exits - 1, 1, 1, Some(span));
        });
        let (mut events, _) = opened(&path);
        answers_as_read_whole(&mut events, &truth, "events said to be where there are none");
        assert_eq!((events.chunks.len(), events.untrusted.is_some()), (5, true));
        let _ = std::fs::remove_file(path);
        // Events hidden: the index says the fourth chunk holds none. Found when its exits are read.
        let path = write_indexed("events-lie4", &chunks, |t| (t.chunks[3].events, t.chunks[3].shown) = (0, None));
        let mut indexed = ExitIndex::open(&path).unwrap();
        let mut events = EventChunks::open(&path, std::mem::take(&mut indexed.events)).unwrap();
        assert_eq!(indexed.index.get(1700).map(|e| e.seq), Some(1700));
        let why = indexed.index.events_disagree.take().expect("the chunk read does not hold what the index says");
        events.distrust(why);
        answers_as_read_whole(&mut events, &truth, "events the index hides");
        let _ = std::fs::remove_file(path);
    }
}

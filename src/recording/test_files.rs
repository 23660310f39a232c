//! Recordings made by hand for the readers' tests: chunks of records as given, with or without
//! the index a recording ends with.

use std::path::PathBuf;

use super::format::{encode_chunk, encode_header};
use super::trailer::{ChunkEntry, Trailer};
use super::{Record, TraceHeader};
use crate::trace::{Dir, ExitEvent, ExitKind};

/// A recording of these chunks.
pub fn write_chunks(name: &str, chunks: &[Vec<Record>]) -> PathBuf {
    let mut bytes = encode_header(&TraceHeader { vcpus: 1, ..Default::default() });
    chunks.iter().for_each(|records| bytes.extend(encode_chunk(records)));
    let path = std::env::temp_dir().join(format!("kvmscope-{name}-{}.trace", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A POST-code write numbered `seq`, at `10 × seq` ns.
pub fn exit(seq: u64) -> Record {
    let kind = ExitKind::Io { port: 0x80, dir: Dir::Out, size: 1, count: 1, data: seq };
    Record::Exit(ExitEvent { seq, vcpu: 0, t_ns: 10 * seq, rip: 0, kind, device: None, insn: None, cost_ns: 1 })
}

/// A recording of these chunks ending with its index, as `tamper` leaves it.
pub fn write_indexed(name: &str, chunks: &[Vec<Record>], tamper: impl Fn(&mut Trailer)) -> PathBuf {
    let mut bytes = encode_header(&TraceHeader { vcpus: 1, ..Default::default() });
    let mut trailer = Trailer::default();
    let mut explainer = crate::explain::Explainer::default();
    for records in chunks {
        trailer.states.push((trailer.chunks.iter().map(|c| c.exits as u64).sum(), explainer.state()));
        records.iter().for_each(|r| {
            if let Record::Exit(e) = r {
                explainer.explain(e);
            }
        });
        trailer.chunks.push(ChunkEntry::of(bytes.len() as u64, records));
        bytes.extend(encode_chunk(records));
    }
    tamper(&mut trailer);
    let at = bytes.len() as u64;
    bytes.extend(trailer.encode(at));
    let path = std::env::temp_dir().join(format!("kvmscope-{name}-{}.trace", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

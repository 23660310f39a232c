//! Reading a recording back: the header, then records chunk by chunk in bounded memory. A damaged or
//! truncated chunk ends the reading with an error that names the offset; everything before it has
//! been delivered.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

pub use super::format::parse_header;
use super::format::{
    CHUNK_HEADER, ChunkDecoder, ChunkFrame, FormatError, HEADER_FIXED, MAGIC, MAX_CHUNK, Record, TraceHeader,
    header_json_len,
};

/// Errors reading a recording; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("trace file {path}: cannot read it: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("trace file {path}: {error}")]
    Format { path: PathBuf, error: FormatError },
}

impl ReadError {
    /// Whether records before the damage were read (a truncated or corrupted file).
    pub fn is_damage(&self) -> bool {
        matches!(self, ReadError::Format { error: FormatError::Damaged { .. }, .. })
    }
}

/// An open recording.
pub struct TraceReader {
    path: PathBuf,
    file: BufReader<File>,
    pub header: TraceHeader,
    /// The format version of the file.
    pub version: u16,
    offset: u64,
    header_len: u64,
}

fn read_full(file: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

impl TraceReader {
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let io = |source| ReadError::Io { path: path.to_path_buf(), source };
        let format = |error| ReadError::Format { path: path.to_path_buf(), error };
        // A regular file: a FIFO with no writer, or a device, is refused at once, never waited on.
        let file = crate::files::open_regular(path, "recording").map_err(|e| match e {
            crate::files::FileError::Io { source, .. } => io(source),
            other => io(std::io::Error::other(other.to_string())),
        })?;
        let mut file = BufReader::new(file);
        let mut fixed = [0u8; HEADER_FIXED];
        let n = read_full(&mut file, &mut fixed).map_err(io)?;
        if n < MAGIC.len() || &fixed[..MAGIC.len()] != MAGIC {
            return Err(format(FormatError::NotATrace));
        }
        let len = header_json_len(&fixed).unwrap_or(0);
        let mut rest = vec![0u8; len.min(MAX_CHUNK) + 4];
        let m = read_full(&mut file, &mut rest).map_err(io)?;
        let mut all = fixed[..n].to_vec();
        all.extend_from_slice(&rest[..m]);
        let (header, used, version) = parse_header(&all).map_err(format)?;
        Ok(Self { path: path.to_path_buf(), file, header, version, offset: used as u64, header_len: used as u64 })
    }

    /// The index the recording ends with (see [`super::trailer`]): `Ok(None)` when it has none,
    /// `Err` saying why it is not trusted.
    pub fn trailer(&self) -> Result<Option<super::trailer::Trailer>, String> {
        let mut file = File::open(&self.path).map_err(|e| e.to_string())?;
        super::trailer::Trailer::read(&mut file, self.header_len)
    }

    /// Calls `each` for every record, in order. Stops at the first damaged chunk with an error
    /// naming its offset (what came before was delivered), or at a clean end of file.
    pub fn for_each(&mut self, mut each: impl FnMut(Record)) -> Result<(), ReadError> {
        self.for_each_while(|r| {
            each(r);
            true
        })
    }

    /// Like [`TraceReader::for_each`], stopping at the first record `each` answers false to (its
    /// output has gone: `export | head`).
    pub fn for_each_while(&mut self, mut each: impl FnMut(Record) -> bool) -> Result<(), ReadError> {
        while let Some((_, records)) = self.next_chunk()? {
            for r in records {
                if !each(r) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The next chunk's records and its offset in the file; `None` at a clean end of file.
    pub fn next_chunk(&mut self) -> Result<Option<(u64, Vec<Record>)>, ReadError> {
        let at = self.offset;
        match self.read_chunk()? {
            Some((len, records)) => {
                self.offset = at + (CHUNK_HEADER + len) as u64;
                Ok(Some((at, records)))
            }
            None => Ok(None),
        }
    }

    /// The records of the chunk at `offset` (one [`TraceReader::next_chunk`] gave), read again.
    pub fn chunk_at(&mut self, offset: u64) -> Result<Vec<Record>, ReadError> {
        use std::io::Seek;
        self.file
            .seek(std::io::SeekFrom::Start(offset))
            .map_err(|source| ReadError::Io { path: self.path.clone(), source })?;
        self.offset = offset;
        let records = self.read_chunk()?.map(|(_, r)| r);
        records.ok_or_else(|| self.damaged(offset, "no chunk there".into()))
    }

    fn damaged(&self, offset: u64, what: String) -> ReadError {
        ReadError::Format { path: self.path.clone(), error: FormatError::Damaged { offset, what } }
    }

    /// Reads and checks the chunk at the file's position: its payload length and records.
    fn read_chunk(&mut self) -> Result<Option<(usize, Vec<Record>)>, ReadError> {
        let at = self.offset;
        let mut head = [0u8; CHUNK_HEADER];
        let n =
            read_full(&mut self.file, &mut head).map_err(|source| ReadError::Io { path: self.path.clone(), source })?;
        if n == 0 {
            return Ok(None);
        }
        if n < CHUNK_HEADER {
            return Err(self.damaged(at, format!("the file ends inside a chunk header ({n} of {CHUNK_HEADER} bytes)")));
        }
        // The index a finished recording ends with: the chunks are over.
        if &head[..4] == super::trailer::INDEX_MAGIC {
            return Ok(None);
        }
        let frame = ChunkFrame::parse(&head).map_err(|what| self.damaged(at, what.to_string()))?;
        let (len, count) = (frame.len, frame.records);
        let mut payload = vec![0u8; len];
        let m = read_full(&mut self.file, &mut payload)
            .map_err(|source| ReadError::Io { path: self.path.clone(), source })?;
        if m < len {
            return Err(self.damaged(at, format!("the file ends inside a chunk ({m} of {len} bytes)")));
        }
        if !frame.checks(&payload, self.version) {
            return Err(self.damaged(at, "the chunk's checksum does not match".into()));
        }
        let mut records = Vec::with_capacity(count as usize);
        let mut dec = ChunkDecoder::new(&payload);
        loop {
            match dec.next_record() {
                Ok(Some(r)) => records.push(r),
                Ok(None) => break,
                Err(what) => return Err(self.damaged(at, what.to_string())),
            }
        }
        if records.len() != count as usize {
            return Err(self.damaged(at, format!("the chunk holds {} records, its header says {count}", records.len())));
        }
        Ok(Some((len, records)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::format::{ChunkEncoder, encode_header};
    use crate::trace::{Dir, ExitEvent, ExitKind};

    fn header() -> TraceHeader {
        TraceHeader {
            kvmscope_version: "test".into(),
            host_kernel: String::new(),
            kvm_caps: Vec::new(),
            guest_image: "g".into(),
            guest_sha256: String::new(),
            command_line: Vec::new(),
            start_unix_secs: 0,
            vcpus: 1,
            host_name: String::new(),
            replayable: false,
        }
    }

    fn exit(seq: u64) -> Record {
        let kind = ExitKind::Io { port: 0x80, dir: Dir::Out, size: 1, count: 1, data: seq };
        Record::Exit(ExitEvent { seq, vcpu: 0, t_ns: seq, rip: 0, kind, device: None, insn: None, cost_ns: 1 })
    }

    /// A trace file of `version` with one chunk of three exits, its frame as `frame` makes it.
    fn trace(name: &str, version: u16, frame: impl Fn(&[u8], u32) -> [u8; CHUNK_HEADER]) -> PathBuf {
        let mut bytes = encode_header(&header());
        bytes[16..18].copy_from_slice(&version.to_le_bytes());
        let mut enc = ChunkEncoder::default();
        (0..3).for_each(|i| enc.push(&exit(i)));
        bytes.extend_from_slice(&frame(&enc.payload, enc.records));
        bytes.extend_from_slice(&enc.payload);
        let path = std::env::temp_dir().join(format!("kvmscope-reader-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn read(path: &Path) -> (usize, Result<(), ReadError>) {
        let mut reader = TraceReader::open(path).unwrap();
        let mut n = 0;
        let end = reader.for_each(|_| n += 1);
        (n, end)
    }

    #[test]
    fn version_1_traces_still_read() {
        let v1 = trace("v1", 1, |payload, records| {
            ChunkFrame { len: payload.len(), records, crc: crc32fast::hash(payload) }.encode()
        });
        let (n, end) = read(&v1);
        assert_eq!((n, end.is_ok()), (3, true));
    }

    #[test]
    fn the_chunk_checksum_covers_its_record_count() {
        let good = trace("v2", 2, |payload, records| ChunkFrame::of(payload, records).encode());
        assert_eq!(read(&good).0, 3);
        // The count changed but not the payload: damage, not three records.
        let bad = trace("v2-count", 2, |payload, records| {
            ChunkFrame { records: records - 1, ..ChunkFrame::of(payload, records) }.encode()
        });
        let (n, end) = read(&bad);
        assert_eq!(n, 0);
        assert!(end.is_err_and(|e| e.is_damage() && e.to_string().contains("checksum")));
    }

    #[test]
    fn an_impossible_record_count_is_damage_not_an_allocation() {
        let huge = trace("huge-count", 2, |payload, _| {
            ChunkFrame { records: u32::MAX, ..ChunkFrame::of(payload, u32::MAX) }.encode()
        });
        let (n, end) = read(&huge);
        assert_eq!(n, 0);
        let e = end.unwrap_err();
        assert!(e.is_damage() && e.to_string().contains("claims 4294967295 records"), "{e}");
    }
}

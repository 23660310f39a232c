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
    offset: u64,
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
        let mut file = BufReader::new(File::open(path).map_err(io)?);
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
        let (header, used) = parse_header(&all).map_err(format)?;
        Ok(Self { path: path.to_path_buf(), file, header, offset: used as u64 })
    }

    /// Calls `each` for every record, in order. Stops at the first damaged chunk with an error
    /// naming its offset (what came before was delivered), or at a clean end of file.
    pub fn for_each(&mut self, mut each: impl FnMut(Record)) -> Result<(), ReadError> {
        let path = self.path.clone();
        let damaged = |offset: u64, what: String| ReadError::Format {
            path: path.clone(),
            error: FormatError::Damaged { offset, what },
        };
        let mut head = [0u8; CHUNK_HEADER];
        loop {
            let at = self.offset;
            let n = read_full(&mut self.file, &mut head)
                .map_err(|source| ReadError::Io { path: self.path.clone(), source })?;
            if n == 0 {
                return Ok(());
            }
            if n < CHUNK_HEADER {
                return Err(damaged(at, format!("the file ends inside a chunk header ({n} of {CHUNK_HEADER} bytes)")));
            }
            let frame = ChunkFrame::parse(&head).map_err(|what| damaged(at, what))?;
            let (len, count) = (frame.len, frame.records);
            let mut payload = vec![0u8; len];
            let m = read_full(&mut self.file, &mut payload)
                .map_err(|source| ReadError::Io { path: self.path.clone(), source })?;
            if m < len {
                return Err(damaged(at, format!("the file ends inside a chunk ({m} of {len} bytes)")));
            }
            if !frame.checks(&payload) {
                return Err(damaged(at, "the chunk's checksum does not match".into()));
            }
            let mut records = Vec::with_capacity(count as usize);
            let mut dec = ChunkDecoder::new(&payload);
            loop {
                match dec.next_record() {
                    Ok(Some(r)) => records.push(r),
                    Ok(None) => break,
                    Err(what) => return Err(damaged(at, what.to_string())),
                }
            }
            if records.len() != count as usize {
                return Err(damaged(at, format!("the chunk holds {} records, its header says {count}", records.len())));
            }
            records.into_iter().for_each(&mut each);
            self.offset = at + (CHUNK_HEADER + len) as u64;
        }
    }
}

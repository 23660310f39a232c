//! Working with recordings after the run: statistics and exports.

pub mod diff;
pub mod export;
pub mod folded;
pub mod guest_image;
pub mod parallel;
pub mod parquet;
pub mod profile;
pub mod rows;
pub mod stats;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::recording::{ReadError, Record, TraceReader};

/// Why `stats` or `export` could not do their work.
#[derive(Debug, Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("cannot create {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot write the output: {0}")]
    Write(std::io::Error),
    /// A file named for the output (or an input) cannot be used as one.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    /// The guest's symbols could not be had.
    #[error(transparent)]
    Symbols(#[from] guest_image::GuestImageError),
    #[error(transparent)]
    Selection(#[from] stats::SelectionError),
    #[error("{}: no call stacks recorded (record with `run --record FILE --stacks`)", .0.display())]
    NoStacks(PathBuf),
    /// The report was printed, but what was asked for holds no exit.
    #[error("{0}")]
    NothingSelected(String),
    /// Arguments that do not make a request.
    #[error("{0}")]
    Usage(String),
}

impl AnalysisError {
    /// kvmscope's exit status: 2 for input it cannot use, 1 when writing failed or nothing was
    /// selected.
    pub fn status(&self) -> u8 {
        match self {
            AnalysisError::Read(_)
            | AnalysisError::Create { .. }
            | AnalysisError::File(_)
            | AnalysisError::Symbols(_)
            | AnalysisError::Selection(_)
            | AnalysisError::NoStacks(_)
            | AnalysisError::Usage(_) => 2,
            AnalysisError::Write(_) | AnalysisError::NothingSelected(_) => 1,
        }
    }
}

/// Writes a command's output to stdout (a failed write is [`AnalysisError::Write`]).
pub fn emit(text: &str) -> Result<(), AnalysisError> {
    crate::out::stdout(text).map_err(AnalysisError::Write)
}

/// A recording read to its end, or to its first damage.
pub struct Recording {
    pub reader: TraceReader,
    /// Where the file is damaged (what comes before it was delivered).
    pub damage: Option<ReadError>,
}

/// Reads every record of a recording into `each`. A damaged file gives what is intact and says
/// where the damage is; a file that cannot be read at all is an error.
pub fn read_all(path: &Path, mut each: impl FnMut(Record)) -> Result<Recording, ReadError> {
    read_while(path, |r| {
        each(r);
        true
    })
}

/// Like [`read_all`], stopping where `each` says to (its output has gone).
pub fn read_while(path: &Path, each: impl FnMut(Record) -> bool) -> Result<Recording, ReadError> {
    let mut reader = TraceReader::open(path)?;
    match reader.for_each_while(each) {
        Ok(()) => Ok(Recording { reader, damage: None }),
        Err(e @ ReadError::Format { .. }) => Ok(Recording { reader, damage: Some(e) }),
        Err(e) => Err(e),
    }
}

/// Like [`read_all`], with the damage (if any) as a warning on stderr.
pub fn read_all_warning(path: &Path, each: impl FnMut(Record)) -> Result<TraceReader, ReadError> {
    let recording = read_all(path, each)?;
    if let Some(e) = &recording.damage {
        crate::say!("kvmscope: warning: {e}; what comes before it is used");
    }
    Ok(recording.reader)
}

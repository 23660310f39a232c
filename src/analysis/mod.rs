//! Working with recordings after the run: statistics and exports.

pub mod export;
pub mod stats;

use std::path::Path;

use crate::recording::{ReadError, Record, TraceReader};

/// Reads every record of a recording into `each`. A damaged file gives what is intact and a warning
/// naming the file and offset on stderr; a file that cannot be read at all is an error (status 2).
pub fn read_all(path: &Path, each: impl FnMut(Record)) -> Result<TraceReader, i32> {
    let mut reader = match TraceReader::open(path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kvmscope: {e}");
            return Err(2);
        }
    };
    match reader.for_each(each) {
        Ok(()) => Ok(reader),
        Err(e @ ReadError::Format { .. }) => {
            eprintln!("kvmscope: warning: {e}; what comes before it is used");
            Ok(reader)
        }
        Err(e) => {
            eprintln!("kvmscope: {e}");
            Err(2)
        }
    }
}

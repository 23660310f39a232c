//! Exit traces on disk: the format, the recorder that writes them during a run, and the reader.

pub mod events;
pub mod format;
pub mod header;
pub mod index;
pub mod reader;
pub mod replayable;
#[cfg(test)]
pub mod test_files;
pub mod trailer;
pub mod writer;

pub use format::{Record, TraceHeader};
pub use reader::{ReadError, TraceReader};
pub use writer::{Recorder, RecordingConsole};

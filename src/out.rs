//! Writing results to stdout and stderr without panicking: a full disk or a closed terminal is an
//! error to report, and a closed pipe means the reader went away (as `head` does) — never a panic.

use std::io::{self, Write};

/// Writes `text` to stdout and flushes it.
pub fn stdout(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Writes `text` to stderr.
pub fn stderr(text: &str) -> io::Result<()> {
    io::stderr().lock().write_all(text.as_bytes())
}

/// Whether `e` says the reader of a pipe went away: no error for a command whose output was
/// wanted only in part.
pub fn is_closed_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// Writes a line to stderr, ignoring a failure: for messages about the run, where there is
/// nowhere else to say that stderr failed.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = $crate::out::stderr(&format!("{}\n", format_args!($($arg)*)));
    }};
}

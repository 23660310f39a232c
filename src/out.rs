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

/// `text` safe for a terminal: every control character but newline and tab written as its escape
/// (`\u{1b}`), so that text from a file (a recording, a guest) cannot drive the terminal.
pub fn printable(text: &str) -> String {
    if !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return text.to_string();
    }
    text.chars()
        .map(|c| if c.is_control() && c != '\n' && c != '\t' { c.escape_unicode().to_string() } else { c.to_string() })
        .collect()
}

/// A guest's console text for a pane: its terminal escape sequences (colours, cursor moves: ESC
/// `[` ... a letter) left out, other control characters as escapes, carriage returns dropped.
pub fn console_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' if chars.peek() == Some(&'[') => {
                chars.next();
                // Parameters and intermediates, up to the final byte (@ to ~).
                for f in chars.by_ref() {
                    if ('@'..='~').contains(&f) {
                        break;
                    }
                }
            }
            '\r' => {}
            c if c.is_control() && c != '\n' && c != '\t' => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out
}

/// Writes a line to stderr, ignoring a failure: for messages about the run, where there is
/// nowhere else to say that stderr failed.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = $crate::out::stderr(&format!("{}\n", format_args!($($arg)*)));
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_do_not_reach_the_terminal() {
        assert_eq!(printable("ok\tline\n"), "ok\tline\n");
        assert_eq!(printable("a\u{1b}[2Jb\u{7}"), "a\\u{1b}[2Jb\\u{7}");
        assert_eq!(console_text("\u{1b}[1;31mred\u{1b}[0m\r\nnext\u{8}"), "red\nnext\\u{8}");
    }
}

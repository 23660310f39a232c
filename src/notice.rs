//! One-line notices for the user while a run goes on (gdb attached, a feature that could not
//! start): on stderr, or — while the TUI owns the terminal — kept for its status line, so that
//! nothing is written over the TUI's frame.

use std::sync::Mutex;

use crate::sync::lock;

/// The notices waiting for the TUI, while it owns the terminal.
static HELD: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// Tells the user `line`: on stderr, or to the TUI while it owns the terminal.
pub fn say(line: impl Into<String>) {
    let line = line.into();
    match lock(&HELD).as_mut() {
        Some(held) => held.push(line),
        None => crate::say!("kvmscope: {line}"),
    }
}

/// Holds notices for the TUI from now until [`release`].
pub fn hold() {
    lock(&HELD).get_or_insert_with(Vec::new);
}

/// The notices held since the last call.
pub fn take() -> Vec<String> {
    lock(&HELD).as_mut().map(std::mem::take).unwrap_or_default()
}

/// Stops holding notices; returns those not yet taken (to print once the terminal is back).
pub fn release() -> Vec<String> {
    lock(&HELD).take().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_notices_wait_for_the_tui() {
        hold();
        say("gdb attached");
        say("second");
        assert_eq!(take(), vec!["gdb attached".to_string(), "second".to_string()]);
        say("third");
        assert_eq!(release(), vec!["third".to_string()]);
        assert!(take().is_empty());
    }
}

//! The guest console as the UI sees it: the serial port writes into a bounded buffer that keeps the
//! most recent output; views read it without stopping the guest.

use crate::sync::lock;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Output kept: the most recent this many bytes.
const KEEP: usize = 256 * 1024;

/// A shared, bounded buffer of console output.
#[derive(Clone, Default)]
pub struct ConsoleBuffer {
    inner: Arc<Mutex<Vec<u8>>>,
}

impl ConsoleBuffer {
    /// The kept output, as text.
    pub fn text(&self) -> String {
        let bytes = lock(&self.inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Bytes kept.
    pub fn len(&self) -> usize {
        lock(&self.inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Write for ConsoleBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut bytes = lock(&self.inner);
        bytes.extend_from_slice(buf);
        if bytes.len() > KEEP {
            let cut = bytes.len() - KEEP / 2;
            bytes.drain(..cut);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_tail() {
        let mut c = ConsoleBuffer::default();
        c.write_all(b"hello\n").unwrap();
        assert_eq!(c.text(), "hello\n");
        c.write_all(&vec![b'x'; KEEP]).unwrap();
        assert!(c.len() <= KEEP && c.text().ends_with('x'));
    }
}

/// One writer several devices write to (the serial port and the debug console ports share the
/// guest's console), each through its own clone.
#[derive(Clone)]
pub struct SharedWriter(Arc<Mutex<Box<dyn Write + Send>>>);

impl SharedWriter {
    pub fn new(inner: Box<dyn Write + Send>) -> Self {
        Self(Arc::new(Mutex::new(inner)))
    }
}

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::sync::lock(&self.0).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        crate::sync::lock(&self.0).flush()
    }
}

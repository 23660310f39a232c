//! The guest console as the UI sees it: the serial port writes into a bounded buffer that keeps the
//! most recent output; views read it without stopping the guest.

use crate::sync::lock;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Output kept: the most recent this many bytes.
pub const KEEP: usize = 256 * 1024;

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

/// One writer several devices write to (the serial port, the debug console ports and the virtio
/// console share the guest's console), each through a [`SourceWriter`] of its own that counts its
/// bytes, so a view can say which devices the console's text came from.
#[derive(Clone)]
pub struct SharedWriter {
    inner: Arc<Mutex<Box<dyn Write + Send>>>,
    sources: Arc<Mutex<Vec<(&'static str, u64)>>>,
    /// While set, output is dropped: the guest is going over its past again (time travel), and
    /// what it writes was written the first time.
    pub muted: Arc<std::sync::atomic::AtomicBool>,
}

impl SharedWriter {
    pub fn new(inner: Box<dyn Write + Send>) -> Self {
        Self { inner: Arc::new(Mutex::new(inner)), sources: Arc::default(), muted: Arc::default() }
    }

    /// A writer for the device `name`.
    pub fn source(&self, name: &'static str) -> SourceWriter {
        let mut sources = lock(&self.sources);
        let index = sources.iter().position(|(n, _)| *n == name).unwrap_or_else(|| {
            sources.push((name, 0));
            sources.len() - 1
        });
        SourceWriter { shared: self.clone(), index }
    }

    /// Each device that can write here, with the bytes it has written.
    pub fn sources(&self) -> Vec<(&'static str, u64)> {
        lock(&self.sources).clone()
    }
}

/// One device's way into a [`SharedWriter`].
pub struct SourceWriter {
    shared: SharedWriter,
    index: usize,
}

impl Write for SourceWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.shared.muted.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(buf.len());
        }
        let n = lock(&self.shared.inner).write(buf)?;
        lock(&self.shared.sources)[self.index].1 += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        lock(&self.shared.inner).flush()
    }
}

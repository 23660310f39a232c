//! The debug console ports: QEMU's `-debugcon` (0x402) and Bochs's "port E9 hack" (0xe9), where
//! SeaBIOS, many hobby kernels and test suites write their logs a byte at a time. Bytes written go to
//! the guest's console (or `--debugcon FILE`); a read answers 0xe9 on either port, as QEMU's
//! debugcon does wherever it sits (its readback value), so a guest can tell the port is there:
//! SeaBIOS reads 0x402 and turns its log off unless it gets 0xe9.

use std::io::Write;

use crate::vmm::bus::{BusDevice, VmRequest};

/// QEMU's debugcon port.
pub const QEMU_PORT: u16 = 0x402;
/// Bochs's port E9.
pub const BOCHS_PORT: u16 = 0xe9;

/// What a read of a debug console port gives (QEMU's `readback` default, Bochs's port E9).
const READBACK: u8 = 0xe9;

/// One debug console port, writing to `out`.
pub struct DebugCon {
    out: Box<dyn Write + Send>,
}

impl DebugCon {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self { out }
    }
}

impl BusDevice for DebugCon {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(READBACK);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Option<VmRequest> {
        // The low byte of each access, as the devices do.
        if let Some(&b) = data.first() {
            let _ = self.out.write_all(&[b]);
            let _ = self.out.flush();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_written_reach_the_console_and_either_port_reads_0xe9() {
        let sink = Sink::default();
        let mut e9 = DebugCon::new(Box::new(sink.clone()));
        e9.write(0, b"h");
        e9.write(0, &[b'i', 0x12]);
        assert_eq!(*sink.0.lock().unwrap(), b"hi");
        let mut d = [0u8];
        e9.read(0, &mut d);
        assert_eq!(d, [0xe9]);
        DebugCon::new(Box::new(sink)).read(0, &mut d);
        assert_eq!(d, [0xe9], "SeaBIOS's qemu_debug_preinit wants 0xe9 from 0x402");
    }
}

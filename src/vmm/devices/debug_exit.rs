//! QEMU's isa-debug-exit: a guest write of `v` ends the run with status `(v << 1) | 1` (the process
//! status is its low 8 bits, as QEMU's is).

use crate::vmm::bus::{BusDevice, VmRequest};

/// Default port and width, as `-device isa-debug-exit,iobase=0xf4,iosize=4`.
pub const PORT: u16 = 0xf4;
pub const SIZE: u64 = 4;

/// The debug-exit port.
#[derive(Debug, Default)]
pub struct DebugExit;

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Option<VmRequest> {
        let mut v = [0u8; 4];
        let n = data.len().min(4);
        v[..n].copy_from_slice(&data[..n]);
        Some(VmRequest::Exit(u32::from_le_bytes(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_written_ends_the_run() {
        assert_eq!(DebugExit.write(0, &[1]), Some(VmRequest::Exit(1)));
        assert_eq!(DebugExit.write(0, &0x21u16.to_le_bytes()), Some(VmRequest::Exit(0x21)));
        assert_eq!(DebugExit.write(0, &u32::MAX.to_le_bytes()), Some(VmRequest::Exit(u32::MAX)));
    }
}

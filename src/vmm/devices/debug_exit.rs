//! QEMU's isa-debug-exit: a guest write of `v` ends the run with status `(v << 1) | 1`.

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
        let value = u32::from_le_bytes(v);
        Some(VmRequest::Exit(((value << 1) | 1) as i32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_value_shifted_with_low_bit() {
        assert_eq!(DebugExit.write(0, &[1]), Some(VmRequest::Exit(3)));
        assert_eq!(DebugExit.write(0, &[0]), Some(VmRequest::Exit(1)));
        assert_eq!(DebugExit.write(0, &0x21u16.to_le_bytes()), Some(VmRequest::Exit(0x43)));
    }
}

//! Just enough of the i8042 keyboard controller for Linux: the status port reads as idle, and the
//! reset command (0xFE written to port 0x64, what `reboot=k` does) ends the run, as Firecracker does.

use crate::vmm::bus::{BusDevice, VmRequest};

/// Data port 0x60 .. command/status port 0x64.
pub const PORT: u16 = 0x60;
pub const SIZE: u64 = 5;
const CMD_RESET_CPU: u8 = 0xfe;

#[derive(Debug, Default)]
pub struct I8042;

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        (offset == 4 && data.first() == Some(&CMD_RESET_CPU)).then_some(VmRequest::Reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_ends_the_run() {
        assert_eq!(I8042.write(4, &[0xfe]), Some(VmRequest::Reset));
        assert_eq!(I8042.write(4, &[0xd1]), None);
        assert_eq!(I8042.write(0, &[0xfe]), None);
    }
}

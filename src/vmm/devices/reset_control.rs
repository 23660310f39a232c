//! Port 0xcf9, the chipset's Reset Control register (PIIX3 and ICH alike, and QEMU's): a byte write
//! with bit 2 (reset CPU) set resets the machine, which ends the run as a guest reset. Firmware
//! (SeaBIOS) resets this way; before, the write went nowhere and the guest fell into a triple fault.

use crate::vmm::bus::{BusDevice, VmRequest};

pub const PORT: u16 = 0xcf9;
const RESET_CPU: u8 = 1 << 2;

/// The register's last value (bit 1, "system reset" = hard, is kept: it only says which reset).
#[derive(Debug, Default)]
pub struct ResetControl {
    value: u8,
}

impl BusDevice for ResetControl {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.value);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Option<VmRequest> {
        let &v = data.first()?;
        self.value = v & !RESET_CPU;
        (v & RESET_CPU != 0).then_some(VmRequest::Reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_reset_cpu_resets() {
        let mut r = ResetControl::default();
        assert_eq!(r.write(0, &[0x02]), None, "the kind of reset, first");
        let mut b = [0];
        r.read(0, &mut b);
        assert_eq!(b, [0x02]);
        assert_eq!(r.write(0, &[0x06]), Some(VmRequest::Reset));
    }
}

//! Port 0x92, the PC's "System Control Port A" (the fast A20 gate): it reads as A20 on, and a write
//! with bit 0 set is the fast reset, which ends the run. Firmware reads it, changes the A20 bit and
//! writes it back; read as an unclaimed port (all ones) it would hand back the reset bit set.

use crate::vmm::bus::{BusDevice, VmRequest};

pub const PORT: u16 = 0x92;
const A20: u8 = 1 << 1;
const FAST_RESET: u8 = 1 << 0;

/// The port's A20 bit as last written (KVM has no A20 mask: memory is always seen unmasked).
#[derive(Debug)]
pub struct Port92 {
    value: u8,
}

impl Default for Port92 {
    fn default() -> Self {
        Port92 { value: A20 }
    }
}

impl BusDevice for Port92 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.value);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Option<VmRequest> {
        let &v = data.first()?;
        self.value = v & A20;
        (v & FAST_RESET != 0).then_some(VmRequest::Reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a20_reads_back_and_bit_0_resets() {
        let mut p = Port92::default();
        let mut b = [0];
        p.read(0, &mut b);
        assert_eq!(b, [A20], "A20 on, no reset pending");
        assert_eq!(p.write(0, &[0x00]), None);
        p.read(0, &mut b);
        assert_eq!(b, [0]);
        assert_eq!(p.write(0, &[A20 | FAST_RESET]), Some(VmRequest::Reset));
    }
}

//! The PC's two reset ports, one mechanism: a byte register that keeps some bits, reads them back,
//! and resets the machine (the run ends as a guest reset) when a write sets its reset bit.
//! - Port 0x92, "System Control Port A" (the fast A20 gate): reads as A20 on; bit 0 is the fast
//!   reset. Firmware reads it, changes the A20 bit and writes it back; read as an unclaimed port
//!   (all ones) it would hand back the reset bit set. The A20 bit is kept but not applied (KVM has
//!   no A20 mask: memory is always seen unmasked).
//! - Port 0xcf9, the chipset's Reset Control register (PIIX3 and ICH alike, and QEMU's): bit 2
//!   (reset CPU) resets; bit 1 ("system reset" = hard) only says which reset, and is kept. SeaBIOS
//!   resets this way; without it the write went nowhere and the guest fell into a triple fault.

use crate::vmm::bus::{BusDevice, StateError, VmRequest};

pub const PORT92: u16 = 0x92;
pub const RESET_CONTROL: u16 = 0xcf9;
/// Port 0x92's A20 gate bit.
const A20: u8 = 1 << 1;

/// A reset register: its value, the bits it keeps, the bit that resets.
#[derive(Debug)]
pub struct ResetRegister {
    value: u8,
    keeps: u8,
    reset: u8,
}

impl ResetRegister {
    /// Port 0x92: A20 on, bit 0 resets.
    pub fn port92() -> Self {
        ResetRegister { value: A20, keeps: A20, reset: 1 << 0 }
    }

    /// Port 0xcf9: bit 2 resets, the rest kept.
    pub fn reset_control() -> Self {
        ResetRegister { value: 0, keeps: !(1 << 2), reset: 1 << 2 }
    }
}

impl BusDevice for ResetRegister {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.value);
    }

    fn save(&self) -> serde_json::Value {
        serde_json::json!(self.value)
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), StateError> {
        self.value = <u8 as serde::Deserialize>::deserialize(state)? & self.keeps;
        Ok(())
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Option<VmRequest> {
        let &v = data.first()?;
        self.value = v & self.keeps;
        (v & self.reset != 0).then_some(VmRequest::Reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(r: &mut ResetRegister) -> u8 {
        let mut b = [0];
        r.read(0, &mut b);
        b[0]
    }

    #[test]
    fn port_92_reads_a20_back_and_bit_0_resets() {
        let mut p = ResetRegister::port92();
        assert_eq!(read(&mut p), A20, "A20 on, no reset pending");
        assert_eq!(p.write(0, &[0x00]), None);
        assert_eq!(read(&mut p), 0);
        assert_eq!(p.write(0, &[A20 | 1]), Some(VmRequest::Reset));
    }

    #[test]
    fn reset_control_bit_2_resets() {
        let mut r = ResetRegister::reset_control();
        assert_eq!(r.write(0, &[0x02]), None, "the kind of reset, first");
        assert_eq!(read(&mut r), 0x02);
        assert_eq!(r.write(0, &[0x06]), Some(VmRequest::Reset));
    }
}

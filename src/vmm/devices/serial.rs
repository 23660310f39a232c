//! The 16550A UART at 0x3f8 (vm-superio): guest output goes to a writer of the caller's choosing.

use std::io::Write;

use vm_superio::Trigger;

use crate::vmm::bus::{BusDevice, VmRequest};

/// COM1.
pub const PORT: u16 = 0x3f8;
pub const SIZE: u64 = 8;

/// The UART's interrupt line: an eventfd registered as KVM irqfd (GSI 4) when the VM has an
/// interrupt controller; nowhere otherwise.
#[derive(Debug, Default)]
pub struct IrqLine(pub Option<vmm_sys_util::eventfd::EventFd>);

impl Trigger for IrqLine {
    type E = std::io::Error;
    fn trigger(&self) -> Result<(), Self::E> {
        match &self.0 {
            Some(evt) => evt.write(1),
            None => Ok(()),
        }
    }
}

/// A 16550A whose output goes to `W`.
pub struct Serial<W: Write + Send> {
    uart: vm_superio::Serial<IrqLine, vm_superio::serial::NoEvents, W>,
}

impl<W: Write + Send> Serial<W> {
    pub fn new(out: W) -> Self {
        Self::with_irq(out, IrqLine(None))
    }

    /// A UART that raises `irq` (THR empty, data ready) as a 16550 does.
    pub fn with_irq(out: W, irq: IrqLine) -> Self {
        Self { uart: vm_superio::Serial::new(irq, out) }
    }

    /// Bytes typed for the guest to read.
    pub fn enqueue_input(&mut self, input: &[u8]) -> usize {
        self.uart.enqueue_raw_bytes(input).unwrap_or(0)
    }

    /// The writer that receives the guest's output.
    pub fn writer_mut(&mut self) -> &mut W {
        self.uart.writer_mut()
    }
}

impl<W: Write + Send> BusDevice for Serial<W> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = self.uart.read(offset as u8);
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = v;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        if let Some(&b) = data.first() {
            // A writer that fails (closed stdout) loses output, not the VM.
            let _ = self.uart.write(offset as u8, b);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmits_to_writer_and_reports_empty_thr() {
        let mut s = Serial::new(Vec::new());
        for b in b"hi" {
            s.write(0, &[*b]);
        }
        let mut lsr = [0u8];
        s.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "THR empty");
        assert_eq!(s.writer_mut().as_slice(), b"hi");
        assert_eq!(s.enqueue_input(b"k"), 1);
        let mut rbr = [0u8];
        s.read(0, &mut rbr);
        assert_eq!(rbr, [b'k']);
    }
}

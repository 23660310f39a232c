//! The 16550A UART at 0x3f8 (vm-superio): guest output goes to a writer of the caller's choosing.

use std::io::Write;

use vm_superio::Trigger;

use serde::Deserialize;

use crate::vmm::bus::{BusDevice, StateError, VmRequest};

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

/// The 16550A's receive FIFO.
const FIFO: usize = 64;

type Uart<W> = vm_superio::Serial<IrqLine, vm_superio::serial::NoEvents, W>;

/// A 16550A whose output goes to `W`.
pub struct Serial<W: Write + Send> {
    /// Always there but while a restore rebuilds it (vm-superio builds a UART from a state).
    uart: Option<Uart<W>>,
}

/// The UART's registers and input FIFO, as a snapshot keeps them (vm-superio's `SerialState`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UartState {
    dll: u8,
    dlm: u8,
    ier: u8,
    iir: u8,
    lcr: u8,
    lsr: u8,
    mcr: u8,
    msr: u8,
    scr: u8,
    input: Vec<u8>,
}

impl<W: Write + Send> Serial<W> {
    pub fn new(out: W) -> Self {
        Self::with_irq(out, IrqLine(None))
    }

    /// A UART that raises `irq` (THR empty, data ready) as a 16550 does.
    pub fn with_irq(out: W, irq: IrqLine) -> Self {
        Self { uart: Some(vm_superio::Serial::new(irq, out)) }
    }

    /// Bytes typed for the guest to read.
    pub fn enqueue_input(&mut self, input: &[u8]) -> usize {
        self.uart.as_mut().map_or(0, |u| u.enqueue_raw_bytes(input).unwrap_or(0))
    }

    /// The writer that receives the guest's output.
    pub fn writer_mut(&mut self) -> Option<&mut W> {
        self.uart.as_mut().map(|u| u.writer_mut())
    }
}

impl<W: Write + Send> BusDevice for Serial<W> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = self.uart.as_mut().map_or(0xff, |u| u.read(offset as u8));
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = v;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        if let (Some(&b), Some(u)) = (data.first(), self.uart.as_mut()) {
            // A writer that fails (closed stdout) loses output, not the VM.
            let _ = u.write(offset as u8, b);
        }
        None
    }

    fn save(&self) -> serde_json::Value {
        let Some(s) = self.uart.as_ref().map(|u| u.state()) else { return serde_json::Value::Null };
        let state = UartState {
            dll: s.baud_divisor_low,
            dlm: s.baud_divisor_high,
            ier: s.interrupt_enable,
            iir: s.interrupt_identification,
            lcr: s.line_control,
            lsr: s.line_status,
            mcr: s.modem_control,
            msr: s.modem_status,
            scr: s.scratch,
            input: s.in_buffer,
        };
        serde_json::to_value(state).unwrap_or_default()
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), StateError> {
        let s = UartState::deserialize(state)?;
        // Checked before the old UART is taken apart: vm-superio refuses only an overfull FIFO.
        if s.input.len() > FIFO {
            let value = s.input.len() as u64;
            return Err(StateError::OutOfRange { what: "bytes of input", value, allowed: "at most the 64-byte FIFO" });
        }
        let Some(old) = self.uart.take() else { return Err(StateError::Mismatch("the UART is gone".into())) };
        let irq = IrqLine(old.interrupt_evt().0.as_ref().and_then(|e| e.try_clone().ok()));
        let out = old.into_writer();
        let state = vm_superio::serial::SerialState {
            baud_divisor_low: s.dll,
            baud_divisor_high: s.dlm,
            interrupt_enable: s.ier,
            interrupt_identification: s.iir,
            line_control: s.lcr,
            line_status: s.lsr,
            modem_control: s.mcr,
            modem_status: s.msr,
            scratch: s.scr,
            in_buffer: s.input,
        };
        self.uart = vm_superio::Serial::from_state(&state, irq, vm_superio::serial::NoEvents, out).ok();
        self.uart.as_ref().map(|_| ()).ok_or_else(|| StateError::Mismatch("vm-superio refused the state".into()))
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
        assert_eq!(s.writer_mut().unwrap().as_slice(), b"hi");
        assert_eq!(s.enqueue_input(b"k"), 1);
        let mut rbr = [0u8];
        s.read(0, &mut rbr);
        assert_eq!(rbr, [b'k']);
    }
}

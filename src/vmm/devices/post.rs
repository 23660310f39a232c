//! Port 0x80, the POST diagnostic port: writes are accepted silently, a read returns the last code.

use serde::Deserialize;

use crate::vmm::bus::{BusDevice, StateError, VmRequest};

pub const PORT: u16 = 0x80;

/// The last POST code the guest wrote.
#[derive(Debug, Default)]
pub struct PostCode {
    pub last: u8,
}

impl BusDevice for PostCode {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.last);
    }

    fn save(&self) -> serde_json::Value {
        serde_json::json!(self.last)
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), StateError> {
        self.last = u8::deserialize(state)?;
        Ok(())
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Option<VmRequest> {
        if let Some(&b) = data.first() {
            self.last = b;
        }
        None
    }
}

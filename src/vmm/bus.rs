//! The device bus: address ranges (ports or MMIO) mapped to devices. An access nobody claims reads
//! as all ones and writes are dropped; the caller still traces it, as unclaimed.

use std::sync::{Arc, Mutex};

use crate::sync::lock;
use thiserror::Error;

/// The "device" of an MMIO exit that kvmscope completed in guest RAM (a watched page).
pub const RAM_DEVICE: &str = "ram (watched page)";

/// The two buses of a VM: port I/O and MMIO.
#[derive(Default)]
pub struct Buses {
    pub pio: Bus,
    pub mmio: Bus,
}

/// What a device asks of the VM after an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmRequest {
    /// End the run: the guest wrote this value to the isa-debug-exit port.
    Exit(u32),
    /// The guest asked for a reset (keyboard controller, reset port): the run ends.
    Reset,
}

/// A device on a bus. `offset` is relative to the start of the device's range.
pub trait BusDevice: Send {
    /// Fills `data` for a guest read.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Takes a guest write; may ask the VM to end.
    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest>;
    /// The state a snapshot keeps of this device (`Null`: none, the device keeps no state).
    fn save(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Takes back a state [`BusDevice::save`] gave, checked as strictly as a guest's access
    /// (a snapshot file may have been crafted); says why not, for one it cannot take.
    fn restore(&mut self, _state: &serde_json::Value) -> Result<(), StateError> {
        Ok(())
    }
}

/// Why a device cannot take a saved state.
#[derive(Debug, Error)]
pub enum StateError {
    #[error("its state does not read as one: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("{what} {value} is out of range ({allowed})")]
    OutOfRange { what: &'static str, value: u64, allowed: &'static str },
    #[error("{0}")]
    Mismatch(String),
    #[error("this VM has no such device (was it run with other options?)")]
    NoDevice,
}

/// Errors building a bus.
#[derive(Debug, Error)]
pub enum BusError {
    /// Two devices claim the same addresses.
    #[error("device {new} at {base:#x}+{len:#x} overlaps device {existing}")]
    Overlap { new: &'static str, existing: &'static str, base: u64, len: u64 },
}

struct Range {
    base: u64,
    len: u64,
    name: &'static str,
    device: Arc<Mutex<dyn BusDevice>>,
}

/// One address space (port I/O or MMIO) of devices, sorted by base.
#[derive(Default)]
pub struct Bus {
    ranges: Vec<Range>,
}

impl Bus {
    /// Adds `device` at `[base, base + len)`.
    pub fn insert(
        &mut self,
        name: &'static str,
        base: u64,
        len: u64,
        device: Arc<Mutex<dyn BusDevice>>,
    ) -> Result<(), BusError> {
        if let Some(r) = self.ranges.iter().find(|r| base < r.base + r.len && r.base < base + len) {
            return Err(BusError::Overlap { new: name, existing: r.name, base, len });
        }
        self.ranges.push(Range { base, len, name, device });
        self.ranges.sort_by_key(|r| r.base);
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<&Range> {
        let i = self.ranges.partition_point(|r| r.base <= addr);
        let r = self.ranges.get(i.checked_sub(1)?)?;
        (addr - r.base < r.len).then_some(r)
    }

    /// A guest read: the device's answer, or all ones. Returns the device's name when claimed.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> Option<&'static str> {
        match self.find(addr) {
            Some(r) => {
                lock(&r.device).read(addr - r.base, data);
                Some(r.name)
            }
            None => {
                data.fill(0xff);
                None
            }
        }
    }

    /// A guest write: the device's name when claimed, and what it asks of the VM.
    pub fn write(&self, addr: u64, data: &[u8]) -> (Option<&'static str>, Option<VmRequest>) {
        match self.find(addr) {
            Some(r) => (Some(r.name), lock(&r.device).write(addr - r.base, data)),
            None => (None, None),
        }
    }

    /// Each device's state that is not `Null`, as (name, base, state).
    pub fn save(&self) -> Vec<(&'static str, u64, serde_json::Value)> {
        self.ranges
            .iter()
            .map(|r| (r.name, r.base, lock(&r.device).save()))
            .filter(|(_, _, state)| !state.is_null())
            .collect()
    }

    /// Gives the device `name` at `base` its saved state.
    pub fn restore(&self, name: &str, base: u64, state: &serde_json::Value) -> Result<(), StateError> {
        match self.ranges.iter().find(|r| r.name == name && r.base == base) {
            Some(r) => lock(&r.device).restore(state),
            None => Err(StateError::NoDevice),
        }
    }

    /// The devices on this bus as (name, base, len), in address order.
    pub fn devices(&self) -> Vec<(&'static str, u64, u64)> {
        self.ranges.iter().map(|r| (r.name, r.base, r.len)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(u8);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(self.0.wrapping_add(offset as u8));
        }
        fn write(&mut self, _offset: u64, data: &[u8]) -> Option<VmRequest> {
            self.0 = data[0];
            (data[0] == 0xff).then_some(VmRequest::Reset)
        }
    }

    #[test]
    fn routes_by_range_and_reports_unclaimed() {
        let mut bus = Bus::default();
        bus.insert("a", 0x10, 4, Arc::new(Mutex::new(Echo(0)))).unwrap();
        bus.insert("b", 0x20, 1, Arc::new(Mutex::new(Echo(7)))).unwrap();
        let mut d = [0u8; 1];
        assert_eq!(bus.read(0x12, &mut d), Some("a"));
        assert_eq!(d, [2]);
        assert_eq!(bus.read(0x14, &mut d), None);
        assert_eq!(d, [0xff]);
        assert_eq!(bus.read(0x0, &mut d), None);
        assert_eq!(bus.write(0x20, &[0xff]), (Some("b"), Some(VmRequest::Reset)));
        assert_eq!(bus.write(0x30, &[1]), (None, None));
        assert!(bus.insert("c", 0x13, 2, Arc::new(Mutex::new(Echo(0)))).is_err());
        assert_eq!(bus.devices().len(), 2);
    }
}

//! A descriptor chain as the devices see it: walked by `virtio-queue` (which follows `next`, opens
//! indirect tables and stops at a loop), then checked here, so that a device never touches memory
//! the guest did not give it: every buffer inside guest RAM, the chain complete.

use serde::Serialize;
use virtio_queue::DescriptorChain;
use vm_memory::{GuestAddress, GuestMemoryBackend};

use crate::vmm::memory::Mem;

/// One descriptor of a chain, as the guest wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

/// `VIRTQ_DESC_F_NEXT`.
pub const F_NEXT: u16 = 1;
/// `VIRTQ_DESC_F_WRITE`: the device writes this buffer.
pub const F_WRITE: u16 = 2;
/// `VIRTQ_DESC_F_INDIRECT`.
pub const F_INDIRECT: u16 = 4;

impl Desc {
    /// Whether the device writes this buffer (else it reads it).
    pub fn device_writes(&self) -> bool {
        self.flags & F_WRITE != 0
    }

    /// The flags by name, e.g. `NEXT|WRITE`.
    pub fn flag_names(&self) -> String {
        let names: Vec<&str> = [(F_NEXT, "NEXT"), (F_WRITE, "WRITE"), (F_INDIRECT, "INDIRECT")]
            .iter()
            .filter(|(bit, _)| self.flags & bit != 0)
            .map(|(_, n)| *n)
            .collect();
        if names.is_empty() { "-".into() } else { names.join("|") }
    }
}

/// What a driver got wrong in a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("empty chain (an unreadable descriptor or indirect table)")]
    Empty,
    #[error(
        "broken chain after {0} descriptors: a loop, longer than the queue, a next index out of range, or a bad \
         indirect table"
    )]
    Broken(usize),
    #[error("descriptor {index}: buffer {addr:#x}+{len:#x} is outside guest RAM")]
    OutsideRam { index: usize, addr: u64, len: u32 },
}

/// Walks and checks a chain the queue handed over. The error says what the driver got wrong.
pub fn read_chain(chain: DescriptorChain<&Mem>, mem: &Mem) -> Result<Vec<Desc>, ChainError> {
    let descs: Vec<Desc> =
        chain.map(|d| Desc { addr: d.addr().0, len: d.len(), flags: d.flags(), next: d.next() }).collect();
    check(&descs, |addr, len| GuestMemoryBackend::check_range(mem, GuestAddress(addr), len as usize))
}

/// The checks on a walked chain, apart from the walk (so they are tested on their own).
fn check(descs: &[Desc], in_ram: impl Fn(u64, u32) -> bool) -> Result<Vec<Desc>, ChainError> {
    let Some(last) = descs.last() else {
        return Err(ChainError::Empty);
    };
    if last.flags & F_NEXT != 0 {
        return Err(ChainError::Broken(descs.len()));
    }
    for (index, d) in descs.iter().enumerate() {
        if d.len > 0 && !in_ram(d.addr, d.len) {
            return Err(ChainError::OutsideRam { index, addr: d.addr, len: d.len });
        }
    }
    Ok(descs.to_vec())
}

/// Reads a device-readable buffer.
pub fn read_buffer(mem: &Mem, d: &Desc, out: &mut [u8]) -> bool {
    vm_memory::Bytes::read_slice(mem, out, GuestAddress(d.addr)).is_ok()
}

/// Writes into a device-writable buffer.
pub fn write_buffer(mem: &Mem, addr: u64, data: &[u8]) -> bool {
    GuestMemoryBackend::check_range(mem, GuestAddress(addr), data.len())
        && vm_memory::Bytes::write_slice(mem, data, GuestAddress(addr)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(addr: u64, len: u32, flags: u16) -> Desc {
        Desc { addr, len, flags, next: 0 }
    }

    #[test]
    fn refuses_what_a_device_must_not_touch() {
        let ram = |a: u64, l: u32| a + l as u64 <= 0x10000;
        assert_eq!(check(&[], ram), Err(ChainError::Empty));
        assert!(check(&[d(0, 16, F_NEXT)], ram).unwrap_err().to_string().contains("broken chain"));
        let outside = check(&[d(0, 16, F_NEXT), d(0xffff, 2, F_WRITE)], ram).unwrap_err();
        assert_eq!(outside.to_string(), "descriptor 1: buffer 0xffff+0x2 is outside guest RAM");
        assert_eq!(check(&[d(0, 16, F_NEXT), d(0x100, 1, F_WRITE)], ram).unwrap().len(), 2);
        assert_eq!(d(0, 1, F_NEXT | F_WRITE).flag_names(), "NEXT|WRITE");
    }
}

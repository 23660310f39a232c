//! virtio-rng: fills each buffer the driver offers with entropy from the host (`getrandom`).

use crate::vmm::memory::Mem;
use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;

use super::chain::{Desc, write_buffer};
use super::{Completion, VirtioDevice};

/// Bytes of entropy one request gets at most.
const MAX_REQUEST: u32 = 64 << 10;

/// The entropy device.
#[derive(Default)]
pub struct Rng;

impl VirtioDevice for Rng {
    fn device_id(&self) -> u32 {
        VIRTIO_ID_RNG
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_sizes(&self) -> &'static [u16] {
        &[64]
    }

    fn queue_name(&self, _queue: u16) -> &'static str {
        "requestq"
    }

    fn read_config(&self, _offset: u64, _data: &mut [u8]) {}

    fn describe(&self, _queue: u16, chain: &[Desc], _mem: &Mem) -> String {
        let len: u64 = chain.iter().filter(|d| d.device_writes()).map(|d| d.len as u64).sum();
        format!("entropy {len} bytes")
    }

    fn handle(&mut self, _queue: u16, chain: &[Desc], mem: &Mem) -> Completion {
        let mut written = 0u32;
        let mut problem = None;
        for d in chain {
            if !d.device_writes() {
                problem = Some("a buffer the device cannot write; skipped".to_string());
                continue;
            }
            let n = d.len.min(MAX_REQUEST - written);
            let mut buf = vec![0u8; n as usize];
            // SAFETY: `buf` is a writable buffer of `buf.len()` bytes.
            let got = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
            if got < 0 || !write_buffer(mem, d.addr, &buf[..got as usize]) {
                break;
            }
            written += got as u32;
            if written >= MAX_REQUEST {
                break;
            }
        }
        Completion { written, status: "ok".into(), problem }
    }
}

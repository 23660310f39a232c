//! virtio-console with one port (`hvc0` in Linux): what the guest transmits goes to the same
//! console as the UART's output; typed input waits in a buffer until the driver has offered receive
//! buffers, then fills them.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::vmm::memory::Mem;
use virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE;

use super::chain::{Desc, read_buffer, write_buffer};
use super::{Completion, VirtioDevice};
use crate::sync::lock;

/// receiveq0: buffers the device fills with input.
pub const RECEIVE: u16 = 0;
/// transmitq0: buffers the driver filled with output.
pub const TRANSMIT: u16 = 1;

/// Input typed for the guest, shared with whoever types it.
pub type Input = Arc<Mutex<VecDeque<u8>>>;

/// The console device.
pub struct Console {
    out: Box<dyn Write + Send>,
    input: Input,
}

impl Console {
    pub fn new(out: Box<dyn Write + Send>, input: Input) -> Self {
        Self { out, input }
    }
}

/// Up to 40 bytes as printable text, the rest counted.
fn shown(bytes: &[u8]) -> String {
    let mut s: String = bytes.iter().take(40).flat_map(|&b| std::ascii::escape_default(b)).map(char::from).collect();
    if bytes.len() > 40 {
        s.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    format!("\"{s}\"")
}

impl VirtioDevice for Console {
    fn device_id(&self) -> u32 {
        VIRTIO_ID_CONSOLE
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_sizes(&self) -> &'static [u16] {
        &[64, 64]
    }

    fn queue_name(&self, queue: u16) -> &'static str {
        if queue == RECEIVE { "receiveq0" } else { "transmitq0" }
    }

    fn read_config(&self, _offset: u64, _data: &mut [u8]) {}

    fn describe(&self, queue: u16, chain: &[Desc], mem: &Mem) -> String {
        if queue == RECEIVE {
            let room: u64 = chain.iter().filter(|d| d.device_writes()).map(|d| d.len as u64).sum();
            return format!("receive buffer of {room} bytes");
        }
        let mut bytes = Vec::new();
        for d in chain.iter().filter(|d| !d.device_writes()) {
            let mut b = vec![0u8; d.len.min(256) as usize];
            if read_buffer(mem, d, &mut b) {
                bytes.extend(b);
            }
        }
        format!("transmit {}", shown(&bytes))
    }

    fn handle(&mut self, queue: u16, chain: &[Desc], mem: &Mem) -> Completion {
        let wrong_way = chain.iter().any(|d| d.device_writes() != (queue == RECEIVE));
        let problem = wrong_way.then(|| "a buffer in the wrong direction for this queue; skipped".to_string());
        if queue == RECEIVE {
            let mut input = lock(&self.input);
            let mut written = 0u32;
            for d in chain.iter().filter(|d| d.device_writes()) {
                let n = (d.len as usize).min(input.len());
                let bytes: Vec<u8> = input.drain(..n).collect();
                if !write_buffer(mem, d.addr, &bytes) {
                    break;
                }
                written += n as u32;
            }
            return Completion { written, status: "ok".into(), problem };
        }
        for d in chain.iter().filter(|d| !d.device_writes()) {
            let mut bytes = vec![0u8; d.len as usize];
            if read_buffer(mem, d, &mut bytes) {
                let _ = self.out.write_all(&bytes);
            }
        }
        let _ = self.out.flush();
        Completion { written: 0, status: "ok".into(), problem }
    }

    fn ready_for(&self, queue: u16) -> bool {
        queue != RECEIVE || !lock(&self.input).is_empty()
    }
}

//! virtio-net on a TAP device (`--net tap=NAME[,mac=MAC]`): receiveq0 takes frames from the TAP
//! into the buffers the guest has posted, transmitq0 sends the guest's frames to it. Every frame,
//! each way, is a device event with its bytes (the trace shows it as tcpdump would, `--pcap` and
//! the exports keep it); a frame that cannot be delivered or sent is a `dropped` event saying why.
//!
//! Received frames wait in an inbox filled by a reader thread until the guest has buffers for
//! them (bounded: past [`INBOX_FRAMES`], newer frames are dropped and counted, as a full NIC ring
//! drops). The offloads the driver accepts (checksum, TSO) are handed to the TAP, whose frames
//! carry the same 12-byte virtio-net header the driver reads: they pass through untouched.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::vmm::memory::Mem;
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::*;
use vmm_sys_util::eventfd::EventFd;

use super::chain::{Desc, read_buffer, write_buffer};
use super::tap::{Tap, TapError, VNET_HDR};
use super::{Completion, DeviceLink, VirtioDevice};
use crate::sync::lock;
use crate::trace::device::SNAPLEN;
use crate::trace::{DeviceEventKind, FrameDir};

/// receiveq0: buffers the device fills with frames from the TAP.
pub const RECEIVE: u16 = 0;
/// transmitq0: frames the guest sends.
pub const TRANSMIT: u16 = 1;
/// Frames from the TAP that wait for receive buffers at most.
pub const INBOX_FRAMES: usize = 256;
/// The largest frame either way with its header: a 64 KiB GSO frame, its Ethernet and VLAN
/// headers, the vnet header.
const MAX_FRAME: usize = VNET_HDR + 65_535 + 18;
/// Bytes of a transmitted frame the views read to decode it.
const DECODED: usize = 128;

fn bit(b: u32) -> u64 {
    1 << b
}

/// The features offered: the MAC, the link status, and the offloads a TAP with a vnet header
/// takes both ways (receive buffers are big enough for a GSO frame when the driver takes TSO).
const FEATURES: &[u32] = &[
    VIRTIO_NET_F_CSUM,
    VIRTIO_NET_F_GUEST_CSUM,
    VIRTIO_NET_F_MAC,
    VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_GUEST_ECN,
    VIRTIO_NET_F_HOST_TSO4,
    VIRTIO_NET_F_HOST_TSO6,
    VIRTIO_NET_F_HOST_ECN,
    VIRTIO_NET_F_STATUS,
];

/// A network card as `--net` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSpec {
    pub tap: String,
    pub mac: Option<[u8; 6]>,
}

impl NetSpec {
    /// `tap=NAME[,mac=MAC]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (mut tap, mut mac) = (None, None);
        for part in text.split(',') {
            match part.split_once('=') {
                Some(("tap", name)) if !name.is_empty() => tap = Some(name.to_string()),
                Some(("mac", m)) => mac = Some(parse_mac(m)?),
                _ => return Err(format!("--net {text}: expected tap=NAME[,mac=MAC] ({part:?} is not understood)")),
            }
        }
        let tap = tap.ok_or_else(|| format!("--net {text}: name the TAP: tap=NAME[,mac=MAC]"))?;
        Ok(Self { tap, mac })
    }
}

/// `52:54:00:12:34:56`: six hex bytes, a unicast address.
fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let bytes: Vec<u8> =
        text.split(':').filter_map(|b| (b.len() == 2).then(|| u8::from_str_radix(b, 16).ok())?).collect();
    let mac: [u8; 6] =
        bytes.try_into().map_err(|_| format!("mac={text}: expected six hex bytes, as 52:54:00:12:34:56"))?;
    if mac[0] & 1 != 0 {
        return Err(format!("mac={text}: a multicast address cannot be a card's (the first byte's low bit is set)"));
    }
    Ok(mac)
}

/// A random locally administered unicast address, as cloud-hypervisor makes one.
fn random_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    // SAFETY: `mac` is a writable buffer of 6 bytes.
    unsafe { libc::getrandom(mac.as_mut_ptr().cast(), mac.len(), 0) };
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// What the reader thread and the device share.
#[derive(Default)]
struct Inbox {
    /// Frames with their vnet header, oldest first.
    frames: Mutex<VecDeque<Vec<u8>>>,
    /// The driver has set the device up (DRIVER_OK) and not reset it.
    live: AtomicBool,
    /// The TAP failed under the reader (deleted, say): nothing more comes or goes.
    gone: AtomicBool,
    dropped: AtomicU64,
}

/// The reader thread and what stops it.
struct Reader {
    stop: EventFd,
    thread: JoinHandle<()>,
}

/// The network device.
pub struct Net {
    tap: Arc<Tap>,
    mac: [u8; 6],
    inbox: Arc<Inbox>,
    link: Option<DeviceLink>,
    reader: Option<Reader>,
}

impl Net {
    pub fn open(spec: &NetSpec) -> Result<Self, TapError> {
        let tap = Arc::new(Tap::open(&spec.tap)?);
        Ok(Self { tap, mac: spec.mac.unwrap_or_else(random_mac), inbox: Arc::default(), link: None, reader: None })
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn emit(&self, queue: u16, kind: DeviceEventKind) {
        if let Some(link) = &self.link {
            link.events.emit(link.name, Some(queue), kind);
        }
    }

    fn frame_event(dir: FrameDir, frame: &[u8]) -> DeviceEventKind {
        DeviceEventKind::Frame { dir, len: frame.len() as u32, bytes: frame[..frame.len().min(SNAPLEN)].to_vec() }
    }

    fn dropped(&self, queue: u16, dir: FrameDir, len: usize, why: String) {
        self.inbox.dropped.fetch_add(1, Ordering::Relaxed);
        self.emit(queue, DeviceEventKind::Dropped { dir, len: len as u32, why });
    }

    /// The bytes of a transmit chain's device-readable buffers, or why it is no frame.
    fn gather(chain: &[Desc], mem: &Mem, limit: usize) -> Result<Vec<u8>, String> {
        let total: u64 = chain.iter().filter(|d| !d.device_writes()).map(|d| d.len as u64).sum();
        if total > MAX_FRAME as u64 && limit == usize::MAX {
            return Err(format!(
                "a {total}-byte transmit chain, more than the {MAX_FRAME} bytes a frame with its header has"
            ));
        }
        let mut bytes = Vec::with_capacity(total.min(limit as u64) as usize);
        for d in chain.iter().filter(|d| !d.device_writes()) {
            let n = (d.len as usize).min(limit - bytes.len());
            let start = bytes.len();
            bytes.resize(start + n, 0);
            if !read_buffer(mem, &Desc { len: n as u32, ..*d }, &mut bytes[start..]) {
                return Err(format!("buffer {:#x}+{:#x} is not guest RAM", d.addr, d.len));
            }
            if bytes.len() == limit {
                break;
            }
        }
        if (total as usize) < VNET_HDR {
            return Err(format!("a {total}-byte transmit chain, shorter than the {VNET_HDR}-byte virtio-net header"));
        }
        Ok(bytes)
    }

    fn transmit(&mut self, chain: &[Desc], mem: &Mem) -> Completion {
        let problem = chain
            .iter()
            .any(|d| d.device_writes())
            .then(|| "a device-writable buffer in a transmit chain; skipped".to_string());
        let frame = match Self::gather(chain, mem, usize::MAX) {
            Ok(f) => f,
            Err(why) => {
                let len = chain.iter().filter(|d| !d.device_writes()).map(|d| d.len as usize).sum::<usize>();
                self.dropped(TRANSMIT, FrameDir::Tx, len.saturating_sub(VNET_HDR), why);
                return Completion { written: 0, status: "dropped".into(), problem };
            }
        };
        let len = frame.len() - VNET_HDR;
        if self.inbox.gone.load(Ordering::Acquire) {
            self.dropped(TRANSMIT, FrameDir::Tx, len, format!("the TAP {} has gone", self.tap.name()));
            return Completion { written: 0, status: "dropped".into(), problem };
        }
        match self.tap.write_frame(&frame) {
            Ok(_) => {
                self.emit(TRANSMIT, Self::frame_event(FrameDir::Tx, &frame[VNET_HDR..]));
                Completion { written: 0, status: "ok".into(), problem }
            }
            Err(e) => {
                self.dropped(TRANSMIT, FrameDir::Tx, len, format!("the TAP refused it: {e}"));
                Completion { written: 0, status: "dropped".into(), problem }
            }
        }
    }

    fn receive(&mut self, chain: &[Desc], mem: &Mem) -> Completion {
        let problem = chain
            .iter()
            .any(|d| !d.device_writes())
            .then(|| "a device-readable buffer in a receive chain; skipped".to_string());
        let Some(mut frame) = lock(&self.inbox.frames).pop_front() else {
            return Completion { written: 0, status: "no frame".into(), problem };
        };
        let room: u64 = chain.iter().filter(|d| d.device_writes()).map(|d| d.len as u64).sum();
        let len = frame.len() - VNET_HDR;
        if (frame.len() as u64) > room {
            let why = format!("the receive chain holds {room} bytes; the frame with its header needs {}", frame.len());
            self.dropped(RECEIVE, FrameDir::Rx, len, why);
            return Completion { written: 0, status: "dropped: chain too small".into(), problem };
        }
        // num_buffers: the frame is in this one chain.
        frame[10..12].copy_from_slice(&1u16.to_le_bytes());
        let mut at = 0;
        for d in chain.iter().filter(|d| d.device_writes()) {
            let n = (d.len as usize).min(frame.len() - at);
            if !write_buffer(mem, d.addr, &frame[at..at + n]) {
                break;
            }
            at += n;
            if at == frame.len() {
                break;
            }
        }
        self.emit(RECEIVE, Self::frame_event(FrameDir::Rx, &frame[VNET_HDR..]));
        Completion { written: at as u32, status: "ok".into(), problem }
    }

    fn stop_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.stop.write(1);
            let _ = r.thread.join();
        }
    }
}

/// Reads frames from the TAP into the inbox until told to stop or the TAP fails.
fn read_frames(tap: &Tap, inbox: &Inbox, link: &DeviceLink, stop: &EventFd) {
    let emit = |kind| link.events.emit(link.name, Some(RECEIVE), kind);
    let drop = |len: usize, why: String| {
        inbox.dropped.fetch_add(1, Ordering::Relaxed);
        emit(DeviceEventKind::Dropped { dir: FrameDir::Rx, len: len as u32, why });
    };
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        let mut fds = [
            libc::pollfd { fd: tap.raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(stop), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: `fds` is a valid array of two pollfd entries for the call's duration.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 1000) };
        if fds[1].revents != 0 {
            return;
        }
        if n <= 0 {
            continue;
        }
        let mut arrived = false;
        let failure = loop {
            match tap.read_frame(&mut buf) {
                Ok(n) if n < VNET_HDR => drop(0, format!("the TAP gave {n} bytes, less than a vnet header")),
                Ok(n) => {
                    let len = n - VNET_HDR;
                    if !inbox.live.load(Ordering::Acquire) {
                        drop(len, "the driver has not set the card up (DRIVER_OK)".into());
                        continue;
                    }
                    let mut frames = lock(&inbox.frames);
                    if frames.len() >= INBOX_FRAMES {
                        drop(
                            len,
                            format!(
                                "no receive buffers: {INBOX_FRAMES} frames already wait for the guest to post some"
                            ),
                        );
                    } else {
                        frames.push_back(buf[..n].to_vec());
                        arrived = true;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        if arrived {
            let _ = link.wake.write(1);
        }
        if let Some(e) = failure.or_else(|| {
            (fds[0].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0)
                .then(|| std::io::Error::other("the descriptor reports an error"))
        }) {
            inbox.gone.store(true, Ordering::Release);
            let problem = format!("the TAP {} has gone ({e}): no more frames either way", tap.name());
            link.events.emit(link.name, None, DeviceEventKind::Error { problem });
            return;
        }
    }
}

impl VirtioDevice for Net {
    fn device_id(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn features(&self) -> u64 {
        FEATURES.iter().map(|&b| bit(b)).sum()
    }

    fn queue_sizes(&self) -> &'static [u16] {
        &[256, 256]
    }

    fn queue_name(&self, queue: u16) -> &'static str {
        if queue == RECEIVE { "receiveq0" } else { "transmitq0" }
    }

    /// `virtio_net_config`: the MAC, then the link status.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let up = if self.inbox.gone.load(Ordering::Acquire) { 0 } else { VIRTIO_NET_S_LINK_UP as u16 };
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&self.mac);
        config[6..8].copy_from_slice(&up.to_le_bytes());
        for (i, b) in data.iter_mut().enumerate() {
            *b = config.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    fn describe(&self, queue: u16, chain: &[Desc], _mem: &Mem) -> String {
        let (dir, total) = match queue {
            RECEIVE => ("receive buffer of", chain.iter().filter(|d| d.device_writes()).map(|d| d.len as u64).sum()),
            _ => ("transmit", chain.iter().filter(|d| !d.device_writes()).map(|d| d.len as u64).sum::<u64>()),
        };
        format!("{dir} {}", crate::trace::device::bytes(total))
    }

    fn inspect(&self, queue: u16, chain: &[Desc], mem: &Mem) -> String {
        if queue == RECEIVE {
            return self.describe(queue, chain, mem);
        }
        let total: usize = chain.iter().filter(|d| !d.device_writes()).map(|d| d.len as usize).sum();
        match Self::gather(chain, mem, VNET_HDR + DECODED) {
            Ok(b) => format!("transmit {}", crate::trace::frame::summary(&b[VNET_HDR..], total - VNET_HDR)),
            Err(why) => why,
        }
    }

    fn handle(&mut self, queue: u16, chain: &[Desc], mem: &Mem) -> Completion {
        if queue == RECEIVE { self.receive(chain, mem) } else { self.transmit(chain, mem) }
    }

    fn ready_for(&self, queue: u16) -> bool {
        queue != RECEIVE || !lock(&self.inbox.frames).is_empty()
    }

    fn connect(&mut self, link: DeviceLink) {
        self.stop_reader();
        let Ok(stop) = EventFd::new(libc::EFD_NONBLOCK) else {
            link.events.emit(
                link.name,
                None,
                DeviceEventKind::Error { problem: "no eventfd for the TAP reader".into() },
            );
            return;
        };
        let Ok(stop_reader) = stop.try_clone() else { return };
        let (tap, inbox, l) = (self.tap.clone(), self.inbox.clone(), link.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("{}-tap", link.name))
            .spawn(move || read_frames(&tap, &inbox, &l, &stop_reader));
        match spawned {
            Ok(thread) => self.reader = Some(Reader { stop, thread }),
            Err(e) => {
                let problem = format!("cannot start the TAP reader thread: {e}; no frames will be received");
                link.events.emit(link.name, None, DeviceEventKind::Error { problem });
            }
        }
        self.link = Some(link);
    }

    fn activate(&mut self, driver_features: u64) -> Option<String> {
        let offloads = [
            (VIRTIO_NET_F_GUEST_CSUM, libc::TUN_F_CSUM),
            (VIRTIO_NET_F_GUEST_TSO4, libc::TUN_F_TSO4),
            (VIRTIO_NET_F_GUEST_TSO6, libc::TUN_F_TSO6),
            (VIRTIO_NET_F_GUEST_ECN, libc::TUN_F_TSO_ECN),
        ];
        let mut flags: u32 = offloads.iter().filter(|(f, _)| driver_features & bit(*f) != 0).map(|(_, t)| *t).sum();
        if flags & libc::TUN_F_CSUM == 0 {
            // Segmentation needs checksum offload (the kernel refuses it alone).
            flags = 0;
        }
        self.inbox.live.store(true, Ordering::Release);
        self.tap.set_offload(flags).err().map(|e| format!("{e}; the guest gets no offloaded frames"))
    }

    fn reset(&mut self) {
        self.inbox.live.store(false, Ordering::Release);
        lock(&self.inbox.frames).clear();
        let _ = self.tap.set_offload(0);
    }

    fn stop(&mut self) {
        self.stop_reader();
    }

    fn queue_note(&self, queue: u16) -> Option<String> {
        (queue == RECEIVE).then(|| {
            format!(
                "in flight here: receive buffers the guest has posted; frames waiting for them: {}; dropped so far \
                 (both ways): {}",
                lock(&self.inbox.frames).len(),
                self.inbox.dropped.load(Ordering::Relaxed)
            )
        })
    }

    fn about(&self) -> Option<String> {
        let made = if self.tap.created() { ", made by kvmscope" } else { "" };
        Some(format!("TAP {}{made}, MAC {}", self.tap.name(), crate::trace::frame::mac(&self.mac)))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop_reader();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_read_as_cloud_hypervisor_spells_them() {
        let s = NetSpec::parse("tap=tap0,mac=52:54:00:12:34:56").unwrap();
        assert_eq!(s, NetSpec { tap: "tap0".into(), mac: Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]) });
        assert_eq!(NetSpec::parse("tap=t").unwrap().mac, None);
        for bad in ["", "tap=", "mac=52:54:00:12:34:56", "tap=t,mac=5254", "tap=t,mac=01:00:5e:00:00:01", "tap=t,x=1"] {
            assert!(NetSpec::parse(bad).is_err(), "{bad:?}");
        }
        let m = random_mac();
        assert_eq!(m[0] & 3, 2, "locally administered unicast");
    }
}

//! Device events: what a paravirtual device saw and did on its queues — a notification and how it
//! arrived, a request taken and completed, an interrupt, a driver's mistake. They share the stream,
//! the recording and the exports with the exits, marked as the device's.

use serde::Serialize;

pub use super::frame::FrameDir;

/// How a queue notification reached the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyPath {
    /// A trapped MMIO write: a userspace exit, handled on the vCPU thread.
    Trapped,
    /// `KVM_IOEVENTFD`: KVM signalled an eventfd; no exit reached userspace.
    Ioeventfd,
}

impl NotifyPath {
    pub fn name(self) -> &'static str {
        match self {
            NotifyPath::Trapped => "trapped",
            NotifyPath::Ioeventfd => "ioeventfd",
        }
    }
}

/// What happened on a device's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum DeviceEventKind {
    /// The driver notified the queue (`count` notifications read at once from an eventfd).
    Notify { path: NotifyPath, count: u32 },
    /// The device took a descriptor chain: its head and what the request is, in words.
    Taken { head: u16, request: String },
    /// The device published the chain in the used ring: bytes written, nanoseconds since the
    /// notification that brought it.
    Completed { head: u16, written: u32, latency_ns: u64, status: String },
    /// The device raised its interrupt.
    Interrupt,
    /// The driver broke a rule; what the device did about it.
    Error { problem: String },
    /// A frame went through a network device: its length on the wire and its bytes (all of them,
    /// up to [`SNAPLEN`]).
    Frame {
        dir: FrameDir,
        len: u32,
        #[serde(serialize_with = "hex")]
        bytes: Vec<u8>,
    },
    /// A frame of `len` bytes the device could not deliver or send, and why.
    Dropped { dir: FrameDir, len: u32, why: String },
}

/// Bytes of a frame kept at most (pcap's usual snapshot length): a GSO frame is at most 64 KiB.
pub const SNAPLEN: usize = 65_536;

fn hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    s.serialize_str(&text)
}

impl DeviceEventKind {
    /// A lowercase name per kind, as counters and filters use it.
    pub fn name(&self) -> &'static str {
        match self {
            DeviceEventKind::Notify { .. } => "notify",
            DeviceEventKind::Taken { .. } => "taken",
            DeviceEventKind::Completed { .. } => "completed",
            DeviceEventKind::Interrupt => "interrupt",
            DeviceEventKind::Error { .. } => "error",
            DeviceEventKind::Frame { .. } => "frame",
            DeviceEventKind::Dropped { .. } => "dropped",
        }
    }
}

/// One device event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceEvent {
    /// Nanoseconds since the VM started, on the exits' clock.
    pub t_ns: u64,
    /// The device's name on the bus, e.g. `virtio-blk0`.
    pub device: String,
    /// The queue, when the event is about one.
    pub queue: Option<u16>,
    #[serde(flatten)]
    pub kind: DeviceEventKind,
}

/// `n` bytes in words: "1 byte", "512 bytes".
pub fn bytes(n: u64) -> String {
    if n == 1 { "1 byte".into() } else { format!("{n} bytes") }
}

impl std::fmt::Display for DeviceEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.device)?;
        if let Some(q) = self.queue {
            write!(f, " q{q}")?;
        }
        match &self.kind {
            DeviceEventKind::Notify { path, count } => {
                write!(f, " notify ({})", path.name())?;
                if *count > 1 {
                    write!(f, " x{count}")?;
                }
                Ok(())
            }
            DeviceEventKind::Taken { head, request } => write!(f, " took chain {head}: {request}"),
            DeviceEventKind::Completed { head, written, latency_ns, status } => {
                write!(f, " completed chain {head}: {status}, {} written, {latency_ns} ns", bytes(*written as u64))
            }
            DeviceEventKind::Interrupt => write!(f, " interrupt"),
            DeviceEventKind::Error { problem } => write!(f, " error: {problem}"),
            DeviceEventKind::Frame { dir, len, bytes } => {
                write!(f, " {} frame: {}", dir.name(), super::frame::summary(bytes, *len as usize))
            }
            DeviceEventKind::Dropped { dir, len, why } => {
                write!(f, " {} dropped a {}-byte frame: {why}", dir.name(), len)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_one_line() {
        let e = DeviceEvent {
            t_ns: 5,
            device: "virtio-blk0".into(),
            queue: Some(0),
            kind: DeviceEventKind::Notify { path: NotifyPath::Ioeventfd, count: 2 },
        };
        assert_eq!(e.to_string(), "virtio-blk0 q0 notify (ioeventfd) x2");
        let json = serde_json::to_string(&e.kind).unwrap();
        assert_eq!(json, r#"{"what":"notify","path":"ioeventfd","count":2}"#);
        let done = DeviceEventKind::Completed { head: 0, written: 1, latency_ns: 9, status: "ok".into() };
        assert_eq!(
            DeviceEvent { kind: done, ..e }.to_string(),
            "virtio-blk0 q0 completed chain 0: ok, 1 byte written, 9 ns"
        );
    }
}

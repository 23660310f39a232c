//! Network frames as a pcap file — the classic format tcpdump, Wireshark and every other packet
//! tool reads: Ethernet link type, nanosecond timestamps. `--pcap FILE` writes one live from the
//! device events (this sink); `kvmscope export --format pcap` writes the same from a recording.
//! A frame's time is the run's start (whole seconds of wall time) plus its time on the trace's
//! clock, so the two files of one run agree with each other and with the trace.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::ExitSink;
use crate::sync::lock;
use crate::trace::device::SNAPLEN;
use crate::trace::{DeviceEvent, DeviceEventKind, ExitEvent};

/// The nanosecond-resolution pcap magic number.
const MAGIC_NS: u32 = 0xa1b2_3c4d;
/// `LINKTYPE_ETHERNET`.
const LINKTYPE_ETHERNET: u32 = 1;
/// How long written frames may wait in the buffer (a reader following the file sees them soon).
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Writes pcap records to `out`.
pub struct PcapWriter<W: Write> {
    out: W,
    /// Wall time of the trace clock's zero, in nanoseconds since the Unix epoch.
    base_ns: u64,
    pub frames: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header; frame times count from `start_unix_secs`.
    pub fn new(mut out: W, start_unix_secs: u64) -> std::io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend(MAGIC_NS.to_le_bytes());
        h.extend(2u16.to_le_bytes());
        h.extend(4u16.to_le_bytes());
        h.extend([0u8; 8]); // thiszone, sigfigs
        h.extend((SNAPLEN as u32).to_le_bytes());
        h.extend(LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(Self { out, base_ns: start_unix_secs.saturating_mul(1_000_000_000), frames: 0 })
    }

    /// Writes `event` if it is a frame (other events are not packets).
    pub fn event(&mut self, event: &DeviceEvent) -> std::io::Result<()> {
        let DeviceEventKind::Frame { len, bytes, .. } = &event.kind else { return Ok(()) };
        let t = self.base_ns.saturating_add(event.t_ns);
        let mut r = Vec::with_capacity(16 + bytes.len());
        r.extend(((t / 1_000_000_000) as u32).to_le_bytes());
        r.extend(((t % 1_000_000_000) as u32).to_le_bytes());
        r.extend((bytes.len() as u32).to_le_bytes());
        r.extend(len.to_le_bytes());
        r.extend(bytes);
        self.frames += 1;
        self.out.write_all(&r)
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Whole seconds since the Unix epoch now (the run's start, as its recording's header says it).
fn now_unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `--pcap FILE`: every frame of the run's network devices, as it happens.
pub struct PcapSink {
    state: Mutex<Live>,
}

struct Live {
    writer: PcapWriter<BufWriter<std::fs::File>>,
    flushed: Instant,
    /// The first write that failed: nothing more is written, the end of the run says it.
    failed: Option<std::io::Error>,
}

impl PcapSink {
    /// Creates the file (a regular file or nothing at `path`) and writes its header.
    pub fn create(path: &Path) -> Result<Self, crate::files::FileError> {
        let file = crate::files::create_regular(path, "--pcap")?;
        let io = |source| crate::files::FileError::Io { what: "--pcap", path: path.to_path_buf(), source };
        let writer = PcapWriter::new(BufWriter::with_capacity(1 << 16, file), now_unix_secs()).map_err(io)?;
        Ok(Self { state: Mutex::new(Live { writer, flushed: Instant::now(), failed: None }) })
    }

    /// Writes what is buffered; the frames written, or the first error.
    pub fn finish(&self) -> std::io::Result<u64> {
        let mut live = lock(&self.state);
        if let Some(e) = live.failed.take() {
            return Err(e);
        }
        live.writer.flush()?;
        Ok(live.writer.frames)
    }
}

impl ExitSink for PcapSink {
    fn on_exit(&self, _event: &ExitEvent) {}

    fn on_device(&self, event: &DeviceEvent) {
        if !matches!(event.kind, DeviceEventKind::Frame { .. }) {
            return;
        }
        let mut live = lock(&self.state);
        if live.failed.is_some() {
            return;
        }
        let mut result = live.writer.event(event);
        if result.is_ok() && live.flushed.elapsed() >= FLUSH_EVERY {
            live.flushed = Instant::now();
            result = live.writer.flush();
        }
        if let Err(e) = result {
            live.failed = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::FrameDir;

    #[test]
    fn frames_are_records_after_the_header() {
        let mut w = PcapWriter::new(Vec::new(), 1_700_000_000).unwrap();
        let frame = DeviceEventKind::Frame { dir: FrameDir::Tx, len: 100, bytes: vec![7; 60] };
        let event = DeviceEvent { t_ns: 1_500_000_123, device: "virtio-net".into(), queue: Some(1), kind: frame };
        w.event(&event).unwrap();
        w.event(&DeviceEvent { kind: DeviceEventKind::Interrupt, ..event }).unwrap();
        let out = w.into_inner();
        assert_eq!(out.len(), 24 + 16 + 60);
        assert_eq!(&out[..4], &[0x4d, 0x3c, 0xb2, 0xa1]);
        let u32_at = |at: usize| u32::from_le_bytes(out[at..at + 4].try_into().unwrap());
        assert_eq!(u32_at(20), 1, "Ethernet");
        assert_eq!((u32_at(24), u32_at(28), u32_at(32), u32_at(36)), (1_700_000_001, 500_000_123, 60, 100));
    }
}

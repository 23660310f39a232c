//! Exact counts of device events per device and queue: notifications by how they arrived,
//! requests taken and completed (with their latency), interrupts, driver errors. The live run and
//! `stats` on its recording count the same events with this same code, so they agree.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::counters::Stat;
use super::device::{DeviceEvent, DeviceEventKind, FrameDir, NotifyPath};

/// Counts of one queue (or, with no queue, of the device's own events).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub notifies_trapped: u64,
    pub notifies_ioeventfd: u64,
    pub taken: u64,
    pub completed: u64,
    pub interrupts: u64,
    pub errors: u64,
    /// From notification to publication in the used ring, per completed request.
    pub latency: Stat,
    /// A network queue's frames, their bytes, and the frames it dropped; which way they went.
    pub frames: u64,
    pub frame_bytes: u64,
    pub drops: u64,
    pub frame_dir: Option<FrameDir>,
}

impl QueueCounts {
    pub fn notifies(&self) -> u64 {
        self.notifies_trapped + self.notifies_ioeventfd
    }

    fn merge(&mut self, o: &QueueCounts) {
        self.notifies_trapped += o.notifies_trapped;
        self.notifies_ioeventfd += o.notifies_ioeventfd;
        self.taken += o.taken;
        self.completed += o.completed;
        self.interrupts += o.interrupts;
        self.errors += o.errors;
        self.latency.merge(&o.latency);
        self.frames += o.frames;
        self.frame_bytes += o.frame_bytes;
        self.drops += o.drops;
        self.frame_dir = self.frame_dir.or(o.frame_dir);
    }
}

/// Counts per (device, queue).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    pub rows: BTreeMap<(String, Option<u16>), QueueCounts>,
}

impl DeviceCounters {
    pub fn record(&mut self, e: &DeviceEvent) {
        let row = self.rows.entry((e.device.clone(), e.queue)).or_default();
        match &e.kind {
            DeviceEventKind::Notify { path: NotifyPath::Trapped, count } => row.notifies_trapped += *count as u64,
            DeviceEventKind::Notify { path: NotifyPath::Ioeventfd, count } => row.notifies_ioeventfd += *count as u64,
            DeviceEventKind::Taken { .. } => row.taken += 1,
            DeviceEventKind::Completed { latency_ns, .. } => {
                row.completed += 1;
                row.latency.add(*latency_ns);
            }
            DeviceEventKind::Interrupt => row.interrupts += 1,
            DeviceEventKind::Error { .. } => row.errors += 1,
            DeviceEventKind::Frame { dir, len, .. } => {
                row.frames += 1;
                row.frame_bytes += *len as u64;
                row.frame_dir = Some(*dir);
            }
            DeviceEventKind::Dropped { dir, .. } => {
                row.drops += 1;
                row.frame_dir = Some(*dir);
            }
        }
    }

    pub fn merge(&mut self, other: &DeviceCounters) {
        for (k, v) in &other.rows {
            self.rows.entry(k.clone()).or_default().merge(v);
        }
    }

    /// One queue's counts (zero when it has none).
    pub fn queue(&self, device: &str, queue: Option<u16>) -> QueueCounts {
        self.rows.get(&(device.to_string(), queue)).cloned().unwrap_or_default()
    }

    /// A device's counts, all its queues and its own events added up.
    pub fn device(&self, device: &str) -> QueueCounts {
        let mut all = QueueCounts::default();
        self.rows.iter().filter(|((d, _), _)| d == device).for_each(|(_, c)| all.merge(c));
        all
    }

    /// Notifications KVM delivered by eventfd: userspace exits saved.
    pub fn exits_saved(&self) -> u64 {
        self.rows.values().map(|c| c.notifies_ioeventfd).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The summary's `virtio` array: one object per device and queue.
    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|((device, queue), c)| {
                json!({
                    "device": device,
                    "queue": queue,
                    "notifies_trapped": c.notifies_trapped,
                    "notifies_ioeventfd": c.notifies_ioeventfd,
                    "taken": c.taken,
                    "completed": c.completed,
                    "interrupts": c.interrupts,
                    "errors": c.errors,
                    "latency": { "min_ns": c.latency.min_ns, "avg_ns": c.latency.avg_ns(), "max_ns": c.latency.max_ns },
                    "frames": c.frames,
                    "frame_bytes": c.frame_bytes,
                    "drops": c.drops,
                })
            })
            .collect();
        Value::Array(rows)
    }

    /// The summary's text section (empty without devices).
    pub fn text(&self) -> String {
        if self.rows.is_empty() {
            return String::new();
        }
        let mut s = String::from("\nvirtio devices:\n");
        // Columns as wide as what they hold, so that the table fits narrow panes too.
        let header =
            ["DEVICE", "QUEUE", "TRAPPED", "EVENTFD", "REQUESTS", "DONE", "INTERRUPTS", "ERRORS", "AVG LATENCY"];
        let rows: Vec<[String; 9]> = self
            .rows
            .iter()
            .map(|((device, queue), c)| {
                [
                    device.clone(),
                    queue.map_or("-".to_string(), |q| q.to_string()),
                    c.notifies_trapped.to_string(),
                    c.notifies_ioeventfd.to_string(),
                    c.taken.to_string(),
                    c.completed.to_string(),
                    c.interrupts.to_string(),
                    c.errors.to_string(),
                    format!("{:.2}us", c.latency.avg_ns() as f64 / 1000.0),
                ]
            })
            .collect();
        let widths: Vec<usize> =
            (0..9).map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0)).collect();
        let line = |cells: &[&str]| -> String {
            let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect();
            padded.join(" ")
        };
        let _ = writeln!(s, "{}", line(&header));
        for r in &rows {
            let cells: Vec<&str> = r.iter().map(String::as_str).collect();
            let _ = writeln!(s, "{}", line(&cells));
        }
        for ((device, _), c) in self.rows.iter().filter(|(_, c)| c.frame_dir.is_some()) {
            let dir = c.frame_dir.map_or("", FrameDir::name);
            let _ = writeln!(
                s,
                "{device} {dir}: {} frames, {}, {} dropped",
                c.frames,
                super::device::bytes(c.frame_bytes),
                c.drops
            );
        }
        let saved = self.exits_saved();
        if saved > 0 {
            let _ = writeln!(s, "{saved} notifications arrived by ioeventfd: {saved} userspace exits saved");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_kind_and_saves_exits_by_eventfd() {
        let mut c = DeviceCounters::default();
        let ev = |queue, kind| DeviceEvent { t_ns: 0, device: "virtio-blk0".into(), queue, kind };
        c.record(&ev(Some(0), DeviceEventKind::Notify { path: NotifyPath::Ioeventfd, count: 3 }));
        c.record(&ev(Some(0), DeviceEventKind::Notify { path: NotifyPath::Trapped, count: 1 }));
        c.record(&ev(
            Some(0),
            DeviceEventKind::Completed { head: 0, written: 1, latency_ns: 500, status: "ok".into() },
        ));
        c.record(&ev(None, DeviceEventKind::Error { problem: "x".into() }));
        assert_eq!(c.queue("virtio-blk0", Some(0)).notifies(), 4);
        assert_eq!(c.device("virtio-blk0").errors, 1);
        assert_eq!(c.exits_saved(), 3);
        assert!(c.text().contains("3 userspace exits saved"));
        assert_eq!(c.json()[1]["notifies_ioeventfd"], 3);
        let net = |queue, kind| DeviceEvent { t_ns: 0, device: "virtio-net".into(), queue, kind };
        c.record(&net(Some(0), DeviceEventKind::Frame { dir: FrameDir::Rx, len: 98, bytes: vec![0; 98] }));
        c.record(&net(Some(0), DeviceEventKind::Dropped { dir: FrameDir::Rx, len: 60, why: "no buffers".into() }));
        assert!(c.text().contains("virtio-net rx: 1 frames, 98 bytes, 1 dropped"), "{}", c.text());
    }
}

//! `--trace`: every exit and device event as one line of text, as it happens (lossless, so it
//! slows the guest).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::ExitSink;
use crate::sync::lock;
use crate::trace::{DeviceEvent, ExitEvent};

/// Says what an exit means in words (the device and the access), in the order exits are printed:
/// the printer knows nothing of devices, the caller gives it this (`explain::trace_note`).
pub type Annotate = Box<dyn FnMut(&ExitEvent) -> Option<String> + Send>;

/// One line per exit: sequence, vCPU, time, RIP, reason, payload, instruction, what it means
/// (`note`: the device and the access in words), handling time.
pub fn line(e: &ExitEvent, note: Option<&str>) -> String {
    let insn = match &e.insn {
        Some(i) if i.addr == e.rip => format!("  {}", i.text),
        Some(i) => format!("  {} @{:#x}", i.text, i.addr),
        None => String::new(),
    };
    let explained = note.map_or(String::new(), |n| format!("  | {n}"));
    format!(
        "#{:<8} vcpu{} {:>12.6}s rip {:#018x} {:<14} {}{}{explained}  [{}ns]",
        e.seq,
        e.vcpu,
        e.t_ns as f64 / 1e9,
        e.rip,
        e.kind.reason(),
        e.detail(),
        insn,
        e.cost_ns
    )
}

/// One line per device event, in the exits' columns: time, then the event.
pub fn device_line(e: &DeviceEvent) -> String {
    format!("{:<9} {:<5} {:>12.6}s {e}", "device", "", e.t_ns as f64 / 1e9)
}

/// How long a device event waits for the exit that caused it before it is printed anyway.
const HOLD: Duration = Duration::from_millis(20);

/// Writes each exit's line to a writer (stderr for `--trace`), in time order: a device event
/// (made by a worker, or during the exit's own dispatch) waits until the exits before it are out.
pub struct TracePrinter<W: Write + Send> {
    out: Mutex<Lines<W>>,
}

struct Lines<W> {
    out: W,
    /// Explains each exit, in the order they are printed.
    annotate: Option<Annotate>,
    /// Device events not yet printed, oldest first, with when each came.
    held: VecDeque<(DeviceEvent, Instant)>,
    /// Writing failed (the reader went away): nothing more is formatted.
    failed: bool,
}

impl<W: Write> Lines<W> {
    fn write(&mut self, line: &str) {
        if !self.failed && writeln!(self.out, "{line}").is_err() {
            self.failed = true;
        }
    }

    /// Prints the held device events that `due` says are due, oldest first.
    fn release(&mut self, due: impl Fn(&DeviceEvent, Instant) -> bool) {
        while let Some((e, at)) = self.held.front() {
            if !due(e, *at) {
                break;
            }
            let line = device_line(e);
            self.held.pop_front();
            self.write(&line);
        }
    }
}

impl<W: Write + Send> TracePrinter<W> {
    pub fn new(out: W) -> Self {
        Self::annotated(out, None)
    }

    /// A printer whose exit lines end with what `annotate` says of each exit.
    pub fn annotated(out: W, annotate: Option<Annotate>) -> Self {
        Self { out: Mutex::new(Lines { out, annotate, held: VecDeque::new(), failed: false }) }
    }

    /// Prints the device events that have waited long enough (call it now and then).
    pub fn tick(&self) {
        let now = Instant::now();
        lock(&self.out).release(|_, at| now.duration_since(at) >= HOLD);
    }

    /// Prints every event still held (at the end of the run).
    pub fn finish(&self) {
        let mut out = lock(&self.out);
        out.release(|_, _| true);
        let _ = out.out.flush();
    }
}

impl<W: Write + Send> ExitSink for TracePrinter<W> {
    fn on_exit(&self, event: &ExitEvent) {
        let mut out = lock(&self.out);
        out.release(|e, _| e.t_ns < event.t_ns);
        if !out.failed {
            let note = out.annotate.as_mut().and_then(|a| a(event));
            out.write(&line(event, note.as_deref()));
        }
    }

    fn on_kernel(&self, line: &crate::trace::KernelLine) {
        lock(&self.out).write(&format!("{:<9} {}", "kernel", line.text));
    }

    fn on_device(&self, event: &DeviceEvent) {
        let mut out = lock(&self.out);
        // In time order among those held (workers and vCPUs may hand them over out of order).
        let at = out.held.partition_point(|(e, _)| e.t_ns <= event.t_ns);
        out.held.insert(at, (event.clone(), Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{DeviceEventKind, Dir, ExitKind};

    fn exit(seq: u64, t_ns: u64) -> ExitEvent {
        let kind = ExitKind::Mmio { addr: 0xd000_0050, dir: Dir::Out, len: 4, data: 0 };
        ExitEvent { seq, vcpu: 0, t_ns, rip: 0, kind, device: None, insn: None, cost_ns: 1 }
    }

    fn device(t_ns: u64) -> DeviceEvent {
        DeviceEvent { t_ns, device: "virtio-blk0".into(), queue: Some(0), kind: DeviceEventKind::Interrupt }
    }

    /// Shared output for the test to read.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn device_events_come_out_in_time_order_with_the_exits() {
        let buf = Shared::default();
        let p = TracePrinter::new(buf.clone());
        // The notify's device events are made during the exit's dispatch, before its line.
        p.on_device(&device(120));
        p.on_device(&device(110));
        p.on_exit(&exit(1, 100));
        p.on_exit(&exit(2, 115));
        p.finish();
        let text = String::from_utf8(lock(&buf.0).clone()).unwrap();
        let times: Vec<&str> = text.lines().map(|l| l.split_whitespace().find(|w| w.ends_with('s')).unwrap()).collect();
        assert_eq!(times, ["0.000000s"; 4], "{text}");
        let order: Vec<char> = text.lines().map(|l| if l.starts_with('#') { 'x' } else { 'd' }).collect();
        assert_eq!(order, ['x', 'd', 'x', 'd'], "{text}");
    }
}

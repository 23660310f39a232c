//! `--trace`: every exit and device event as one line of text, as it happens (lossless, so it
//! slows the guest).

use std::io::Write;
use std::sync::Mutex;

use super::ExitSink;
use crate::sync::lock;
use crate::trace::{DeviceEvent, ExitEvent};

/// One line per exit: sequence, vCPU, time, RIP, reason, payload, instruction, handling time.
pub fn line(e: &ExitEvent) -> String {
    let insn = match &e.insn {
        Some(i) if i.addr == e.rip => format!("  {}", i.text),
        Some(i) => format!("  {} @{:#x}", i.text, i.addr),
        None => String::new(),
    };
    format!(
        "#{:<8} vcpu{} {:>12.6}s rip {:#018x} {:<14} {}{}  [{}ns]",
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

/// Writes each exit's line to a writer (stderr for `--trace`).
pub struct TracePrinter<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> TracePrinter<W> {
    pub fn new(out: W) -> Self {
        Self { out: Mutex::new(out) }
    }
}

impl<W: Write + Send> ExitSink for TracePrinter<W> {
    fn on_exit(&self, event: &ExitEvent) {
        let mut out = lock(&self.out);
        let _ = writeln!(out, "{}", line(event));
    }

    fn on_kernel(&self, line: &str) {
        let mut out = lock(&self.out);
        let _ = writeln!(out, "{:<9} {line}", "kernel");
    }

    fn on_device(&self, event: &DeviceEvent) {
        let mut out = lock(&self.out);
        let _ = writeln!(out, "{}", device_line(event));
    }
}

//! One of KVM's in-kernel events (a tracepoint line) as the views get it: on which thread, when on
//! the exits' clock, what.

/// One in-kernel event as the views get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelLine {
    /// The thread it happened on (`vcpu0`); empty for a line of rates.
    pub thread: String,
    /// When, in ns since the VM started (the exits' clock), where the trace clock allows.
    pub t_ns: Option<u64>,
    /// The event and its fields (`kvm_pio: pio_write at 0x80 ...`), or what the stream says.
    pub text: String,
    /// An event, or a mark of where the stream stopped or resumed showing each one.
    pub kind: KernelLineKind,
}

/// What a [`KernelLine`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelLineKind {
    Event,
    /// From here on in this second, events are counted, not handed over one by one.
    Throttled,
    /// The rates of a second that had too many; events are handed over one by one again.
    Rates,
}

impl KernelLine {
    /// A `trace_pipe` line, `TASK-PID [CPU] FLAGS SECS.MICROS: EVENT: FIELDS`, its time taken
    /// from the monotonic clock's `start_ns` (the VM's start) where that is known.
    pub fn parse(line: &str, start_ns: Option<u64>) -> Self {
        let at = line.find(": kvm_").or_else(|| line.find(": fast_page_fault"));
        let Some(at) = at else {
            return Self {
                thread: String::new(),
                t_ns: None,
                text: line.trim().to_string(),
                kind: KernelLineKind::Event,
            };
        };
        let head = &line[..at];
        // The task is all before the CPU field: QEMU's threads have spaces (`CPU 1/KVM-900`).
        let task = head.find(" [").map_or(head, |i| &head[..i]).trim();
        let thread = task.rsplit_once('-').map_or(task, |(name, _)| name).to_string();
        let stamp = head.split_whitespace().last().and_then(trace_ns);
        let t_ns = start_ns.zip(stamp).map(|(start, at)| at.saturating_sub(start));
        Self { thread, t_ns, text: line[at + 2..].trim_end().to_string(), kind: KernelLineKind::Event }
    }

    /// A line of the stream's own, at `t_ns`.
    pub fn note(kind: KernelLineKind, t_ns: Option<u64>, text: String) -> Self {
        Self { thread: String::new(), t_ns, text, kind }
    }
}

/// A trace timestamp `SECS.FRACTION` in nanoseconds.
fn trace_ns(stamp: &str) -> Option<u64> {
    let (secs, frac) = stamp.split_once('.')?;
    let digits = frac.len().min(9);
    let frac: u64 = frac[..digits].parse().ok()?;
    Some(secs.parse::<u64>().ok()? * 1_000_000_000 + frac * 10u64.pow(9 - digits as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_its_thread_and_its_time_since_the_vm_started() {
        let line =
            "           vcpu1-18072   [000] .N...  5069.434155: kvm_pio: pio_write at 0x3f8 size 1 count 1 val 0x48 ";
        let start = 5_069_000_000_000;
        let k = KernelLine::parse(line, Some(start));
        assert_eq!(k.thread, "vcpu1");
        assert_eq!(k.t_ns, Some(434_155_000));
        assert_eq!(k.text, "kvm_pio: pio_write at 0x3f8 size 1 count 1 val 0x48");
        assert_eq!(KernelLine::parse(line, None).t_ns, None, "no time where the start is not known");
        let qemu = " CPU 1/KVM-900 [001] d.... 10.5: kvm_exit: vcpu 1 reason EPT_VIOLATION";
        assert_eq!(KernelLine::parse(qemu, Some(1)).thread, "CPU 1/KVM");
        assert_eq!(trace_ns("10.000000001"), Some(10_000_000_001));
        assert_eq!(trace_ns("garbage"), None);
    }
}

//! What KVM does in the kernel without telling userspace, from its tracepoints (kvm_stat's
//! tracepoint mode, `perf kvm stat`): a tracefs instance of kvmscope's own, following only this
//! VM's threads (`set_event_pid` with `event-fork`, set before the vCPU threads start), with the
//! `kvm:` exit events enabled; a reader thread parses `trace_pipe` and aggregates, since on an
//! emulating host (PVM) `kvm_emulate_insn` fires for every guest kernel instruction — tens of
//! thousands a second. Needs root; without it, or without tracefs, one line says why.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rustc_hash::FxHashMap;

use crate::sink::ExitSink;
use crate::sync::lock;
use crate::trace::{KernelLine, KernelLineKind};

/// The mapping events of KVM's MMU enabled where the host has them (`kvmmmu:`): on a VT-x/AMD-V
/// host the SPTE events fire; on PVM (a shadow MMU) `kvm_mmu_get_page` and the emulator's page
/// walks do.
pub const MMU_EVENTS: &[&str] = &[
    "kvm_mmu_set_spte",
    "kvm_tdp_mmu_spte_changed",
    "kvm_mmu_spte_requested",
    "kvm_mmu_get_page",
    "kvm_mmu_prepare_zap_page",
    "kvm_mmu_pagetable_walk",
    "kvm_mmu_paging_element",
    "fast_page_fault",
];

/// The events enabled where the host has them: the exit and the in-kernel handling of it.
pub const EVENTS: &[&str] = &[
    "kvm_exit",
    "kvm_pio",
    "kvm_mmio",
    "kvm_fast_mmio",
    "kvm_msr",
    "kvm_cr",
    "kvm_cpuid",
    "kvm_hypercall",
    "kvm_inj_virq",
    "kvm_emulate_insn",
    "kvm_userspace_exit",
    "kvm_fpu",
    "kvm_page_fault",
];

/// The busiest guest RIPs a recording keeps (in its last sample).
pub const RECORDED_RIPS: usize = 4096;

/// The monotonic clock now, in nanoseconds (the `mono` trace clock's).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which lives across the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What the tracepoints counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelCounts {
    /// Per event, and per `kvm_exit` reason as `kvm_exit:REASON`.
    pub by_event: BTreeMap<String, u64>,
    /// Guest RIPs of `kvm_emulate_insn` and `kvm_exit`: where the guest makes KVM work.
    pub by_rip: FxHashMap<u64, u64>,
}

impl KernelCounts {
    /// Counts one `trace_pipe` line.
    pub fn parse_line(&mut self, line: &str) {
        // `TASK-PID [CPU] FLAGS TIMESTAMP: EVENT: FIELDS`: the event follows the timestamp.
        let Some(at) = line.find(": kvm_").or_else(|| line.find(": fast_page_fault")) else { return };
        let rest = &line[at + 2..];
        let Some((event, fields)) = rest.split_once(": ") else { return };
        *self.by_event.entry(event.to_string()).or_default() += 1;
        let rip = match event {
            // `CSBASE:RIP:BYTES (mode)`.
            "kvm_emulate_insn" => fields.split(':').nth(1).and_then(|r| u64::from_str_radix(r.trim(), 16).ok()),
            // VT-x/SVM: `vcpu N reason NAME rip 0x... info1 ...`.
            "kvm_exit" => {
                let words: Vec<&str> = fields.split_whitespace().collect();
                if let Some(i) = words.iter().position(|w| *w == "reason") {
                    let reason = words.get(i + 1).copied().unwrap_or("?");
                    *self.by_event.entry(format!("kvm_exit:{reason}")).or_default() += 1;
                }
                let rip = words.iter().position(|w| *w == "rip").and_then(|i| words.get(i + 1));
                rip.and_then(|r| u64::from_str_radix(r.trim_start_matches("0x"), 16).ok())
            }
            _ => None,
        };
        if let Some(rip) = rip {
            *self.by_rip.entry(rip).or_default() += 1;
        }
    }

    /// The summary's section: events by count, then the busiest guest RIPs.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::from("\nIn-kernel events (KVM's tracepoints, this VM's threads):\n");
        let mut events: Vec<(&String, &u64)> = self.by_event.iter().collect();
        events.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (name, n) in events {
            let _ = writeln!(s, "{name:>40} {n:>12}");
        }
        let top = self.top_rips(10);
        if !top.is_empty() {
            let _ = writeln!(s, "  busiest guest RIPs (kvm_emulate_insn, kvm_exit):");
            for (rip, n) in top {
                let _ = writeln!(s, "{:>40} {n:>12}", format!("{rip:#x}"));
            }
        }
        s
    }

    /// The summary's `kernel_events` object.
    pub fn json(&self) -> serde_json::Value {
        let top: Vec<serde_json::Value> =
            self.top_rips(20).into_iter().map(|(rip, n)| serde_json::json!({ "rip": rip, "count": n })).collect();
        serde_json::json!({ "by_event": self.by_event, "top_rips": top })
    }

    /// The RIPs the most events came from, busiest first.
    pub fn top_rips(&self, n: usize) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self.by_rip.iter().map(|(r, c)| (*r, *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

/// A running tracefs instance and its reader.
pub struct KernelEvents {
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    counts: Arc<Mutex<KernelCounts>>,
    /// The VM's start on the monotonic clock (0 until known, or where the trace clock is another).
    start_ns: Arc<AtomicU64>,
    /// Whether the instance's trace clock is the monotonic clock, so event times can be placed.
    mono: bool,
    /// The events this host has, of [`EVENTS`].
    pub enabled: Vec<&'static str>,
}

/// Why KVM's tracepoints cannot be followed.
#[derive(Debug, thiserror::Error)]
pub enum KernelEventsError {
    #[error("in-kernel events need root (tracefs); not shown")]
    NotRoot,
    #[error("tracefs is not mounted and cannot be ({0})")]
    NoTracefs(std::io::Error),
    #[error("{}: {source}", path.display())]
    Tracefs { path: PathBuf, source: std::io::Error },
    #[error("cannot start the trace reader: {0}")]
    Thread(std::io::Error),
    #[error("the probe's VM: {0}")]
    Probe(Box<super::VmError>),
}

fn write(path: &Path, value: &str) -> Result<(), KernelEventsError> {
    std::fs::write(path, value).map_err(|source| KernelEventsError::Tracefs { path: path.to_path_buf(), source })
}

/// Where tracefs is, mounting it if it is not.
fn tracefs() -> Result<PathBuf, KernelEventsError> {
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(dir).join("events/kvm").is_dir() {
            return Ok(PathBuf::from(dir));
        }
    }
    let dir = Path::new("/sys/kernel/tracing");
    let c = |s: &str| std::ffi::CString::new(s).unwrap_or_default();
    let (src, target, fs) = (c("nodev"), c("/sys/kernel/tracing"), c("tracefs"));
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call and no data.
    let r = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    if r != 0 || !dir.join("events/kvm").is_dir() {
        return Err(KernelEventsError::NoTracefs(std::io::Error::last_os_error()));
    }
    Ok(dir.to_path_buf())
}

impl KernelEvents {
    /// Starts following this thread and the threads it starts from now on (the vCPUs).
    pub fn start() -> Result<Self, KernelEventsError> {
        Self::start_with(Vec::new())
    }

    /// Starts, handing the events to `sinks` too: one by one while there are fewer than
    /// [`STREAM_RATE`] a second, as a line of rates each second above that.
    pub fn start_with(sinks: Vec<Arc<dyn ExitSink>>) -> Result<Self, KernelEventsError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(KernelEventsError::NotRoot);
        }
        let root = tracefs()?;
        remove_stale_instances(&root.join("instances"));
        let dir = root.join("instances").join(format!("kvmscope-{}", std::process::id()));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).map_err(|source| KernelEventsError::Tracefs { path: dir.clone(), source })?;
        let started = (|| {
            // SAFETY: gettid has no preconditions.
            write(&dir.join("set_event_pid"), &unsafe { libc::gettid() }.to_string())?;
            write(&dir.join("options/event-fork"), "1")?;
            // The monotonic clock, so that each event can be placed among the exits.
            let mono = write(&dir.join("trace_clock"), "mono").is_ok();
            let all = EVENTS.iter().map(|e| ("kvm", *e)).chain(MMU_EVENTS.iter().map(|e| ("kvmmmu", *e)));
            let enabled: Vec<&'static str> = all
                .filter(|(system, e)| write(&dir.join(format!("events/{system}/{e}/enable")), "1").is_ok())
                .map(|(_, e)| e)
                .collect();
            write(&dir.join("tracing_on"), "1")?;
            let path = dir.join("trace_pipe");
            let pipe = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
                .map_err(|source| KernelEventsError::Tracefs { path, source })?;
            Ok::<_, KernelEventsError>((enabled, pipe, mono))
        })();
        let (enabled, pipe, mono) = match started {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(e);
            }
        };
        let (stop, counts) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(KernelCounts::default())));
        let start_ns = Arc::new(AtomicU64::new(0));
        let (s, c, t) = (stop.clone(), counts.clone(), start_ns.clone());
        let reader = std::thread::Builder::new()
            .name("kvm-trace".into())
            .spawn(move || read_pipe(pipe, &s, &c, &t, &sinks))
            .map_err(KernelEventsError::Thread)?;
        Ok(Self { dir, stop, reader: Some(reader), counts, start_ns, mono, enabled })
    }

    /// Tells the reader when the VM started (its exits' time 0), so that the events it hands
    /// the views carry times on the exits' clock.
    pub fn set_start(&self, started: std::time::Instant) {
        if self.mono {
            let start = monotonic_ns().saturating_sub(started.elapsed().as_nanos() as u64);
            self.start_ns.store(start.max(1), Ordering::Release);
        }
    }

    /// What has been counted so far.
    pub fn counts(&self) -> KernelCounts {
        lock(&self.counts).clone()
    }

    /// The counts per event alone (cheap: a few dozen entries), for a live view.
    pub fn event_counts(&self) -> BTreeMap<String, u64> {
        lock(&self.counts).by_event.clone()
    }

    /// The busiest guest RIPs so far (cheaper than all the counts: a view's sample).
    pub fn top_rips(&self, n: usize) -> Vec<(u64, u64)> {
        lock(&self.counts).top_rips(n)
    }

    /// A handle on the counts for another thread (the recording's sampler).
    pub fn counter(&self) -> Arc<Mutex<KernelCounts>> {
        self.counts.clone()
    }

    /// Stops tracing, reads what is left, removes the instance; the final counts.
    pub fn finish(mut self) -> KernelCounts {
        let _ = write(&self.dir.join("tracing_on"), "0");
        self.stop.store(true, Ordering::Release);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.counts()
    }
}

impl Drop for KernelEvents {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        for e in &self.enabled {
            let system = if MMU_EVENTS.contains(e) { "kvmmmu" } else { "kvm" };
            let _ = write(&self.dir.join(format!("events/{system}/{e}/enable")), "0");
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Removes the instances of kvmscope processes that are gone (killed before they could).
fn remove_stale_instances(instances: &Path) {
    for entry in std::fs::read_dir(instances).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("kvmscope-").and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// In-kernel events a second up to which the sinks get each one.
pub const STREAM_RATE: u64 = 1000;

/// What the sinks get of the events: each one while they are few, each second's rates when many.
struct Stream<'a> {
    sinks: &'a [Arc<dyn ExitSink>],
    second: std::time::Instant,
    in_second: u64,
    /// Counts at the start of this second, for its rates.
    at_second: BTreeMap<String, u64>,
    /// The time of the latest event, where known.
    last_t: Option<u64>,
}

impl Stream<'_> {
    fn line(&mut self, line: &str, start_ns: Option<u64>) {
        self.in_second += 1;
        if self.in_second <= STREAM_RATE + 1 {
            let line = KernelLine::parse(line, start_ns);
            self.last_t = line.t_ns.or(self.last_t);
            let line = if self.in_second <= STREAM_RATE {
                line
            } else {
                let text = format!("over {STREAM_RATE} events this second: counted, not shown one by one");
                KernelLine::note(KernelLineKind::Throttled, line.t_ns, text)
            };
            for s in self.sinks {
                s.on_kernel(&line);
            }
        }
    }

    fn tick(&mut self, counts: &KernelCounts) {
        if self.second.elapsed() < std::time::Duration::from_secs(1) {
            return;
        }
        if self.in_second > STREAM_RATE {
            let mut rates: Vec<(u64, &String)> = counts
                .by_event
                .iter()
                .filter(|(k, _)| !k.contains(':'))
                .map(|(k, v)| (v - self.at_second.get(k).copied().unwrap_or(0), k))
                .filter(|(n, _)| *n > 0)
                .collect();
            rates.sort_by_key(|r| std::cmp::Reverse(r.0));
            let shown: Vec<String> = rates.iter().map(|(n, k)| format!("{k} {n}/s")).collect();
            let line = format!("{} events/s, too many to show one by one: {}", self.in_second, shown.join(", "));
            let line = KernelLine::note(KernelLineKind::Rates, self.last_t, line);
            for s in self.sinks {
                s.on_kernel(&line);
            }
        }
        (self.second, self.in_second, self.at_second) = (std::time::Instant::now(), 0, counts.by_event.clone());
    }
}

/// Reads `trace_pipe` until told to stop (then until it is empty), counting each line.
fn read_pipe(
    mut pipe: std::fs::File,
    stop: &AtomicBool,
    counts: &Mutex<KernelCounts>,
    start_ns: &AtomicU64,
    sinks: &[Arc<dyn ExitSink>],
) {
    let mut buf = vec![0u8; 1 << 16];
    let mut partial = String::new();
    let mut stream =
        Stream { sinks, second: std::time::Instant::now(), in_second: 0, at_second: BTreeMap::new(), last_t: None };
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let mut fds = [libc::pollfd { fd: pipe.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        // SAFETY: one valid pollfd for the call's duration.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, if stopping { 0 } else { 100 }) };
        if ready <= 0 {
            if stopping {
                break;
            }
            continue;
        }
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                partial.push_str(&String::from_utf8_lossy(&buf[..n]));
                let mut c = lock(counts);
                let start = Some(start_ns.load(Ordering::Acquire)).filter(|&t| t != 0);
                while let Some(i) = partial.find('\n') {
                    c.parse_line(&partial[..i]);
                    if !sinks.is_empty() {
                        stream.line(&partial[..i], start);
                    }
                    partial.drain(..=i);
                }
                if !sinks.is_empty() {
                    stream.tick(&c);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stopping {
                    break;
                }
            }
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what a stream hands its sinks.
    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);
    impl ExitSink for Lines {
        fn on_exit(&self, _: &crate::trace::ExitEvent) {}
        fn on_kernel(&self, line: &KernelLine) {
            lock(&self.0).push(line.text.clone());
        }
    }

    #[test]
    fn few_events_stream_one_by_one_many_as_rates() {
        let lines = Arc::new(Lines::default());
        let sinks: Vec<Arc<dyn ExitSink>> = vec![lines.clone()];
        let mut stream = Stream {
            sinks: &sinks,
            second: std::time::Instant::now(),
            in_second: 0,
            at_second: BTreeMap::new(),
            last_t: None,
        };
        let mut counts = KernelCounts::default();
        let line = "  vcpu0-1 [000] ..... 1.0: kvm_pio: pio_write at 0x80 size 1 count 1 val 0x1 ";
        for _ in 0..1500 {
            counts.parse_line(line);
            stream.line(line, None);
        }
        stream.second -= std::time::Duration::from_secs(2);
        stream.tick(&counts);
        let got = lock(&lines.0);
        assert_eq!(got.len(), STREAM_RATE as usize + 2);
        assert_eq!(got[0], "kvm_pio: pio_write at 0x80 size 1 count 1 val 0x1");
        assert_eq!(got[1000], "over 1000 events this second: counted, not shown one by one");
        assert!(got[1001].starts_with("1500 events/s, too many to show one by one: kvm_pio 1500/s"), "{}", got[1000]);
    }

    #[test]
    fn trace_lines_count_by_event_reason_and_rip() {
        let mut c = KernelCounts::default();
        for line in [
            "           vcpu0-18072   [000] .....  5069.422171: kvm_emulate_insn: 0:10000c:bc e0 10 10 00 (prot32)",
            "           vcpu0-18072   [000] .....  5069.422992: kvm_emulate_insn: 0:10000c:3d 02 (prot32)",
            "           vcpu0-18072   [000] .N...  5069.434155: kvm_pio: pio_write at 0x3f8 size 1 count 1 val 0x48 ",
            " CPU 1/KVM-900 [001] d.... 10.5: kvm_exit: vcpu 1 reason EPT_VIOLATION rip 0xffffffff81001234 info1 0x0",
            "garbage",
        ] {
            c.parse_line(line);
        }
        assert_eq!(c.by_event["kvm_emulate_insn"], 2);
        assert_eq!(c.by_event["kvm_pio"], 1);
        assert_eq!(c.by_event["kvm_exit:EPT_VIOLATION"], 1);
        assert_eq!(c.top_rips(1), vec![(0x10000c, 2)]);
        assert_eq!(c.by_rip[&0xffff_ffff_8100_1234], 1);
    }
}

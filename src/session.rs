//! One run's skeleton, the same for the headless run, the TUI and the benches: `launch` builds the
//! VM with what the run is set up with besides the VM itself — limits, a gdb stub, a recording —
//! and starts it; `Launched` is the running VM with its controller; `finish` stops it, closes the
//! recording and hands back the report.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::controller::Controller;
use crate::decode::symbols::Symbols;
use crate::gdb::GdbServer;
use crate::recording::writer::{RecordError, WriteStats};
use crate::recording::{Recorder, RecordingConsole, header};
use crate::sink::ExitSink;
use crate::sink::pcap::PcapSink;
use crate::vmm::devices::Serial;
use crate::vmm::kernel_events::KernelEvents;
use crate::vmm::vm::catch_interrupts;
use crate::vmm::{Image, RunEnd, RunLimits, RunReport, RunningVm, Vm, VmConfig, VmError};

/// How to run.
#[derive(Default)]
pub struct Session {
    pub limits: RunLimits,
    /// A bound gdb stub to serve.
    pub gdb: Option<GdbServer>,
    /// `--record FILE`.
    pub record: Option<PathBuf>,
    /// `--pcap FILE`: the network card's frames, both ways.
    pub pcap: Option<PathBuf>,
    /// `--symbols FILE`: the guest's symbols for the views, where the image has none.
    pub symbols: Option<PathBuf>,
    /// `--kernel-events`: follow KVM's tracepoints for this VM (root, tracefs).
    pub kernel_events: bool,
    /// `--record-kernel-events`: and keep their counts in the recording.
    pub record_kernel_events: bool,
    /// `--restore FILE`: the state to start from (the VM is built from its options first).
    pub restore: Option<PathBuf>,
    /// `--replayable`: the recording also carries the starting state and the machine's files.
    pub replayable: bool,
    /// `replay --exec`: the recorded exits the guest must make again, reads answered from them.
    pub follow: Option<Vec<crate::vmm::timeline::ExitMark>>,
}

/// Errors setting up or finishing a run.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Record(#[from] RecordError),
    /// `--symbols` gave none.
    #[error("--{0}")]
    Symbols(#[from] crate::decode::symbols::SymbolsError),
    #[error("{0}")]
    Pcap(#[from] crate::files::FileError),
    #[error("--pcap needs a network card (--net tap=NAME)")]
    PcapWithoutNet,
    #[error(transparent)]
    Replayable(#[from] crate::recording::replayable::ReplayableError),
    #[error("--replayable: taking the starting state: {0}")]
    StartState(String),
}

impl SessionError {
    /// Whether the user's input is at fault (exit status 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            SessionError::Vm(e) => e.is_bad_input(),
            SessionError::Record(RecordError::Create { .. } | RecordError::NotAFile(_))
            | SessionError::Symbols(_)
            | SessionError::Pcap(_)
            | SessionError::PcapWithoutNet
            | SessionError::Replayable(_) => true,
            SessionError::Record(_) | SessionError::StartState(_) => false,
        }
    }
}

/// What was built, for the run's header line and the TUI's title.
#[derive(Debug, Clone)]
pub struct VmInfo {
    /// The image format ("multiboot", "elf64", "pvh" ...).
    pub format: &'static str,
    /// Boot mode, in lower case ("long", "protected", "real").
    pub mode: String,
    pub entry: u64,
    /// The memory map, in words.
    pub memory: String,
    /// How registers are read on each exit.
    pub registers_via: &'static str,
    /// What kvmscope changed for the host's sake, in words.
    pub adjustments: Vec<String>,
    /// The devices worth a line: `--irqchip`'s controllers, the virtio devices (where they are, how
    /// the guest learns of them).
    pub devices: Vec<String>,
}

/// The serial port as the UI types into it.
pub type SerialPort = Arc<Mutex<Serial<Box<dyn Write + Send>>>>;

/// A started run: the VM, its controller, and its recording; the report once the run has ended.
pub struct Launched {
    pub info: VmInfo,
    pub controller: Controller,
    running: RunningVm,
    report: Option<RunReport>,
    recording: Option<(Arc<Recorder>, PathBuf)>,
    /// `--pcap`'s file.
    pcap: Option<(Arc<PcapSink>, PathBuf)>,
    /// The gdb stub's thread, joined at the end so gdb hears how the run ended.
    gdb: Option<JoinHandle<()>>,
    /// The thread that records KVM's own counters every [`KVM_SAMPLE`], while recording.
    kvm_sampler: Option<JoinHandle<()>>,
    /// KVM's tracepoints for this VM, with `--kernel-events`.
    kernel: Option<KernelEvents>,
    /// The thread that reads the dirty log every second, with `--dirty-log`.
    dirty_sampler: Option<JoinHandle<()>>,
    /// `--record-kernel-events`.
    record_kernel_events: bool,
}

/// How often a recording samples KVM's own counters.
const KVM_SAMPLE: Duration = Duration::from_millis(100);

/// Builds the VM for `session`, with `sinks` seeing every exit, tells `announce` what was built,
/// and starts it: Ctrl-C and SIGTERM end the run with its summary, the recording (if any) and the
/// gdb stub (if any) are attached.
pub fn launch(
    mut config: VmConfig,
    mut session: Session,
    mut sinks: Vec<Arc<dyn ExitSink>>,
    announce: impl FnOnce(&VmInfo),
) -> Result<Launched, SessionError> {
    catch_interrupts();
    if session.replayable {
        crate::recording::replayable::check(&config.machine_args)?;
    }
    let machine_args = config.machine_args.clone();
    let recorder = match &session.record {
        Some(path) => {
            let mut head = header::for_run(&config.image, config.cpus);
            head.replayable = session.replayable;
            let recorder = Arc::new(Recorder::create(path, &head)?);
            let inner = std::mem::replace(&mut config.console, Box::new(std::io::sink()));
            config.console = Box::new(RecordingConsole { inner, recorder: recorder.clone() });
            sinks.push(recorder.clone());
            Some(recorder)
        }
        None => None,
    };
    let pcap = match &session.pcap {
        Some(_) if config.virtio.net.is_none() => return Err(SessionError::PcapWithoutNet),
        Some(path) => {
            if session.record.as_ref().is_some_and(|r| r == path) {
                let input = std::io::Error::other("it is the --record file too");
                return Err(crate::files::FileError::Io { what: "--pcap", path: path.clone(), source: input }.into());
            }
            let sink = Arc::new(PcapSink::create(path)?);
            sinks.push(sink.clone());
            Some((sink, path.clone()))
        }
        None => None,
    };
    let (dirty_log, irqchip, ioeventfd) = (config.dirty_log, config.irqchip, config.virtio.ioeventfd);
    let mut vm = Vm::new(config)?;
    if let Some(path) = &session.restore {
        vm.restore(path).map_err(VmError::from)?;
    }
    let mut devices = Vec::new();
    if irqchip && !vm.boot.is_linux() {
        devices
            .push("in-kernel PIC, IOAPIC, local APIC and PIT (--irqchip): a halted vCPU waits for an interrupt".into());
    }
    devices.extend(vm.virtio.describe(vm.linux_told));
    if ioeventfd && vm.virtio.is_empty() {
        crate::notice::say("--ioeventfd: this VM has no virtio device, so it has nothing to do");
    }
    let info = VmInfo {
        format: vm.boot.format,
        mode: format!("{:?}", vm.boot.mode).to_lowercase(),
        entry: vm.boot.entry,
        memory: vm.ram.map.to_string(),
        registers_via: if vm.sync_regs { "KVM_CAP_SYNC_REGS" } else { "KVM_GET_REGS" },
        adjustments: vm.adjustments.clone(),
        devices,
    };
    announce(&info);
    // From here on there is something to take down (a tracefs instance, the vCPU threads).
    crate::vmm::vm::must_clean_up();
    // Set up before the vCPU threads exist, so that they are followed from their start.
    let kernel = match session.kernel_events.then(|| KernelEvents::start_with(sinks.clone())) {
        Some(Ok(k)) => Some(k),
        Some(Err(why)) => {
            crate::notice::say(format!("--kernel-events: {why}"));
            None
        }
        None => None,
    };
    // A replayable recording's starting state, or the recording to follow, before the first
    // instruction: the vCPUs are held until then.
    let replaying = (session.replayable && recorder.is_some()) || session.follow.is_some();
    let held = session.limits.start_paused;
    session.limits.start_paused |= replaying;
    let running = vm.start(session.limits, sinks)?;
    if let Some(k) = &kernel {
        k.set_start(running.start());
    }
    if let Some(r) = &recorder {
        r.set_start(running.start());
    }
    let controller = Controller::new(&running);
    let gdb = match session.gdb.take().map(|g| g.spawn(controller.clone())) {
        Some(Ok(handle)) => Some(handle),
        Some(Err(e)) => {
            crate::notice::say(format!("gdb stub: cannot start its thread: {e}"));
            None
        }
        None => None,
    };
    let kvm_sampler = recorder.as_ref().and_then(|r| {
        let (recorder, controller) = (r.clone(), controller.clone());
        let tracepoints = kernel.as_ref().filter(|_| session.record_kernel_events).map(KernelEvents::counter);
        let sample = move || {
            while !controller.is_ending() {
                if let Ok(counts) = controller.kvm_counts() {
                    recorder.kvm(counts);
                }
                if let Some(t) = &tracepoints {
                    // The per-event counts only (the RIPs go in once, at the end), taken out of
                    // the reader's lock before a send that may wait for the writer.
                    let by_event = crate::sync::lock(t).by_event.clone();
                    recorder.kernel(&by_event, Vec::new());
                }
                std::thread::sleep(KVM_SAMPLE);
            }
        };
        std::thread::Builder::new().name("kvm-stats".into()).spawn(sample).ok()
    });
    let dirty_sampler = dirty_log.then(|| {
        let (recorder, controller) = (recorder.clone(), controller.clone());
        let sample = move || {
            while !controller.is_ending() {
                // In short naps, so that the end of the run does not wait for a whole interval.
                let started = std::time::Instant::now();
                while started.elapsed() < crate::vmm::dirty::INTERVAL && !controller.is_ending() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if controller.is_ending() {
                    // The run's end reads the last interval itself.
                    break;
                }
                match controller.sample_dirty() {
                    Some(Ok(pages)) => {
                        if let Some(r) = &recorder {
                            r.dirty(pages as u64);
                        }
                    }
                    Some(Err(e)) => {
                        crate::notice::say(format!("--dirty-log: {e}; no more dirty pages are read"));
                        break;
                    }
                    None => break,
                }
            }
        };
        std::thread::Builder::new().name("dirty-log".into()).spawn(sample).ok()
    });
    let dirty_sampler = dirty_sampler.flatten();
    let recording = recorder.zip(session.record);
    let record_kernel_events = session.record_kernel_events;
    let launched = Launched {
        info,
        controller,
        running,
        report: None,
        recording,
        pcap,
        gdb,
        kvm_sampler,
        kernel,
        dirty_sampler,
        record_kernel_events,
    };
    if replaying {
        let replayable = session.replayable.then_some(machine_args.as_slice());
        if let Err(e) = launched.set_up_replay(replayable, session.follow.take(), !held) {
            let _ = launched.finish(RunEnd::Quit);
            return Err(e);
        }
    }
    Ok(launched)
}

impl Launched {
    /// With every vCPU held before its first instruction: writes a replayable recording's
    /// starting state and the machine's files (options `replayable`), and has the guest follow
    /// the recorded exits `follow`; then lets it run (`resume`).
    fn set_up_replay(
        &self,
        replayable: Option<&[String]>,
        follow: Option<Vec<crate::vmm::timeline::ExitMark>>,
        resume: bool,
    ) -> Result<(), SessionError> {
        let c = &self.controller;
        if !c.wait_all_stopped(Duration::from_secs(10)) {
            return Err(SessionError::StartState("the vCPUs did not stop before their first instruction".into()));
        }
        if let (Some(args), Some((recorder, path))) = (replayable, &self.recording) {
            let file = path.with_file_name(format!(".kvmscope-start-{}.snap", std::process::id()));
            let taken = c.snapshot(&file).map_err(|e| SessionError::StartState(e.to_string()));
            let bytes = taken.and_then(|_| std::fs::read(&file).map_err(|e| SessionError::StartState(e.to_string())));
            let _ = std::fs::remove_file(&file);
            recorder.send_all(crate::recording::replayable::file_records(&bytes?, args)?);
        }
        if let Some(marks) = follow {
            c.shared().timeline.follow(marks);
        }
        if resume {
            c.resume();
        }
        Ok(())
    }

    /// Whether the guest still runs (or is stopped in the debugger).
    pub fn is_running(&self) -> bool {
        self.report.is_none()
    }

    /// Typed input for the guest's console (the UART, or the virtio console when the guest's
    /// console is `hvc0`), while the run goes on.
    pub fn type_input(&self, bytes: &[u8]) {
        if self.is_running() {
            self.running.type_input(bytes);
        }
    }

    /// What KVM's tracepoints have counted for this VM so far, per event (`--kernel-events`).
    pub fn kernel_event_counts(&self) -> Option<std::collections::BTreeMap<String, u64>> {
        self.kernel.as_ref().map(KernelEvents::event_counts)
    }

    /// The guest RIPs the most in-kernel events came from (`--kernel-events`).
    pub fn kernel_top_rips(&self, n: usize) -> Option<Vec<(u64, u64)>> {
        self.kernel.as_ref().map(|k| k.top_rips(n))
    }

    /// The console's devices with the bytes each wrote, and the one typed input goes to.
    pub fn console_sources(&self) -> (Vec<(&'static str, u64)>, &'static str) {
        (self.running.console_sources(), self.running.input_target())
    }

    /// Waits up to `wait` for the run to end by itself; when it has, stops the vCPUs and returns
    /// the report (once).
    pub fn poll(&mut self, wait: Duration) -> Option<&RunReport> {
        if !self.is_running() {
            return None;
        }
        let end = self.running.poll(wait)?;
        Some(self.report.insert(self.running.finish(end)))
    }

    /// Waits for the run to end by itself, then finishes it.
    pub fn wait(self) -> Result<RunReport, SessionError> {
        self.wait_with(|| {})
    }

    /// Like [`wait`](Self::wait), calling `tick` every 20 ms meanwhile.
    pub fn wait_with(mut self, mut tick: impl FnMut()) -> Result<RunReport, SessionError> {
        while self.is_running() {
            self.poll(Duration::from_millis(20));
            tick();
        }
        self.finish(RunEnd::Quit)
    }

    /// Ends the run with `end` if it still goes on, closes the recording (saying what it holds)
    /// and returns the report.
    pub fn finish(self, end: RunEnd) -> Result<RunReport, SessionError> {
        self.finish_with((end, None))
    }

    /// [`Self::finish`] with a vCPU's end and its crash report (a guest's end the TUI kept).
    pub fn finish_with(mut self, end: crate::vmm::outcome::VcpuEnd) -> Result<RunReport, SessionError> {
        let mut report = match self.report.take() {
            Some(report) => report,
            None => self.running.finish(end),
        };
        let again = self.controller.reexecuted();
        if again > 0 {
            crate::notice::say(format!(
                "{again} exits were made again going back in time: the summary and the recording count each once"
            ));
        }
        report.kernel = self.kernel.take().map(KernelEvents::finish);
        if let (Some((recorder, _)), Some(counts), true) = (&self.recording, &report.kernel, self.record_kernel_events)
        {
            recorder.kernel(&counts.by_event, counts.top_rips(crate::vmm::kernel_events::RECORDED_RIPS));
        }
        if let Some(gdb) = self.gdb.take() {
            let _ = gdb.join();
        }
        if let Some(sampler) = self.kvm_sampler.take() {
            let _ = sampler.join();
        }
        if let Some(sampler) = self.dirty_sampler.take() {
            let _ = sampler.join();
        }
        if let Some((pcap, path)) = self.pcap {
            match pcap.finish() {
                Ok(frames) => crate::notice::say(format!("wrote {frames} frames to {}", path.display())),
                Err(e) => crate::notice::say(format!("--pcap {}: cannot write: {e}", path.display())),
            }
        }
        if let Some((recorder, path)) = self.recording {
            if let Ok(counts) = &report.kvm {
                recorder.kvm(counts.clone());
            }
            let WriteStats { exits, chunks, bytes, .. } = recorder.finish(&report.end, report.elapsed)?;
            let per_exit =
                if exits > 0 { format!(", {:.1} bytes per exit", bytes as f64 / exits as f64) } else { String::new() };
            crate::notice::say(format!(
                "recorded {exits} exits in {} ({bytes} bytes in {chunks} chunks{per_exit})",
                path.display()
            ));
        }
        Ok(report)
    }
}

/// The guest's symbols for the views and the summary: `--symbols` (an error when it gives none),
/// or the kernel image's own (none for a raw image, or an image without them).
pub fn guest_symbols(config: &VmConfig, session: &Session) -> Result<Symbols, SessionError> {
    let image = match (&session.symbols, &config.image) {
        (Some(path), _) => return Ok(Symbols::load(path)?),
        (None, Image::Kernel(path)) => path,
        (None, Image::Demo) => return Ok(Symbols::from_bytes(crate::guests::DEMO)),
        (None, Image::Raw { .. }) => return Ok(Symbols::default()),
    };
    Ok(Symbols::load(image).unwrap_or_default())
}

//! Building a VM (KVM, memory, devices, the loaded image, vCPUs) and running it to its end.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};

use super::boot_cpu;
use super::bus::{Bus, Buses};
use super::clock::Clock;
use super::devices::debugcon::{self, DebugCon};
use super::devices::i8042::{self, I8042};
use super::devices::serial::IrqLine;
use super::devices::{
    Cmos, DebugExit, PostCode, ResetRegister, Serial, cmos, debug_exit, post, reset_register, serial,
};
use super::kick::{self, Kickable};
use super::kvm::{VmError, kvm_err, open_kvm};
use super::kvm_stats::{KvmCounts, KvmStats, StatsError, VmStats};
use super::linux;
use super::loader::{self, BootMode, BootSetup, LoaderError};
use super::memory::GuestRam;
use super::outcome::{CrashReport, RunEnd, VmmFailure};
use super::shared::{OwnLine, Shared};
use super::slots;
use super::vcpu::{Vcpu, VcpuEnd};
use super::virtio::{VirtioConfig, VirtioSet};
use crate::console::SharedWriter;
use crate::debug::DebugState;
use crate::sink::ExitSink;
use crate::sync::lock;
use crate::trace::stage_times::StageTimes;
use crate::trace::{Counters, DeviceCounters};

/// What to boot.
#[derive(Debug, Clone)]
pub enum Image {
    /// A kernel recognised by content (multiboot, 64-bit ELF).
    Kernel(PathBuf),
    /// The built-in demo guest (assets/guests/demo.mb.S).
    Demo,
    /// A raw binary copied to `load` and entered at `entry` in `mode`.
    Raw { path: PathBuf, load: u64, entry: u64, mode: BootMode },
}

/// Everything needed to build a VM.
pub struct VmConfig {
    pub image: Image,
    pub mem_size: u64,
    pub cmdline: String,
    pub cpus: u32,
    /// Where the guest's serial output goes (and its debug console's, without `debugcon`).
    pub console: Box<dyn Write + Send>,
    /// `--debugcon FILE`: where the debug console ports' bytes go instead of the console.
    pub debugcon: Option<Box<dyn Write + Send>>,
    /// An initrd for a Linux kernel.
    pub initrd: Option<PathBuf>,
    /// Adjust CPUID and the command line for what the host's KVM cannot run (Linux guests).
    pub host_workarounds: bool,
    /// `--cpu-features`: CPUID bits to clear or set, after kvmscope's own adjustments.
    pub cpu_features: Vec<linux::CpuFeature>,
    /// `--disk`, `--virtio`, `--ioeventfd`.
    pub virtio: VirtioConfig,
    /// `--trap-msr`: MSRs whose guest accesses exit to kvmscope.
    pub trap_msrs: Vec<u32>,
    /// `--dirty-log`: KVM logs the pages the guest writes.
    pub dirty_log: bool,
    /// `--irqchip`: the in-kernel PIC, IOAPIC, local APIC and PIT for a guest that is not Linux
    /// (Linux guests always have them), as firmware such as SeaBIOS expects of a PC.
    pub irqchip: bool,
    /// The `run` options that shaped this machine, as given: a snapshot keeps them.
    pub machine_args: Vec<String>,
}

/// What a finished run leaves behind.
pub struct RunReport {
    pub end: RunEnd,
    /// Exact counters, all vCPUs merged.
    pub counters: Counters,
    /// Per-vCPU counters.
    pub per_vcpu: Vec<Counters>,
    /// When the guest crashed: the vCPU's state at that moment.
    pub crash: Option<Box<CrashReport>>,
    /// What KVM itself counted, or why it could not be read.
    pub kvm: Result<KvmCounts, StatsError>,
    /// The virtio devices' events, counted.
    pub devices: DeviceCounters,
    /// The dirty log's history (`--dirty-log`).
    pub dirty: Option<super::dirty::DirtyTracker>,
    /// What KVM's tracepoints counted (`--kernel-events`), filled in by the session.
    pub kernel: Option<super::kernel_events::KernelCounts>,
    /// Where the vCPU loops' time went (`--self-profile`).
    pub self_profile: Option<StageTimes>,
    pub elapsed: Duration,
    /// How the run went against the recording it followed (`replay --exec`).
    pub follow: Option<super::timeline::FollowVerdict>,
}

/// Limits on a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunLimits {
    pub timeout: Option<Duration>,
    pub max_exits: Option<u64>,
    /// Hold every vCPU before its first instruction (for `--gdb-wait`).
    pub start_paused: bool,
    /// `--stacks`: walk the guest's call stack on one exit in this many (1: every exit).
    pub stacks_every: Option<u64>,
    /// `--self-profile`: time the stages of the vCPU loop.
    pub self_profile: bool,
    /// `--checkpoint-every`: how often kvmscope takes checkpoints of its own once time travel
    /// is on.
    pub checkpoint_every: super::snapshot::every::Every,
}

/// A built VM, ready to run.
pub struct Vm {
    _kvm: Kvm,
    _fd: VmFd,
    pub ram: GuestRam,
    pub boot: BootSetup,
    pub pio: Bus,
    pub mmio: Bus,
    vcpus: Vec<VcpuFd>,
    /// Whether KVM copies registers into kvm_run on each exit.
    pub sync_regs: bool,
    /// The serial port, for input from the UI.
    pub serial: Arc<Mutex<Serial<Box<dyn Write + Send>>>>,
    /// The virtio devices.
    pub virtio: VirtioSet,
    /// The guest's console, shared by the devices that write to it.
    console: SharedWriter,
    /// Typed input goes to the virtio console (the guest's console is `hvc0`), not the UART.
    input_to_virtio: bool,
    /// Linux was told of the virtio devices on its command line.
    pub linux_told: bool,
    /// What kvmscope changed for the host's sake (CPUID, command line), in words.
    pub adjustments: Vec<String>,
    /// The memory slots KVM has.
    slots: Vec<slots::Slot>,
    /// KVM sends MSR filter denials to userspace.
    msr_exits: bool,
    /// The MSRs `--trap-msr` trapped.
    trapped_msrs: Vec<u32>,
    /// `--dirty-log`: the RAM slots are dirty-logged for the whole run.
    dirty_log: bool,
    /// KVM's manual dirty-log protection is on.
    dirty_manual: bool,
    /// KVM's own counters of this VM, or why there are none.
    kvm_stats: Result<VmStats, StatsError>,
    /// The MSRs KVM says make a vCPU's state.
    msr_list: Vec<u32>,
    /// KVM models the interrupt controllers and the PIT.
    irqchip: bool,
    machine_args: Vec<String>,
    /// The first exit's sequence number (a restored snapshot's position).
    first_seq: u64,
    /// The guest's output is dropped while these are set (going over its past again).
    output_mutes: Vec<Arc<AtomicBool>>,
}

/// Set by SIGINT/SIGTERM; polled by the run loop.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Set once a run has something to take down on the host (a tracefs instance, vCPU threads, the
/// terminal): until then an interrupt ends the process at once, whatever set-up is waiting for.
static MUST_CLEAN_UP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    if !MUST_CLEAN_UP.load(Ordering::SeqCst) {
        const MSG: &[u8] = b"kvmscope: interrupted during set-up\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG outlives the call.
        unsafe {
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            libc::_exit(130);
        }
    }
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// From now on an interrupt ends the run through its loop, which takes down what it set up.
pub fn must_clean_up() {
    MUST_CLEAN_UP.store(true, Ordering::SeqCst);
}

/// Makes Ctrl-C, SIGTERM and SIGHUP (the terminal went away) end the run with its summary instead
/// of killing the process, so that what it set up on the host (a tracefs instance) is taken down.
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let _ = vmm_sys_util::signal::register_signal_handler(sig, on_interrupt);
    }
}

/// Whether Ctrl-C or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

impl Vm {
    /// Opens KVM, maps memory, loads the image, creates devices and vCPUs in their entry state.
    pub fn new(config: VmConfig) -> Result<Self, VmError> {
        let kvm = open_kvm()?;
        let fd = kvm.create_vm().map_err(kvm_err("creating a VM (KVM_CREATE_VM)"))?;
        let dirty_manual = slots::manual_protect(&fd);
        // MSR exits for the filter's denials, so that `--trap-msr` and `:trap msr` can work.
        let msr_exits = super::msr::enable(&kvm, &fd);
        if !config.trap_msrs.is_empty() {
            if !msr_exits {
                return Err(super::msr::MsrError::Unsupported.into());
            }
            super::msr::set_traps(&fd, &config.trap_msrs)?;
        }
        let ram = GuestRam::new(config.mem_size)?;
        let slots = slots::log_dirty(slots::layout(ram.host_ranges(), &[]), config.dirty_log);
        slots::apply(&fd, &[], &slots).map_err(VmError::Slots)?;
        let initrd = config.initrd.as_deref();
        let boot = match &config.image {
            Image::Kernel(path) => loader::load_kernel(path, &ram, &config.cmdline, initrd)?,
            Image::Demo => loader::load_kernel_bytes(
                std::path::Path::new("demo"),
                crate::guests::DEMO,
                &ram,
                &config.cmdline,
                initrd,
            )?,
            Image::Raw { path, load, entry, mode } => {
                loader::raw::load(path, &ram, *load, *entry, *mode).map_err(|e| e.named(loader::RAW))?
            }
        };
        let is_linux = boot.is_linux();
        let image_path = match &config.image {
            Image::Kernel(p) | Image::Raw { path: p, .. } => p.clone(),
            Image::Demo => PathBuf::from("demo"),
        };
        // Other CPUs wait for the guest's INIT and STARTUP IPIs, which need the in-kernel APIC.
        if config.cpus > 1 && !is_linux && !config.irqchip {
            return Err(LoaderError::Invalid {
                noun: loader::KERNEL,
                path: image_path,
                what: format!(
                    "--cpus {} needs a Linux kernel, or --irqchip for a guest that starts its CPUs itself \
                     (INIT and STARTUP IPIs through its local APIC)",
                    config.cpus
                ),
            }
            .into());
        }
        // An emulating host (PVM) fails on some instructions Linux uses: keep Linux off them.
        let emulating_host = is_linux
            && config.host_workarounds
            && crate::vmm::probe::probe().is_ok_and(|p| p.int3_at_cpl0.works && !p.sw_breakpoint.works);
        let mut adjustments = Vec::new();
        if boot.mode != BootMode::Real && !boot_cpu::write_boot_tables(&ram, boot.mode) {
            return Err(LoaderError::Invalid {
                noun: loader::KERNEL,
                path: PathBuf::from("(boot tables)"),
                what: "guest RAM too small for the boot area".into(),
            }
            .into());
        }

        if is_linux {
            ram.write(super::mptable::MPTABLE_START, &super::mptable::build(config.cpus as u8));
            super::acpi::write(&ram, config.cpus as u8);
        }
        // The PC's interrupt controllers and timer: Linux's, and other guests' on request. Without
        // them a halted vCPU exits to kvmscope (and ends the run); with them KVM waits for an IRQ.
        let irqchip = is_linux || config.irqchip;
        let irq = if irqchip {
            linux::create_irqchip(&fd).map_err(kvm_err("the in-kernel irqchip and PIT"))?;
            let evt = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).map_err(VmError::EventFd)?;
            fd.register_irqfd(&evt, 4).map_err(kvm_err("the serial port's IRQ 4 (irqfd)"))?;
            IrqLine(Some(evt))
        } else {
            IrqLine(None)
        };
        let console = SharedWriter::new(config.console);
        let out = |c: &SharedWriter, name| -> Box<dyn Write + Send> { Box::new(c.source(name)) };
        let virtio =
            VirtioSet::build(&config.virtio, is_linux, &ram, &fd, irqchip, || out(&console, "virtio-console"))?;
        // The command line is Linux's: other boot-protocol images (memtest86+) get none of it.
        let linux_cmdline = boot.format == "pvh" || boot.kernel_version.is_some();
        let linux_told = linux_cmdline && !virtio.is_empty();
        let mut added = Vec::new();
        if linux_told {
            added.push(virtio.cmdline());
        }
        if emulating_host && linux_cmdline {
            added.push(linux::EMULATION_CMDLINE.to_string());
            adjustments.push(format!("command line += \"{}\"", linux::EMULATION_CMDLINE));
        }
        if !added.is_empty() {
            let cmdline = format!("{} {}", config.cmdline, added.join(" ")).trim().to_string();
            match boot.format {
                "pvh" => loader::pvh::set_cmdline(&ram, &image_path, &cmdline)?,
                _ => loader::bzimage::set_cmdline(&ram, &image_path, &cmdline)?,
            }
        }
        let input_to_virtio = virtio.has_console() && config.cmdline.contains("console=hvc");
        let debugcon = config.debugcon.map(SharedWriter::new).unwrap_or_else(|| console.clone());
        let output_mutes = vec![console.muted.clone(), debugcon.muted.clone()];
        let serial = Arc::new(Mutex::new(Serial::with_irq(out(&console, "serial"), irq)));
        let console_out = console.clone();
        let mut pio = Bus::default();
        pio.insert("serial", serial::PORT as u64, serial::SIZE, serial.clone())?;
        if is_linux {
            pio.insert("i8042", i8042::PORT as u64, i8042::SIZE, Arc::new(Mutex::new(I8042)))?;
        }
        pio.insert("debug-exit", debug_exit::PORT as u64, debug_exit::SIZE, Arc::new(Mutex::new(DebugExit)))?;
        pio.insert("post", post::PORT as u64, 1, Arc::new(Mutex::new(PostCode::default())))?;
        let low_ram = ram.map.low_ram_end();
        let cmos = Cmos::new(low_ram, ram.map.size() - low_ram, config.cpus.max(1) as u8);
        pio.insert("cmos", cmos::PORT as u64, cmos::SIZE, Arc::new(Mutex::new(cmos)))?;
        for (name, port, device) in [
            ("port92", reset_register::PORT92, ResetRegister::port92()),
            ("reset-control", reset_register::RESET_CONTROL, ResetRegister::reset_control()),
        ] {
            pio.insert(name, port as u64, 1, Arc::new(Mutex::new(device)))?;
        }
        for (name, port) in [("debugcon", debugcon::QEMU_PORT), ("port-e9", debugcon::BOCHS_PORT)] {
            let device = DebugCon::new(out(&debugcon, "debugcon"));
            pio.insert(name, port as u64, 1, Arc::new(Mutex::new(device)))?;
        }
        let mut mmio = Bus::default();
        virtio.attach(&mut mmio)?;

        let sync_regs = {
            let want = kvm_bindings::KVM_SYNC_X86_REGS | kvm_bindings::KVM_SYNC_X86_SREGS;
            (kvm.check_extension_int(Cap::SyncRegs) as u32) & want == want
        };
        let mut vcpus = Vec::new();
        for i in 0..config.cpus.max(1) {
            let vcpu = fd.create_vcpu(i as u64).map_err(kvm_err("creating a vCPU"))?;
            let mut cpuid =
                kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).map_err(kvm_err("reporting CPUID"))?;
            linux::set_apic_id(&mut cpuid, i);
            if is_linux {
                let mut said = linux::adjust_cpuid(&mut cpuid, emulating_host);
                said.extend(linux::apply_cpu_features(&mut cpuid, &config.cpu_features));
                if i == 0 {
                    adjustments.extend(said);
                }
            }
            vcpu.set_cpuid2(&cpuid).map_err(kvm_err("setting CPUID"))?;
            if irqchip {
                linux::setup_lapic(&vcpu).map_err(kvm_err("the local APIC"))?;
            }
            if is_linux {
                linux::setup_fpu(&vcpu).map_err(kvm_err("the FPU"))?;
            }
            let mut sregs = vcpu.get_sregs().map_err(kvm_err("reading system registers"))?;
            let regs = boot_cpu::entry_state(&boot, &mut sregs);
            vcpu.set_sregs(&sregs).map_err(kvm_err("setting system registers"))?;
            vcpu.set_regs(&regs).map_err(kvm_err("setting registers"))?;
            vcpus.push(vcpu);
        }
        // KVM's own counters, where this host's KVM has them (said once, in the summary, if not).
        let kvm_stats = KvmStats::open(&fd).and_then(|vm| {
            let vcpus = vcpus.iter().map(KvmStats::open).collect::<Result<Vec<_>, _>>()?;
            Ok(VmStats { vm, vcpus })
        });
        let msr_list = kvm.get_msr_index_list().map(|l| l.as_slice().to_vec()).unwrap_or_default();
        Ok(Self {
            msr_list,
            irqchip,
            machine_args: config.machine_args.clone(),
            first_seq: 0,
            output_mutes,
            _kvm: kvm,
            _fd: fd,
            ram,
            boot,
            pio,
            mmio,
            vcpus,
            sync_regs,
            serial,
            virtio,
            console: console_out,
            input_to_virtio,
            linux_told,
            adjustments,
            slots,
            kvm_stats,
            msr_exits,
            trapped_msrs: config.trap_msrs.clone(),
            dirty_log: config.dirty_log,
            dirty_manual,
        })
    }

    /// Puts the state of the snapshot at `path` into this VM, built from the snapshot's options,
    /// before its vCPUs first run; its exits are numbered on from the snapshot's.
    pub fn restore(&mut self, path: &std::path::Path) -> Result<(), super::snapshot::SnapshotError> {
        use super::snapshot::{self, SnapshotError};
        let snap = snapshot::file::read(path)?;
        let (header, state) = (&snap.header, &snap);
        if state.machine.vcpus.len() != self.vcpus.len() {
            return Err(SnapshotError::Vcpus { snapshot: state.machine.vcpus.len(), vm: self.vcpus.len() });
        }
        // SAFETY: no vCPU has run yet and no virtio worker has started.
        if !snap.write_ram(&mut unsafe { self.ram.slices_mut() }) {
            return Err(snapshot::memory_mismatch(&self.ram, &snap.header));
        }
        if let (Some(chips), true) = (&state.machine.chips, self.irqchip) {
            chips.restore(&self._fd).map_err(SnapshotError::Chips)?;
        }
        snapshot::restore_devices(&self.pio, &self.mmio, &state.machine.devices)?;
        for (vcpu, (fd, s)) in self.vcpus.iter().zip(&state.machine.vcpus).enumerate() {
            s.restore(fd).map_err(|source| SnapshotError::Vcpu { vcpu, source })?;
        }
        self.first_seq = header.seq;
        Ok(())
    }

    /// Runs every vCPU on its own thread until the run ends; `sinks` see every exit.
    pub fn run(self, limits: RunLimits, sinks: Vec<Arc<dyn ExitSink>>) -> Result<RunReport, VmError> {
        Ok(self.start(limits, sinks)?.wait())
    }

    /// Starts every vCPU on its own thread and returns at once.
    pub fn start(self, limits: RunLimits, sinks: Vec<Arc<dyn ExitSink>>) -> Result<RunningVm, VmError> {
        kick::install();
        // What kvmscope wrote to build the machine (the image, boot tables) is no write of the run's.
        let _ = self.ram.take_written();
        let Vm {
            _kvm,
            _fd,
            ram,
            boot: _,
            pio,
            mmio,
            vcpus,
            sync_regs,
            serial,
            virtio,
            console,
            input_to_virtio,
            linux_told: _,
            adjustments: _,
            slots,
            kvm_stats,
            msr_exits,
            trapped_msrs,
            dirty_log,
            dirty_manual,
            msr_list,
            irqchip,
            machine_args,
            first_seq,
            output_mutes,
        } = self;
        let (debug, commands) = DebugState::new(vcpus.len());
        // A single step executes one instruction, not an interrupt handler's first one too.
        let guest_debug = _kvm.check_extension_raw(kvm_bindings::KVM_CAP_SET_GUEST_DEBUG2 as libc::c_ulong);
        debug.set_steps_block_irqs(guest_debug > 0 && guest_debug as u32 & kvm_bindings::KVM_GUESTDBG_BLOCKIRQ != 0);
        let clock = Clock::start();
        let shared = Arc::new(Shared {
            ram: ram.clone(),
            buses: Buses { pio, mmio },
            clock,
            seq: OwnLine(AtomicU64::new(first_seq)),
            stopping: AtomicBool::new(false),
            // As a sequence number: a restored run counts from where its snapshot was.
            max_exits: limits.max_exits.map_or(u64::MAX, |n| first_seq.saturating_add(n)),
            stacks_every: limits.stacks_every.filter(|&n| n > 0),
            counters: vcpus.iter().map(|_| Mutex::new(Counters::default())).collect(),
            sinks,
            debug,
            vm: _fd,
            slots: Mutex::new(slots),
            threads: Mutex::new(Vec::new()),
            kvm_stats,
            virtio,
            msr_exits,
            trapped_msrs: Mutex::new(trapped_msrs),
            dirty_log_always: dirty_log,
            dirty_manual,
            dirty: Mutex::default(),
            pending_dirty: Mutex::default(),
            log_for_views: AtomicBool::new(dirty_log),
            log_for_checkpoints: AtomicBool::new(false),
            end_request: Mutex::new(None),
            ended: std::sync::OnceLock::new(),
            stage_times: limits.self_profile.then(Mutex::default),
            msr_list,
            irqchip,
            checkpoints: Mutex::default(),
            timeline: super::timeline::Timeline::new(first_seq),
            checkpoint_every: limits.checkpoint_every,
            ran_ns: AtomicU64::new(0),
            last_checkpoint_at: AtomicU64::new(first_seq),
            last_checkpoint_ran: AtomicU64::new(0),
            output_mutes,
            machine_args,
            hold_end: AtomicBool::new(false),
            held_end: Mutex::new(None),
        });
        if limits.start_paused {
            shared.debug.raise_pause();
        }
        if let Err(e) = shared.virtio.start(clock, &shared.sinks) {
            return Err(super::virtio::VirtioError::Thread(e).into());
        }
        let (tx, ends) = mpsc::channel::<VcpuEnd>();
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        for ((i, fd), commands) in vcpus.into_iter().enumerate().zip(commands) {
            let vcpu = Vcpu::new(i as u32, fd, shared.clone(), sync_regs, commands);
            let tx = tx.clone();
            let spawned = std::thread::Builder::new().name(format!("vcpu{i}")).spawn(move || {
                if let Some(end) = vcpu.run() {
                    let _ = tx.send(end);
                }
            });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    let mut failed = RunningVm {
                        shared,
                        threads,
                        ends,
                        deadline: None,
                        serial,
                        console,
                        input_to_virtio,
                        _ram: ram,
                    };
                    failed.finish((RunEnd::VmmError(VmmFailure::Thread { reason: e.to_string() }), None));
                    return Err(VmError::Thread(e));
                }
            }
        }
        use std::os::unix::thread::JoinHandleExt;
        *lock(&shared.threads) = threads.iter().map(|t| t.as_pthread_t()).collect();
        let deadline = limits.timeout.map(|t| shared.clock.started() + t);
        Ok(RunningVm { shared, threads, ends, deadline, serial, console, input_to_virtio, _ram: ram })
    }
}

/// A VM whose vCPUs are running.
pub struct RunningVm {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    ends: mpsc::Receiver<VcpuEnd>,
    deadline: Option<Instant>,
    serial: Arc<Mutex<Serial<Box<dyn Write + Send>>>>,
    console: SharedWriter,
    input_to_virtio: bool,
    /// Guest memory stays mapped until the vCPUs are joined.
    _ram: GuestRam,
}

impl RunningVm {
    /// The state the vCPUs share (memory, counters, the debug state): for the controller.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// When the VM started; event timestamps count from here.
    pub fn start(&self) -> Instant {
        self.shared.clock.started()
    }

    /// The serial port, for typed input.
    pub fn serial(&self) -> &Arc<Mutex<Serial<Box<dyn Write + Send>>>> {
        &self.serial
    }

    /// Typed input for the guest's console: the virtio console when the guest's console is `hvc0`,
    /// else the UART.
    pub fn type_input(&self, bytes: &[u8]) {
        if self.input_target() == "virtio-console" && self.shared.virtio.type_input(bytes) {
            return;
        }
        if let Ok(mut s) = self.serial.lock() {
            s.enqueue_input(bytes);
        }
    }

    /// The device typed input goes to.
    pub fn input_target(&self) -> &'static str {
        if self.input_to_virtio { "virtio-console" } else { "serial" }
    }

    /// Each device that writes to the guest's console, with the bytes it has written.
    pub fn console_sources(&self) -> Vec<(&'static str, u64)> {
        self.console.sources()
    }

    /// Waits up to `wait` for the run to end by itself (a vCPU ended it, Ctrl-C, the timeout).
    pub fn poll(&self, wait: Duration) -> Option<VcpuEnd> {
        match self.ends.recv_timeout(wait) {
            Ok(end) => Some(end),
            Err(mpsc::RecvTimeoutError::Disconnected) => Some((RunEnd::VmmError(VmmFailure::NoReason), None)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let requested = lock(&self.shared.end_request).take();
                if let Some(end) = requested {
                    Some((end, None))
                } else if interrupted() {
                    Some((RunEnd::Interrupted, None))
                } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
                    Some((RunEnd::Timeout, None))
                } else {
                    None
                }
            }
        }
    }

    /// Waits for the run to end by itself, then stops it.
    pub fn wait(mut self) -> RunReport {
        let end = loop {
            if let Some(end) = self.poll(Duration::from_millis(20)) {
                break end;
            }
        };
        self.finish(end)
    }

    /// Stops every vCPU, joins the threads and reports.
    pub fn finish(&mut self, (end, crash): VcpuEnd) -> RunReport {
        let shared = &self.shared;
        let _ = shared.ended.set(end.clone());
        shared.stopping.store(true, Ordering::Release);
        use std::os::unix::thread::JoinHandleExt;
        for t in &self.threads {
            Kickable(t.as_pthread_t()).kick();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        shared.virtio.stop();
        if let Ok(mut s) = self.serial.lock() {
            if let Some(w) = s.writer_mut() {
                let _ = w.flush();
            }
        }
        let per_vcpu: Vec<Counters> = (0..shared.counters.len()).map(|i| shared.counters_of(i).clone()).collect();
        let kvm = shared.kvm_counts();
        RunReport {
            devices: shared.virtio.counters(),
            kernel: None,
            dirty: (shared.dirty_logging() || lock(&shared.dirty).intervals > 0).then(|| {
                if shared.dirty_logging() {
                    let _ = shared.sample_dirty();
                }
                lock(&shared.dirty).clone()
            }),
            end,
            counters: shared.merged_counters(),
            per_vcpu,
            crash,
            kvm,
            self_profile: shared.stage_times.as_ref().map(|t| lock(t).clone()),
            follow: shared.timeline.follow_verdict(),
            elapsed: shared.clock.started().elapsed(),
        }
    }
}

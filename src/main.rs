//! The kvmscope command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kvmscope::gdb::{GdbListen, GdbServer};
use kvmscope::headless::{self, HeadlessOptions};
use kvmscope::session::{Session, SessionError};
use kvmscope::summary::SummaryFormat;
use kvmscope::vmm::loader::BootMode;
use kvmscope::vmm::virtio::{DiskSpec, Extra, NetSpec, VirtioConfig};
use kvmscope::vmm::{Image, RunLimits, VmConfig};

/// A small KVM virtual machine monitor built to be looked into: every vmexit, live.
#[derive(Parser)]
#[command(name = "kvmscope", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Boot a guest and watch its exits.
    Run(Box<RunArgs>),
    /// Measure what this host's KVM does for a debugger, and which mechanisms kvmscope will use.
    Probe {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Statistics of a recorded run (the run's summary and more).
    Stats(kvmscope::analysis::stats::StatsArgs),
    /// Export a recorded run as JSON Lines, CSV, a Chrome/Perfetto trace, folded stacks or Parquet.
    Export(kvmscope::analysis::export::ExportArgs),
    /// Draw a recorded run's call stacks (`run --stacks`) as a flame graph SVG.
    Flamegraph(kvmscope::analysis::folded::FlamegraphArgs),
    /// What changed between two recorded runs (like `perf diff`): exits by reason, port, device
    /// register, guest function, MSR or virtio queue, with counts and handling time in both.
    Diff(kvmscope::analysis::diff::DiffArgs),
    /// List the project's test and demo guests: what each does, and the command that runs it.
    Guests,
    /// Browse a recorded run in the TUI.
    Replay {
        /// The trace file.
        file: PathBuf,
        /// The guest's symbols for the profile screen (default: the recorded guest image's).
        #[arg(long, value_name = "FILE")]
        symbols: Option<PathBuf>,
        /// Re-execute the recorded guest (a recording made with --replayable): its machine built
        /// again from the files the recording carries, every read answered as recorded; in the
        /// TUI, headless, or with gdb attached (reverse execution included).
        #[arg(long)]
        exec: bool,
        /// With --exec: run to the end without the TUI, end with the recorded run's status and say
        /// whether the guest followed the recording exactly.
        #[arg(long, requires = "exec")]
        headless: bool,
        /// With --exec: serve a gdb remote stub on this address.
        #[arg(long, value_name = "ADDR", requires = "exec")]
        gdb: Option<String>,
        /// With --exec and --gdb: hold the guest before its first instruction until gdb attaches.
        #[arg(long, requires = "gdb")]
        gdb_wait: bool,
        /// With --exec --headless: the summary's form (text, json, none).
        #[arg(long, value_name = "FORMAT", requires = "headless")]
        summary: Option<String>,
    },
}

#[derive(Args)]
struct RunArgs {
    /// A kernel recognised by its content: multiboot (ELF32 or a.out kludge) or a 64-bit ELF.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["image", "demo"], required_unless_present_any = ["image", "demo", "restore"])]
    kernel: Option<PathBuf>,
    /// The built-in demo guest (what `kvmscope` with no arguments runs).
    #[arg(long, conflicts_with = "image")]
    demo: bool,
    /// Start from a snapshot (`monitor snapshot FILE`, `:snapshot FILE`): the machine it was
    /// taken of, in the state it was in; the other options say how to look at it.
    #[arg(long, value_name = "FILE")]
    restore: Option<PathBuf>,
    /// A raw binary, loaded at --load and entered at --entry in --mode.
    #[arg(long, value_name = "FILE", requires_all = ["load", "entry", "mode"])]
    image: Option<PathBuf>,
    /// Guest-physical load address of --image (hex with 0x, or decimal).
    #[arg(long, value_name = "ADDR", allow_hyphen_values = true, value_parser = parse_addr)]
    load: Option<u64>,
    /// Guest-physical entry address of --image.
    #[arg(long, value_name = "ADDR", allow_hyphen_values = true, value_parser = parse_addr)]
    entry: Option<u64>,
    /// CPU mode to enter --image in.
    #[arg(long, value_enum)]
    mode: Option<BootMode>,
    /// Guest RAM, e.g. 256M or 1G.
    #[arg(long, value_name = "SIZE", default_value = "256M", allow_hyphen_values = true, value_parser = parse_mem)]
    mem: u64,
    /// Kernel command line (multiboot: passed after the image name, as GRUB and QEMU do).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    cmdline: String,
    /// Run without the TUI: guest console on stdout, summary on stderr.
    #[arg(long)]
    headless: bool,
    /// Summary printed at the end of a headless run.
    #[arg(long, value_enum, default_value = "text")]
    summary: SummaryFormat,
    /// Write the summary to this file instead of stderr (stderr keeps the run's other lines).
    #[arg(long, value_name = "FILE", requires = "headless")]
    summary_file: Option<PathBuf>,
    /// End the run after this many seconds.
    #[arg(long, value_name = "SECS", allow_hyphen_values = true, value_parser = headless::parse_timeout)]
    timeout: Option<std::time::Duration>,
    /// Print every exit to stderr as it happens (slows the guest; nothing is dropped).
    #[arg(long)]
    trace: bool,
    /// End the run after this many exits (1 or more).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = clap::value_parser!(u64).range(1..))]
    max_exits: Option<u64>,
    /// Serve gdb on [ADDR:]PORT (127.0.0.1 unless an address is given) or unix:PATH.
    #[arg(long, value_name = "[ADDR:]PORT|unix:PATH", value_parser = parse_gdb)]
    gdb: Option<GdbListen>,
    /// Hold the guest before its first instruction until gdb attaches (QEMU's -s -S).
    #[arg(long, requires = "gdb")]
    gdb_wait: bool,
    /// An initrd for a Linux kernel.
    #[arg(long, value_name = "FILE")]
    initrd: Option<PathBuf>,
    /// vCPUs, each a thread of its own: for Linux, or with --irqchip for a guest that starts its
    /// other CPUs itself (INIT and STARTUP IPIs through its local APIC).
    #[arg(long, default_value_t = 1, allow_hyphen_values = true, value_parser = clap::value_parser!(u32).range(1..=64))]
    cpus: u32,
    /// Boot Linux as is, without kvmscope's adjustments for a host whose KVM emulates guest kernel code.
    #[arg(long)]
    no_host_workarounds: bool,
    /// CPUID features to clear or set for a Linux guest, e.g. -cx16,+x2apic.
    #[arg(long, value_name = "-NAME,+NAME", allow_hyphen_values = true, value_parser = parse_cpu_features)]
    cpu_features: Option<CpuFeatures>,
    /// Record every exit, the console and debug stops to this trace file.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// With --record: the recording also carries the VM's starting state and the files its
    /// machine was built from, so that `kvmscope replay FILE --exec` re-executes it anywhere.
    #[arg(long, requires = "record", conflicts_with = "net")]
    replayable: bool,
    /// Write the debug console ports' output (0x402, 0xe9) to this file instead of the console.
    #[arg(long, value_name = "FILE")]
    debugcon: Option<PathBuf>,
    /// A raw disk image as a virtio-blk device (`FILE` or `FILE,ro`); may be given several times.
    #[arg(long, value_name = "FILE[,ro]", value_parser = parse_disk)]
    disk: Vec<DiskSpec>,
    /// A virtio-net card on a TAP device, made (as root) if it does not exist; a random locally
    /// administered MAC unless one is given.
    #[arg(long, value_name = "tap=NAME[,mac=MAC]", value_parser = parse_net)]
    net: Option<NetSpec>,
    /// Write every frame of the network card, both ways, to this pcap file (tcpdump, Wireshark).
    #[arg(long, value_name = "FILE", requires = "net")]
    pcap: Option<PathBuf>,
    /// Other virtio devices: rng, console, none (default: rng,console for Linux, none otherwise).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_enum)]
    virtio: Option<Vec<Extra>>,
    /// Log the pages the guest writes (KVM_GET_DIRTY_LOG every second): counts, the hottest
    /// pages, a heat strip on the memory screen, per-interval counts in the recording.
    #[arg(long)]
    dirty_log: bool,
    /// Give a guest that is not Linux the PC's in-kernel interrupt controllers (PIC, IOAPIC, local
    /// APIC) and timer (PIT), as firmware such as SeaBIOS expects; Linux guests always have them.
    /// A halted vCPU then waits for an interrupt instead of ending the run.
    #[arg(long)]
    irqchip: bool,
    /// Follow KVM's own tracepoints for this VM (tracefs, root): the exits and emulation KVM handles
    /// without telling userspace, counted in the summary and the stats pane.
    #[arg(long)]
    kernel_events: bool,
    /// With --kernel-events and --record: keep the tracepoints' counts in the recording (every
    /// 100 ms, and the busiest guest RIPs at the end).
    #[arg(long, requires_all = ["kernel_events", "record"])]
    record_kernel_events: bool,
    /// The guest's symbols for the TUI's profile and the names of the hottest dirty pages (an ELF
    /// image, vmlinux or System.map), for a bzImage or a stripped kernel; default: the kernel
    /// image's own.
    #[arg(long, value_name = "FILE")]
    symbols: Option<PathBuf>,
    /// Walk the guest's frame-pointer chain on one exit in N (default 64; `all`: every exit), for the
    /// recording's call stacks (`kvmscope export --format folded`).
    #[arg(long, value_name = "N|all", num_args = 0..=1, default_missing_value = "64", value_parser = parse_stacks, requires = "record")]
    stacks: Option<u64>,
    /// MSRs whose rdmsr/wrmsr exit to kvmscope (names or numbers, e.g. EFER,LSTAR,0x277), at most 16.
    #[arg(long, value_name = "LIST", value_parser = parse_msrs)]
    trap_msr: Option<MsrList>,
    /// Let KVM signal virtio queue notifications on an eventfd (KVM_IOEVENTFD) instead of trapping
    /// each one as an MMIO exit.
    #[arg(long)]
    ioeventfd: bool,
    /// Time each stage of the vCPU loop (KVM_RUN, dispatch, registers, decode, counting, sinks,
    /// debugger) and print where an exit's time goes with the summary.
    #[arg(long, requires = "headless")]
    self_profile: bool,
    /// Once time travel is on (gdb attached, the TUI), take a checkpoint to go back from every so
    /// many guest exits (10000) or so long of the guest running (50ms, 1s): while it runs, and at
    /// the stops you hold. Going back re-executes at most one interval (0: only those you take).
    #[arg(long, value_name = "EXITS|TIME", default_value_t = kvmscope::vmm::snapshot::every::DEFAULT)]
    checkpoint_every: kvmscope::vmm::snapshot::every::Every,
}

fn parse_disk(text: &str) -> Result<DiskSpec, String> {
    DiskSpec::parse(text)
}

fn parse_net(text: &str) -> Result<NetSpec, String> {
    NetSpec::parse(text)
}

fn parse_stacks(text: &str) -> Result<u64, String> {
    match text {
        "all" => Ok(1),
        n => n
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{n:?}: give a number of exits (1 or more) or `all`")),
    }
}

/// Parsed `--trap-msr`.
#[derive(Clone)]
struct MsrList(Vec<u32>);

fn parse_msrs(text: &str) -> Result<MsrList, String> {
    let msrs = kvmscope::trace::msr::parse_list(text)?;
    let max = kvmscope::vmm::msr::MAX_TRAPPED;
    if msrs.len() > max {
        return Err(format!("{} MSRs; KVM's filter holds {max}", msrs.len()));
    }
    Ok(MsrList(msrs))
}

/// Parsed `--cpu-features`.
#[derive(Clone)]
struct CpuFeatures(Vec<kvmscope::vmm::linux::CpuFeature>);

fn parse_cpu_features(text: &str) -> Result<CpuFeatures, String> {
    kvmscope::vmm::linux::parse_cpu_features(text).map(CpuFeatures)
}

fn parse_gdb(text: &str) -> Result<GdbListen, String> {
    kvmscope::gdb::parse_listen(text).map_err(|e| e.to_string())
}

fn parse_addr(text: &str) -> Result<u64, String> {
    kvmscope::debug::exit_spec::parse_number(text).map_err(|e| e.to_string())
}

fn parse_mem(text: &str) -> Result<u64, String> {
    kvmscope::vmm::memory::parse_mem(text).map_err(|e| e.to_string())
}

/// `run --restore FILE`'s arguments: the snapshot's machine options, and this command line's others.
fn restore_args(snapshot: &std::path::Path) -> Result<(RunArgs, Vec<String>), String> {
    let header = kvmscope::vmm::snapshot::file::read_header(snapshot).map_err(|e| e.to_string())?;
    let here: Vec<String> = std::env::args().skip_while(|a| a != "run").skip(1).collect();
    Ok((restored_run_args(&header, &header.machine_args, &here)?, header.machine_args))
}

/// The `run` arguments that build the machine a snapshot (`header`) was taken of, from its
/// options `machine` (paths as they are here), with `here`'s way of looking at it.
fn restored_run_args(
    header: &kvmscope::vmm::snapshot::file::SnapshotHeader,
    machine: &[String],
    here: &[String],
) -> Result<RunArgs, String> {
    let effective = [
        ("--mem".to_string(), Some(format!("{}M", header.mem_size >> 20))),
        ("--cpus".to_string(), Some(header.cpus.to_string())),
    ];
    let args = kvmscope::machine_args::for_restore(machine, here, &effective)?;
    let argv = ["kvmscope".to_string(), "run".to_string()].into_iter().chain(args);
    match Cli::try_parse_from(argv).map_err(|e| e.to_string())?.command {
        Some(Command::Run(a)) => Ok(*a),
        _ => Err("the snapshot's options are not a run".into()),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let (args, machine_args) = match &args.restore {
        Some(path) => match restore_args(path) {
            Ok(a) => a,
            Err(e) => {
                kvmscope::say!("kvmscope: --restore {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => (args, kvmscope::machine_args::of_this_run()),
    };
    run_machine(args, machine_args, None)
}

/// `replay FILE --exec`: the recording's machine built again from the files it carries, its
/// starting state put back, and the guest run again following the recorded exits (`view`: how
/// to look at it — `--headless`, `--gdb ADDR`, ...).
fn replay_exec(file: &std::path::Path, view: &[String]) -> ExitCode {
    let unpacked = match kvmscope::recording::replayable::unpack(file) {
        Ok(u) => u,
        Err(e) => {
            kvmscope::say!("kvmscope: replay --exec: {e}");
            return ExitCode::from(2);
        }
    };
    let mut args = match restored_run_args(&unpacked.header, &unpacked.machine_args, view) {
        Ok(a) => a,
        Err(e) => {
            kvmscope::say!("kvmscope: replay --exec: {e}");
            return ExitCode::from(2);
        }
    };
    args.restore = Some(unpacked.snapshot.clone());
    if let Some((status, name)) = &unpacked.end {
        kvmscope::notice::say(format!(
            "replay --exec: re-executing {} ({} exits; the run ended: {name}, status {status})",
            file.display(),
            unpacked.marks.len()
        ));
    }
    let recorded = unpacked.end.as_ref().map(|e| e.0);
    let follow = Follow { marks: unpacked.marks.clone(), recorded_status: recorded };
    let status = run_machine(args, unpacked.header.machine_args.clone(), Some(follow));
    drop(unpacked);
    status
}

/// The recording a run follows (`replay --exec`).
struct Follow {
    marks: Vec<kvmscope::vmm::timeline::ExitMark>,
    recorded_status: Option<i32>,
}

/// Runs the machine `args` describe (`machine_args`: its options as a snapshot keeps them), following
/// a recording where `follow` says.
fn run_machine(args: RunArgs, machine_args: Vec<String>, follow: Option<Follow>) -> ExitCode {
    let recorded_status = follow.as_ref().and_then(|f| f.recorded_status);
    let mut follow = follow.map(|f| f.marks);
    let image = match (args.kernel, args.image) {
        (Some(kernel), _) => Image::Kernel(kernel),
        (None, Some(path)) => Image::Raw {
            path,
            load: args.load.unwrap_or_default(),
            entry: args.entry.unwrap_or_default(),
            mode: args.mode.unwrap_or(BootMode::Real),
        },
        (None, None) => Image::Demo,
    };
    // A FIFO with a reader, a terminal or a file: opened without waiting for a reader to come.
    let debugcon: Option<Box<dyn std::io::Write + Send>> = match &args.debugcon {
        Some(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            match kvmscope::files::open_nonblocking(path, &mut options, "--debugcon") {
                Ok(f) => Some(Box::new(f)),
                Err(e) => {
                    kvmscope::say!("kvmscope: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        None => None,
    };
    let config = VmConfig {
        debugcon,
        image,
        mem_size: args.mem,
        cmdline: args.cmdline,
        cpus: args.cpus,
        console: Box::new(std::io::stdout()),
        initrd: args.initrd,
        host_workarounds: !args.no_host_workarounds,
        cpu_features: args.cpu_features.map(|f| f.0).unwrap_or_default(),
        virtio: VirtioConfig { disks: args.disk, extra: args.virtio, ioeventfd: args.ioeventfd, net: args.net },
        trap_msrs: args.trap_msr.map(|m| m.0).unwrap_or_default(),
        dirty_log: args.dirty_log,
        irqchip: args.irqchip,
        machine_args,
    };
    let limits = RunLimits {
        timeout: args.timeout,
        max_exits: args.max_exits,
        start_paused: args.gdb_wait,
        stacks_every: args.stacks,
        self_profile: args.self_profile,
        checkpoint_every: args.checkpoint_every,
    };
    let record = args.record;
    let gdb = match args.gdb.as_ref().map(GdbServer::bind).transpose() {
        Ok(g) => g,
        Err(e) => {
            kvmscope::say!("kvmscope: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(g) = &gdb {
        if !args.headless {
            // The TUI shows it in its status line.
            kvmscope::notice::hold();
        }
        kvmscope::notice::say(format!(
            "gdb stub listening: {}{}",
            g.describe,
            if args.gdb_wait { " (guest held until gdb attaches)" } else { "" }
        ));
    }
    if !args.headless {
        let title = match &config.image {
            Image::Kernel(p) | Image::Raw { path: p, .. } => p.display().to_string(),
            Image::Demo => "demo".to_string(),
        };
        let session = Session {
            limits,
            gdb,
            record,
            pcap: args.pcap.clone(),
            symbols: args.symbols,
            kernel_events: args.kernel_events,
            record_kernel_events: args.record_kernel_events,
            restore: args.restore.clone(),
            replayable: args.replayable,
            follow: follow.take(),
        };
        return tui(config, session, title);
    }
    // Opened now, without waiting on a FIFO: a summary file that cannot be had is said before the run.
    let summary_file = match &args.summary_file {
        Some(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            match kvmscope::files::open_nonblocking(path, &mut options, "--summary-file") {
                Ok(f) => Some(f),
                Err(e) => {
                    kvmscope::say!("kvmscope: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        None => None,
    };
    let options = HeadlessOptions {
        session: Session {
            limits,
            gdb,
            record,
            pcap: args.pcap.clone(),
            symbols: args.symbols,
            kernel_events: args.kernel_events,
            record_kernel_events: args.record_kernel_events,
            restore: args.restore.clone(),
            replayable: args.replayable,
            follow,
        },
        summary: args.summary,
        summary_file,
        trace: args.trace,
        recorded_status,
    };
    match headless::run(config, options) {
        Ok(status) => ExitCode::from(status as u8),
        Err(e) => session_error(&e),
    }
}

fn session_error(e: &SessionError) -> ExitCode {
    kvmscope::say!("kvmscope: {e}");
    ExitCode::from(if e.is_bad_input() { 2 } else { 1 })
}

fn vm_error(e: &kvmscope::vmm::VmError) -> ExitCode {
    kvmscope::say!("kvmscope: {e}");
    ExitCode::from(if e.is_bad_input() { 2 } else { 1 })
}

fn tui(config: VmConfig, session: Session, title: String) -> ExitCode {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        kvmscope::say!("kvmscope: the TUI needs a terminal on stdout; use `kvmscope run --headless ...` without one");
        return ExitCode::from(2);
    }
    match kvmscope::ui::run(config, session, title) {
        Ok(status) => ExitCode::from(status as u8),
        Err(kvmscope::ui::UiError::Session(e)) => session_error(&e),
        Err(e) => {
            kvmscope::say!("kvmscope: {e}");
            ExitCode::from(1)
        }
    }
}

fn analysis_status(result: Result<(), kvmscope::analysis::AnalysisError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): what it wanted it got.
        Err(kvmscope::analysis::AnalysisError::Write(e)) if kvmscope::out::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            kvmscope::say!("kvmscope: {e}");
            ExitCode::from(e.status())
        }
    }
}

/// Writes a command's output to stdout: a closed pipe is no error (the reader went away), a failed
/// write one line on stderr and status 1.
fn emit(text: &str) -> ExitCode {
    match kvmscope::out::stdout(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if kvmscope::out::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            kvmscope::say!("kvmscope: cannot write the output: {e}");
            ExitCode::from(1)
        }
    }
}

/// `kvmscope probe`'s report, as text or JSON, with the tracepoints this host fires.
fn probe_text(report: &kvmscope::vmm::probe::HostReport, json: bool) -> String {
    let tracepoints = kvmscope::vmm::probe::probe_tracepoints();
    if json {
        let mut v = serde_json::to_value(report).unwrap_or_default();
        v["tracepoints"] = match &tracepoints {
            Ok(t) => serde_json::json!(t.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()),
            Err(why) => serde_json::json!({ "unavailable": why.to_string() }),
        };
        return format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    let mut out = format!("{report}\n");
    match tracepoints {
        Ok(t) => {
            let (fire, silent): (Vec<_>, Vec<_>) = t.iter().partition(|(_, n)| *n > 0);
            let names = |v: Vec<&(&str, u64)>| v.iter().map(|(e, _)| *e).collect::<Vec<_>>().join(", ");
            out.push_str("KVM's tracepoints (--kernel-events) on a port and an MMIO write:\n");
            out.push_str(&format!("  fire:   {}\n  silent: {}\n", names(fire), names(silent)));
        }
        Err(why) => out.push_str(&format!("KVM's tracepoints (--kernel-events): {why}\n")),
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Run(args)) => run(*args),
        Some(Command::Probe { json }) => match kvmscope::vmm::probe::probe() {
            Ok(report) => emit(&probe_text(&report, json)),
            Err(e) => vm_error(&e),
        },
        Some(Command::Stats(args)) => analysis_status(kvmscope::analysis::stats::run(&args)),
        Some(Command::Export(args)) => analysis_status(kvmscope::analysis::export::run(&args)),
        Some(Command::Flamegraph(args)) => analysis_status(kvmscope::analysis::folded::flamegraph(&args)),
        Some(Command::Diff(args)) => analysis_status(kvmscope::analysis::diff::run(&args)),
        Some(Command::Guests) => emit(&kvmscope::guests::listing()),
        Some(Command::Replay { file, exec: true, headless, gdb, gdb_wait, summary, .. }) => {
            let mut view: Vec<String> = Vec::new();
            if headless {
                view.push("--headless".into());
            }
            if let Some(addr) = gdb {
                view.extend(["--gdb".into(), addr]);
            }
            if gdb_wait {
                view.push("--gdb-wait".into());
            }
            if let Some(s) = summary {
                view.extend(["--summary".into(), s]);
            }
            replay_exec(&file, &view)
        }
        Some(Command::Replay { file, symbols, .. }) => {
            use std::io::IsTerminal;
            // The recording first: a file that cannot be read is said before anything else.
            if let Err(e) = kvmscope::recording::TraceReader::open(&file) {
                kvmscope::say!("kvmscope: {e}");
                return ExitCode::from(2);
            }
            if !std::io::stdout().is_terminal() {
                kvmscope::say!(
                    "kvmscope: replay needs a terminal; use `kvmscope stats` or `kvmscope export` without one"
                );
                return ExitCode::from(2);
            }
            match kvmscope::ui::replay::run(&file, symbols.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    kvmscope::say!("kvmscope: {e}");
                    ExitCode::from(e.status())
                }
            }
        }
        None => {
            let config = VmConfig {
                debugcon: None,
                initrd: None,
                host_workarounds: true,
                cpu_features: Vec::new(),
                virtio: Default::default(),
                trap_msrs: Vec::new(),
                dirty_log: false,
                irqchip: false,
                machine_args: vec!["--demo".into(), "--mem".into(), "64M".into()],
                image: Image::Demo,
                mem_size: 64 << 20,
                cmdline: String::new(),
                cpus: 1,
                console: Box::new(std::io::sink()),
            };
            tui(config, Session::default(), "demo".into())
        }
    }
}

//! Running a guest without the UI: console to stdout, the summary to stderr at the end.

use std::sync::Arc;
use std::time::Duration;

use crate::debug::Controller;
use crate::gdb::GdbServer;
use crate::summary::{self, SummaryFormat};
use crate::trace::ExitSink;
use crate::trace::printer::TracePrinter;
use crate::vmm::{RunLimits, RunReport, Vm, VmConfig, VmError};

/// Options of a headless run.
pub struct HeadlessOptions {
    pub limits: RunLimits,
    pub summary: SummaryFormat,
    /// Print every exit to stderr as it happens.
    pub trace: bool,
    /// A bound gdb stub to serve.
    pub gdb: Option<GdbServer>,
}

/// Builds and runs the VM; prints the summary; returns kvmscope's exit status.
pub fn run(config: VmConfig, options: HeadlessOptions) -> Result<i32, VmError> {
    crate::vmm::vm::catch_interrupts();
    let vm = Vm::new(config)?;
    eprintln!(
        "kvmscope: {} image, {} mode, entry {:#x}; {}; registers via {}",
        vm.boot.format,
        format!("{:?}", vm.boot.mode).to_lowercase(),
        vm.boot.entry,
        vm.ram.map,
        if vm.sync_regs { "KVM_CAP_SYNC_REGS" } else { "KVM_GET_REGS" }
    );
    let mut sinks: Vec<Arc<dyn ExitSink>> = Vec::new();
    if options.trace {
        sinks.push(Arc::new(TracePrinter::new(std::io::stderr())));
    }
    let running = vm.start(options.limits, sinks)?;
    if let Some(gdb) = options.gdb {
        let _ = gdb.spawn(Controller::new(running.shared().clone()));
    }
    let report = running.wait();
    print_report(&report, options.summary);
    Ok(report.end.status())
}

/// Prints the crash report (if any) and the summary to stderr.
pub fn print_report(report: &RunReport, format: SummaryFormat) {
    if let Some(crash) = &report.crash {
        eprint!("{}", summary::crash_text(crash));
    }
    let elapsed = report.elapsed.as_nanos() as u64;
    match format {
        SummaryFormat::Text => eprint!("{}", summary::text(&report.counters, &report.end, elapsed)),
        SummaryFormat::Json => eprintln!("{}", summary::json(&report.counters, &report.end, elapsed)),
        SummaryFormat::None => eprintln!("kvmscope: run ended: {} (status {})", report.end, report.end.status()),
    }
}

/// Parses `--timeout` seconds (fractions allowed).
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("{text:?}: the timeout must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

//! Running a guest without the UI: console to stdout, the summary to stderr at the end.

use std::sync::Arc;
use std::time::Duration;

use crate::decode::symbols::Symbols;
use crate::session::{self, Session, SessionError};
use crate::sink::ExitSink;
use crate::sink::printer::TracePrinter;
use crate::summary::{self, Ending, Selection, Summary, SummaryFormat};
use crate::vmm::{RunReport, VmConfig};

/// Options of a headless run.
pub struct HeadlessOptions {
    pub session: Session,
    pub summary: SummaryFormat,
    /// `--summary-file`, opened before the run: the summary goes there instead of stderr.
    pub summary_file: Option<std::fs::File>,
    /// Print every exit to stderr as it happens.
    pub trace: bool,
    /// Re-executing a recording (`replay --exec`): the status its run ended with.
    pub recorded_status: Option<i32>,
}

/// Builds and runs the VM; prints the summary; returns kvmscope's exit status.
pub fn run(config: VmConfig, options: HeadlessOptions) -> Result<i32, SessionError> {
    let mut sinks: Vec<Arc<dyn ExitSink>> = Vec::new();
    let printer =
        options.trace.then(|| Arc::new(TracePrinter::annotated(std::io::stderr(), Some(crate::explain::trace_note()))));
    if let Some(p) = &printer {
        sinks.push(p.clone());
    }
    // Only the dirty pages' names need them in a headless run.
    // Only the dirty pages' names need them in a headless run; a bad `--symbols` is said at once.
    let symbols = if config.dirty_log || options.session.symbols.is_some() {
        session::guest_symbols(&config, &options.session)?
    } else {
        Symbols::default()
    };
    let launched = session::launch(config, options.session, sinks, |info| {
        crate::say!(
            "kvmscope: {} image, {} mode, entry {:#x}; {}; registers via {}",
            info.format,
            info.mode,
            info.entry,
            info.memory,
            info.registers_via
        );
        for d in &info.devices {
            crate::say!("kvmscope: {d}");
        }
        for a in &info.adjustments {
            crate::say!("kvmscope: host workaround (--no-host-workarounds turns it off): {a}");
        }
    })?;
    let report = launched.wait_with(|| {
        if let Some(p) = &printer {
            p.tick();
        }
    })?;
    if let Some(p) = &printer {
        p.finish();
    }
    let mut status = report.end.status();
    // Re-executing a recording: whether the guest followed it, and the recorded run's status
    // when it did.
    if let Some(v) = &report.follow {
        crate::say!("kvmscope: replay --exec: {v}");
        status = match (v.exact(), options.recorded_status) {
            (true, Some(recorded)) => recorded,
            (true, None) => status,
            (false, _) => 1,
        };
    }
    match print_report(&report, options.summary, &symbols, options.summary_file) {
        Ok(()) => Ok(status),
        Err(e) => {
            crate::say!("kvmscope: cannot write the summary: {e}");
            Ok(1)
        }
    }
}

/// The summary of a run that has just ended.
pub fn summary_of<'a>(report: &'a RunReport, symbols: &'a Symbols) -> Summary<'a> {
    Summary {
        counters: &report.counters,
        per_vcpu: report.per_vcpu.iter().enumerate().map(|(i, c)| (i as u32, c)).collect(),
        ending: Ending::from(&report.end),
        elapsed_ns: report.elapsed.as_nanos() as u64,
        selection: Selection::default(),
        kvm: &report.kvm,
        devices: &report.devices,
        kernel: report.kernel.as_ref(),
        dirty: report.dirty.as_ref(),
        symbols,
        self_profile: report.self_profile.as_ref(),
    }
}

/// Prints the crash report (if any) and the summary, to stderr or to `file`; `symbols` name the
/// hot pages.
pub fn print_report(
    report: &RunReport,
    format: SummaryFormat,
    symbols: &Symbols,
    file: Option<std::fs::File>,
) -> std::io::Result<()> {
    if let Some(crash) = &report.crash {
        crate::out::stderr(&summary::crash_text(crash))?;
    }
    let summary = summary_of(report, symbols);
    let text = match format {
        SummaryFormat::Text => summary.text(),
        SummaryFormat::Json => format!("{}\n", summary.json()),
        SummaryFormat::None => {
            return crate::out::stderr(&format!(
                "kvmscope: run ended: {} (status {})\n",
                report.end,
                report.end.status()
            ));
        }
    };
    match file {
        Some(mut f) => {
            use std::io::Write;
            f.write_all(text.as_bytes()).map_err(|e| std::io::Error::new(e.kind(), format!("--summary-file: {e}")))
        }
        None => crate::out::stderr(&text),
    }
}

/// The longest `--timeout`: a year.
const MAX_TIMEOUT_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// Parses `--timeout` seconds (fractions allowed).
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= MAX_TIMEOUT_SECS) {
        return Err(format!(
            "{text:?}: the timeout must be a positive number of seconds, at most {MAX_TIMEOUT_SECS} (a year)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a point in a run, in seconds from its start (`stats --from/--to`): finite, not negative.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(secs),
        Ok(_) => Err(format!("{text:?}: seconds must be a finite number, 0 or more")),
        Err(_) => Err(format!("{text:?} is not a number of seconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_of_seconds_out_of_range_are_refused() {
        assert_eq!(parse_timeout("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["0", "-1", "1e30", "inf", "NaN", "-inf", "x"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_seconds("0"), Ok(0.0));
        for bad in ["-1", "inf", "NaN", "1e400", "x"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }
}

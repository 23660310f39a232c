//! Running a guest without the UI: console to stdout, the summary to stderr at the end.

use std::sync::Arc;
use std::time::Duration;

use crate::decode::symbols::Symbols;
use crate::session::{self, Session, SessionError};
use crate::sink::ExitSink;
use crate::sink::printer::TracePrinter;
use crate::summary::{self, SummaryFormat};
use crate::vmm::{RunReport, VmConfig};

/// Options of a headless run.
pub struct HeadlessOptions {
    pub session: Session,
    pub summary: SummaryFormat,
    /// Print every exit to stderr as it happens.
    pub trace: bool,
}

/// Builds and runs the VM; prints the summary; returns kvmscope's exit status.
pub fn run(config: VmConfig, options: HeadlessOptions) -> Result<i32, SessionError> {
    let mut sinks: Vec<Arc<dyn ExitSink>> = Vec::new();
    if options.trace {
        sinks.push(Arc::new(TracePrinter::new(std::io::stderr())));
    }
    // Only the dirty pages' names need them in a headless run.
    let symbols = if config.dirty_log { session::guest_symbols(&config, &options.session) } else { Symbols::default() };
    let launched = session::launch(config, options.session, sinks, |info| {
        eprintln!(
            "kvmscope: {} image, {} mode, entry {:#x}; {}; registers via {}",
            info.format, info.mode, info.entry, info.memory, info.registers_via
        );
        for d in &info.devices {
            eprintln!("kvmscope: {d}");
        }
        for a in &info.adjustments {
            eprintln!("kvmscope: host workaround (--no-host-workarounds turns it off): {a}");
        }
    })?;
    let report = launched.wait()?;
    print_report(&report, options.summary, &symbols);
    Ok(report.end.status())
}

/// Prints the crash report (if any) and the summary to stderr; `symbols` name the hot pages.
pub fn print_report(report: &RunReport, format: SummaryFormat, symbols: &Symbols) {
    if let Some(crash) = &report.crash {
        eprint!("{}", summary::crash_text(crash));
    }
    let elapsed = report.elapsed.as_nanos() as u64;
    match format {
        SummaryFormat::Text => {
            eprint!("{}", summary::text(&report.counters, &report.end, elapsed));
            if report.per_vcpu.len() > 1 {
                eprint!("{}", summary::per_vcpu_text(&report.per_vcpu));
            }
            eprint!("{}", summary::kvm_text(&report.kvm, report.counters.total.count));
            eprint!("{}", report.devices.text());
            if let Some(k) = &report.kernel {
                eprint!("{}", k.text());
            }
            if let Some(d) = &report.dirty {
                eprint!("{}", d.text(symbols));
            }
            if let Some(p) = &report.self_profile {
                eprint!("{}", summary::self_profile_text(p));
            }
        }
        SummaryFormat::Json => {
            let mut v = summary::json(&report.counters, &report.end, elapsed);
            v["per_vcpu"] = report.per_vcpu.iter().map(|c| c.total.count).collect();
            v["kvm"] = summary::kvm_json(&report.kvm, report.counters.total.count);
            v["virtio"] = report.devices.json();
            if let Some(k) = &report.kernel {
                v["kernel_events"] = k.json();
            }
            if let Some(d) = &report.dirty {
                v["dirty_log"] = d.json(symbols);
            }
            if let Some(p) = &report.self_profile {
                v["self_profile"] = summary::self_profile_json(p);
            }
            eprintln!("{v}");
        }
        SummaryFormat::None => eprintln!("kvmscope: run ended: {} (status {})", report.end, report.end.status()),
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

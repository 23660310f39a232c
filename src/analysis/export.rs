//! `kvmscope export FILE --format jsonl|csv|chrome`: every exit and device event of a recording,
//! streamed chunk by chunk (a recording larger than memory exports in bounded memory).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};

use super::AnalysisError;
use crate::explain::{Explainer, Explanation};
use crate::files::Output;
use crate::recording::Record;
use crate::trace::{DeviceEvent, DeviceEventKind, ExitEvent, ExitKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per exit.
    Jsonl,
    /// A header row, then one row per exit.
    Csv,
    /// Chrome trace-event JSON (opens in Perfetto; one track per vCPU).
    Chrome,
    /// Collapsed call stacks (`--stacks` recordings), one `outer;...;inner;[reason] COUNT` line
    /// per distinct stack: the input of flame-graph tools.
    Folded,
    /// Apache Parquet (typed columns, exits and device events as rows; needs -o or --partition).
    Parquet,
    /// The network card's frames, both ways, as a pcap file (tcpdump -r, Wireshark).
    Pcap,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The trace file.
    pub file: PathBuf,
    #[arg(long, value_enum)]
    pub format: Format,
    /// Write here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The guest's symbols for `folded` (an ELF image, vmlinux or System.map); default: the
    /// recorded guest image.
    #[arg(long, value_name = "FILE")]
    pub symbols: Option<PathBuf>,
    /// Parquet: add the run's columns (run_id, guest_image, guest_sha256, cmdline,
    /// kvmscope_version, host, started_unix_secs), so that many runs are one table.
    #[arg(long)]
    pub run_columns: bool,
    /// Parquet: the run's id in those columns (default: the guest image's name, the start time
    /// and a hash of the recording's header).
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Parquet: write a Hive-style dataset, `DIR/run=ID/part-0.parquet` (with the run's columns);
    /// a folder of runs, from many machines, reads as one table.
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    pub partition: Option<PathBuf>,
}

/// The kind-specific fields of an exit, by name.
pub fn kind_fields(kind: &ExitKind) -> Map<String, Value> {
    let v = match kind {
        ExitKind::Io { port, dir, size, count, data } => {
            json!({"port": port, "dir": dir.io_name(), "size": size, "count": count, "data": data})
        }
        ExitKind::Mmio { addr, dir, len, data } => {
            json!({"addr": addr, "dir": dir.mmio_name(), "size": len, "data": data})
        }
        ExitKind::InternalError { suberror, data } => json!({"suberror": suberror, "data": data}),
        ExitKind::FailEntry { reason, cpu } => json!({"hardware_reason": reason, "cpu": cpu}),
        ExitKind::SystemEvent { kind, data } => json!({"event": kind, "data": data}),
        ExitKind::Debug { exception, pc, dr6, dr7 } => {
            json!({"exception": exception, "pc": pc, "dr6": dr6, "dr7": dr7})
        }
        ExitKind::Hypercall { nr } => json!({"nr": nr}),
        ExitKind::Msr { index, dir, data } => {
            json!({"msr": index, "name": crate::trace::msr::name(*index), "dir": dir.mmio_name(), "data": data})
        }
        ExitKind::IoapicEoi { vector } => json!({"vector": vector}),
        ExitKind::MemoryFault { gpa, size, flags } => json!({"gpa": gpa, "size": size, "flags": flags}),
        ExitKind::Unknown { hardware_reason } => json!({"hardware_reason": hardware_reason}),
        ExitKind::Other { code } => json!({"code": code}),
        ExitKind::Breakpoint { gva, via } => json!({"gva": gva, "via": crate::trace::event::breakpoint_via(*via)}),
        ExitKind::Hlt | ExitKind::Shutdown | ExitKind::Intr => json!({}),
    };
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// One exit as a JSON object (the JSON Lines schema): `"record": "exit"`, the exit's fields, and
/// what it means: `register` (empty where none) and `explain` (the device and the access in words;
/// null for exits that are not port or MMIO accesses).
pub fn exit_json(e: &ExitEvent, x: Option<&Explanation>) -> Value {
    let mut m = Map::new();
    m.insert("record".into(), json!("exit"));
    m.insert("seq".into(), json!(e.seq));
    m.insert("vcpu".into(), json!(e.vcpu));
    m.insert("t_ns".into(), json!(e.t_ns));
    m.insert("rip".into(), json!(e.rip));
    m.insert("reason".into(), json!(e.kind.reason()));
    m.insert("cost_ns".into(), json!(e.cost_ns));
    m.insert("device".into(), json!(e.device));
    m.extend(kind_fields(&e.kind));
    m.insert(
        "insn".into(),
        e.insn
            .as_ref()
            .map_or(Value::Null, |i| json!({"addr": i.addr, "bytes": i.hex().replace(' ', ""), "text": i.text})),
    );
    m.insert("register".into(), json!(x.map_or("", |x| x.register.as_str())));
    m.insert("explain".into(), x.map_or(Value::Null, |x| json!(x.line())));
    Value::Object(m)
}

/// The CSV header row: `record` is `exit` or `device`; `port`, `addr` and `msr` are each set for
/// their own kind of exit, with `dir` and `data` (an MSR's value).
pub const CSV_HEADER: &str = "record,seq,vcpu,t_ns,rip,reason,port,addr,msr,dir,size,data,cost_ns,device,insn_addr,insn_bytes,insn_text,register,explain";

fn csv_quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// One exit as a CSV row.
pub fn exit_csv(e: &ExitEvent, x: Option<&Explanation>) -> String {
    let none = String::new;
    let (port, addr, msr, dir, size, data) = match &e.kind {
        ExitKind::Io { port, dir, size, data, .. } => {
            (port.to_string(), none(), none(), dir.io_name(), size.to_string(), data.to_string())
        }
        ExitKind::Mmio { addr, dir, len, data } => {
            (none(), addr.to_string(), none(), dir.mmio_name(), len.to_string(), data.to_string())
        }
        ExitKind::Msr { index, dir, data } => {
            (none(), none(), index.to_string(), dir.mmio_name(), "8".into(), data.to_string())
        }
        _ => Default::default(),
    };
    let (ia, ib, it) = e.insn.as_ref().map_or((String::new(), String::new(), String::new()), |i| {
        (i.addr.to_string(), i.hex().replace(' ', ""), i.text.clone())
    });
    let (register, explain) =
        x.map_or((String::new(), String::new()), |x| (csv_quote(&x.register), csv_quote(&x.line())));
    format!(
        "exit,{},{},{},{},{},{port},{addr},{msr},{dir},{size},{data},{},{},{ia},{ib},{},{register},{explain}",
        e.seq,
        e.vcpu,
        e.t_ns,
        e.rip,
        e.kind.reason(),
        e.cost_ns,
        e.device.unwrap_or(""),
        csv_quote(&it)
    )
}

/// One exit as a Chrome trace event: a complete event on its vCPU's track.
pub fn exit_chrome(e: &ExitEvent, x: Option<&Explanation>) -> Value {
    let mut args = kind_fields(&e.kind);
    if let Some(x) = x {
        args.insert("register".into(), json!(x.register));
        args.insert("explain".into(), json!(x.line()));
    }
    args.insert("seq".into(), json!(e.seq));
    args.insert("rip".into(), json!(format!("{:#x}", e.rip)));
    if let Some(i) = &e.insn {
        args.insert("insn".into(), json!(i.text));
    }
    json!({
        "name": e.kind.reason(),
        "cat": "vmexit",
        "ph": "X",
        "ts": e.t_ns as f64 / 1000.0,
        "dur": e.cost_ns as f64 / 1000.0,
        "pid": 1,
        "tid": e.vcpu,
        "args": args,
    })
}

/// One device event as a JSON object: `"record": "device"` and the event's fields.
pub fn device_json(d: &DeviceEvent) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or_default();
    v["record"] = json!("device");
    if let DeviceEventKind::Frame { len, bytes, .. } = &d.kind {
        v["summary"] = json!(crate::trace::frame::summary(bytes, *len as usize));
    }
    v
}

/// One device event as a CSV row: reason `virtio_KIND`, the device, the event in words.
pub fn device_csv(d: &DeviceEvent) -> String {
    format!("device,,,{},,virtio_{},,,,,,,,{},,,{},,", d.t_ns, d.kind.name(), d.device, csv_quote(&d.to_string()))
}

/// One device event as a Chrome trace event on the devices' track `tid`: a completed request
/// spans its latency, the rest are instants.
pub fn device_chrome(d: &DeviceEvent, tid: usize) -> Value {
    let mut v = json!({
        "name": format!("{} {}", d.device, d.kind.name()),
        "cat": "virtio",
        "pid": 2,
        "tid": tid,
        "args": { "event": d.to_string() },
    });
    if let DeviceEventKind::Completed { latency_ns, .. } = d.kind {
        v["ph"] = json!("X");
        v["ts"] = json!(d.t_ns.saturating_sub(latency_ns) as f64 / 1000.0);
        v["dur"] = json!(latency_ns as f64 / 1000.0);
    } else {
        v["ph"] = json!("i");
        v["s"] = json!("t");
        v["ts"] = json!(d.t_ns as f64 / 1000.0);
    }
    v
}

/// Runs the command.
pub fn run(args: &ExportArgs) -> Result<(), AnalysisError> {
    if args.format == Format::Parquet {
        let req = super::parquet::ParquetRequest {
            trace: &args.file,
            output: args.output.as_deref(),
            partition: args.partition.as_deref(),
            run_columns: args.run_columns,
            run_id: args.run_id.as_deref(),
        };
        let (path, rows) = super::parquet::export(&req)?;
        crate::say!("kvmscope: wrote {} rows to {}", rows, path.display());
        return Ok(());
    }
    if args.run_columns || args.run_id.is_some() || args.partition.is_some() {
        return Err(AnalysisError::Usage("--run-columns, --run-id and --partition are for --format parquet".into()));
    }
    if args.format == Format::Pcap && args.output.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(AnalysisError::Usage("a pcap file is binary: give -o FILE, or pipe it (| tcpdump -r -)".into()));
    }
    // A file is written whole or not at all, and never over the recording it reads.
    let mut output = args.output.as_deref().map(|p| Output::create(p, "-o", &[&args.file])).transpose()?;
    let written = write_records(args, output.as_mut().map(Output::file));
    match (written, output) {
        (Ok(()), Some(output)) => Ok(output.commit()?),
        (result, _) => result,
    }
}

/// Writes the export of `args.file` to `file`, or stdout.
fn write_records(args: &ExportArgs, file: Option<&mut File>) -> Result<(), AnalysisError> {
    let out: Box<dyn Write + '_> = match file {
        Some(f) => Box::new(f),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let mut failed: Option<std::io::Error> = None;
    let mut seen_vcpus = std::collections::BTreeSet::new();
    let mut devices: Vec<String> = Vec::new();
    let mut first = true;
    // Set when the output has gone (`export | head`): reading stops there.
    let gone = std::cell::Cell::new(false);
    let mut write = |out: &mut BufWriter<Box<dyn Write + '_>>, text: &str| {
        if failed.is_none() {
            if let Err(e) = out.write_all(text.as_bytes()) {
                failed = Some(e);
                gone.set(true);
            }
        }
    };
    if args.format == Format::Pcap {
        return write_pcap(&args.file, out, &gone);
    }
    if args.format == Format::Folded {
        let lines = super::folded::fold(&args.file, args.symbols.as_deref())?;
        if lines.is_empty() {
            return Err(AnalysisError::NoStacks(args.file.clone()));
        }
        for line in lines {
            write(&mut out, &format!("{line}\n"));
        }
        out.flush().map_err(AnalysisError::Write)?;
        return failed.map_or(Ok(()), |e| Err(AnalysisError::Write(e)));
    }
    match args.format {
        Format::Csv => write(&mut out, &format!("{CSV_HEADER}\n")),
        Format::Chrome => {
            // The two processes' names: Perfetto shows them as the tracks' headings.
            let name =
                |pid: u32, name: &str| json!({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": name}});
            write(&mut out, &format!("[\n{},\n{}", name(1, "vCPUs"), name(2, "virtio devices")));
            first = false;
        }
        Format::Jsonl | Format::Folded | Format::Parquet | Format::Pcap => {}
    }
    let mut explainer = Explainer::default();
    let mut each = |r: Record| {
        let e = match r {
            Record::Exit(e) => e,
            Record::Device(d) => {
                match args.format {
                    Format::Jsonl => write(&mut out, &format!("{}\n", device_json(&d))),
                    Format::Csv => write(&mut out, &format!("{}\n", device_csv(&d))),
                    Format::Chrome => {
                        let tid = devices.iter().position(|n| *n == d.device).unwrap_or_else(|| {
                            devices.push(d.device.clone());
                            let tid = devices.len() - 1;
                            let meta = json!({"name": "thread_name", "ph": "M", "pid": 2, "tid": tid, "args": {"name": d.device}});
                            write(&mut out, &format!("{}{meta}", if first { "" } else { ",\n" }));
                            first = false;
                            tid
                        });
                        write(&mut out, &format!("{}{}", if first { "" } else { ",\n" }, device_chrome(&d, tid)));
                        first = false;
                    }
                    Format::Folded | Format::Parquet | Format::Pcap => {}
                }
                return;
            }
            _ => return,
        };
        let x = explainer.explain(&e);
        match args.format {
            Format::Jsonl => write(&mut out, &format!("{}\n", exit_json(&e, x.as_ref()))),
            Format::Csv => write(&mut out, &format!("{}\n", exit_csv(&e, x.as_ref()))),
            Format::Chrome => {
                if seen_vcpus.insert(e.vcpu) {
                    let meta = json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": e.vcpu, "args": {"name": format!("vCPU {}", e.vcpu)}});
                    write(&mut out, &format!("{}{meta}", if first { "" } else { ",\n" }));
                    first = false;
                }
                write(&mut out, &format!("{}{}", if first { "" } else { ",\n" }, exit_chrome(&e, x.as_ref())));
                first = false;
            }
            Format::Folded | Format::Parquet | Format::Pcap => {}
        }
    };
    let read = super::read_while(&args.file, |r| {
        each(r);
        !gone.get()
    });
    if args.format == Format::Chrome {
        write(&mut out, "\n]\n");
    }
    if let Err(e) = out.flush() {
        failed.get_or_insert(e);
    }
    if let Some(e) = failed {
        return Err(AnalysisError::Write(e));
    }
    if let Some(e) = read?.damage {
        crate::say!("kvmscope: warning: {e}; what comes before it is used");
    }
    Ok(())
}

/// The recording's frames as a pcap file, stamped from the run's start as `--pcap` stamps them.
fn write_pcap(
    path: &std::path::Path,
    out: BufWriter<Box<dyn Write + '_>>,
    gone: &std::cell::Cell<bool>,
) -> Result<(), AnalysisError> {
    let mut reader = crate::recording::reader::TraceReader::open(path)?;
    let mut pcap =
        crate::sink::pcap::PcapWriter::new(out, reader.header.start_unix_secs).map_err(AnalysisError::Write)?;
    let mut failed = None;
    let read = reader.for_each_while(|r| {
        if let Record::Device(d) = r
            && let Err(e) = pcap.event(&d)
        {
            failed = Some(e);
            gone.set(true);
        }
        !gone.get()
    });
    if let Some(e) = failed.or_else(|| pcap.flush().err()) {
        return Err(AnalysisError::Write(e));
    }
    match read {
        Err(e @ crate::recording::reader::ReadError::Format { .. }) => {
            crate::say!("kvmscope: warning: {e}; the frames before it are written");
        }
        other => other?,
    }
    if pcap.frames == 0 {
        return Err(AnalysisError::Usage(format!(
            "{}: no network frames recorded (record a run with --net tap=NAME)",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Dir, Insn};

    #[test]
    fn one_exit_in_each_format() {
        let e = ExitEvent {
            seq: 3,
            vcpu: 1,
            t_ns: 2500,
            rip: 0x1005,
            kind: ExitKind::Io { port: 0x3f8, dir: Dir::Out, size: 1, count: 1, data: 0x41 },
            device: Some("serial"),
            insn: Some(std::sync::Arc::new(Insn { addr: 0x1004, bytes: vec![0xee], text: "out dx,al".into() })),
            cost_ns: 1500,
        };
        let x = Explainer::default().explain(&e);
        let j = exit_json(&e, x.as_ref());
        assert_eq!(j["port"], 0x3f8);
        assert_eq!(j["dir"], "out");
        assert_eq!(j["insn"]["bytes"], "ee");
        assert_eq!(
            exit_csv(&e, x.as_ref()),
            "exit,3,1,2500,4101,io,1016,,,out,1,65,1500,serial,4100,ee,\"out dx,al\",THR,16550 UART (COM1): THR write 0x41: transmit 'A'"
        );
        assert_eq!((j["record"].as_str(), j["register"].as_str()), (Some("exit"), Some("THR")));
        assert_eq!(j["explain"], "16550 UART (COM1): THR write 0x41: transmit 'A'");
        let msr =
            ExitEvent { kind: ExitKind::Msr { index: 0x277, dir: Dir::Out, data: 0x0407 }, insn: None, ..e.clone() };
        assert_eq!(exit_csv(&msr, None), "exit,3,1,2500,4101,x86_wrmsr,,,631,write,8,1031,1500,serial,,,,,");
        assert_eq!(CSV_HEADER.split(',').count(), exit_csv(&msr, None).split(',').count());
        let c = exit_chrome(&e, x.as_ref());
        assert_eq!((c["ph"].as_str(), c["tid"].as_u64(), c["ts"].as_f64()), (Some("X"), Some(1), Some(2.5)));
    }

    #[test]
    fn one_device_event_in_each_format() {
        let kind = DeviceEventKind::Completed { head: 2, written: 513, latency_ns: 2000, status: "ok".into() };
        let d = DeviceEvent { t_ns: 5000, device: "virtio-blk0".into(), queue: Some(0), kind };
        let j = device_json(&d);
        assert_eq!(
            (j["record"].as_str(), j["what"].as_str(), j["latency_ns"].as_u64()),
            (Some("device"), Some("completed"), Some(2000))
        );
        let row = device_csv(&d);
        assert_eq!(row.split(',').count(), CSV_HEADER.split(',').count() + 2, "two quoted commas: {row}");
        assert!(row.starts_with("device,,,5000,,virtio_completed,"), "{row}");
        let c = device_chrome(&d, 0);
        assert_eq!((c["ph"].as_str(), c["ts"].as_f64(), c["dur"].as_f64()), (Some("X"), Some(3.0), Some(2.0)));
    }
}

//! `kvmscope export FILE --format jsonl|csv|chrome`: every exit and device event of a recording,
//! streamed chunk by chunk (a recording larger than memory exports in bounded memory).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};

use super::AnalysisError;
use super::rows::{self, Field, Json, SortedObjects};
use crate::explain::{Explained, Explainer};
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

/// The kind-specific fields of an exit: (name, value).
pub fn kind_values(kind: &ExitKind) -> Vec<(&'static str, Json<'_>)> {
    use Json::{Num, Str};
    match kind {
        ExitKind::Io { port, dir, size, count, data } => vec![
            ("port", Num(*port as u64)),
            ("dir", Str(dir.io_name())),
            ("size", Num(*size as u64)),
            ("count", Num(*count as u64)),
            ("data", Num(*data)),
        ],
        ExitKind::Mmio { addr, dir, len, data } => {
            vec![("addr", Num(*addr)), ("dir", Str(dir.mmio_name())), ("size", Num(*len as u64)), ("data", Num(*data))]
        }
        ExitKind::InternalError { suberror, data } => {
            vec![("suberror", Num(*suberror as u64)), ("data", Json::Nums(data))]
        }
        ExitKind::FailEntry { reason, cpu } => vec![("hardware_reason", Num(*reason)), ("cpu", Num(*cpu as u64))],
        ExitKind::SystemEvent { kind, data } => vec![("event", Num(*kind as u64)), ("data", Json::Nums(data))],
        ExitKind::Debug { exception, pc, dr6, dr7 } => {
            vec![("exception", Num(*exception as u64)), ("pc", Num(*pc)), ("dr6", Num(*dr6)), ("dr7", Num(*dr7))]
        }
        ExitKind::Hypercall { nr } => vec![("nr", Num(*nr))],
        ExitKind::Msr { index, dir, data } => vec![
            ("msr", Num(*index as u64)),
            ("name", Json::opt_str(crate::trace::msr::name(*index))),
            ("dir", Str(dir.mmio_name())),
            ("data", Num(*data)),
        ],
        ExitKind::IoapicEoi { vector } => vec![("vector", Num(*vector as u64))],
        ExitKind::MemoryFault { gpa, size, flags } => {
            vec![("gpa", Num(*gpa)), ("size", Num(*size)), ("flags", Num(*flags))]
        }
        ExitKind::Unknown { hardware_reason } => vec![("hardware_reason", Num(*hardware_reason))],
        ExitKind::Other { code } => vec![("code", Num(*code as u64))],
        ExitKind::Breakpoint { gva, via } => {
            vec![("gva", Num(*gva)), ("via", Str(crate::trace::event::breakpoint_via(*via)))]
        }
        ExitKind::Hlt | ExitKind::Shutdown | ExitKind::Intr => Vec::new(),
    }
}

/// The kind-specific fields of an exit, by name.
pub fn kind_fields(kind: &ExitKind) -> Map<String, Value> {
    kind_values(kind).into_iter().map(|(k, v)| (k.to_string(), v.to_value())).collect()
}

/// The fields of an exit's JSON object other than its instruction: (name, value).
fn exit_values<'a>(e: &'a ExitEvent, x: Option<&'a Explained>) -> Vec<(&'static str, Json<'a>)> {
    let mut fields = kind_values(&e.kind);
    fields.extend([
        ("record", Json::Str("exit")),
        ("seq", Json::Num(e.seq)),
        ("vcpu", Json::Num(e.vcpu as u64)),
        ("t_ns", Json::Num(e.t_ns)),
        ("rip", Json::Num(e.rip)),
        ("reason", Json::Str(e.kind.reason())),
        ("cost_ns", Json::Num(e.cost_ns)),
        ("device", Json::opt_str(e.device)),
        ("register", Json::Str(x.map_or("", |x| x.register.as_str()))),
        ("explain", Json::opt_str(x.map(|x| x.line.as_str()))),
    ]);
    fields
}

/// One exit as a JSON object (the JSON Lines schema): `"record": "exit"`, the exit's fields, and
/// what it means: `register` (empty where none) and `explain` (the device and the access in words;
/// null for exits that are not port or MMIO accesses).
pub fn exit_json(e: &ExitEvent, x: Option<&Explained>) -> Value {
    let mut m: Map<String, Value> = exit_values(e, x).into_iter().map(|(k, v)| (k.to_string(), v.to_value())).collect();
    m.insert(
        "insn".into(),
        e.insn
            .as_ref()
            .map_or(Value::Null, |i| json!({"addr": i.addr, "bytes": i.hex().replace(' ', ""), "text": i.text})),
    );
    Value::Object(m)
}

/// [`exit_json`] written as a line of JSON Lines, straight into `out`: the same bytes.
pub fn write_exit_json(out: &mut Vec<u8>, objects: &mut SortedObjects, e: &ExitEvent, x: Option<&Explained>) {
    let insn = |out: &mut Vec<u8>| match &e.insn {
        Some(i) => {
            out.extend_from_slice(b"{\"addr\":");
            rows::num(out, i.addr);
            out.extend_from_slice(b",\"bytes\":\"");
            rows::hex_bytes(out, &i.bytes);
            out.extend_from_slice(b"\",\"text\":");
            rows::string(out, &i.text);
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    };
    let mut fields: Vec<(&str, Field)> = exit_values(e, x).into_iter().map(|(k, v)| (k, Field::Value(v))).collect();
    fields.push(("insn", Field::Object(&insn)));
    objects.write(out, &fields);
    out.push(b'\n');
}

/// The CSV header row: `record` is `exit` or `device`; `port`, `addr` and `msr` are each set for
/// their own kind of exit, with `dir` and `data` (an MSR's value).
pub const CSV_HEADER: &str = "record,seq,vcpu,t_ns,rip,reason,port,addr,msr,dir,size,data,cost_ns,device,insn_addr,insn_bytes,insn_text,register,explain";

fn csv_quote(s: &str) -> String {
    let mut out = Vec::new();
    rows::csv_field(&mut out, s);
    String::from_utf8(out).unwrap_or_default()
}

/// One exit as a CSV row.
pub fn exit_csv(e: &ExitEvent, x: Option<&Explained>) -> String {
    let mut out = Vec::new();
    write_exit_csv(&mut out, e, x);
    out.pop();
    String::from_utf8(out).unwrap_or_default()
}

/// One exit as a CSV line, straight into `out`.
pub fn write_exit_csv(out: &mut Vec<u8>, e: &ExitEvent, x: Option<&Explained>) {
    let number = |out: &mut Vec<u8>, n: u64| {
        rows::num(out, n);
        out.push(b',');
    };
    out.extend_from_slice(b"exit,");
    number(out, e.seq);
    number(out, e.vcpu as u64);
    number(out, e.t_ns);
    number(out, e.rip);
    out.extend_from_slice(e.kind.reason().as_bytes());
    out.push(b',');
    // port, addr, msr, dir, size, data: each kind its own.
    let (at, dir, size, data) = match &e.kind {
        ExitKind::Io { port, dir, size, data, .. } => ((0, *port as u64), dir.io_name(), *size as u64, *data),
        ExitKind::Mmio { addr, dir, len, data } => ((1, *addr), dir.mmio_name(), *len as u64, *data),
        ExitKind::Msr { index, dir, data } => ((2, *index as u64), dir.mmio_name(), 8, *data),
        _ => ((3, 0), "", 0, 0),
    };
    for column in 0..3 {
        if at.0 == column {
            rows::num(out, at.1);
        }
        out.push(b',');
    }
    if at.0 < 3 {
        out.extend_from_slice(dir.as_bytes());
        out.push(b',');
        number(out, size);
        number(out, data);
    } else {
        out.extend_from_slice(b",,,");
    }
    number(out, e.cost_ns);
    out.extend_from_slice(e.device.unwrap_or("").as_bytes());
    out.push(b',');
    if let Some(i) = &e.insn {
        number(out, i.addr);
        rows::hex_bytes(out, &i.bytes);
        out.push(b',');
        rows::csv_field(out, &i.text);
    } else {
        out.extend_from_slice(b",,");
    }
    out.push(b',');
    if let Some(x) = x {
        rows::csv_field(out, &x.register);
        out.push(b',');
        rows::csv_field(out, &x.line);
    } else {
        out.push(b',');
    }
    out.push(b'\n');
}

/// One exit as a Chrome trace event: a complete event on its vCPU's track.
pub fn exit_chrome(e: &ExitEvent, x: Option<&Explained>) -> Value {
    let mut args = kind_fields(&e.kind);
    if let Some(x) = x {
        args.insert("register".into(), json!(x.register));
        args.insert("explain".into(), json!(x.line));
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
    // Set when the output has gone (`export | head`): reading stops there.
    let gone = std::cell::Cell::new(false);
    let mut write = |out: &mut BufWriter<Box<dyn Write + '_>>, bytes: &[u8]| {
        if failed.is_none() {
            if let Err(e) = out.write_all(bytes) {
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
            write(&mut out, format!("{line}\n").as_bytes());
        }
        out.flush().map_err(AnalysisError::Write)?;
        return failed.map_or(Ok(()), |e| Err(AnalysisError::Write(e)));
    }
    let damage = match args.format {
        Format::Jsonl | Format::Csv => {
            if args.format == Format::Csv {
                write(&mut out, format!("{CSV_HEADER}\n").as_bytes());
            }
            let format = args.format;
            match super::parallel::parts(&args.file) {
                // On every core, from the places the recording's index keeps the device state.
                Some(parts) => {
                    let rows = super::parallel::RowsOf {
                        start: |explainer| RowMaker::new(format, explainer),
                        row: |maker: &mut RowMaker, r, block: &mut Vec<u8>| maker.row(r, block),
                        end: |_, _: &mut Vec<u8>| {},
                    };
                    super::parallel::rows_in_order(&args.file, parts, rows, |block| {
                        write(&mut out, &block);
                        !gone.get()
                    })
                }
                None => {
                    let (mut maker, mut row) = (RowMaker::new(format, Explainer::default()), Vec::with_capacity(1024));
                    let read = super::read_while(&args.file, |r| {
                        row.clear();
                        maker.row(r, &mut row);
                        write(&mut out, &row);
                        !gone.get()
                    });
                    read?.damage
                }
            }
        }
        _ => chrome(&args.file, |bytes| {
            write(&mut out, bytes);
            !gone.get()
        })?,
    };
    if let Err(e) = out.flush() {
        failed.get_or_insert(e);
    }
    if let Some(e) = failed {
        return Err(AnalysisError::Write(e));
    }
    if let Some(e) = damage {
        crate::say!("kvmscope: warning: {e}; what comes before it is used");
    }
    Ok(())
}

/// Makes the JSON Lines or CSV rows of a recording's records, explaining its exits in order.
struct RowMaker {
    format: Format,
    explainer: Explainer,
    objects: SortedObjects,
}

impl RowMaker {
    fn new(format: Format, explainer: Explainer) -> Self {
        Self { format, explainer, objects: SortedObjects::default() }
    }

    /// Appends the record's row, if it has one, to `out`.
    fn row(&mut self, r: Record, out: &mut Vec<u8>) {
        match (r, self.format) {
            (Record::Exit(e), Format::Jsonl) => {
                let x = self.explainer.explain(&e);
                write_exit_json(out, &mut self.objects, &e, x.as_deref());
            }
            (Record::Exit(e), _) => {
                let x = self.explainer.explain(&e);
                write_exit_csv(out, &e, x.as_deref());
            }
            (Record::Device(d), Format::Jsonl) => {
                out.extend_from_slice(device_json(&d).to_string().as_bytes());
                out.push(b'\n');
            }
            (Record::Device(d), _) => {
                out.extend_from_slice(device_csv(&d).as_bytes());
                out.push(b'\n');
            }
            _ => {}
        }
    }
}

/// The Chrome trace-event export of the recording at `path`, handed to `write` piece by piece
/// (which answers false when its output has gone); the damage that ended the reading, if any.
fn chrome(
    path: &std::path::Path,
    mut write: impl FnMut(&[u8]) -> bool,
) -> Result<Option<crate::recording::ReadError>, AnalysisError> {
    let (mut seen_vcpus, mut devices, mut explainer) =
        (std::collections::BTreeSet::new(), Vec::<String>::new(), Explainer::default());
    // The two processes' names: Perfetto shows them as the tracks' headings.
    let name = |pid: u32, name: &str| json!({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": name}});
    let mut going = write(format!("[\n{},\n{}", name(1, "vCPUs"), name(2, "virtio devices")).as_bytes());
    let mut event = |going: &mut bool, v: Value| *going = *going && write(format!(",\n{v}").as_bytes());
    let read = super::read_while(path, |r| {
        match r {
            Record::Device(d) => {
                let tid = devices.iter().position(|n| *n == d.device).unwrap_or_else(|| {
                    devices.push(d.device.clone());
                    let tid = devices.len() - 1;
                    event(
                        &mut going,
                        json!({"name": "thread_name", "ph": "M", "pid": 2, "tid": tid, "args": {"name": d.device}}),
                    );
                    tid
                });
                event(&mut going, device_chrome(&d, tid));
            }
            Record::Exit(e) => {
                if seen_vcpus.insert(e.vcpu) {
                    event(
                        &mut going,
                        json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": e.vcpu, "args": {"name": format!("vCPU {}", e.vcpu)}}),
                    );
                }
                let x = explainer.explain(&e);
                event(&mut going, exit_chrome(&e, x.as_deref()));
            }
            _ => {}
        }
        going
    })?;
    if going {
        write(b"\n]\n");
    }
    Ok(read.damage)
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
        let j = exit_json(&e, x.as_deref());
        assert_eq!(j["port"], 0x3f8);
        assert_eq!(j["dir"], "out");
        assert_eq!(j["insn"]["bytes"], "ee");
        assert_eq!(
            exit_csv(&e, x.as_deref()),
            "exit,3,1,2500,4101,io,1016,,,out,1,65,1500,serial,4100,ee,\"out dx,al\",THR,16550 UART (COM1): THR write 0x41: transmit 'A'"
        );
        assert_eq!((j["record"].as_str(), j["register"].as_str()), (Some("exit"), Some("THR")));
        assert_eq!(j["explain"], "16550 UART (COM1): THR write 0x41: transmit 'A'");
        let msr =
            ExitEvent { kind: ExitKind::Msr { index: 0x277, dir: Dir::Out, data: 0x0407 }, insn: None, ..e.clone() };
        assert_eq!(exit_csv(&msr, None), "exit,3,1,2500,4101,x86_wrmsr,,,631,write,8,1031,1500,serial,,,,,");
        assert_eq!(CSV_HEADER.split(',').count(), exit_csv(&msr, None).split(',').count());
        let c = exit_chrome(&e, x.as_deref());
        assert_eq!((c["ph"].as_str(), c["tid"].as_u64(), c["ts"].as_f64()), (Some("X"), Some(1), Some(2.5)));
    }

    #[test]
    fn rows_written_straight_are_the_values_printed() {
        let mut events = crate::recording::format::tests::sample_events();
        events.push(ExitEvent { kind: ExitKind::Breakpoint { gva: 0x1000, via: 1 }, ..events[0].clone() });
        let (mut explainer, mut objects) = (Explainer::default(), SortedObjects::default());
        // Twice: the second time, every row's shape is one seen before.
        for e in events.iter().chain(&events) {
            let x = explainer.explain(e);
            let mut row = Vec::new();
            write_exit_json(&mut row, &mut objects, e, x.as_deref());
            assert_eq!(String::from_utf8(row).unwrap(), format!("{}\n", exit_json(e, x.as_deref())), "{:?}", e.kind);
        }
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

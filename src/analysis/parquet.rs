//! `kvmscope export --format parquet`: a recording as one Parquet table for DuckDB, Polars,
//! pandas, Spark or Trino. One row per exit (`record` = `exit`) or device event (`device`), with
//! typed columns — integers as (unsigned) integers, null where a field does not apply, strings
//! dictionary-encoded by the writer — and, on request, the run's own columns (its id, guest image
//! and hash, command line, kvmscope's version, host, start time), so that many runs, exported into
//! a Hive-style directory (`--partition DIR` writes `DIR/run=ID/part-0.parquet`), read as one
//! table. Written in row groups while the recording is read: memory stays flat.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::properties::{WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::TypePtr;
use sha2::{Digest, Sha256};

use super::AnalysisError;
use crate::explain::{Explained, Explainer};
use crate::files::Output;
use crate::recording::{Record, TraceHeader};
use crate::trace::{DeviceEvent, DeviceEventKind, ExitEvent, ExitKind};

/// Rows per row group: large enough for good compression, small enough to keep memory flat.
const ROW_GROUP: usize = 65_536;

/// A column's type: its physical type and what the values are.
#[derive(Clone, Copy)]
enum Kind {
    U64,
    U32,
    U16,
    U8,
    Text,
}

impl Kind {
    fn schema(self) -> &'static str {
        match self {
            Kind::U64 => "INT64 {} (INTEGER(64,false))",
            Kind::U32 => "INT32 {} (INTEGER(32,false))",
            Kind::U16 => "INT32 {} (INTEGER(16,false))",
            Kind::U8 => "INT32 {} (INTEGER(8,false))",
            Kind::Text => "BYTE_ARRAY {} (UTF8)",
        }
    }
}

/// The exit and device event columns, in the file's order: (name, type, never null).
const COLUMNS: &[(&str, Kind, bool)] = &[
    ("record", Kind::Text, true),
    ("seq", Kind::U64, false),
    ("vcpu", Kind::U32, false),
    ("t_ns", Kind::U64, true),
    ("rip", Kind::U64, false),
    ("reason", Kind::Text, true),
    ("port", Kind::U16, false),
    ("addr", Kind::U64, false),
    ("msr", Kind::U32, false),
    ("msr_name", Kind::Text, false),
    ("dir", Kind::Text, false),
    ("size", Kind::U8, false),
    ("data", Kind::U64, false),
    ("cost_ns", Kind::U64, false),
    ("device", Kind::Text, false),
    ("queue", Kind::U16, false),
    ("insn_addr", Kind::U64, false),
    ("insn_bytes", Kind::Text, false),
    ("insn_text", Kind::Text, false),
    ("register", Kind::Text, false),
    ("explain", Kind::Text, false),
    ("event", Kind::Text, false),
    ("latency_ns", Kind::U64, false),
];

/// Distinct values a text column remembers (then it starts again).
const INTERNED: usize = 4096;

/// Columns stored as deltas rather than dictionaries.
const DELTA_COLUMNS: &[&str] = &["seq", "t_ns", "cost_ns", "data"];

/// The run's columns (`--run-columns`, `--partition`): the same value on every row.
const RUN_COLUMNS: &[(&str, Kind, bool)] = &[
    ("run_id", Kind::Text, true),
    ("guest_image", Kind::Text, true),
    ("guest_sha256", Kind::Text, true),
    ("guest_cmdline", Kind::Text, true),
    ("cmdline", Kind::Text, true),
    ("kvmscope_version", Kind::Text, true),
    ("host", Kind::Text, true),
    ("started_unix_secs", Kind::U64, true),
];

/// The file's columns, in order: the exits', and the run's when `run` is set.
fn columns(run: bool) -> impl Iterator<Item = &'static (&'static str, Kind, bool)> {
    COLUMNS.iter().chain(if run { RUN_COLUMNS } else { &[] })
}

/// One cell.
#[derive(Clone)]
enum Cell {
    Int(Option<u64>),
    Text(Option<String>),
}

/// What the run's columns hold, and the id it is known by.
pub struct RunInfo {
    pub id: String,
    cells: Vec<Cell>,
}

impl RunInfo {
    /// From a recording's header; `id` chosen by the user, or one made from the header (the
    /// guest image's name and the start time, and a hash of the whole header: two recordings
    /// share it only if they say the same of themselves).
    pub fn of(header: &TraceHeader, id: Option<&str>) -> Self {
        let json = serde_json::to_vec(header).unwrap_or_default();
        let hash: String = Sha256::digest(&json).iter().take(4).map(|b| format!("{b:02x}")).collect();
        let image = Path::new(&header.guest_image).file_stem().map(|s| s.to_string_lossy().into_owned());
        let image: String = image
            .unwrap_or_else(|| "guest".into())
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            // A directory name (`run=ID`) must fit in 255 bytes.
            .take(64)
            .collect();
        let id = id.map_or_else(|| format!("{image}-{}-{hash}", header.start_unix_secs), str::to_string);
        let text = |s: &str| Cell::Text(Some(s.to_string()));
        let cells = vec![
            text(&id),
            text(&header.guest_image),
            text(&header.guest_sha256),
            text(&crate::machine_args::values_of(&header.command_line, "--cmdline").pop().unwrap_or_default()),
            text(&header.command_line.join(" ")),
            text(&header.kvmscope_version),
            text(&header.host_name),
            Cell::Int(Some(header.start_unix_secs)),
        ];
        Self { id, cells }
    }
}

/// The Parquet schema: the columns, and the run's when `run` is set.
fn schema(run: bool) -> String {
    let fields: Vec<String> = columns(run)
        .map(|&(name, kind, required)| {
            let rep = if required { "REQUIRED" } else { "OPTIONAL" };
            format!("  {rep} {};", kind.schema().replace("{}", name))
        })
        .collect();
    format!("message kvmscope_exit {{\n{}\n}}", fields.join("\n"))
}

/// An exit as a row, its cells in [`COLUMNS`]' order.
fn push_exit<W: Write + Send>(t: &mut Table<W>, e: &ExitEvent, x: Option<&Explained>) -> Result<(), AnalysisError> {
    let (mut port, mut addr, mut msr, mut msr_name, mut dir, mut size, mut data) =
        (None, None, None, None, None, None, None);
    match &e.kind {
        ExitKind::Io { port: p, dir: d, size: s, data: v, .. } => {
            (port, dir, size, data) = (Some(*p as u64), Some(d.io_name()), Some(*s as u64), Some(*v));
        }
        ExitKind::Mmio { addr: a, dir: d, len, data: v } => {
            (addr, dir, size, data) = (Some(*a), Some(d.mmio_name()), Some(*len as u64), Some(*v));
        }
        ExitKind::Msr { index, dir: d, data: v } => {
            (msr, msr_name) = (Some(*index as u64), crate::trace::msr::name(*index));
            (dir, size, data) = (Some(d.mmio_name()), Some(8), Some(*v));
        }
        _ => {}
    }
    let insn = e.insn.as_deref();
    t.name(Some("exit"));
    t.int(Some(e.seq));
    t.int(Some(e.vcpu as u64));
    t.int(Some(e.t_ns));
    t.int(Some(e.rip));
    t.name(Some(e.kind.reason()));
    t.int(port);
    t.int(addr);
    t.int(msr);
    t.name(msr_name);
    t.name(dir);
    t.int(size);
    t.int(data);
    t.int(Some(e.cost_ns));
    t.name(e.device);
    t.int(None);
    t.int(insn.map(|i| i.addr));
    t.hex(insn.map(|i| &i.bytes[..]));
    t.text(insn.map(|i| i.text.as_str()));
    t.text(x.map(|x| x.register.as_str()));
    t.text(x.map(|x| x.line.as_str()));
    t.name(None);
    t.int(None);
    t.end_row()
}

/// A device event as a row, in [`COLUMNS`]' order: its reason is `virtio_KIND`.
fn push_device<W: Write + Send>(t: &mut Table<W>, d: &DeviceEvent) -> Result<(), AnalysisError> {
    let latency = match d.kind {
        DeviceEventKind::Completed { latency_ns, .. } => Some(latency_ns),
        _ => None,
    };
    for &(name, kind, _) in COLUMNS {
        match (name, kind) {
            ("record", _) => t.name(Some("device")),
            ("t_ns", _) => t.int(Some(d.t_ns)),
            ("reason", _) => t.text(Some(&format!("virtio_{}", d.kind.name()))),
            ("device", _) => t.text(Some(&d.device)),
            ("queue", _) => t.int(d.queue.map(u64::from)),
            ("event", _) => t.text(Some(&d.to_string())),
            ("latency_ns", _) => t.int(latency),
            (_, Kind::Text) => t.text(None),
            _ => t.int(None),
        }
    }
    t.end_row()
}

/// What every table of an export is written with: its schema and the writer's properties.
struct Layout {
    schema: TypePtr,
    props: WriterPropertiesPtr,
}

impl Layout {
    fn new(run: bool) -> Result<Self, ParquetError> {
        let schema = Arc::new(parse_message_type(&schema(run))?);
        // Counters that grow (sequence, time, handling time, a loop's data) are stored as deltas,
        // the rest dictionary-encoded.
        let mut props = WriterProperties::builder().set_compression(Compression::SNAPPY);
        for name in DELTA_COLUMNS {
            let col = parquet::schema::types::ColumnPath::from(*name);
            props = props
                .set_column_dictionary_enabled(col.clone(), false)
                .set_column_encoding(col, parquet::basic::Encoding::DELTA_BINARY_PACKED);
        }
        let props = props.set_created_by(format!("kvmscope {}", env!("CARGO_PKG_VERSION"))).build();
        Ok(Self { schema, props: Arc::new(props) })
    }

    fn writer<W: Write + Send>(&self, sink: W) -> Result<SerializedFileWriter<W>, ParquetError> {
        SerializedFileWriter::new(sink, self.schema.clone(), self.props.clone())
    }
}

/// Rows buffered for the next row group, column by column.
struct Table<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    kinds: Vec<(Kind, bool)>,
    cells: Cells,
    rows: usize,
    run: Option<Vec<Cell>>,
    written: u64,
    /// The cell the row is at.
    column: usize,
}

/// A row group's cells, by column; kept from one part's table to the next (allocated once).
#[derive(Default)]
struct Cells {
    ints: Vec<Vec<i64>>,
    texts: Vec<Vec<ByteArray>>,
    defs: Vec<Vec<i16>>,
    /// Each text column's recent values.
    interned: Vec<rustc_hash::FxHashMap<Box<str>, ByteArray>>,
    /// A buffer for a cell's text.
    scratch: Vec<u8>,
}

/// The table of an export to `path`, whole or not there (DuckDB refuses a dataset with a cut
/// file), never over its input `trace`.
fn file_table(path: &Path, trace: &Path, run: Option<&RunInfo>) -> Result<Table<Output>, AnalysisError> {
    let file = Output::create(path, "parquet output", &[trace])?;
    let writer = Layout::new(run.is_some())
        .and_then(|l| l.writer(file))
        .map_err(|e| AnalysisError::Create { path: path.to_path_buf(), source: std::io::Error::other(e) })?;
    Ok(Table::new(writer, run))
}

impl<W: Write + Send> Table<W> {
    fn new(writer: SerializedFileWriter<W>, run: Option<&RunInfo>) -> Self {
        Self::with_cells(writer, run, Cells::default())
    }

    /// A table that fills `cells` (emptied, from a table finished before).
    fn with_cells(writer: SerializedFileWriter<W>, run: Option<&RunInfo>, mut cells: Cells) -> Self {
        let kinds: Vec<(Kind, bool)> = columns(run.is_some()).map(|&(_, k, r)| (k, r)).collect();
        let n = kinds.len();
        cells.ints.resize_with(n, Vec::new);
        cells.texts.resize_with(n, Vec::new);
        cells.defs.resize_with(n, Vec::new);
        cells.interned.resize_with(n, Default::default);
        Self { writer, kinds, cells, rows: 0, run: run.map(|r| r.cells.clone()), written: 0, column: 0 }
    }

    /// The next cell of the row: an integer, or null.
    fn int(&mut self, v: Option<u64>) {
        let i = self.column;
        if let Some(v) = v {
            self.cells.ints[i].push(v as i64);
        }
        self.cells.defs[i].push(i16::from(v.is_some()));
        self.column += 1;
    }

    /// The next cell of the row: a name the program holds (a reason, a device), or null — no
    /// copy, no lookup.
    fn name(&mut self, v: Option<&'static str>) {
        let i = self.column;
        if let Some(s) = v {
            self.cells.texts[i].push(ByteArray::from(bytes::Bytes::from_static(s.as_bytes())));
        }
        self.cells.defs[i].push(i16::from(v.is_some()));
        self.column += 1;
    }

    /// The next cell of the row: a text, or null.
    fn text(&mut self, v: Option<&str>) {
        let i = self.column;
        if let Some(s) = v {
            // Most texts repeat (reasons, devices, instructions, explanations): one buffer each.
            let seen = &mut self.cells.interned[i];
            let value = match seen.get(s) {
                Some(v) => v.clone(),
                None => {
                    if seen.len() >= INTERNED {
                        seen.clear();
                    }
                    let v = ByteArray::from(s.as_bytes().to_vec());
                    seen.insert(s.into(), v.clone());
                    v
                }
            };
            self.cells.texts[i].push(value);
        }
        self.cells.defs[i].push(i16::from(v.is_some()));
        self.column += 1;
    }

    /// The next cell of the row: bytes as hex text, or null.
    fn hex(&mut self, bytes: Option<&[u8]>) {
        let mut hex = std::mem::take(&mut self.cells.scratch);
        hex.clear();
        if let Some(b) = bytes {
            super::rows::hex_bytes(&mut hex, b);
        }
        self.text(bytes.map(|_| std::str::from_utf8(&hex).unwrap_or_default()));
        self.cells.scratch = hex;
    }

    /// Ends the row (the run's cells after the exit's): a row group is written when full.
    fn end_row(&mut self) -> Result<(), AnalysisError> {
        let run = self.run.take();
        for cell in run.iter().flatten() {
            match cell {
                Cell::Int(v) => self.int(*v),
                Cell::Text(v) => self.text(v.as_deref()),
            }
        }
        self.run = run;
        if self.column != self.kinds.len() {
            return Err(AnalysisError::Write(std::io::Error::other(format!(
                "a row of {} cells in a table of {} columns",
                self.column,
                self.kinds.len()
            ))));
        }
        self.column = 0;
        self.rows += 1;
        if self.rows == ROW_GROUP { self.flush() } else { Ok(()) }
    }

    /// Writes the rows buffered as a row group.
    fn flush(&mut self) -> Result<(), AnalysisError> {
        if self.rows == 0 {
            return Ok(());
        }
        let err = |e: parquet::errors::ParquetError| AnalysisError::Write(std::io::Error::other(e));
        let mut group = self.writer.next_row_group().map_err(err)?;
        let mut i = 0;
        while let Some(mut column) = group.next_column().map_err(err)? {
            let (kind, required) = self.kinds[i];
            let defs = (!required).then_some(&self.cells.defs[i][..]);
            match kind {
                Kind::Text => {
                    column.typed::<ByteArrayType>().write_batch(&self.cells.texts[i], defs, None).map_err(err)?;
                }
                Kind::U64 => {
                    column.typed::<Int64Type>().write_batch(&self.cells.ints[i], defs, None).map_err(err)?;
                }
                Kind::U32 | Kind::U16 | Kind::U8 => {
                    let narrow: Vec<i32> = self.cells.ints[i].iter().map(|&v| v as i32).collect();
                    column.typed::<Int32Type>().write_batch(&narrow, defs, None).map_err(err)?;
                }
            }
            column.close().map_err(err)?;
            self.cells.ints[i].clear();
            self.cells.texts[i].clear();
            self.cells.defs[i].clear();
            i += 1;
        }
        group.close().map_err(err)?;
        self.written += self.rows as u64;
        self.rows = 0;
        Ok(())
    }

    /// Writes what is buffered and the file's footer: the sink, the rows written, and the
    /// cells' buffers for another table.
    fn finish(mut self) -> Result<(W, u64, Cells), AnalysisError> {
        self.flush()?;
        let sink = self.writer.into_inner().map_err(|e| AnalysisError::Write(std::io::Error::other(e)))?;
        Ok((sink, self.written, self.cells))
    }
}

/// Where `export --format parquet` writes, and what with.
pub struct ParquetRequest<'a> {
    pub trace: &'a Path,
    /// The file to write (`-o`), or the directory of a partitioned dataset (`--partition`).
    pub output: Option<&'a Path>,
    pub partition: Option<&'a Path>,
    pub run_columns: bool,
    pub run_id: Option<&'a str>,
}

/// Exports a recording; the file written and the rows in it.
pub fn export(req: &ParquetRequest) -> Result<(PathBuf, u64), AnalysisError> {
    let header = crate::recording::TraceReader::open(req.trace)?.header.clone();
    let run =
        (req.run_columns || req.partition.is_some() || req.run_id.is_some()).then(|| RunInfo::of(&header, req.run_id));
    // The run's directory, when this export made it: a failed export leaves nothing behind.
    let mut made: Option<PathBuf> = None;
    let path = match (req.partition, req.output, &run) {
        (Some(dir), _, Some(run)) => {
            let dir = dir.join(format!("run={}", run.id));
            let part = dir.join("part-0.parquet");
            if part.exists() {
                return Err(AnalysisError::Usage(format!(
                    "{} holds run {} already: give another --run-id, or remove it to export it again",
                    dir.display(),
                    run.id
                )));
            }
            made = (!dir.exists()).then(|| dir.clone());
            std::fs::create_dir_all(&dir).map_err(|source| AnalysisError::Create { path: dir.clone(), source })?;
            part
        }
        (None, Some(file), _) => file.to_path_buf(),
        _ => {
            return Err(AnalysisError::Usage(
                "--format parquet writes a file: give -o FILE.parquet or --partition DIR".into(),
            ));
        }
    };
    let written = write_table(&path, req.trace, run.as_ref());
    if let (Err(_), Some(dir)) = (&written, made) {
        let _ = std::fs::remove_dir(dir);
    }
    Ok((path, written?))
}

/// Writes the recording `trace` as a table at `path`; the rows written. On every core where the
/// recording's index splits it into parts (see [`super::parallel`]), else in one pass.
fn write_table(path: &Path, trace: &Path, run: Option<&RunInfo>) -> Result<u64, AnalysisError> {
    if let Some(parts) = super::parallel::parts(trace) {
        return write_in_parts(path, trace, run, parts);
    }
    let mut table = file_table(path, trace, run)?;
    let mut explainer = Explainer::default();
    let mut failed: Option<AnalysisError> = None;
    super::read_all_warning(trace, |r| {
        if failed.is_none()
            && let Err(e) = push(&mut table, &mut explainer, r)
        {
            failed = Some(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    let (output, written, _) = table.finish()?;
    output.commit()?;
    Ok(written)
}

/// A record's row, if it has one (exits explained in order).
fn push<W: Write + Send>(table: &mut Table<W>, explainer: &mut Explainer, r: Record) -> Result<(), AnalysisError> {
    match r {
        Record::Exit(e) => {
            let x = explainer.explain(&e);
            push_exit(table, &e, x.as_deref())
        }
        Record::Device(d) => push_device(table, &d),
        _ => Ok(()),
    }
}

/// One part's table, in memory, and the explainer that follows its exits; no table once a row
/// failed (the failure is kept for the export to return).
struct PartTable {
    table: Option<Table<Vec<u8>>>,
    explainer: Explainer,
}

/// Writes the recording in parts, on every core: each part's rows become a Parquet file in
/// memory, whose row groups are copied whole into the output in the recording's order — the
/// rows one pass writes, in row groups that end where the parts do.
fn write_in_parts(
    path: &Path,
    trace: &Path,
    run: Option<&RunInfo>,
    parts: Vec<super::parallel::Part>,
) -> Result<u64, AnalysisError> {
    let create = |e| AnalysisError::Create { path: path.to_path_buf(), source: std::io::Error::other(e) };
    let layout = Layout::new(run.is_some()).map_err(create)?;
    let file = Output::create(path, "parquet output", &[trace])?;
    let mut writer = layout.writer(file).map_err(create)?;
    let failed: std::sync::Mutex<Option<AnalysisError>> = std::sync::Mutex::new(None);
    let fail = |e: AnalysisError| {
        crate::sync::lock(&failed).get_or_insert(e);
    };
    let parquet = |e: ParquetError| AnalysisError::Write(std::io::Error::other(e));
    // The cells' buffers of finished parts, for the next: large, and costly to allocate anew.
    let spare: std::sync::Mutex<Vec<Cells>> = std::sync::Mutex::new(Vec::new());
    let rows = super::parallel::RowsOf {
        start: |explainer| {
            let cells = crate::sync::lock(&spare).pop().unwrap_or_default();
            let table = layout.writer(Vec::new()).map(|w| Table::with_cells(w, run, cells));
            PartTable { table: table.map_err(|e| fail(parquet(e))).ok(), explainer }
        },
        row: |part: &mut PartTable, r, _: &mut Vec<u8>| {
            if let Some(table) = &mut part.table
                && let Err(e) = push(table, &mut part.explainer, r)
            {
                fail(e);
                part.table = None;
            }
        },
        end: |part: PartTable, block: &mut Vec<u8>| match part.table.map(Table::finish) {
            Some(Ok((bytes, _, cells))) => {
                block.extend_from_slice(&bytes);
                crate::sync::lock(&spare).push(cells);
            }
            Some(Err(e)) => fail(e),
            None => {}
        },
    };
    let mut written = 0;
    let damage = super::parallel::rows_in_order(trace, parts, rows, |block| {
        if crate::sync::lock(&failed).is_some() {
            return false;
        }
        match append_row_groups(&mut writer, bytes::Bytes::from(block)) {
            Ok(n) => written += n,
            Err(e) => fail(parquet(e)),
        }
        crate::sync::lock(&failed).is_none()
    });
    if let Some(e) = crate::sync::lock(&failed).take() {
        return Err(e);
    }
    writer.into_inner().map_err(parquet)?.commit()?;
    if let Some(e) = damage {
        crate::say!("kvmscope: warning: {e}; what comes before it is used");
    }
    Ok(written)
}

/// Copies the row groups of the Parquet file `part` (a part's, in memory) into `writer`, column
/// chunks as they are; the rows copied.
fn append_row_groups<W: Write + Send>(
    writer: &mut SerializedFileWriter<W>,
    part: bytes::Bytes,
) -> Result<u64, ParquetError> {
    if part.is_empty() {
        return Ok(0);
    }
    let meta = ParquetMetaDataReader::new().parse_and_finish(&part)?;
    let mut rows = 0;
    for group in meta.row_groups() {
        let mut out = writer.next_row_group()?;
        for column in group.columns() {
            let close = ColumnCloseResult {
                bytes_written: column.compressed_size() as u64,
                rows_written: group.num_rows() as u64,
                metadata: column.clone(),
                bloom_filter: None,
                column_index: None,
                offset_index: None,
            };
            out.append_column(&part, close)?;
        }
        out.close()?;
        rows += group.num_rows() as u64;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_parses_and_every_row_fills_every_column() {
        for run in [false, true] {
            let s = parse_message_type(&schema(run)).unwrap();
            let n = COLUMNS.len() + if run { RUN_COLUMNS.len() } else { 0 };
            assert_eq!(s.get_fields().len(), n);
        }
        let e = ExitEvent {
            seq: 1,
            vcpu: 0,
            t_ns: 5,
            rip: 0x1000,
            kind: ExitKind::Io { port: 0x3f8, dir: crate::trace::Dir::Out, size: 1, count: 1, data: 0x41 },
            device: Some("serial"),
            insn: None,
            cost_ns: 3,
        };
        let d = DeviceEvent {
            t_ns: 9,
            device: "virtio-blk0".into(),
            queue: Some(0),
            kind: DeviceEventKind::Completed { head: 1, written: 1, latency_ns: 7, status: "ok".into() },
        };
        let header = TraceHeader::default();
        for run in [None, Some(RunInfo::of(&header, Some("r")))] {
            let path = std::env::temp_dir().join(format!("kvmscope-parquet-unit-{}.parquet", std::process::id()));
            let mut table = file_table(&path, Path::new("/nonexistent.trace"), run.as_ref()).unwrap();
            push_exit(&mut table, &e, None).unwrap();
            push_device(&mut table, &d).unwrap();
            let (output, rows, _) = table.finish().unwrap();
            output.commit().unwrap();
            assert_eq!(rows, 2);
            let _ = std::fs::remove_file(path);
        }
    }
}

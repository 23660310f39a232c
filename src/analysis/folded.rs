//! Collapsed call stacks from a recording's `--stacks` samples, named with the guest's symbols:
//! one `outer;...;inner;[reason] COUNT` line per distinct stack, the input of every flame-graph tool
//! (`export --format folded`), and the SVG drawn from them with `inferno` (`kvmscope flamegraph`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;

use super::AnalysisError;
use crate::decode::symbols::Symbols;
use crate::recording::Record;
use crate::trace::StackSample;

/// Stacks and how often each was sampled.
#[derive(Debug, Default)]
pub struct Folded {
    stacks: BTreeMap<(Vec<u64>, String), u64>,
}

impl Folded {
    pub fn add(&mut self, s: &StackSample) {
        *self.stacks.entry((s.frames.clone(), s.reason.clone())).or_default() += 1;
    }

    /// The lines, sorted. A return address is named by the byte before it (the call), so a call
    /// that ends its function is not taken for the next function.
    pub fn lines(&self, symbols: &Symbols) -> Vec<String> {
        let mut folded: BTreeMap<String, u64> = BTreeMap::new();
        for ((frames, reason), n) in &self.stacks {
            let mut names: Vec<String> = frames
                .iter()
                .enumerate()
                .map(|(i, &a)| symbols.name_or_addr(if i == 0 { a } else { a.wrapping_sub(1) }))
                .collect();
            names.reverse();
            names.push(format!("[{reason}]"));
            *folded.entry(names.join(";")).or_default() += n;
        }
        folded.into_iter().map(|(stack, n)| format!("{stack} {n}")).collect()
    }
}

/// The folded lines of a recording; symbols from `symbols`, or the recorded guest image.
pub fn fold(trace: &Path, symbols: Option<&Path>) -> Result<Vec<String>, AnalysisError> {
    let mut folded = Folded::default();
    let reader = super::read_all_warning(trace, |r| {
        if let Record::Stack(s) = r {
            folded.add(&s);
        }
    })?;
    let (symbols, warnings) = super::guest_image::symbols(trace, &reader.header, symbols)?;
    for w in warnings {
        crate::say!("kvmscope: warning: {w}");
    }
    Ok(folded.lines(&symbols))
}

#[derive(Debug, Args)]
pub struct FlamegraphArgs {
    /// The trace file (recorded with `--stacks`).
    pub file: PathBuf,
    /// Write the SVG here.
    #[arg(long, short, value_name = "FILE.svg")]
    pub output: PathBuf,
    /// The guest's symbols (an ELF image, vmlinux or System.map); default: the recorded image.
    #[arg(long, value_name = "FILE")]
    pub symbols: Option<PathBuf>,
}

/// `kvmscope flamegraph`: the recording's stacks as a flame graph.
pub fn flamegraph(args: &FlamegraphArgs) -> Result<(), AnalysisError> {
    let lines = fold(&args.file, args.symbols.as_deref())?;
    if lines.is_empty() {
        return Err(AnalysisError::NoStacks(args.file.clone()));
    }
    let file = std::fs::File::create(&args.output)
        .map_err(|source| AnalysisError::Create { path: args.output.clone(), source })?;
    let mut options = inferno::flamegraph::Options::default();
    options.title = "guest code paths that make exits".into();
    options.count_name = "exits".into();
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), std::io::BufWriter::new(file))
        .map_err(AnalysisError::Write)
}

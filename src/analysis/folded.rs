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
    #[arg(required_unless_present = "diff", conflicts_with = "diff")]
    pub file: Option<PathBuf>,
    /// A differential flame graph of two recordings instead: the NEW run's stacks, coloured by
    /// how much more (red) or less (blue) often each was sampled than in the OLD run.
    #[arg(long, num_args = 2, value_names = ["OLD", "NEW"])]
    pub diff: Option<Vec<PathBuf>>,
    /// Write the SVG here.
    #[arg(long, short, value_name = "FILE.svg")]
    pub output: PathBuf,
    /// The guest's symbols (an ELF image, vmlinux or System.map); default: the recorded image.
    #[arg(long, value_name = "FILE")]
    pub symbols: Option<PathBuf>,
}

/// The folded lines of a recording, none being an error.
fn stacks_of(trace: &Path, symbols: Option<&Path>) -> Result<Vec<String>, AnalysisError> {
    let lines = fold(trace, symbols)?;
    if lines.is_empty() {
        return Err(AnalysisError::NoStacks(trace.to_path_buf()));
    }
    Ok(lines)
}

/// `kvmscope flamegraph`: the recording's stacks as a flame graph, or two recordings' as a
/// differential one (inferno's, as `difffolded.pl` makes them).
pub fn flamegraph(args: &FlamegraphArgs) -> Result<(), AnalysisError> {
    // Whole or not there, never over a recording it reads; refused before any work.
    let inputs: Vec<&std::path::Path> =
        args.file.iter().chain(args.diff.iter().flatten()).map(|p| p.as_path()).collect();
    let mut output = crate::files::Output::create(&args.output, "-o", &inputs)?;
    let mut options = inferno::flamegraph::Options::default();
    options.count_name = "exits".into();
    let lines = match (&args.file, args.diff.as_deref()) {
        (_, Some([old, new])) => {
            let (before, after) = (stacks_of(old, args.symbols.as_deref())?, stacks_of(new, args.symbols.as_deref())?);
            let mut folded = Vec::new();
            inferno::differential::from_readers(
                inferno::differential::Options::default(),
                before.join("\n").as_bytes(),
                after.join("\n").as_bytes(),
                &mut folded,
            )
            .map_err(AnalysisError::Write)?;
            options.title = format!("exits: {} against {}", new.display(), old.display());
            String::from_utf8_lossy(&folded).lines().map(str::to_string).collect()
        }
        (Some(file), _) => {
            options.title = "guest code paths that make exits".into();
            stacks_of(file, args.symbols.as_deref())?
        }
        _ => return Err(AnalysisError::Usage("flamegraph needs a recording, or --diff OLD NEW".into())),
    };
    inferno::flamegraph::from_lines(
        &mut options,
        lines.iter().map(String::as_str),
        std::io::BufWriter::new(output.file()),
    )
    .map_err(AnalysisError::Write)?;
    Ok(output.commit()?)
}

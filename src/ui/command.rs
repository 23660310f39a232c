//! The `:` command line: text in, a typed command out, or a one-line error.

use crate::debug::exit_breakpoints::{SYNTAX, parse_breakpoint, parse_breakpoint_id};
use crate::debug::exit_spec::{ExitSpec, parse_number};

/// How the stats pane orders reasons (kvm_stat's `o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Rate,
    Total,
}

/// What a command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `:break SPEC [nth N]` — an exit breakpoint on the Nth match of SPEC.
    Break(ExitSpec, u64),
    /// `:delete [N]` — one exit breakpoint, or all.
    Delete(Option<u32>),
    /// `:breaks` — list exit breakpoints.
    Breaks,
    /// `:x ADDR [LEN]` (guest-virtual) or `:xp ADDR [LEN]` (guest-physical).
    Examine { addr: u64, len: u64, physical: bool },
    /// `:gva ADDR` / `:gpa ADDR` — the address through every layer, down to the host page.
    Chain { addr: u64, virt: bool },
    /// `:filter [SPEC]` — like `/`; empty clears.
    Filter(Option<ExitSpec>),
    /// `:step` / `:s`.
    Step,
    /// `:continue` / `:c`.
    Continue,
    /// `:pause`.
    Pause,
    /// `:sort rate|total`.
    Sort(SortBy),
    /// `:quit` / `:q`.
    Quit,
    /// `:goto SEQ` (replay): the exit with this sequence number.
    Goto(u64),
    /// `:time SECS` (replay): the first exit at or after this time, in nanoseconds.
    Time(u64),
    /// `:virtio [NAME]` — the devices screen, every device or one.
    Virtio(Option<String>),
    /// `:trap msr LIST|none` — the MSRs whose guest accesses exit to kvmscope.
    TrapMsrs(Vec<u32>),
    /// `:cpu N` — the vCPU whose registers, code and page tables the panes show (QEMU's `cpu N`).
    Cpu(usize),
    /// `:help` — the help overlay.
    Help,
    /// `:checkpoint` — take a checkpoint of the stopped guest.
    Checkpoint,
    /// `:checkpoints` — list them.
    Checkpoints,
    /// `:restore N` — go back to checkpoint N.
    Restore(u32),
    /// `:snapshot FILE` — write the stopped guest's whole state to a file.
    Snapshot(std::path::PathBuf),
}

/// Default length of a memory view.
pub const DEFAULT_EXAMINE_LEN: u64 = 256;
/// Longest memory view.
const MAX_EXAMINE_LEN: u64 = 64 * 1024;

/// Parses one command line (without the leading `:`).
pub fn parse(line: &str) -> Result<Command, String> {
    let line = line.trim();
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    let no_args = |c: Command| if rest.is_empty() { Ok(c) } else { Err(format!(":{word} takes no arguments")) };
    match word {
        "break" | "b" => {
            if rest.is_empty() {
                return Err(format!("usage: :break {SYNTAX}"));
            }
            parse_breakpoint(rest).map(|(spec, nth)| Command::Break(spec, nth)).map_err(|e| e.to_string())
        }
        "delete" | "d" => {
            parse_breakpoint_id(rest).map(Command::Delete).map_err(|e| format!("usage: :delete [N] — {e}"))
        }
        "breaks" => no_args(Command::Breaks),
        "x" | "xp" => {
            let mut args = rest.split_whitespace();
            let addr = args.next().ok_or_else(|| format!("usage: :{word} ADDR [LEN]"))?;
            let addr = parse_number(addr).map_err(|e| e.to_string())?;
            let len = match args.next() {
                Some(l) => parse_number(l).map_err(|e| e.to_string())?,
                None => DEFAULT_EXAMINE_LEN,
            };
            if len == 0 || len > MAX_EXAMINE_LEN {
                return Err(format!("length must be 1..={MAX_EXAMINE_LEN}"));
            }
            if args.next().is_some() {
                return Err(format!("usage: :{word} ADDR [LEN]"));
            }
            Ok(Command::Examine { addr, len, physical: word == "xp" })
        }
        "gva" | "gpa" => {
            let addr = parse_number(rest).map_err(|_| format!("usage: :{word} ADDR"))?;
            Ok(Command::Chain { addr, virt: word == "gva" })
        }
        "filter" => {
            if rest.is_empty() {
                Ok(Command::Filter(None))
            } else {
                ExitSpec::parse(rest).map(|s| Command::Filter(Some(s))).map_err(|e| e.to_string())
            }
        }
        "step" | "s" | "stepi" | "si" => no_args(Command::Step),
        "continue" | "c" | "cont" => no_args(Command::Continue),
        "pause" => no_args(Command::Pause),
        "sort" => match rest {
            "rate" => Ok(Command::Sort(SortBy::Rate)),
            "total" => Ok(Command::Sort(SortBy::Total)),
            _ => Err("usage: :sort rate|total".into()),
        },
        "quit" | "q" => no_args(Command::Quit),
        "virtio" => Ok(Command::Virtio((!rest.is_empty()).then(|| rest.to_string()))),
        "trap" => match rest.split_once(char::is_whitespace).unwrap_or((rest, "")) {
            ("msr", "none") => Ok(Command::TrapMsrs(Vec::new())),
            ("msr", list) if !list.trim().is_empty() => {
                crate::trace::msr::parse_list(&list.replace(' ', ",")).map(Command::TrapMsrs)
            }
            _ => Err("usage: :trap msr NAME|NUMBER[,...] | :trap msr none".into()),
        },
        "cpu" => rest.parse().map(Command::Cpu).map_err(|_| "usage: :cpu N (a vCPU's index, from 0)".to_string()),
        "help" | "h" => no_args(Command::Help),
        "checkpoint" | "cp" => no_args(Command::Checkpoint),
        "checkpoints" => no_args(Command::Checkpoints),
        "restore" => {
            rest.parse().map(Command::Restore).map_err(|_| "usage: :restore N (:checkpoints lists them)".into())
        }
        "snapshot" if !rest.is_empty() => Ok(Command::Snapshot(rest.into())),
        "snapshot" => Err("usage: :snapshot FILE".into()),
        "goto" | "g" => parse_number(rest).map(Command::Goto).map_err(|_| "usage: :goto SEQ".to_string()),
        "time" | "t" => match rest.trim_end_matches('s').parse::<f64>() {
            Ok(t) if t >= 0.0 && t.is_finite() => Ok(Command::Time((t * 1e9) as u64)),
            _ => Err("usage: :time SECONDS".into()),
        },
        "" => Err("empty command".into()),
        other => Err(format!("unknown command :{other} (:help lists them)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse("break io 0x3f8").unwrap(), Command::Break(ExitSpec::Io(0x3f8), 1));
        assert_eq!(parse("b hlt nth 2").unwrap(), Command::Break(ExitSpec::Reason("hlt".into()), 2));
        assert_eq!(parse("delete").unwrap(), Command::Delete(None));
        assert_eq!(parse("delete 2").unwrap(), Command::Delete(Some(2)));
        assert_eq!(parse("x 0x1000").unwrap(), Command::Examine { addr: 0x1000, len: 256, physical: false });
        assert_eq!(parse("xp 4096 16").unwrap(), Command::Examine { addr: 4096, len: 16, physical: true });
        assert_eq!(parse("c").unwrap(), Command::Continue);
        assert_eq!(parse("  step ").unwrap(), Command::Step);
        assert_eq!(parse("filter io 0x80").unwrap(), Command::Filter(Some(ExitSpec::Io(0x80))));
        assert_eq!(parse("quit").unwrap(), Command::Quit);
        assert_eq!(parse("virtio virtio-blk0").unwrap(), Command::Virtio(Some("virtio-blk0".into())));
        assert_eq!(parse("virtio").unwrap(), Command::Virtio(None));
        assert_eq!(parse("trap msr efer, 0x277").unwrap(), Command::TrapMsrs(vec![0x277, 0xc000_0080]));
        assert_eq!(parse("trap msr none").unwrap(), Command::TrapMsrs(vec![]));
        assert!(parse("trap msr").is_err() && parse("trap io 1").is_err());
        assert_eq!(
            parse("gva 0xffff800000001000").unwrap(),
            Command::Chain { addr: 0xffff_8000_0000_1000, virt: true }
        );
        assert_eq!(parse("gpa 4096").unwrap(), Command::Chain { addr: 4096, virt: false });
        assert!(parse("gpa").is_err());
        assert_eq!(parse("cpu 1").unwrap(), Command::Cpu(1));
        assert!(parse("cpu").is_err() && parse("cpu one").is_err());
        assert_eq!(parse("help").unwrap(), Command::Help);
    }

    #[test]
    fn bad_commands_get_one_line() {
        for bad in [
            "",
            "frobnicate",
            "break",
            "break bogus",
            "break io 1 nth 0",
            "x",
            "x zz",
            "x 0 0",
            "delete two",
            "step 3",
            "sort sideways",
            "filter bogus",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(!e.is_empty() && !e.contains('\n'), "{bad:?}: {e}");
        }
    }
}

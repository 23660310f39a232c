//! Exit specifications — `io PORT`, `mmio ADDR[-END]`, `reason NAME` — shared by exit breakpoints,
//! the TUI's filter and its command line, and gdb's `monitor break-exit`.

use std::fmt;

use thiserror::Error;

use crate::trace::event::REASON_NAMES;
use crate::trace::{Dir, ExitEvent, ExitKind};

/// Which exits a spec selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitSpec {
    /// Port accesses to this port.
    Io(u16),
    /// MMIO accesses in `[start, end]` (inclusive).
    Mmio { start: u64, end: u64 },
    /// Exits with this reason name (`hlt`, `shutdown`, `io`, ...).
    Reason(String),
    /// Trapped accesses to this MSR (`--trap-msr`), reads, writes or both.
    Msr { index: u32, dir: Option<Dir> },
}

/// Why a spec could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    #[error("expected `io PORT`, `mmio ADDR[-END]`, `msr NAME|NUMBER [read|write]` or `reason NAME`, got {0:?}")]
    Syntax(String),
    #[error("{0}")]
    Msr(String),
    #[error("{0:?} is not a number (use 0x... or decimal)")]
    Number(String),
    #[error("port {0:#x} is above 0xffff")]
    Port(u64),
    #[error("range {0:#x}-{1:#x} ends before it starts")]
    Range(u64, u64),
    #[error("unknown exit reason {0:?}; known: {known}", known = REASON_NAMES.join(", "))]
    Reason(String),
    #[error("nth counts from 1")]
    NthZero,
    #[error("{0:?} is not a breakpoint number")]
    BreakpointId(String),
}

/// Parses a number: 0x-prefixed hex or decimal, `_` allowed.
pub fn parse_number(text: &str) -> Result<u64, SpecError> {
    let t = text.trim().replace('_', "");
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    r.map_err(|_| SpecError::Number(text.to_string()))
}

impl ExitSpec {
    /// Parses `io PORT`, `mmio ADDR[-END]` or `reason NAME`; a bare reason name works too.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            ["io", port] => {
                let p = parse_number(port)?;
                u16::try_from(p).map(ExitSpec::Io).map_err(|_| SpecError::Port(p))
            }
            ["mmio", range] => {
                let (start, end) = match range.split_once('-') {
                    Some((a, b)) => (parse_number(a)?, parse_number(b)?),
                    None => {
                        let a = parse_number(range)?;
                        (a, a)
                    }
                };
                if end < start {
                    return Err(SpecError::Range(start, end));
                }
                Ok(ExitSpec::Mmio { start, end })
            }
            ["msr", msr, rest @ ..] if rest.len() <= 1 => {
                let index = crate::trace::msr::parse(msr).map_err(SpecError::Msr)?;
                let dir = match rest {
                    [] => None,
                    ["read"] => Some(Dir::In),
                    ["write"] => Some(Dir::Out),
                    _ => return Err(SpecError::Syntax(text.to_string())),
                };
                Ok(ExitSpec::Msr { index, dir })
            }
            ["reason", name] | [name] => {
                let name = name.to_lowercase();
                if REASON_NAMES.contains(&name.as_str()) {
                    Ok(ExitSpec::Reason(name))
                } else {
                    Err(SpecError::Reason(name))
                }
            }
            _ => Err(SpecError::Syntax(text.to_string())),
        }
    }

    /// Whether an exit matches.
    pub fn matches(&self, e: &ExitEvent) -> bool {
        match (self, &e.kind) {
            (ExitSpec::Io(p), ExitKind::Io { port, .. }) => p == port,
            (ExitSpec::Mmio { start, end }, ExitKind::Mmio { addr, len, .. }) => {
                let last = addr.saturating_add((*len).max(1) as u64 - 1);
                *addr <= *end && last >= *start
            }
            (ExitSpec::Reason(r), kind) => kind.reason() == r,
            (ExitSpec::Msr { index: want, dir: d }, ExitKind::Msr { index, dir, .. }) => {
                want == index && d.is_none_or(|d| d == *dir)
            }
            _ => false,
        }
    }
}

impl fmt::Display for ExitSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitSpec::Io(p) => write!(f, "io {p:#x}"),
            ExitSpec::Mmio { start, end } if start == end => write!(f, "mmio {start:#x}"),
            ExitSpec::Mmio { start, end } => write!(f, "mmio {start:#x}-{end:#x}"),
            ExitSpec::Reason(r) => write!(f, "reason {r}"),
            ExitSpec::Msr { index, dir } => {
                match crate::trace::msr::name(*index) {
                    Some(name) => write!(f, "msr {name}")?,
                    None => write!(f, "msr {index:#x}")?,
                }
                match dir {
                    Some(d) => write!(f, " {}", d.mmio_name()),
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: ExitKind) -> ExitEvent {
        ExitEvent { seq: 0, vcpu: 0, t_ns: 0, rip: 0, kind, device: None, insn: None, cost_ns: 0 }
    }

    #[test]
    fn parses_and_matches() {
        let io = ExitSpec::parse("io 0x3f8").unwrap();
        let out = ev(ExitKind::Io { port: 0x3f8, dir: Dir::Out, size: 1, count: 1, data: 0 });
        assert!(io.matches(&out));
        assert!(!ExitSpec::parse("io 1016").unwrap().matches(&ev(ExitKind::Hlt)));
        let mmio = ExitSpec::parse("mmio 0xd0000000-0xd0000fff").unwrap();
        let access = |addr| ev(ExitKind::Mmio { addr, dir: Dir::In, len: 4, data: 0 });
        assert!(mmio.matches(&access(0xd000_0ffc)));
        assert!(mmio.matches(&access(0xcfff_fffe)), "an access overlapping the start matches");
        assert!(!mmio.matches(&access(0xd000_1000)));
        assert!(ExitSpec::parse("mmio 0xd0000000").unwrap().matches(&access(0xd000_0000)));
        assert!(ExitSpec::parse("reason hlt").unwrap().matches(&ev(ExitKind::Hlt)));
        assert!(ExitSpec::parse("HLT").unwrap().matches(&ev(ExitKind::Hlt)));
        assert_eq!(io.to_string(), "io 0x3f8");
        let msr = ExitSpec::parse("msr pat write").unwrap();
        let wrmsr = ev(ExitKind::Msr { index: 0x277, dir: Dir::Out, data: 7 });
        assert!(msr.matches(&wrmsr) && ExitSpec::parse("msr 0x277").unwrap().matches(&wrmsr));
        assert!(!ExitSpec::parse("msr PAT read").unwrap().matches(&wrmsr));
        assert_eq!(msr.to_string(), "msr PAT write");
        assert!(ExitSpec::parse("msr nosuch").is_err() && ExitSpec::parse("msr pat both").is_err());
    }

    #[test]
    fn bad_specs_say_why() {
        assert!(matches!(ExitSpec::parse("io 1 2"), Err(SpecError::Syntax(_))));
        assert_eq!(ExitSpec::parse("io").unwrap(), ExitSpec::Reason("io".into()), "a bare reason name");
        assert!(matches!(ExitSpec::parse("io 0x10000"), Err(SpecError::Port(0x10000))));
        assert!(matches!(ExitSpec::parse("io zz"), Err(SpecError::Number(_))));
        assert!(matches!(ExitSpec::parse("mmio 0x20-0x10"), Err(SpecError::Range(0x20, 0x10))));
        assert!(ExitSpec::parse("reason nope").unwrap_err().to_string().contains("hlt"));
    }
}

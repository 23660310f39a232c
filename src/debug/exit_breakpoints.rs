//! Exit breakpoints: stop the guest when an exit matches a spec, optionally on its Nth match.

use std::fmt;

use super::exit_spec::{ExitSpec, SpecError, parse_number};
use crate::trace::ExitEvent;

/// How an exit breakpoint is written, wherever one is set (the TUI's `:break`, gdb's
/// `monitor break-exit`).
pub const SYNTAX: &str = "io PORT | mmio ADDR[-END] | msr NAME|NUMBER [read|write] | reason NAME [nth N]";

/// Parses an exit breakpoint: `SPEC [nth N]`.
pub fn parse_breakpoint(text: &str) -> Result<(ExitSpec, u64), SpecError> {
    let (spec_text, nth) = match text.rsplit_once(" nth ") {
        Some((s, n)) => (s, parse_number(n)?),
        None => (text, 1),
    };
    if nth == 0 {
        return Err(SpecError::NthZero);
    }
    Ok((ExitSpec::parse(spec_text)?, nth))
}

/// Parses which exit breakpoints to delete: empty for all, else `N` or `#N`.
pub fn parse_breakpoint_id(text: &str) -> Result<Option<u32>, SpecError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.trim_start_matches('#').parse().map(Some).map_err(|_| SpecError::BreakpointId(text.to_string()))
}

/// One exit breakpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitBreakpoint {
    pub id: u32,
    pub spec: ExitSpec,
    /// Stop on this match (1 = the first); later matches stop too.
    pub nth: u64,
    /// Matches seen so far.
    pub hits: u64,
}

impl fmt::Display for ExitBreakpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}", self.id, self.spec)?;
        if self.nth > 1 {
            write!(f, " nth {}", self.nth)?;
        }
        write!(f, " ({} hits)", self.hits)
    }
}

/// The exit breakpoints of a VM.
#[derive(Debug, Default, Clone)]
pub struct ExitBreakpoints {
    list: Vec<ExitBreakpoint>,
    next_id: u32,
}

impl ExitBreakpoints {
    /// Adds a breakpoint on the `nth` match of `spec`; returns it.
    pub fn add(&mut self, spec: ExitSpec, nth: u64) -> ExitBreakpoint {
        self.next_id += 1;
        let bp = ExitBreakpoint { id: self.next_id, spec, nth, hits: 0 };
        self.list.push(bp.clone());
        bp
    }

    /// Deletes one breakpoint, or all with `None`; returns how many went.
    pub fn delete(&mut self, id: Option<u32>) -> usize {
        let before = self.list.len();
        match id {
            Some(id) => self.list.retain(|b| b.id != id),
            None => self.list.clear(),
        }
        before - self.list.len()
    }

    /// Counts the exit against every breakpoint; returns the first that says stop.
    pub fn hit(&mut self, e: &ExitEvent) -> Option<ExitBreakpoint> {
        let mut stop = None;
        for b in &mut self.list {
            if b.spec.matches(e) {
                b.hits += 1;
                if b.hits >= b.nth && stop.is_none() {
                    stop = Some(b.clone());
                }
            }
        }
        stop
    }

    /// Sets each breakpoint's matches from `hits` (by number; 0 for those it does not name).
    pub fn set_hits(&mut self, hits: &[(u32, u64)]) {
        for b in &mut self.list {
            b.hits = hits.iter().find(|(id, _)| *id == b.id).map_or(0, |&(_, h)| h);
        }
    }

    pub fn list(&self) -> &[ExitBreakpoint] {
        &self.list
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Dir, ExitKind};

    #[test]
    fn nth_match_stops_and_delete_removes() {
        let mut bps = ExitBreakpoints::default();
        let (spec, nth) = parse_breakpoint("io 0x80 nth 3").unwrap();
        let b = bps.add(spec, nth);
        assert_eq!(b.to_string(), "#1 io 0x80 nth 3 (0 hits)");
        let e = ExitEvent {
            seq: 0,
            vcpu: 0,
            t_ns: 0,
            rip: 0,
            kind: ExitKind::Io { port: 0x80, dir: Dir::Out, size: 1, count: 1, data: 0 },
            device: None,
            insn: None,
            cost_ns: 0,
        };
        assert!(bps.hit(&e).is_none());
        assert!(bps.hit(&e).is_none());
        assert_eq!(bps.hit(&e).unwrap().hits, 3);
        assert_eq!(parse_breakpoint("io 0x80 nth 0"), Err(SpecError::NthZero));
        assert!(parse_breakpoint("bogus").is_err());
        assert_eq!(parse_breakpoint_id(" #2 "), Ok(Some(2)));
        assert_eq!(parse_breakpoint_id(""), Ok(None));
        assert!(parse_breakpoint_id("two").is_err());
        assert_eq!(bps.delete(Some(1)), 1);
        assert!(bps.is_empty());
    }
}

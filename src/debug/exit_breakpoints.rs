//! Exit breakpoints: stop the guest when an exit matches a spec, optionally on its Nth match.

use std::fmt;

use super::exit_spec::ExitSpec;
use crate::trace::ExitEvent;

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
    /// Parses `SPEC [nth N]` and adds it; returns the new breakpoint.
    pub fn add(&mut self, text: &str) -> Result<ExitBreakpoint, String> {
        let (spec_text, nth) = match text.rsplit_once(" nth ") {
            Some((s, n)) => {
                let n = super::exit_spec::parse_number(n).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("nth counts from 1".into());
                }
                (s, n)
            }
            None => (text, 1),
        };
        let spec = ExitSpec::parse(spec_text).map_err(|e| e.to_string())?;
        self.next_id += 1;
        let bp = ExitBreakpoint { id: self.next_id, spec, nth, hits: 0 };
        self.list.push(bp.clone());
        Ok(bp)
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
        let b = bps.add("io 0x80 nth 3").unwrap();
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
        assert!(bps.add("io 0x80 nth 0").is_err());
        assert!(bps.add("bogus").is_err());
        assert_eq!(bps.delete(Some(1)), 1);
        assert!(bps.is_empty());
    }
}

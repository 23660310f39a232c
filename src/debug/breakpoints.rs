//! The breakpoints and watchpoints a debugger set: software breakpoints (unlimited, an `int3`
//! planted at the guest-physical address), hardware breakpoints (DR0-3, at most 4) and watchpoints.
//! Pure bookkeeping behind methods: the controller plants bytes and slots, the vCPUs apply debug
//! registers.

use std::collections::BTreeMap;

use thiserror::Error;

/// How a watched page is kept from the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protection {
    /// Readable; writes exit.
    ReadOnly,
    /// No slot: every access exits.
    Unmapped,
}

/// Errors of the breakpoint table.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BreakpointError {
    /// Every debug register is taken.
    #[error("all {HW_SLOTS} hardware debug registers (DR0-3) are in use")]
    NoFreeDebugRegister,
}

/// The kind of access a watchpoint catches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchKind {
    Write,
    Read,
    Access,
}

/// A software breakpoint: the `int3` kvmscope wrote, and the byte it replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwBreakpoint {
    pub gva: u64,
    pub gpa: u64,
    pub original: u8,
}

/// A watchpoint over `[gva, gva + len)`, at `gpa` in guest-physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watchpoint {
    pub gva: u64,
    pub gpa: u64,
    pub len: u64,
    pub kind: WatchKind,
}

impl Watchpoint {
    /// Whether an access of `len` bytes at guest-physical `gpa` touches it.
    pub fn overlaps(&self, gpa: u64, len: u64) -> bool {
        gpa < self.gpa + self.len && self.gpa < gpa + len.max(1)
    }

    /// Whether a write (`is_write`) or read is caught by this watchpoint.
    pub fn catches(&self, is_write: bool) -> bool {
        match self.kind {
            WatchKind::Write => is_write,
            WatchKind::Read => !is_write,
            WatchKind::Access => true,
        }
    }
}

/// Hardware breakpoint slots (DR0-3).
pub const HW_SLOTS: usize = 4;

/// What a debug register slot watches: execution, or data of 1, 2, 4 or 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HwKind {
    Exec,
    Data { kind: WatchKind, len: u64 },
}

/// One of DR0-3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HwSlot {
    pub gva: u64,
    pub kind: HwKind,
}

/// Everything set, by kind.
#[derive(Debug, Clone, Default)]
pub struct BreakpointTable {
    /// Software breakpoints by guest-physical address.
    sw: BTreeMap<u64, SwBreakpoint>,
    /// DR0-3: hardware breakpoints, and watchpoints where the host fires DR7 watchpoints.
    hw: [Option<HwSlot>; HW_SLOTS],
    /// Watchpoints kept by memory slots (read-only or removed pages).
    watch: Vec<Watchpoint>,
}

impl BreakpointTable {
    /// The software breakpoint planted at guest-physical `gpa`.
    pub fn sw_at(&self, gpa: u64) -> Option<SwBreakpoint> {
        self.sw.get(&gpa).copied()
    }

    /// Every software breakpoint.
    pub fn sw_all(&self) -> impl Iterator<Item = &SwBreakpoint> {
        self.sw.values()
    }

    pub fn has_sw(&self) -> bool {
        !self.sw.is_empty()
    }

    /// Records a planted `int3`.
    pub fn insert_sw(&mut self, bp: SwBreakpoint) {
        self.sw.insert(bp.gpa, bp);
    }

    /// Forgets the software breakpoint at guest-virtual `gva`; returns it (to restore its byte).
    pub fn remove_sw(&mut self, gva: u64) -> Option<SwBreakpoint> {
        let gpa = self.sw.values().find(|b| b.gva == gva)?.gpa;
        self.sw.remove(&gpa)
    }

    /// A write of `byte` under a planted `int3`: it becomes the byte restored later. Returns
    /// whether a breakpoint sits there (and the `int3` must stay).
    pub fn replace_original(&mut self, gpa: u64, byte: u8) -> bool {
        match self.sw.get_mut(&gpa) {
            Some(bp) => {
                bp.original = byte;
                true
            }
            None => false,
        }
    }

    /// DR slot `i`.
    pub fn hw_slot(&self, i: usize) -> Option<HwSlot> {
        self.hw.get(i).copied().flatten()
    }

    /// Takes a free DR slot; `Err` when all four are in use.
    pub fn add_hw(&mut self, slot: HwSlot) -> Result<usize, BreakpointError> {
        if let Some(i) = self.hw.iter().position(|s| *s == Some(slot)) {
            return Ok(i);
        }
        let i = self.hw.iter().position(Option::is_none).ok_or(BreakpointError::NoFreeDebugRegister)?;
        self.hw[i] = Some(slot);
        Ok(i)
    }

    /// Adds a watchpoint kept by memory slots.
    pub fn add_watch(&mut self, w: Watchpoint) {
        self.watch.push(w);
    }

    /// Removes the watchpoint added last (its slots could not be set).
    pub fn undo_add_watch(&mut self) {
        self.watch.pop();
    }

    /// Removes a slot-kept watchpoint; false when there is none like it.
    pub fn remove_watch(&mut self, gva: u64, len: u64, kind: WatchKind) -> bool {
        match self.watch.iter().position(|w| w.gva == gva && w.len == len && w.kind == kind) {
            Some(i) => {
                self.watch.remove(i);
                true
            }
            None => false,
        }
    }

    pub fn remove_hw(&mut self, slot: HwSlot) -> bool {
        match self.hw.iter().position(|s| *s == Some(slot)) {
            Some(i) => {
                self.hw[i] = None;
                true
            }
            None => false,
        }
    }

    /// The hardware execution breakpoint at `gva`, if any.
    pub fn hw_exec_at(&self, gva: u64) -> bool {
        self.hw.iter().flatten().any(|s| s.gva == gva && s.kind == HwKind::Exec)
    }

    /// DR0-3 addresses and the DR7 value enabling the used slots (Ln, RW and LEN per slot).
    pub fn debug_registers(&self) -> ([u64; HW_SLOTS], u64) {
        let mut addrs = [0; HW_SLOTS];
        let mut dr7 = 0;
        for (i, slot) in self.hw.iter().enumerate() {
            let Some(s) = slot else { continue };
            addrs[i] = s.gva;
            let (rw, len) = match s.kind {
                HwKind::Exec => (0b00, 0b00),
                HwKind::Data { kind, len } => {
                    let rw = if kind == WatchKind::Write { 0b01 } else { 0b11 };
                    let len = match len {
                        1 => 0b00,
                        2 => 0b01,
                        8 => 0b10,
                        _ => 0b11,
                    };
                    (rw, len)
                }
            };
            dr7 |= (1 << (2 * i)) | (rw << (16 + 4 * i)) | (len << (18 + 4 * i));
        }
        (addrs, dr7)
    }

    /// The watchpoint an access hits, if any.
    pub fn watch_hit(&self, gpa: u64, len: u64, is_write: bool) -> Option<Watchpoint> {
        self.watch.iter().copied().find(|w| w.overlaps(gpa, len) && w.catches(is_write))
    }

    /// Guest-physical pages that hold a watchpoint, and how each must be kept: read-only for
    /// write watchpoints, unmapped when any watchpoint on the page catches reads.
    pub fn watched_pages(&self) -> Vec<(u64, Protection)> {
        let mut pages: Vec<(u64, Protection)> = self
            .watch
            .iter()
            .flat_map(|w| {
                let first = w.gpa & !0xfff;
                let last = (w.gpa + w.len.max(1) - 1) & !0xfff;
                let prot = if w.kind == WatchKind::Write { Protection::ReadOnly } else { Protection::Unmapped };
                (first..=last).step_by(0x1000).map(move |p| (p, prot))
            })
            .collect();
        // Unmapped wins over read-only for a page watched both ways.
        pages.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        pages.dedup_by_key(|p| p.0);
        pages
    }

    pub fn is_empty(&self) -> bool {
        self.sw.is_empty() && self.hw.iter().all(Option::is_none) && self.watch.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(gva: u64) -> HwSlot {
        HwSlot { gva, kind: HwKind::Exec }
    }

    #[test]
    fn four_hw_slots_then_an_error() {
        let mut t = BreakpointTable::default();
        for (i, a) in [0x1000, 0x2000, 0x3000, 0x4000].into_iter().enumerate() {
            assert_eq!(t.add_hw(exec(a)), Ok(i));
        }
        assert_eq!(t.add_hw(exec(0x2000)), Ok(1), "the same breakpoint again takes no new slot");
        assert!(t.add_hw(exec(0x5000)).unwrap_err().to_string().contains("DR0-3"));
        assert_eq!(t.debug_registers(), ([0x1000, 0x2000, 0x3000, 0x4000], 0b0101_0101));
        assert!(t.remove_hw(exec(0x2000)));
        assert_eq!(t.debug_registers().1, 0b0101_0001);
        assert!(t.hw_exec_at(0x3000) && !t.hw_exec_at(0x2000));
        let w = HwSlot { gva: 0x9000, kind: HwKind::Data { kind: WatchKind::Write, len: 4 } };
        assert_eq!(t.add_hw(w), Ok(1));
        // Slot 1: L1, RW=01 (write), LEN=11 (4 bytes).
        assert_eq!(t.debug_registers().1, 0b0101_0101 | (0b1101 << 20));
    }

    #[test]
    fn watchpoints_match_overlapping_accesses_of_their_kind() {
        let mut t = BreakpointTable::default();
        t.add_watch(Watchpoint { gva: 0x10ffe, gpa: 0x20ffe, len: 4, kind: WatchKind::Write });
        assert!(t.watch_hit(0x21000, 1, true).is_some());
        assert!(t.watch_hit(0x20ff8, 8, true).is_some());
        assert!(t.watch_hit(0x20ff8, 6, true).is_none());
        assert!(t.watch_hit(0x20ffe, 4, false).is_none(), "a read does not hit a write watchpoint");
        use Protection::*;
        assert_eq!(t.watched_pages(), vec![(0x20000, ReadOnly), (0x21000, ReadOnly)]);
        t.add_watch(Watchpoint { gva: 0x10000, gpa: 0x21004, len: 1, kind: WatchKind::Read });
        assert_eq!(t.watched_pages(), vec![(0x20000, ReadOnly), (0x21000, Unmapped)]);
    }
}

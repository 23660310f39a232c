//! gdb's `break`, `hbreak`, `watch`, `rwatch` and `awatch`, by the mechanisms the probe chose.

use gdbstub::target::TargetResult;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint, SwBreakpointOps, WatchKind,
};

use super::target::GdbTarget;
use crate::controller::ControlError;
use crate::debug::breakpoints::WatchKind as Kind;

fn kind(k: WatchKind) -> Kind {
    match k {
        WatchKind::Write => Kind::Write,
        WatchKind::Read => Kind::Read,
        WatchKind::ReadWrite => Kind::Access,
    }
}

impl Breakpoints for GdbTarget {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

/// A refusal gdb turns into "Cannot insert breakpoint"; the reason goes to kvmscope's log.
fn refused(what: &str, e: ControlError) -> TargetResult<bool, GdbTarget> {
    crate::notice::say(format!("gdb {what}: {e}"));
    Ok(false)
}

impl SwBreakpoint for GdbTarget {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        match self.controller.add_sw_breakpoint(addr) {
            Ok(()) => Ok(true),
            Err(e) => refused(&format!("break at {addr:#x}"), e),
        }
    }
    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.controller.remove_sw_breakpoint(addr))
    }
}

impl HwBreakpoint for GdbTarget {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        match self.controller.add_hw_breakpoint(addr) {
            Ok(()) => Ok(true),
            Err(e) => refused(&format!("hbreak at {addr:#x}"), e),
        }
    }
    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.controller.remove_hw_breakpoint(addr))
    }
}

impl HwWatchpoint for GdbTarget {
    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, k: WatchKind) -> TargetResult<bool, Self> {
        match self.controller.add_watchpoint(addr, len, kind(k)) {
            Ok(()) => Ok(true),
            Err(e) => refused(&format!("watchpoint at {addr:#x}"), e),
        }
    }
    fn remove_hw_watchpoint(&mut self, addr: u64, len: u64, k: WatchKind) -> TargetResult<bool, Self> {
        Ok(self.controller.remove_watchpoint(addr, len, kind(k)).unwrap_or(false))
    }
}

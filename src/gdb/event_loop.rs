//! The gdbstub event loop: wait for either a byte from gdb or a stop of the guest; Ctrl-C pauses.

use std::time::Duration;

use gdbstub::common::Signal;
use gdbstub::conn::{Connection, ConnectionExt};
use gdbstub::stub::MultiThreadStopReason;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::target::Target;

use super::connection::Session;
use super::target::{GdbTarget, TargetFailure, tid_of};
use crate::debug::breakpoints::WatchKind;
use crate::debug::{Stop, StopReason};

/// The event loop type gdbstub drives.
pub enum GdbEventLoop {}

/// How a stop looks to gdb.
pub fn stop_reason(s: &Stop) -> MultiThreadStopReason<u64> {
    let tid = tid_of(s.vcpu as usize);
    match &s.reason {
        StopReason::Step => MultiThreadStopReason::DoneStep,
        StopReason::SwBreakpoint(_) => MultiThreadStopReason::SwBreak(tid),
        StopReason::HwBreakpoint(_) => MultiThreadStopReason::HwBreak(tid),
        StopReason::Watchpoint { gva, kind } => {
            let kind = match kind {
                WatchKind::Write => gdbstub::target::ext::breakpoints::WatchKind::Write,
                WatchKind::Read => gdbstub::target::ext::breakpoints::WatchKind::Read,
                WatchKind::Access => gdbstub::target::ext::breakpoints::WatchKind::ReadWrite,
            };
            MultiThreadStopReason::Watch { tid, kind, addr: *gva }
        }
        StopReason::ExitBreakpoint(_) => MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGTRAP },
        StopReason::Pause => MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGINT },
        StopReason::Reached(_) => MultiThreadStopReason::DoneStep,
        StopReason::Diverged { .. } | StopReason::TravelFailed(_) => {
            MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGTRAP }
        }
        StopReason::TimelineStart(_) => MultiThreadStopReason::ReplayLog {
            tid: Some(tid),
            pos: gdbstub::target::ext::base::reverse_exec::ReplayLogPosition::Begin,
        },
        // Never a parked vCPU's reason: the state left at the end is not offered as a stop.
        StopReason::Ended => MultiThreadStopReason::Exited(0),
    }
}

impl BlockingEventLoop for GdbEventLoop {
    type Target = GdbTarget;
    type Connection = Session;
    type StopReason = MultiThreadStopReason<u64>;

    #[allow(clippy::type_complexity)]
    fn wait_for_stop_reason(
        target: &mut GdbTarget,
        conn: &mut Self::Connection,
    ) -> Result<
        Event<Self::StopReason>,
        WaitForStopReasonError<<Self::Target as Target>::Error, <Self::Connection as Connection>::Error>,
    > {
        loop {
            if conn.peek().map_err(WaitForStopReasonError::Connection)?.is_some() {
                let byte = conn.read().map_err(WaitForStopReasonError::Connection)?;
                return Ok(Event::IncomingData(byte));
            }
            if target.controller.is_ending() {
                let status = target.controller.end_status().unwrap_or(0);
                return Ok(Event::TargetStopped(MultiThreadStopReason::Exited(status as u8)));
            }
            if let Some(stop) = target.controller.wait_for_stop(target.resumed_at, Duration::from_millis(10)) {
                // The user holds the guest now: a checkpoint if one is due, to go back from.
                if let Some(Err(e)) = target.controller.auto_checkpoint() {
                    crate::notice::say(format!("automatic checkpoint: {e}"));
                }
                return Ok(Event::TargetStopped(stop_reason(&stop)));
            }
        }
    }

    fn on_interrupt(target: &mut GdbTarget) -> Result<Option<Self::StopReason>, TargetFailure> {
        target.controller.pause();
        target.controller.wait_all_stopped(Duration::from_secs(5));
        Ok(Some(MultiThreadStopReason::SignalWithThread { tid: tid_of(0), signal: Signal::SIGINT }))
    }
}

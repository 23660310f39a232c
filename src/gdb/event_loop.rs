//! The gdbstub event loop: wait for either a byte from gdb or a stop of the guest; Ctrl-C pauses.

use std::time::Duration;

use gdbstub::common::Signal;
use gdbstub::conn::{Connection, ConnectionExt};
use gdbstub::stub::MultiThreadStopReason;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::target::Target;
use gdbstub::target::ext::base::reverse_exec::ReplayLogPosition;

use super::connection::Session;
use super::target::{GdbTarget, TargetFailure, tid_of};
use crate::debug::breakpoints::WatchKind;
use crate::debug::{Stop, StopReason};
use crate::time_travel::TravelError;

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
        StopReason::Diverged { .. } => MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGTRAP },
        // Where the history kept ends, going back (the first checkpoint) or forward again (a
        // path that leaves it): gdb says "No more reverse-execution history".
        StopReason::TimelineStart(_) => {
            MultiThreadStopReason::ReplayLog { tid: Some(tid), pos: ReplayLogPosition::Begin }
        }
        StopReason::TravelFailed(_) => MultiThreadStopReason::ReplayLog { tid: Some(tid), pos: ReplayLogPosition::End },
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
            if !target.travel_done() {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            if let Some(outcome) = target.finish_travel() {
                return Ok(Event::TargetStopped(travel_stop(target, conn, outcome)));
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
                if let StopReason::Diverged { .. } = &stop.reason {
                    console(conn, &format!("kvmscope: {}\n", stop.reason));
                }
                return Ok(Event::TargetStopped(stop_reason(&stop)));
            }
        }
    }

    fn on_interrupt(target: &mut GdbTarget) -> Result<Option<Self::StopReason>, TargetFailure> {
        // A reverse command under way stops where it is; the event loop reports it.
        if target.cancel_travel() {
            return Ok(None);
        }
        target.controller.pause();
        target.controller.wait_all_stopped(Duration::from_secs(5));
        Ok(Some(MultiThreadStopReason::SignalWithThread { tid: tid_of(0), signal: Signal::SIGINT }))
    }
}

/// How a reverse command's outcome looks to gdb: where it ended (the restated stop), or, when it
/// failed, the end of the history it reached and a line on gdb's console saying why.
fn travel_stop(
    target: &GdbTarget,
    conn: &mut Session,
    outcome: Result<crate::time_travel::Place, TravelError>,
) -> MultiThreadStopReason<u64> {
    let tid = tid_of(0);
    let stop = target.controller.stops().first().cloned().flatten();
    match (outcome, stop) {
        (Ok(_), Some(stop)) => stop_reason(&stop),
        (Ok(_), None) => MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGTRAP },
        (Err(e), _) => {
            console(conn, &format!("kvmscope: going back: {e}\n"));
            match e {
                TravelError::Cancelled(_) => MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGINT },
                e if e.left_in_place() || matches!(e, TravelError::BeforeFirstCheckpoint(_)) => {
                    MultiThreadStopReason::ReplayLog { tid: Some(tid), pos: ReplayLogPosition::Begin }
                }
                _ => MultiThreadStopReason::ReplayLog { tid: Some(tid), pos: ReplayLogPosition::End },
            }
        }
    }
}

/// Writes `text` on gdb's console (an `O` packet, which gdb takes while it waits for a stop).
fn console(conn: &mut Session, text: &str) {
    use gdbstub::conn::Connection;
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    let body = format!("O{hex}");
    let sum = body.bytes().fold(0u8, |s, b| s.wrapping_add(b));
    let _ = conn.write_all(format!("${body}#{sum:02x}").as_bytes());
    let _ = conn.flush();
}

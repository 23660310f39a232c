//! The gdbstub target: each vCPU is a gdb thread; registers, memory, resume and single-step go
//! through the debug controller, never to a vCPU directly.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gdbstub::common::{Signal, Tid};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::reverse_exec::{ReverseCont, ReverseContOps, ReverseStep, ReverseStepOps};
use gdbstub::target::ext::breakpoints::BreakpointsOps;
use gdbstub::target::ext::monitor_cmd::MonitorCmdOps;
use gdbstub::target::{Target, TargetError, TargetResult};
use kvm_bindings::{kvm_regs, kvm_sregs};

use super::arch::{KvmscopeRegs, KvmscopeX86_64};
use crate::controller::{ControlError, Controller};
use crate::debug::Stop;
use crate::decode::regs;
use crate::time_travel::{Place, TravelError};

/// Why the target could not do what gdb asked (gdbstub reports it and ends the session).
#[derive(Debug, thiserror::Error)]
pub enum TargetFailure {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("kvmscope cannot deliver signal {0} to a VM")]
    Signal(Signal),
}

/// gdb's view of the VM.
pub struct GdbTarget {
    pub controller: Controller,
    vcpus: usize,
    /// The vCPU gdb asked to step at the next resume, if any.
    step: Option<usize>,
    /// Stop serial when gdb last resumed the guest: a newer stop is the answer to that resume.
    pub resumed_at: u64,
    /// Packets from gdb so far (counted by the connection), to tell one `m` request from the next.
    packets: Arc<AtomicU64>,
    /// The packet whose memory read came up short (gdbstub reads a long `m` in chunks: what
    /// follows a short chunk must add nothing, so gdb gets the readable prefix, not a prefix and
    /// an error), and the packet whose first chunk was read.
    short_read_in: Option<u64>,
    read_in: Option<u64>,
    /// A reverse command under way.
    travel: Option<std::thread::JoinHandle<Result<Place, TravelError>>>,
}

/// gdb thread id of a vCPU (gdb counts from 1).
pub fn tid_of(vcpu: usize) -> Tid {
    Tid::new(vcpu + 1).unwrap_or(Tid::new(1).expect("1 is a valid tid"))
}

fn vcpu_of(tid: Tid) -> usize {
    tid.get() - 1
}

impl GdbTarget {
    pub fn new(controller: Controller, vcpus: usize, packets: Arc<AtomicU64>) -> Self {
        let resumed_at = controller.stop_serial();
        Self { controller, vcpus, step: None, resumed_at, packets, short_read_in: None, read_in: None, travel: None }
    }

    fn stop(&self, tid: Tid) -> TargetResult<Stop, Self> {
        self.controller.stops().get(vcpu_of(tid)).cloned().flatten().ok_or(TargetError::NonFatal)
    }
}

impl Target for GdbTarget {
    type Arch = KvmscopeX86_64;
    type Error = TargetFailure;

    /// Acks stay on: with them a packet damaged on the way is sent again (the connection answers
    /// it `-`) instead of ending the session.
    fn use_no_ack_mode(&self) -> bool {
        false
    }

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }
}

/// gdb's registers from a stop.
pub fn to_gdb(s: &Stop) -> KvmscopeRegs {
    let r = &s.regs;
    let mut out = KvmscopeRegs::default();
    out.core.regs = regs::general(r);
    out.core.rip = r.rip;
    out.core.eflags = r.rflags as u32;
    let seg = &mut out.core.segments;
    (seg.cs, seg.ss, seg.ds, seg.es, seg.fs, seg.gs) = (
        s.sregs.cs.selector as u32,
        s.sregs.ss.selector as u32,
        s.sregs.ds.selector as u32,
        s.sregs.es.selector as u32,
        s.sregs.fs.selector as u32,
        s.sregs.gs.selector as u32,
    );
    for (st, fpr) in out.core.st.iter_mut().zip(s.fpu.fpr.iter()) {
        st.copy_from_slice(&fpr[..10]);
    }
    out.core.fpu.fctrl = s.fpu.fcw as u32;
    out.core.fpu.fstat = s.fpu.fsw as u32;
    out.core.fpu.ftag = s.fpu.ftwx as u32;
    out.core.fpu.fop = s.fpu.last_opcode as u32;
    out.core.fpu.fioff = s.fpu.last_ip as u32;
    out.core.fpu.fooff = s.fpu.last_dp as u32;
    for (x, k) in out.core.xmm.iter_mut().zip(s.fpu.xmm.iter()) {
        *x = u128::from_le_bytes(*k);
    }
    out.core.mxcsr = s.fpu.mxcsr;
    out.fs_base = s.sregs.fs.base;
    out.gs_base = s.sregs.gs.base;
    (out.cr0, out.cr2, out.cr3, out.cr4, out.efer) = (s.sregs.cr0, s.sregs.cr2, s.sregs.cr3, s.sregs.cr4, s.sregs.efer);
    out
}

/// KVM's registers from gdb's, keeping what gdb does not describe as it was.
pub fn from_gdb(g: &KvmscopeRegs, s: &Stop) -> (kvm_regs, kvm_sregs) {
    let regs = regs::from_general(&g.core.regs, g.core.rip, (s.regs.rflags & !0xffff_ffff) | g.core.eflags as u64);
    let mut sregs = s.sregs;
    sregs.fs.base = g.fs_base;
    sregs.gs.base = g.gs_base;
    (sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.efer) = (g.cr0, g.cr2, g.cr3, g.cr4, g.efer);
    (regs, sregs)
}

impl MultiThreadBase for GdbTarget {
    fn read_registers(&mut self, regs: &mut KvmscopeRegs, tid: Tid) -> TargetResult<(), Self> {
        *regs = to_gdb(&self.stop(tid)?);
        Ok(())
    }

    fn write_registers(&mut self, regs: &KvmscopeRegs, tid: Tid) -> TargetResult<(), Self> {
        let stop = self.stop(tid)?;
        let (r, s) = from_gdb(regs, &stop);
        self.controller.write_registers(vcpu_of(tid), r, s).map_err(|_| TargetError::NonFatal)
    }

    /// Reads one chunk of an `m` request: the readable prefix of the request, or an error when
    /// not even its first byte is readable — never both.
    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        let packet = self.packets.load(Ordering::Acquire);
        if self.short_read_in == Some(packet) {
            return Ok(0);
        }
        let first_chunk = self.read_in != Some(packet);
        self.read_in = Some(packet);
        let n = self.controller.read_memory(vcpu_of(tid), start, data).unwrap_or(0);
        if n < data.len() {
            self.short_read_in = Some(packet);
        }
        if n == 0 && first_chunk { Err(TargetError::NonFatal) } else { Ok(n) }
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        self.controller.write_memory(vcpu_of(tid), start, data).map_err(|_| TargetError::NonFatal)
    }

    fn list_active_threads(&mut self, register_thread: &mut dyn FnMut(Tid)) -> Result<(), Self::Error> {
        for v in 0..self.vcpus {
            register_thread(tid_of(v));
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadResume for GdbTarget {
    fn resume(&mut self) -> Result<(), Self::Error> {
        self.resumed_at = self.controller.stop_serial();
        match self.step.take() {
            // Scheduler locking: while one vCPU steps, the others stay stopped.
            Some(v) => Ok(self.controller.step(v)?),
            None => {
                self.controller.resume();
                Ok(())
            }
        }
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.step = None;
        Ok(())
    }

    fn set_resume_action_continue(&mut self, _tid: Tid, signal: Option<Signal>) -> Result<(), Self::Error> {
        match signal {
            None => Ok(()),
            Some(s) => Err(TargetFailure::Signal(s)),
        }
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }

    fn support_reverse_step(&mut self) -> Option<ReverseStepOps<'_, Tid, Self>> {
        Some(self)
    }

    fn support_reverse_cont(&mut self) -> Option<ReverseContOps<'_, Tid, Self>> {
        Some(self)
    }
}

impl GdbTarget {
    /// Starts going back in time by `how`, on a thread of its own: the event loop goes on
    /// reading gdb (its Ctrl-C cancels it) and reports the stop it ends at.
    fn travel(&mut self, how: fn(&Controller) -> Result<Place, TravelError>) {
        self.resumed_at = self.controller.stop_serial();
        let controller = self.controller.clone();
        let spawned = std::thread::Builder::new().name("kvmscope-reverse".into()).spawn(move || how(&controller));
        match spawned {
            Ok(handle) => self.travel = Some(handle),
            Err(e) => crate::notice::say(format!("going back: no thread for it: {e}")),
        }
    }

    /// The reverse command under way has finished (or there is none).
    pub fn travel_done(&self) -> bool {
        self.travel.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits for the reverse command under way; its outcome, if there was one.
    pub fn finish_travel(&mut self) -> Option<Result<Place, TravelError>> {
        let handle = self.travel.take()?;
        Some(handle.join().unwrap_or_else(|_| Err(TravelError::Control("the reverse command failed".into()))))
    }

    /// Cancels the reverse command under way, if any: the guest stops where it is.
    pub fn cancel_travel(&mut self) -> bool {
        if self.travel.is_some() {
            self.controller.cancel_travel();
        }
        self.travel.is_some()
    }
}

/// A session that ends (gdb detached, killed, or gone) stops the reverse command it started: the
/// guest is left where it has got to, stopped, for the next gdb.
impl Drop for GdbTarget {
    fn drop(&mut self) {
        if self.cancel_travel() {
            let _ = self.finish_travel();
        }
    }
}

impl ReverseStep<Tid> for GdbTarget {
    fn reverse_step(&mut self, _tid: Tid) -> Result<(), Self::Error> {
        self.travel(Controller::reverse_step);
        Ok(())
    }
}

impl ReverseCont<Tid> for GdbTarget {
    fn reverse_cont(&mut self) -> Result<(), Self::Error> {
        self.travel(Controller::reverse_continue);
        Ok(())
    }
}

impl MultiThreadSchedulerLocking for GdbTarget {
    /// Only the vCPUs gdb resumes run; kvmscope steps one vCPU at a time and leaves the rest stopped.
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl MultiThreadSingleStep for GdbTarget {
    fn set_resume_action_step(&mut self, tid: Tid, signal: Option<Signal>) -> Result<(), Self::Error> {
        if let Some(s) = signal {
            return Err(TargetFailure::Signal(s));
        }
        self.step = Some(vcpu_of(tid));
        Ok(())
    }
}

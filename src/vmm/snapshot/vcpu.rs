//! One vCPU's whole architectural state as KVM holds it, read and written in Firecracker's
//! order (`vstate/vcpu.rs`): what a guest could tell apart after a restore is all here — the
//! registers, the XSAVE area (x87, SSE, AVX) and XCRs, every MSR KVM lists that it lets us read
//! (the TSC among them), the local APIC, pending events, debug registers, MP state.

use kvm_bindings::{
    Msrs, kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs,
    kvm_xsave,
};
use kvm_ioctls::VcpuFd;
use serde::{Deserialize, Serialize};

/// What one vCPU was.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VcpuSnapshot {
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    /// The XSAVE area; `None` where the host has no `KVM_GET_XSAVE`.
    pub xsave: Option<Xsave>,
    pub xcrs: Option<kvm_xcrs>,
    /// Every MSR of KVM's list that reads, as (index, value).
    pub msrs: Vec<(u32, u64)>,
    /// The local APIC, where KVM has one (an in-kernel irqchip).
    pub lapic: Option<kvm_lapic_state>,
    pub events: Option<kvm_vcpu_events>,
    pub debugregs: Option<kvm_debugregs>,
    pub mp_state: Option<kvm_mp_state>,
}

/// The XSAVE area (x87, SSE, AVX state): 4 KiB of plain data, copied as such.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct Xsave(pub kvm_xsave);

impl Clone for Xsave {
    fn clone(&self) -> Self {
        // SAFETY: kvm_xsave is plain data (integers, and a flexible array of size 0 here): a
        // bitwise copy is a valid value.
        Self(unsafe { std::ptr::read(&self.0) })
    }
}

impl std::fmt::Debug for Xsave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Xsave(4 KiB)")
    }
}

/// A part of a vCPU's state KVM refused.
#[derive(Debug, thiserror::Error)]
pub enum VcpuStateError {
    #[error("{what}: {source}")]
    Kvm { what: &'static str, source: kvm_ioctls::Error },
    #[error("KVM refused to restore MSR {0:#x}")]
    MsrRefused(u32),
}

fn part<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, VcpuStateError> {
    r.map_err(|source| VcpuStateError::Kvm { what, source })
}

/// MSRs read per `KVM_GET_MSRS`: KVM's batch limit is larger; this keeps each call small.
const MSR_BATCH: usize = 64;

/// Reads every MSR of `list` that KVM lets us read (it stops a batch at the first it refuses:
/// that one is skipped and the rest read on).
fn read_msrs(fd: &VcpuFd, list: &[u32]) -> Result<Vec<(u32, u64)>, VcpuStateError> {
    let mut out = Vec::with_capacity(list.len());
    let mut rest = list;
    while !rest.is_empty() {
        let batch = &rest[..rest.len().min(MSR_BATCH)];
        let entries: Vec<kvm_msr_entry> =
            batch.iter().map(|&index| kvm_msr_entry { index, ..Default::default() }).collect();
        let mut msrs = part("MSRs", Msrs::from_entries(&entries).map_err(|_| kvm_ioctls::Error::new(libc::E2BIG)))?;
        let read = part("MSRs", fd.get_msrs(&mut msrs))?;
        out.extend(msrs.as_slice()[..read].iter().map(|e| (e.index, e.data)));
        // A short batch stopped at one KVM refused: skip that one.
        let taken = if read < batch.len() { read + 1 } else { read };
        rest = &rest[taken..];
    }
    Ok(out)
}

impl VcpuSnapshot {
    /// Reads the state of a vCPU that is not running; `msr_list` is KVM's list of MSRs to save,
    /// `lapic` whether KVM models the local APIC (an in-kernel irqchip).
    pub fn capture(fd: &VcpuFd, msr_list: &[u32], lapic: bool) -> Result<Self, VcpuStateError> {
        Ok(Self {
            mp_state: fd.get_mp_state().ok(),
            regs: part("registers", fd.get_regs())?,
            sregs: part("system registers", fd.get_sregs())?,
            xsave: fd.get_xsave().ok().map(Xsave),
            xcrs: fd.get_xcrs().ok(),
            msrs: read_msrs(fd, msr_list)?,
            lapic: if lapic { Some(part("local APIC", fd.get_lapic())?) } else { None },
            events: fd.get_vcpu_events().ok(),
            debugregs: fd.get_debug_regs().ok(),
        })
    }

    /// Loads this state into a vCPU that is not running.
    pub fn restore(&self, fd: &VcpuFd) -> Result<(), VcpuStateError> {
        if let Some(mp) = self.mp_state {
            part("MP state", fd.set_mp_state(mp))?;
        }
        part("system registers", fd.set_sregs(&self.sregs))?;
        part("registers", fd.set_regs(&self.regs))?;
        if let Some(x) = &self.xsave {
            // SAFETY: the area came from KVM_GET_XSAVE on a vCPU of the same kind: KVM reads no
            // more than the struct holds.
            part("XSAVE area", unsafe { fd.set_xsave(&x.0) })?;
        }
        if let Some(x) = &self.xcrs {
            part("XCRs", fd.set_xcrs(x))?;
        }
        if let Some(l) = &self.lapic {
            part("local APIC", fd.set_lapic(l))?;
        }
        write_msrs(fd, &self.msrs)?;
        if let Some(d) = &self.debugregs {
            part("debug registers", fd.set_debug_regs(d))?;
        }
        if let Some(e) = &self.events {
            part("pending events", fd.set_vcpu_events(e))?;
        }
        Ok(())
    }
}

/// Writes MSRs in batches. KVM stops a batch at one it refuses (one this VM's CPUID does not
/// offer, such as a paravirtual MSR the guest was never told of): such an MSR is skipped when it
/// already holds the saved value (or cannot even be read), and is an error otherwise.
fn write_msrs(fd: &VcpuFd, msrs: &[(u32, u64)]) -> Result<(), VcpuStateError> {
    let mut rest = msrs;
    while !rest.is_empty() {
        let batch = &rest[..rest.len().min(MSR_BATCH)];
        let entries: Vec<kvm_msr_entry> =
            batch.iter().map(|&(index, data)| kvm_msr_entry { index, data, ..Default::default() }).collect();
        let list = part("MSRs", Msrs::from_entries(&entries).map_err(|_| kvm_ioctls::Error::new(libc::E2BIG)))?;
        let written = part("MSRs", fd.set_msrs(&list))?;
        if written < batch.len() {
            let (index, saved) = batch[written];
            let now = read_msrs(fd, &[index])?;
            if now.first().is_some_and(|&(_, v)| v != saved) {
                return Err(VcpuStateError::MsrRefused(index));
            }
            rest = &rest[written + 1..];
        } else {
            rest = &rest[written..];
        }
    }
    Ok(())
}

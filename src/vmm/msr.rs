//! MSR traces: a KVM MSR filter that sends the chosen MSRs' `rdmsr`/`wrmsr` to userspace
//! (`KVM_CAP_X86_USER_SPACE_MSR` with `KVM_X86_SET_MSR_FILTER`), where each is an exit like a port
//! access, and then completed faithfully on the vCPU's real MSR (`KVM_GET_MSRS` / `KVM_SET_MSRS`,
//! which the filter does not apply to), so the guest sees no difference — a #GP only where the CPU
//! would give one (an MSR KVM does not have, a value it refuses).

use kvm_bindings::{
    KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_FILTER, Msrs, kvm_enable_cap, kvm_msr_entry, kvm_run,
};
use kvm_ioctls::{Cap, Kvm, MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, VcpuFd, VmFd};

use crate::trace::{Dir, ExitKind};

/// Ranges one KVM MSR filter holds (`KVM_MSR_FILTER_MAX_RANGES`): one per trapped MSR.
pub const MAX_TRAPPED: usize = kvm_bindings::KVM_MSR_FILTER_MAX_RANGES as usize;

/// Asks KVM to exit to userspace for MSR accesses its filter denies. False where the host's KVM
/// cannot (then MSRs cannot be trapped).
pub fn enable(kvm: &Kvm, vm: &VmFd) -> bool {
    if !kvm.check_extension(Cap::X86UserSpaceMsr) {
        return false;
    }
    let mut cap = kvm_enable_cap { cap: KVM_CAP_X86_USER_SPACE_MSR, ..Default::default() };
    cap.args[0] = KVM_MSR_EXIT_REASON_FILTER as u64;
    vm.enable_cap(&cap).is_ok()
}

/// Why MSRs cannot be trapped.
#[derive(Debug, thiserror::Error)]
pub enum MsrError {
    #[error("this host's KVM cannot send MSR accesses to userspace")]
    Unsupported,
    #[error("{0} MSRs to trap; KVM's filter holds {MAX_TRAPPED}")]
    TooMany(usize),
    #[error("KVM refused the MSR filter (KVM_X86_SET_MSR_FILTER): {0}")]
    Filter(kvm_ioctls::Error),
}

/// Traps exactly these MSRs (reads and writes); an empty list traps none.
pub fn set_traps(vm: &VmFd, msrs: &[u32]) -> Result<(), MsrError> {
    if msrs.len() > MAX_TRAPPED {
        return Err(MsrError::TooMany(msrs.len()));
    }
    // One MSR per range, its bit 0: denied to the guest, so KVM exits to userspace.
    let deny = [0u8];
    let ranges: Vec<MsrFilterRange> = msrs
        .iter()
        .map(|&base| MsrFilterRange {
            flags: MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE,
            base,
            msr_count: 1,
            bitmap: &deny,
        })
        .collect();
    vm.set_msr_filter(MsrFilterDefaultAction::ALLOW, &ranges).map_err(MsrError::Filter)
}

/// Completes a trapped MSR access on the vCPU's real MSR: a read gets the MSR's value (also put in
/// `kind`), a write goes to the MSR; what KVM refuses becomes a #GP, as on the CPU.
///
/// # Safety
/// `run` is `fd`'s mapped `kvm_run`, and the exit `KVM_RUN` just returned was this MSR access.
pub unsafe fn complete(fd: &VcpuFd, run: *mut kvm_run, kind: &mut ExitKind) {
    let ExitKind::Msr { index, dir, data } = kind else { return };
    let entry = kvm_msr_entry { index: *index, data: *data, ..Default::default() };
    let Ok(mut msrs) = Msrs::from_entries(&[entry]) else { return };
    let done = match dir {
        Dir::In => match fd.get_msrs(&mut msrs) {
            Ok(1) => {
                *data = msrs.as_slice()[0].data;
                true
            }
            _ => false,
        },
        Dir::Out => matches!(fd.set_msrs(&msrs), Ok(1)),
    };
    // SAFETY: as the caller promises, the exit reason is KVM_EXIT_X86_RDMSR or _WRMSR, which makes
    // `msr` the valid union member; KVM reads it at the next KVM_RUN.
    unsafe {
        let msr = std::ptr::addr_of_mut!((*run).__bindgen_anon_1.msr);
        (*msr).error = u8::from(!done);
        if *dir == Dir::In {
            (*msr).data = *data;
        }
    }
}

//! Memory slots: guest RAM as KVM sees it. Normally one slot per RAM range; a page watched for
//! writes gets a read-only slot of its own, so every guest write to it exits to kvmscope as MMIO, and
//! a page watched for reads gets no slot at all, so every access exits.

use std::os::fd::AsRawFd;

use kvm_bindings::{
    KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY,
    kvm_clear_dirty_log, kvm_enable_cap, kvm_userspace_memory_region,
};
use kvm_ioctls::VmFd;

/// `KVM_CLEAR_DIRTY_LOG`: `_IOWR(KVMIO, 0xc0, struct kvm_clear_dirty_log)`.
const KVM_CLEAR_DIRTY_LOG: libc::c_ulong =
    (3 << 30) | ((std::mem::size_of::<kvm_clear_dirty_log>() as libc::c_ulong) << 16) | (0xae << 8) | 0xc0;

/// One slot: guest-physical start, length, host address, read-only or not, dirty-logged or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub gpa: u64,
    pub len: u64,
    pub host: u64,
    pub readonly: bool,
    /// `KVM_MEM_LOG_DIRTY_PAGES`: KVM keeps a bitmap of the pages the guest writes.
    pub dirty_log: bool,
}

pub use crate::debug::breakpoints::Protection;

/// KVM refused a memory slot change.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("deleting slot {slot}: {source}")]
    Delete { slot: usize, source: kvm_ioctls::Error },
    #[error("slot {slot} at {gpa:#x}: {source}")]
    Set { slot: usize, gpa: u64, source: kvm_ioctls::Error },
    #[error("reading slot {slot}'s dirty log (KVM_GET_DIRTY_LOG): {source}")]
    DirtyLog { slot: usize, source: kvm_ioctls::Error },
    #[error("clearing slot {slot}'s dirty log (KVM_CLEAR_DIRTY_LOG): {source}")]
    ClearLog { slot: usize, source: std::io::Error },
}

/// Turns on KVM's manual dirty-log protection (`KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`) where the host
/// has it: reading the log then leaves the pages writable, and [`dirty_pages`] write-protects
/// again only those it read as written (`KVM_CLEAR_DIRTY_LOG`), holding KVM's MMU lock for them
/// alone. Whether it is on.
pub fn manual_protect(vm: &VmFd) -> bool {
    if vm.check_extension_raw(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 as libc::c_ulong) <= 0 {
        return false;
    }
    let mut cap = kvm_enable_cap { cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, ..Default::default() };
    cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE as u64;
    vm.enable_cap(&cap).is_ok()
}

/// Splits RAM ranges `(gpa, len, host)` around the protected pages (sorted by address): a read-only
/// slot for each read-only page, no slot for an unmapped one.
pub fn layout(ram: &[(u64, u64, u64)], pages: &[(u64, Protection)]) -> Vec<Slot> {
    let mut slots = Vec::new();
    for &(gpa, len, host) in ram {
        let end = gpa + len;
        let mut at = gpa;
        for &(page, prot) in pages.iter().filter(|(p, _)| *p >= gpa && *p + 0x1000 <= end) {
            if page > at {
                slots.push(Slot {
                    gpa: at,
                    len: page - at,
                    host: host + (at - gpa),
                    readonly: false,
                    dirty_log: false,
                });
            }
            if prot == Protection::ReadOnly {
                slots.push(Slot {
                    gpa: page,
                    len: 0x1000,
                    host: host + (page - gpa),
                    readonly: true,
                    dirty_log: false,
                });
            }
            at = page + 0x1000;
        }
        if at < end {
            slots.push(Slot { gpa: at, len: end - at, host: host + (at - gpa), readonly: false, dirty_log: false });
        }
    }
    slots
}

/// The same slots, the writable ones dirty-logged when `on` (`--dirty-log`).
pub fn log_dirty(mut slots: Vec<Slot>, on: bool) -> Vec<Slot> {
    for s in &mut slots {
        s.dirty_log = on && !s.readonly;
    }
    slots
}

/// Registers `slots` in KVM as they are: after `apply` deleted the old ones, or in place over the
/// same slots with other flags (a flags-only change, which KVM allows while the vCPUs run: how
/// dirty logging is turned on and off).
pub fn register(vm: &VmFd, slots: &[Slot]) -> Result<(), SlotError> {
    for (i, s) in slots.iter().enumerate() {
        // SAFETY: every slot lies inside guest RAM, mapped for the life of the VM.
        unsafe { vm.set_user_memory_region(region(i, s, s.len)) }.map_err(|source| SlotError::Set {
            slot: i,
            gpa: s.gpa,
            source,
        })?;
    }
    Ok(())
}

/// A slot as KVM takes it (`size` 0 deletes it).
fn region(i: usize, s: &Slot, size: u64) -> kvm_userspace_memory_region {
    kvm_userspace_memory_region {
        slot: i as u32,
        flags: if s.readonly { KVM_MEM_READONLY } else { 0 } | if s.dirty_log { KVM_MEM_LOG_DIRTY_PAGES } else { 0 },
        guest_phys_addr: s.gpa,
        memory_size: size,
        userspace_addr: s.host,
    }
}

/// The guest-physical pages written since the last call, over every dirty-logged slot
/// (`KVM_GET_DIRTY_LOG`, which clears the bitmap as it reads it; with `manual` protection, see
/// [`manual_protect`], the pages read are cleared and write-protected again by
/// `KVM_CLEAR_DIRTY_LOG`).
pub fn dirty_pages(vm: &VmFd, slots: &[Slot], manual: bool) -> Result<Vec<u64>, SlotError> {
    let mut pages = Vec::new();
    for (i, s) in slots.iter().enumerate().filter(|(_, s)| s.dirty_log) {
        let mut bitmap =
            vm.get_dirty_log(i as u32, s.len as usize).map_err(|source| SlotError::DirtyLog { slot: i, source })?;
        if manual && bitmap.iter().any(|&w| w != 0) {
            let clear = kvm_clear_dirty_log {
                slot: i as u32,
                num_pages: (s.len / 0x1000) as u32,
                first_page: 0,
                __bindgen_anon_1: kvm_bindings::kvm_clear_dirty_log__bindgen_ty_1 {
                    dirty_bitmap: bitmap.as_mut_ptr() as *mut libc::c_void,
                },
            };
            // SAFETY: `clear` is a valid kvm_clear_dirty_log whose bitmap covers the slot's pages
            // and outlives the call; KVM only reads it.
            if unsafe { libc::ioctl(vm.as_raw_fd(), KVM_CLEAR_DIRTY_LOG as _, &clear) } < 0 {
                return Err(SlotError::ClearLog { slot: i, source: std::io::Error::last_os_error() });
            }
        }
        for (w, word) in bitmap.iter().enumerate() {
            let mut bits = *word;
            while bits != 0 {
                let b = bits.trailing_zeros() as u64;
                pages.push(s.gpa + (w as u64 * 64 + b) * 0x1000);
                bits &= bits - 1;
            }
        }
    }
    Ok(pages)
}

/// Replaces `old` slots by `new` ones in KVM. Call only while every vCPU is parked.
pub fn apply(vm: &VmFd, old: &[Slot], new: &[Slot]) -> Result<(), SlotError> {
    for (i, s) in old.iter().enumerate() {
        // SAFETY: deleting a slot (size 0) releases nothing kvmscope still maps.
        unsafe { vm.set_user_memory_region(region(i, s, 0)) }
            .map_err(|source| SlotError::Delete { slot: i, source })?;
    }
    register(vm, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watched_page_becomes_its_own_readonly_slot() {
        let ram = [(0, 0x10_0000, 0x7000_0000)];
        assert_eq!(
            layout(&ram, &[]),
            vec![Slot { gpa: 0, len: 0x10_0000, host: 0x7000_0000, readonly: false, dirty_log: false }]
        );
        use Protection::*;
        let s = layout(&ram, &[(0x2000, ReadOnly), (0x3000, ReadOnly), (0x8000, Unmapped), (0xf_f000, ReadOnly)]);
        assert_eq!(
            s,
            vec![
                Slot { gpa: 0, len: 0x2000, host: 0x7000_0000, readonly: false, dirty_log: false },
                Slot { gpa: 0x2000, len: 0x1000, host: 0x7000_2000, readonly: true, dirty_log: false },
                Slot { gpa: 0x3000, len: 0x1000, host: 0x7000_3000, readonly: true, dirty_log: false },
                Slot { gpa: 0x4000, len: 0x4000, host: 0x7000_4000, readonly: false, dirty_log: false },
                Slot { gpa: 0x9000, len: 0xf_6000, host: 0x7000_9000, readonly: false, dirty_log: false },
                Slot { gpa: 0xf_f000, len: 0x1000, host: 0x700f_f000, readonly: true, dirty_log: false },
            ]
        );
    }
}

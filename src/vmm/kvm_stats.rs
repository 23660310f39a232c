//! KVM's own counters, from its binary statistics (`KVM_GET_STATS_FD` on a VM or a vCPU fd): how
//! many exits KVM handled, of which kinds, and what else it counts — most of which never reach
//! userspace. kvm-ioctls has no wrapper; the layout is the kernel's (Documentation/virt/kvm/api.rst,
//! "KVM_GET_STATS_FD"): a header, an id string, descriptors (flags, exponent, size, offset, name),
//! then the data, read afresh with `pread` whenever asked.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use kvm_bindings::{KVM_STATS_TYPE_CUMULATIVE, KVM_STATS_TYPE_INSTANT, KVM_STATS_TYPE_MASK, KVM_STATS_TYPE_PEAK};
use thiserror::Error;
use vmm_sys_util::ioctl::ioctl;
use vmm_sys_util::ioctl_io_nr;

ioctl_io_nr!(KVM_GET_STATS_FD, kvm_bindings::KVMIO, 0xce);

/// Why KVM's statistics could not be read (kept with a run's report: it clones).
#[derive(Debug, Clone, Error)]
pub enum StatsError {
    #[error("this host's KVM has no binary statistics (KVM_GET_STATS_FD): {0}")]
    Unsupported(Arc<std::io::Error>),
    #[error("reading KVM's statistics: {0}")]
    Read(Arc<std::io::Error>),
    #[error("KVM's statistics are not laid out as expected: {0}")]
    Layout(&'static str),
    #[error("the recording has no sample of KVM's counters")]
    NotRecorded,
}

impl StatsError {
    fn read(e: std::io::Error) -> Self {
        StatsError::Read(Arc::new(e))
    }
}

/// How a statistic counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StatKind {
    /// Only grows (exits, faults ...): rates make sense.
    Cumulative = 0,
    /// A current value (pages mapped ...).
    Instant = 1,
    /// The highest value seen.
    Peak = 2,
}

/// One statistic's description.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Desc {
    name: String,
    kind: StatKind,
    /// Where its (first) value is, from the start of the data block, in bytes.
    offset: u64,
}

/// An open statistics fd: its descriptors, and the file to read values from.
#[derive(Debug)]
pub struct KvmStats {
    file: File,
    data_offset: u64,
    descs: Vec<Desc>,
}

/// One reading: (name, kind, value) for every scalar statistic, in KVM's order.
pub type Reading = Vec<(String, StatKind, u64)>;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

impl KvmStats {
    /// The statistics of the VM or vCPU behind `fd` (a `VmFd` or a `VcpuFd`).
    pub fn open(fd: &impl AsRawFd) -> Result<Self, StatsError> {
        // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new fd or -1.
        let raw = unsafe { ioctl(fd, KVM_GET_STATS_FD()) };
        if raw < 0 {
            return Err(StatsError::Unsupported(Arc::new(std::io::Error::last_os_error())));
        }
        // SAFETY: `raw` is a new fd that nothing else owns.
        let file = unsafe { File::from_raw_fd(raw) };
        Self::parse(file)
    }

    /// Reads the header and descriptors of a statistics file.
    fn parse(file: File) -> Result<Self, StatsError> {
        let mut header = [0u8; 24];
        file.read_exact_at(&mut header, 0).map_err(StatsError::read)?;
        let field = |i: usize| u32_at(&header, 4 * i).unwrap_or(0) as u64;
        let (name_size, num_desc, desc_offset, data_offset) = (field(1), field(2), field(4), field(5));
        if num_desc > 4096 || name_size > 4096 {
            return Err(StatsError::Layout("implausible descriptor count or name size"));
        }
        let desc_size = 16 + name_size as usize;
        let mut block = vec![0u8; desc_size * num_desc as usize];
        file.read_exact_at(&mut block, desc_offset).map_err(StatsError::read)?;
        let mut descs = Vec::new();
        for d in block.chunks(desc_size) {
            let flags = u32_at(d, 0).ok_or(StatsError::Layout("short descriptor"))?;
            let size = u16_at(d, 6).ok_or(StatsError::Layout("short descriptor"))?;
            let offset = u32_at(d, 8).ok_or(StatsError::Layout("short descriptor"))? as u64;
            let name = d.get(16..).unwrap_or(&[]);
            let name = String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap_or(&[])).into_owned();
            let kind = match flags & KVM_STATS_TYPE_MASK {
                KVM_STATS_TYPE_CUMULATIVE => StatKind::Cumulative,
                KVM_STATS_TYPE_INSTANT => StatKind::Instant,
                KVM_STATS_TYPE_PEAK => StatKind::Peak,
                _ => continue, // histograms: not shown
            };
            if size == 1 {
                descs.push(Desc { name, kind, offset });
            }
        }
        Ok(Self { file, data_offset, descs })
    }

    /// Every scalar statistic's current value.
    pub fn read(&self) -> Result<Reading, StatsError> {
        let Some(end) = self.descs.iter().map(|d| d.offset + 8).max() else { return Ok(Vec::new()) };
        let mut data = vec![0u8; end as usize];
        self.file.read_exact_at(&mut data, self.data_offset).map_err(StatsError::read)?;
        Ok(self
            .descs
            .iter()
            .map(|d| {
                let at = d.offset as usize;
                let v = data.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
                (d.name.clone(), d.kind, v)
            })
            .collect())
    }
}

/// KVM's statistics of one VM: the VM's own and each vCPU's.
#[derive(Debug)]
pub struct VmStats {
    pub vm: KvmStats,
    pub vcpus: Vec<KvmStats>,
}

/// What KVM counted for a VM at one moment: the VM's statistics and its vCPUs' added up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvmCounts {
    pub vm: Reading,
    pub vcpus: Reading,
}

impl VmStats {
    /// Reads every statistic now.
    pub fn read(&self) -> Result<KvmCounts, StatsError> {
        let vcpus: Result<Vec<Reading>, StatsError> = self.vcpus.iter().map(KvmStats::read).collect();
        Ok(KvmCounts { vm: self.vm.read()?, vcpus: sum(&vcpus?) })
    }
}

/// Adds readings of several vCPUs up, statistic by statistic (peaks take the highest).
pub fn sum(readings: &[Reading]) -> Reading {
    let mut total: Reading = readings.first().cloned().unwrap_or_default();
    for r in readings.iter().skip(1) {
        for ((_, kind, t), (_, _, v)) in total.iter_mut().zip(r) {
            *t = if *kind == StatKind::Peak { (*t).max(*v) } else { t.saturating_add(*v) };
        }
    }
    total
}

/// Each statistic's change per second from `old` to `new`, `secs` apart: a cumulative one never
/// goes back (its rate is never negative); a current value may.
pub fn rates(new: &Reading, old: &Reading, secs: f64) -> Vec<(String, f64)> {
    new.iter()
        .zip(old)
        .map(|((name, kind, v), (_, _, was))| {
            let delta =
                if *kind == StatKind::Cumulative { v.saturating_sub(*was) as f64 } else { *v as f64 - *was as f64 };
            (name.clone(), delta / secs.max(1e-3))
        })
        .collect()
}

/// The value of `name` in a reading (0 when this host's KVM does not count it).
pub fn value(reading: &Reading, name: &str) -> u64 {
    reading.iter().find(|(n, _, _)| n == name).map_or(0, |(_, _, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_statistics_count_the_exits_of_a_guest() {
        let Ok(kvm) = kvm_ioctls::Kvm::new() else {
            eprintln!("SKIPPED: no /dev/kvm");
            return;
        };
        let vm = kvm.create_vm().unwrap();
        let vcpu = vm.create_vcpu(0).unwrap();
        let vm_stats = KvmStats::open(&vm).unwrap();
        let vcpu_stats = KvmStats::open(&vcpu).unwrap();
        let r = vcpu_stats.read().unwrap();
        assert!(r.iter().any(|(n, k, _)| n == "exits" && *k == StatKind::Cumulative), "{r:?}");
        assert!(vm_stats.read().unwrap().iter().any(|(n, _, _)| n == "pages_4k" || n == "remote_tlb_flush"));
        let twice = sum(&[r.clone(), r.clone()]);
        assert_eq!(value(&twice, "exits"), 2 * value(&r, "exits"));
        assert_eq!(value(&r, "no such statistic"), 0);
    }
}

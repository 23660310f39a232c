//! Opening KVM, and the errors of setting up a VM (shared by the VM builder and the probe).

use kvm_ioctls::Kvm;
use thiserror::Error;

use super::bus::BusError;
use super::loader::LoaderError;
use super::memory::MemoryError;
use super::slots::SlotError;

/// Errors setting up or running a VM.
#[derive(Debug, Error)]
pub enum VmError {
    /// The KVM device could not be opened.
    #[error(
        "cannot open {path}: {source}. kvmscope needs KVM: load the kvm module (kvm_intel, kvm_amd or \
         kvm_pvm) and run as root or as a member of the kvm group"
    )]
    NoKvm { path: String, source: std::io::Error },
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Loader(#[from] LoaderError),
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A KVM ioctl failed.
    #[error("KVM refused {what}: {source}")]
    Kvm { what: &'static str, source: kvm_ioctls::Error },
    /// A thread could not be started.
    #[error("cannot start a vCPU thread: {0}")]
    Thread(std::io::Error),
    /// KVM refused a memory slot.
    #[error("KVM refused a memory slot: {0}")]
    Slots(#[from] SlotError),
    /// An eventfd for an interrupt line could not be made.
    #[error("cannot create an eventfd for the serial interrupt: {0}")]
    EventFd(std::io::Error),
    /// A `--disk` or another virtio device could not be set up.
    #[error(transparent)]
    Virtio(#[from] super::virtio::VirtioError),
    /// `--trap-msr` could not be had.
    #[error("--trap-msr: {0}")]
    Msr(#[from] super::msr::MsrError),
    /// `--restore FILE` could not be read or put back.
    #[error("--restore: {0}")]
    Restore(#[from] super::snapshot::SnapshotError),
}

impl VmError {
    /// Whether the user's input (image, sizes, addresses) is at fault, as opposed to the host.
    pub fn is_bad_input(&self) -> bool {
        match self {
            VmError::Memory(_) | VmError::Loader(_) | VmError::Restore(_) => true,
            VmError::Virtio(e) => e.is_bad_input(),
            _ => false,
        }
    }
}

pub(crate) fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { what, source }
}

/// Opens the KVM device: /dev/kvm, or the node `KVMSCOPE_KVM_DEVICE` names.
pub fn open_kvm() -> Result<Kvm, VmError> {
    let path = std::env::var("KVMSCOPE_KVM_DEVICE").unwrap_or_else(|_| "/dev/kvm".to_string());
    let no_kvm = |source| VmError::NoKvm { path: path.clone(), source };
    let c_path = std::ffi::CString::new(path.clone())
        .map_err(|_| no_kvm(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
    Kvm::new_with_path(&c_path).map_err(|e| no_kvm(std::io::Error::from_raw_os_error(e.errno())))
}

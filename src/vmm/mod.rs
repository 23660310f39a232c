//! The virtual machine monitor: KVM set-up, memory, boot loaders, vCPU threads, the device bus.

pub mod acpi;
pub mod boot_cpu;
pub mod bus;
pub mod clock;
pub mod devices;
pub mod dirty;
pub mod emulate;
pub mod exit;
pub mod host_pages;
pub mod kernel_events;
pub mod kick;
pub mod kvm;
pub mod kvm_stats;
pub mod layout;
pub mod linux;
pub mod live_state;
pub mod loader;
pub mod memory;
pub mod mptable;
pub mod msr;
pub mod outcome;
pub mod probe;
pub mod shared;
pub mod slots;
pub mod snapshot;
pub mod timeline;
pub mod vcpu;
pub mod virtio;
pub mod vm;

pub use kvm::VmError;
pub use outcome::{CrashReport, RunEnd};
pub use vm::{Image, RunLimits, RunReport, RunningVm, Vm, VmConfig};

//! kvmscope: a small KVM virtual machine monitor built to be looked into.

/// Recordings after the run: stats and exports.
pub mod analysis;
/// The guest console buffer the UI reads.
pub mod console;
/// The debug controller: pause, step, exit breakpoints.
pub mod debug;
/// Guest state made readable: page walks and instruction decoding.
pub mod decode;
/// The gdb remote stub.
pub mod gdb;
/// The project's own guests, built from assets/guests.
pub mod guests;
/// Running without the UI.
pub mod headless;
/// Exit traces on disk: record, read back.
pub mod recording;
/// What a run is set up with: limits, gdb, recording.
pub mod session;
/// Summaries of a run: `perf kvm stat`-like text and JSON.
pub mod summary;
/// Locks that survive a panicked holder.
pub mod sync;
/// Exit events and their exact counters.
pub mod trace;
/// The terminal UI.
pub mod ui;
/// The VMM: KVM, memory, loaders, devices, vCPU threads.
pub mod vmm;

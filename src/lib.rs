//! kvmscope: a small KVM virtual machine monitor built to be looked into.

/// One address through every layer: page tables, guest-physical, memory slot, host.
pub mod address_chain;
/// Recordings after the run: stats and exports.
pub mod analysis;
/// The guest console buffer the UI reads.
pub mod console;
/// The debug controller: the one API the TUI, gdb and benches use to pause, step and inspect a VM.
pub mod controller;
/// What the debugger stops on and how a stop looks, shared by the vCPUs and the controller.
pub mod debug;
/// Guest state made readable: page walks and instruction decoding.
pub mod decode;
/// What each exit means: the device, the register, the value's fields, why it came out.
pub mod explain;
/// Files the user names, opened so that they cannot hang the run.
pub mod files;
/// The gdb remote stub.
pub mod gdb;
/// The project's own guests, built from assets/guests.
pub mod guests;
/// Running without the UI.
pub mod headless;
/// The `run` options that shape the machine, which a snapshot keeps.
pub mod machine_args;
/// The VM's memory map as KVM and kvmscope laid it out.
pub mod memory_view;
/// One-line notices during a run: on stderr, or in the TUI's status line.
pub mod notice;
/// Writing results to stdout and stderr without panicking.
pub mod out;
/// Exit traces on disk: record, read back.
pub mod recording;
/// What a run is set up with: limits, gdb, recording.
pub mod session;
/// Where exit events go: the live feed, the trace printer (and the recorder, in `recording`).
pub mod sink;
/// Summaries of a run: `perf kvm stat`-like text and JSON.
pub mod summary;
/// Locks that survive a panicked holder.
pub mod sync;
/// Going back in time: checkpoints, snapshots to a file, the timeline.
pub mod time_travel;
/// Exit events and their exact counters.
pub mod trace;
/// The terminal UI.
pub mod ui;
/// The VMM: KVM, memory, loaders, devices, vCPU threads.
pub mod vmm;

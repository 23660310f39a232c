//! The debug controller and what it stops on: one place that pauses, steps and resumes vCPUs and
//! reads their state, serving the TUI and the gdb stub alike.

pub mod breakpoints;
pub mod controller;
pub mod exit_breakpoints;
pub mod exit_spec;

pub use controller::{Controller, DebugState, Stop, StopReason, VcpuCommand};
pub use exit_breakpoints::{ExitBreakpoint, ExitBreakpoints};
pub use exit_spec::ExitSpec;

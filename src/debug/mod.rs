//! What the debugger stops on and how a stop looks: the types and the state that the vCPU threads
//! (which act on them) and the controller (which changes them) share. Below the VMM: nothing here
//! imports `vmm` or `controller`.

pub mod breakpoints;
pub mod exit_breakpoints;
pub mod exit_spec;
pub mod state;
pub mod stop;

pub use exit_breakpoints::{ExitBreakpoint, ExitBreakpoints};
pub use exit_spec::ExitSpec;
pub use state::DebugState;
pub use stop::{Stop, StopReason, VcpuCommand};

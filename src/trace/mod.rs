//! What a vmexit is once kvmscope has seen it: the typed event and the exact counters.

pub mod counters;
pub mod device;
pub mod device_counters;
pub mod event;
pub mod frame;
pub mod kernel_line;
pub mod msr;
pub mod stack;
pub mod stage_times;

pub use counters::{Counters, Stat};
pub use device::{DeviceEvent, DeviceEventKind, FrameDir, NotifyPath};
pub use device_counters::{DeviceCounters, QueueCounts};
pub use event::{Dir, ExitEvent, ExitKind, Insn};
pub use kernel_line::{KernelLine, KernelLineKind};
pub use stack::StackSample;

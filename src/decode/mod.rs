//! Making sense of guest state: page walks from guest-virtual to guest-physical, instruction
//! decoding, call stacks, and the guest's symbols that name its code and data.

pub mod insn;
pub mod page_map;
pub mod paging;
pub mod regs;
pub mod stack;
pub mod symbols;

pub use insn::{ExitRegs, InsnDecoder};
pub use paging::{CpuMode, PhysRead, Translation, WalkError};

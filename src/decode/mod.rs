//! Making sense of guest state: page walks from guest-virtual to guest-physical, and instruction decoding.

pub mod insn;
pub mod page_map;
pub mod paging;
pub mod regs;
pub mod stack;

pub use insn::InsnDecoder;
pub use paging::{CpuMode, PhysRead, Translation, WalkError};

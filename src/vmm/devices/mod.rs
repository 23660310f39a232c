//! Device models, each on the port or MMIO bus.

pub mod cmos;
pub mod debug_exit;
pub mod debugcon;
pub mod i8042;
pub mod post;
pub mod reset_register;
pub mod serial;

pub use cmos::Cmos;
pub use debug_exit::DebugExit;
pub use post::PostCode;
pub use reset_register::ResetRegister;
pub use serial::Serial;

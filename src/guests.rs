//! The project's own guests, built by build.rs from assets/guests.

use std::path::PathBuf;

/// Directory holding the built guests (`NAME.elf`, `NAME.bin`).
pub const GUEST_DIR: &str = env!("KVMSCOPE_GUEST_DIR");

/// Path of a built guest, e.g. `guest_path("hello.elf")`.
pub fn guest_path(file: &str) -> PathBuf {
    PathBuf::from(GUEST_DIR).join(file)
}

/// The built-in demo guest, run by `kvmscope` with no arguments.
pub const DEMO: &[u8] = include_bytes!(concat!(env!("KVMSCOPE_GUEST_DIR"), "/demo.elf"));

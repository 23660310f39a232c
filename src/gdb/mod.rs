//! The gdb remote stub (gdbstub): `--gdb [ADDR:]PORT` or `--gdb unix:PATH`, with `--gdb-wait` to
//! hold the guest before its first instruction until gdb attaches (QEMU's `-s -S`).
//!
//! One file per protocol extension: `arch` (registers and target.xml), `target` (registers, memory,
//! threads, resume), `breakpoints`, `monitor`, `event_loop`; `server` listens and runs one session
//! at a time, `connection` tells gdb from a stray connection. gdb is a client of the same debug
//! controller as the TUI. A connection that never speaks gdb's protocol does not count (a held guest
//! stays held); a detach lets the guest run on without breakpoints; a dropped session leaves the
//! guest as it was, without breakpoints; a second gdb is refused while one is attached.

pub mod arch;
pub mod breakpoints;
pub mod connection;
pub mod event_loop;
pub mod monitor;
pub mod server;
pub mod target;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use thiserror::Error;

pub use server::GdbServer;

/// Where the stub listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GdbListen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// Errors of the gdb stub.
#[derive(Debug, Error)]
pub enum GdbError {
    #[error("--gdb {0:?}: expected PORT, ADDR:PORT or unix:PATH")]
    Syntax(String),
    #[error("--gdb {what}: cannot listen: {source}")]
    Bind { what: String, source: io::Error },
}

/// Parses `--gdb`: `1234` (127.0.0.1), `0.0.0.0:1234`, `unix:/path`.
pub fn parse_listen(text: &str) -> Result<GdbListen, GdbError> {
    if let Some(path) = text.strip_prefix("unix:") {
        return if path.is_empty() { Err(GdbError::Syntax(text.into())) } else { Ok(GdbListen::Unix(path.into())) };
    }
    if let Ok(port) = text.parse::<u16>() {
        return Ok(GdbListen::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
    }
    text.parse().map(GdbListen::Tcp).map_err(|_| GdbError::Syntax(text.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(parse_listen("1234").unwrap(), GdbListen::Tcp("127.0.0.1:1234".parse().unwrap()));
        assert_eq!(parse_listen("0.0.0.0:99").unwrap(), GdbListen::Tcp("0.0.0.0:99".parse().unwrap()));
        assert_eq!(parse_listen("unix:/tmp/g").unwrap(), GdbListen::Unix("/tmp/g".into()));
        assert!(parse_listen("unix:").is_err());
        assert!(parse_listen("nope").is_err());
    }
}

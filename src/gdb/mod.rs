//! The gdb remote stub (gdbstub): `--gdb [ADDR:]PORT` or `--gdb unix:PATH`, with `--gdb-wait` to
//! hold the guest before its first instruction until gdb attaches (QEMU's `-s -S`).
//!
//! One file per protocol extension: `arch` (registers and target.xml), `target` (registers, memory,
//! threads, resume), `breakpoints`, `monitor`, `event_loop`. gdb is a client of the same debug
//! controller as the TUI. A dropped connection leaves the guest running without breakpoints, and
//! gdb can attach again.

pub mod arch;
pub mod breakpoints;
pub mod event_loop;
pub mod monitor;
pub mod target;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use gdbstub::conn::ConnectionExt;
use gdbstub::stub::{DisconnectReason, GdbStub};
use thiserror::Error;

use crate::controller::Controller;
use event_loop::GdbEventLoop;
use target::GdbTarget;

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

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// A bound gdb stub, not yet serving.
pub struct GdbServer {
    listener: Listener,
    pub describe: String,
}

impl GdbServer {
    /// Binds the address now, so a port in use is reported before the guest starts.
    pub fn bind(listen: &GdbListen) -> Result<Self, GdbError> {
        let bind_err = |what: String| move |source| GdbError::Bind { what, source };
        let (listener, describe) = match listen {
            GdbListen::Tcp(addr) => {
                let l = TcpListener::bind(addr).map_err(bind_err(addr.to_string()))?;
                let local = l.local_addr().map_err(bind_err(addr.to_string()))?;
                (Listener::Tcp(l), format!("target remote {local}"))
            }
            GdbListen::Unix(path) => {
                if std::fs::metadata(path).is_ok_and(|m| {
                    use std::os::unix::fs::FileTypeExt;
                    m.file_type().is_socket()
                }) {
                    let _ = std::fs::remove_file(path);
                }
                let l = UnixListener::bind(path).map_err(bind_err(path.display().to_string()))?;
                (Listener::Unix(l, path.clone()), format!("target remote {}", path.display()))
            }
        };
        Ok(Self { listener, describe })
    }

    /// Serves gdb connections, one at a time, until the run ends.
    pub fn spawn(self, controller: Controller) -> io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name("gdb".into()).spawn(move || self.serve(controller))
    }

    fn accept(&self) -> io::Result<Option<Box<dyn ConnectionExt<Error = io::Error>>>> {
        match &self.listener {
            Listener::Tcp(l) => {
                l.set_nonblocking(true)?;
                match l.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false)?;
                        s.set_nodelay(true)?;
                        Ok(Some(Box::new(s)))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                    Err(e) => Err(e),
                }
            }
            Listener::Unix(l, _) => {
                l.set_nonblocking(true)?;
                match l.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false)?;
                        Ok(Some(Box::new(s)))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn serve(self, controller: Controller) {
        let vcpus = controller.vcpus();
        while !controller.is_ending() {
            let conn = match self.accept() {
                Ok(Some(c)) => c,
                Ok(None) => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Err(e) => {
                    eprintln!("kvmscope: gdb stub: {e}");
                    return;
                }
            };
            // gdb expects a stopped target when it attaches.
            controller.pause();
            controller.wait_all_stopped(Duration::from_secs(5));
            let mut target = GdbTarget::new(controller.clone(), vcpus);
            let result = GdbStub::new(conn).run_blocking::<GdbEventLoop>(&mut target);
            match result {
                Ok(DisconnectReason::Kill) => {
                    controller.end_run(crate::vmm::RunEnd::Quit);
                    return;
                }
                Ok(DisconnectReason::TargetExited(_) | DisconnectReason::TargetTerminated(_)) => return,
                Ok(DisconnectReason::Disconnect) => {}
                Err(e) => eprintln!("kvmscope: gdb connection ended: {e}"),
            }
            // Detached or dropped: no breakpoints left behind, the guest runs on.
            controller.clear_breakpoints();
            controller.resume();
        }
        if let Listener::Unix(_, path) = &self.listener {
            let _ = std::fs::remove_file(path);
        }
    }
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

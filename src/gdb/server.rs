//! The stub's listener: every connection is read on a thread of its own until it proves to be gdb
//! (see `connection`); then it becomes the session if none is attached, or is refused if one is.
//! A session pauses the guest when it starts, as gdb expects, and how it ends decides the guest's
//! fate: a detach lets it run on without breakpoints, a kill ends the run, a dropped connection
//! (gdb killed, the network gone) leaves it as it was, without breakpoints, for the next gdb.

use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use gdbstub::stub::{DisconnectReason, GdbStub};

use super::connection::{OPENING_TIMEOUT, Opening, Session, Stream, acked_packet, read_opening};
use super::event_loop::GdbEventLoop;
use super::target::GdbTarget;
use super::{GdbError, GdbListen};
use crate::controller::Controller;

/// How long the end of a run waits for an attached gdb to be told.
const SESSION_END: Duration = Duration::from_secs(1);

/// What the stub says to a second gdb, as an error packet (gdb prints it as the remote's reply).
const REFUSAL: &str = "E.kvmscope: another gdb is attached to this VM";

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
        let nonblocking = match &listener {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix(l, _) => l.set_nonblocking(true),
        };
        nonblocking.map_err(bind_err(describe.clone()))?;
        Ok(Self { listener, describe })
    }

    /// Serves gdb connections until the run ends; the thread ends soon after (join it to let a
    /// session tell gdb how the run ended).
    pub fn spawn(self, controller: Controller) -> io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name("gdb".into()).spawn(move || self.serve(controller))
    }

    /// A waiting connection and where it comes from, if any.
    fn accept(&self) -> io::Result<Option<(Stream, String)>> {
        let accepted = match &self.listener {
            Listener::Tcp(l) => {
                l.accept().map(|(s, peer)| (s.set_nonblocking(false).map(|_| Stream::Tcp(s)), peer.to_string()))
            }
            Listener::Unix(l, path) => {
                l.accept().map(|(s, _)| (s.set_nonblocking(false).map(|_| Stream::Unix(s)), path.display().to_string()))
            }
        };
        match accepted {
            Ok((stream, peer)) => Ok(Some((stream?, peer))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn serve(self, controller: Controller) {
        let attached = Arc::new(AtomicBool::new(false));
        while !controller.is_ending() {
            match self.accept() {
                Ok(Some((stream, peer))) => {
                    let (controller, attached) = (controller.clone(), attached.clone());
                    let spawned = std::thread::Builder::new()
                        .name("gdb-peer".into())
                        .spawn(move || take_connection(stream, &peer, &controller, &attached));
                    if let Err(e) = spawned {
                        crate::notice::say(format!("gdb stub: cannot serve a connection: {e}"));
                    }
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    crate::notice::say(format!("gdb stub: {e}"));
                    break;
                }
            }
        }
        if let Listener::Unix(_, path) = &self.listener {
            let _ = std::fs::remove_file(path);
        }
        // A session tells its gdb that the run ended; give it a moment to, not forever (a gdb
        // idle at its prompt would never ask).
        let deadline = std::time::Instant::now() + SESSION_END;
        while attached.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Reads a connection's opening; serves it as the session, refuses it, or lets it go.
fn take_connection(mut stream: Stream, peer: &str, controller: &Controller, attached: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(OPENING_TIMEOUT));
    let opening = match read_opening(&mut stream) {
        Opening::Gdb(bytes) => bytes,
        Opening::NotGdb { mut bytes, why } => {
            // Whatever else arrived at once belongs in the log line (a scanner's request, say).
            let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
            let mut more = [0u8; 64];
            if let Ok(n) = std::io::Read::read(&mut stream, &mut more) {
                bytes.extend_from_slice(&more[..n]);
            }
            crate::notice::say(format!(
                "gdb stub: ignored a connection from {peer} that {why} ({}); still listening",
                Opening::describe(&bytes)
            ));
            return;
        }
    };
    if attached.swap(true, Ordering::AcqRel) {
        crate::notice::say(format!("gdb stub: refused a second gdb from {peer}: one is attached already"));
        let _ = stream.write_all(&acked_packet(REFUSAL)).and_then(|_| stream.flush());
        stream.close_gently();
        return;
    }
    let _ = stream.set_read_timeout(None);
    let packets = Arc::new(std::sync::atomic::AtomicU64::new(0));
    crate::notice::say(format!("gdb attached from {peer}: the guest is stopped for it"));
    serve_session(Session::new(opening, stream, packets.clone()), packets, controller);
    attached.store(false, Ordering::Release);
    if !controller.is_ending() {
        crate::notice::say(format!("gdb from {peer} has gone; the stub listens for the next"));
    }
}

/// One gdb session, and what its end means for the guest.
fn serve_session(session: Session, packets: Arc<std::sync::atomic::AtomicU64>, controller: &Controller) {
    // gdb expects a stopped target when it attaches.
    controller.pause();
    controller.wait_all_stopped(Duration::from_secs(5));
    // Somewhere to go back to from the start (`--gdb-wait`: the guest's first instruction).
    if let Some(Err(e)) = controller.auto_checkpoint() {
        crate::notice::say(format!("automatic checkpoint: {e}"));
    }
    let mut target = GdbTarget::new(controller.clone(), controller.vcpus(), packets);
    let ended = GdbStub::new(session).run_blocking::<GdbEventLoop>(&mut target);
    // A reverse command still under way stops where it has got to, before anything else.
    if target.cancel_travel() {
        let _ = target.finish_travel();
    }
    match ended {
        Ok(DisconnectReason::Kill) => controller.end_run(crate::vmm::RunEnd::Quit),
        Ok(DisconnectReason::TargetExited(_) | DisconnectReason::TargetTerminated(_)) => {}
        Ok(DisconnectReason::Disconnect) => {
            // Detached: no breakpoints left behind, the guest runs on.
            controller.clear_breakpoints();
            controller.resume();
        }
        Err(e) => {
            // Dropped: no breakpoints left behind; the guest stays as it was for the next gdb.
            controller.clear_breakpoints();
            crate::notice::say(format!("gdb connection ended: {e}; the stub listens for the next gdb"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_framed_with_their_checksum() {
        assert_eq!(acked_packet("E01"), b"+$E01#a6");
        assert_eq!(acked_packet("OK"), b"+$OK#9a");
    }
}

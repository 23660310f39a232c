//! A device's worker thread: sleeps on its queues' notification eventfds (and a wake eventfd for
//! input and the end of the run), then lets the transport take and complete what the driver made
//! available — the device's I/O runs here, off the vCPU threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use vmm_sys_util::eventfd::EventFd;

use super::Transport;
use crate::sync::lock;

/// A running worker; dropping it does not stop it: call [`Worker::stop`].
pub struct Worker {
    wake: Arc<EventFd>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts serving `transport`; `wake` is written to make it look at every queue (input).
    pub fn spawn(transport: Arc<Mutex<Transport>>, wake: Arc<EventFd>) -> std::io::Result<Self> {
        let stopping = Arc::new(AtomicBool::new(false));
        let name = lock(&transport).name();
        let (w, s) = (wake.clone(), stopping.clone());
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || serve(&transport, &w, &s))?;
        Ok(Self { wake, stopping, thread: Some(thread) })
    }

    /// Ends the thread and waits for it.
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        let _ = self.wake.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(transport: &Mutex<Transport>, wake: &EventFd, stopping: &AtomicBool) {
    let notify = lock(transport).notify_fds().to_vec();
    let mut fds: Vec<libc::pollfd> = notify
        .iter()
        .map(|e| e.as_ref())
        .chain(std::iter::once(wake))
        .map(|e| libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(e), events: libc::POLLIN, revents: 0 })
        .collect();
    while !stopping.load(Ordering::Acquire) {
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd entries for the call's duration.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1000) };
        if n <= 0 {
            continue;
        }
        let woken = fds.last().is_some_and(|f| f.revents & libc::POLLIN != 0);
        if woken {
            let _ = wake.read();
        }
        for (q, fd) in fds.iter().take(notify.len()).enumerate() {
            let notified = fd.revents & libc::POLLIN != 0;
            if !notified && !woken {
                continue;
            }
            let count = if notified { notify[q].read().unwrap_or(0) } else { 0 };
            let since = {
                let mut t = lock(transport);
                let since = t.events.now_ns();
                if count > 0 {
                    t.count_notifies(q, count);
                }
                since
            };
            // In bounded batches, letting go of the lock between them (the vCPUs take it for every
            // register access) and stopping with the run.
            while lock(transport).process_queue(q, since) && !stopping.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
        }
    }
}

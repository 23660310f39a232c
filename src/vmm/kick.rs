//! Taking a vCPU thread out of `KVM_RUN`: a real-time signal whose handler sets the thread's
//! `immediate_exit`, so a kick that lands just before `KVM_RUN` is not lost (Firecracker's way).

use std::cell::Cell;
use std::sync::Once;

use kvm_bindings::kvm_run;
use vmm_sys_util::signal::{Killable, SIGRTMIN, register_signal_handler};

thread_local! {
    /// This thread's `kvm_run`, set while it runs a vCPU.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// The signal used to kick vCPU threads.
pub fn kick_signal() -> i32 {
    SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = KVM_RUN.with(Cell::get);
    if !run.is_null() {
        // SAFETY: the pointer is this thread's own mapped kvm_run, set by `bind` and cleared before
        // the VcpuFd is dropped; a signal handler on the same thread cannot race with it.
        unsafe { (*run).immediate_exit = 1 };
    }
}

/// Installs the kick handler once per process.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // A failure leaves the default action; kicks then rely on the stop flag alone.
        let _ = register_signal_handler(kick_signal(), on_kick);
    });
}

/// Marks `run` as this thread's kvm_run for the kick handler; `None` unbinds.
pub fn bind(run: Option<*mut kvm_run>) {
    KVM_RUN.with(|c| c.set(run.unwrap_or(std::ptr::null_mut())));
}

/// A thread that can be kicked.
pub struct Kickable(pub libc::pthread_t);

// SAFETY: the handle comes from a JoinHandle the VM keeps until after the last kick.
unsafe impl Killable for Kickable {
    fn pthread_handle(&self) -> libc::pthread_t {
        self.0
    }
}

impl Kickable {
    /// Sends the kick; errors (thread already gone) are harmless.
    pub fn kick(&self) {
        let _ = self.kill(kick_signal());
    }
}

//! Locks that outlive a panicked holder: kvmscope's shared state (counters, devices, buffers) is
//! still the best there is after one thread panicked, and a poisoned lock must not take the VMM down.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the data even if another thread panicked while holding it.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

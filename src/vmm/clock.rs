//! The vCPU threads' clock: the TSC, read with one instruction, in place of two `clock_gettime`
//! calls per exit. Calibrated against the monotonic clock once at start; used only where the host
//! says its TSC is constant and runs through idle states (`constant_tsc`, `nonstop_tsc`), else the
//! monotonic clock stands in.

use std::time::{Duration, Instant};

/// A point on the clock, in its own ticks.
pub type Ticks = u64;

/// Time since the VM started, cheaply.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    tsc0: u64,
    /// Nanoseconds per TSC tick in 32.32 fixed point (an integer multiply per conversion, on
    /// every exit), or `None` to use the monotonic clock.
    ns_per_tick: Option<u64>,
}

/// `ticks` in nanoseconds at `ns_per_tick` (32.32 fixed point).
fn scale(ticks: u64, ns_per_tick: u64) -> u64 {
    ((ticks as u128 * ns_per_tick as u128) >> 32) as u64
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86-64 (kvmscope runs only there).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Whether the host's TSC can be a clock: constant rate, running in every idle state.
fn invariant_tsc() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
        c.lines()
            .find(|l| l.starts_with("flags"))
            .is_some_and(|f| f.contains(" constant_tsc") && f.contains(" nonstop_tsc"))
    })
}

impl Clock {
    /// Starts the clock; on an invariant TSC, measures its rate over a few milliseconds.
    pub fn start() -> Self {
        let (start, tsc0) = (Instant::now(), rdtsc());
        if !invariant_tsc() {
            return Self { start, tsc0, ns_per_tick: None };
        }
        std::thread::sleep(Duration::from_millis(5));
        let (ns, ticks) = (start.elapsed().as_nanos() as f64, rdtsc().wrapping_sub(tsc0) as f64);
        let ns_per_tick = (ticks > 0.0).then(|| (ns / ticks * (1u64 << 32) as f64) as u64);
        Self { start, tsc0, ns_per_tick }
    }

    /// When the clock started.
    pub fn started(&self) -> Instant {
        self.start
    }

    /// Now, in ticks.
    pub fn now(&self) -> Ticks {
        match self.ns_per_tick {
            Some(_) => rdtsc(),
            None => self.start.elapsed().as_nanos() as u64,
        }
    }

    /// Nanoseconds from start to `t`.
    pub fn ns_since_start(&self, t: Ticks) -> u64 {
        match self.ns_per_tick {
            Some(k) => scale(t.saturating_sub(self.tsc0), k),
            None => t,
        }
    }

    /// Nanoseconds from `from` to `to`.
    pub fn ns_between(&self, from: Ticks, to: Ticks) -> u64 {
        match self.ns_per_tick {
            Some(k) => scale(to.saturating_sub(from), k),
            None => to.saturating_sub(from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_scaling_keeps_nanoseconds_exact() {
        assert_eq!(scale(3_000_000_000, 1 << 32), 3_000_000_000);
        assert_eq!(scale(10, 1 << 31), 5);
        // A day of ticks at 5 GHz does not overflow.
        assert_eq!(scale(432_000_000_000_000, 1 << 30), 108_000_000_000_000);
    }

    #[test]
    fn the_clock_agrees_with_the_monotonic_clock() {
        let clock = Clock::start();
        let t0 = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        let t1 = clock.now();
        let ns = clock.ns_between(t0, t1);
        assert!((15_000_000..200_000_000).contains(&ns), "{ns} ns for a 20 ms sleep");
        let since = clock.ns_since_start(t1);
        let real = clock.started().elapsed().as_nanos() as u64;
        assert!(since <= real + 1_000_000 && since + 50_000_000 >= real, "{since} vs {real}");
    }
}

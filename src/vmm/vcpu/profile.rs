//! `--self-profile`: where the vCPU loop's time goes, stage by stage, timed in the loop itself —
//! with the caches as each `KVM_RUN` leaves them, which a warm microbenchmark does not see. One
//! clock read per stage boundary; the reads' own cost is measured at start and taken off.

use super::super::clock::{Clock, Ticks};

/// The stages of one exit, in the order the loop passes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `KVM_RUN`: the host kernel, KVM and the guest, until the exit.
    Run,
    /// From the exit to an `ExitKind`, dispatched to the device on the bus.
    Dispatch,
    /// The registers the exit needs (in place from `kvm_run`, or by ioctl).
    Registers,
    /// The instruction behind the exit.
    Decode,
    /// The clock, the event, the exact counters.
    Count,
    /// The sinks (live feed, recorder, printer) and stack samples.
    Sinks,
    /// The debugger's look at the exit, the run's end rules, the crash report's ring.
    Debugger,
    /// Between one exit's handling and the next `KVM_RUN`: pause and breakpoint checks.
    Loop,
}

/// Every stage with its key (the JSON summary's) and what the text summary calls it.
pub const STAGES: [(Stage, &str, &str); 8] = [
    (Stage::Run, "kvm_run", "KVM_RUN (host kernel, KVM, guest)"),
    (Stage::Dispatch, "dispatch", "classify + dispatch to the device"),
    (Stage::Registers, "registers", "registers"),
    (Stage::Decode, "decode", "decode the instruction"),
    (Stage::Count, "count", "clock, event, counters"),
    (Stage::Sinks, "sinks", "sinks"),
    (Stage::Debugger, "debugger", "debugger, end rules, crash ring"),
    (Stage::Loop, "loop", "loop (pause, breakpoint reload)"),
];

/// Nanoseconds spent in each stage over a number of exits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageTimes {
    pub ns: [u64; STAGES.len()],
    pub exits: u64,
}

impl StageTimes {
    /// Folds another vCPU's times into these.
    pub fn merge(&mut self, other: &StageTimes) {
        for (a, b) in self.ns.iter_mut().zip(other.ns) {
            *a += b;
        }
        self.exits += other.exits;
    }

    /// Mean nanoseconds per exit in `stage`.
    pub fn per_exit(&self, stage: Stage) -> f64 {
        self.ns[stage as usize] as f64 / self.exits.max(1) as f64
    }

    /// Mean nanoseconds per exit outside `KVM_RUN`: kvmscope's own userspace.
    pub fn userspace_per_exit(&self) -> f64 {
        STAGES.iter().filter(|(s, ..)| *s != Stage::Run).map(|(s, ..)| self.per_exit(*s)).sum()
    }
}

/// Times the stages of one vCPU's loop.
pub struct StageClock {
    clock: Clock,
    last: Ticks,
    /// What one clock read costs, in ticks: taken off each stage.
    read_cost: Ticks,
    ticks: [Ticks; STAGES.len()],
    exits: u64,
}

impl StageClock {
    pub fn new(clock: Clock) -> Self {
        const READS: u64 = 1000;
        let start = clock.now();
        let mut end = start;
        for _ in 0..READS {
            end = std::hint::black_box(clock.now());
        }
        let read_cost = end.saturating_sub(start) / READS;
        Self { clock, last: clock.now(), read_cost, ticks: [0; STAGES.len()], exits: 0 }
    }

    /// Ends `stage` now: the time since the last boundary goes to it.
    pub fn lap(&mut self, stage: Stage) {
        let now = self.clock.now();
        self.ticks[stage as usize] += now.saturating_sub(self.last).saturating_sub(self.read_cost);
        self.last = now;
    }

    /// Starts the next stage now, the time since the last boundary going nowhere (parked).
    pub fn skip(&mut self) {
        self.last = self.clock.now();
    }

    /// Counts one exit handled.
    pub fn exit(&mut self) {
        self.exits += 1;
    }

    /// The times so far, in nanoseconds.
    pub fn times(&self) -> StageTimes {
        let mut ns = [0; STAGES.len()];
        for (n, &t) in ns.iter_mut().zip(&self.ticks) {
            *n = self.clock.ns_between(0, t);
        }
        StageTimes { ns, exits: self.exits }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laps_go_to_their_stages_and_merge() {
        let mut c = StageClock::new(Clock::start());
        std::thread::sleep(std::time::Duration::from_millis(20));
        c.lap(Stage::Run);
        c.lap(Stage::Decode);
        c.exit();
        let t = c.times();
        assert!(t.ns[Stage::Run as usize] >= 15_000_000, "{t:?}");
        assert!(t.ns[Stage::Decode as usize] < 1_000_000, "{t:?}");
        assert_eq!(t.exits, 1);
        let mut all = t.clone();
        all.merge(&t);
        assert_eq!((all.exits, all.ns[0]), (2, 2 * t.ns[0]));
        assert!(all.userspace_per_exit() < all.per_exit(Stage::Run));
    }
}

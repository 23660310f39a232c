//! `--self-profile`: the vCPU loop times its stages itself — with the caches as each `KVM_RUN`
//! leaves them, which a warm microbenchmark does not see. One clock read per stage boundary; the
//! reads' own cost is measured at start and taken off.

use super::super::clock::{Clock, Ticks};
use crate::trace::stage_times::{STAGES, Stage, StageTimes};

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
    fn laps_go_to_their_stages() {
        let mut c = StageClock::new(Clock::start());
        std::thread::sleep(std::time::Duration::from_millis(20));
        c.lap(Stage::Run);
        c.lap(Stage::Decode);
        c.exit();
        let t = c.times();
        assert!(t.ns[Stage::Run as usize] >= 15_000_000, "{t:?}");
        assert!(t.ns[Stage::Decode as usize] < 1_000_000, "{t:?}");
        assert_eq!(t.exits, 1);
    }
}

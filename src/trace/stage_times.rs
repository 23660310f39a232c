//! Where the vCPU loop's time went, stage by stage (`--self-profile`): the stages and their
//! totals. The vCPU loop times them (`vmm::vcpu::profile`); the summary shows them.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_merge_and_average_per_exit() {
        let mut ns = [0; STAGES.len()];
        ns[Stage::Run as usize] = 9000;
        ns[Stage::Decode as usize] = 300;
        ns[Stage::Count as usize] = 100;
        let one = StageTimes { ns, exits: 1 };
        let mut all = one.clone();
        all.merge(&one);
        assert_eq!((all.exits, all.ns[Stage::Run as usize]), (2, 18000));
        assert_eq!(all.per_exit(Stage::Decode), 300.0);
        assert_eq!(all.userspace_per_exit(), 400.0);
        assert_eq!(StageTimes::default().per_exit(Stage::Run), 0.0, "no exits: nothing per exit");
    }
}

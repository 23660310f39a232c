//! Where a vCPU's run loop is, as one explicit state (Firecracker's `vstate/vcpu.rs` way), and the
//! transitions the debugger makes: leaving a park to run or step, stepping off a breakpoint, and
//! what a single-step trap means in each state.

/// A step off a breakpoint: the `int3` to put back afterwards (a software breakpoint), and
/// whether to park after the step (the user's step) or run on (a continue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepOver {
    pub sw_gpa: Option<u64>,
    pub then_park: bool,
}

/// The state of one vCPU's loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuState {
    /// Running the guest.
    Running,
    /// Parked: its stop is published, it waits for the controller.
    Parked,
    /// Executing one instruction for the debugger, then parking.
    Stepping,
    /// Executing the instruction under a breakpoint with the breakpoint lifted.
    SteppingOver(StepOver),
    /// This vCPU's run is over.
    Ended,
}

/// What a single-step trap (#DB with no breakpoint) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepTrap {
    /// The user's step is done: park.
    StepDone,
    /// Stepped off a breakpoint: plant it again (if software) and go on.
    SteppedOver { replant: Option<u64>, then_park: bool },
    /// Not a step of kvmscope's: a hardware breakpoint, a watchpoint, or the guest's own.
    NotOurs,
}

impl VcpuState {
    /// The state a parked vCPU leaves to: `step` when told to step; `over` when it sits on a
    /// breakpoint that must be lifted for one instruction first.
    pub fn leave_park(step: bool, over: Option<Option<u64>>) -> Self {
        match over {
            Some(sw_gpa) => VcpuState::SteppingOver(StepOver { sw_gpa, then_park: step }),
            None if step => VcpuState::Stepping,
            None => VcpuState::Running,
        }
    }

    /// Whether KVM must single-step the guest.
    pub fn single_steps(self) -> bool {
        matches!(self, VcpuState::Stepping | VcpuState::SteppingOver(_))
    }

    /// Whether hardware breakpoints must stay out of KVM (the instruction under one must run).
    pub fn lifts_breakpoints(self) -> bool {
        matches!(self, VcpuState::SteppingOver(_))
    }

    /// A single-step trap arrived: what it means, and the state after it.
    pub fn on_step_trap(self) -> (Self, StepTrap) {
        match self {
            VcpuState::SteppingOver(StepOver { sw_gpa, then_park }) => {
                (VcpuState::Running, StepTrap::SteppedOver { replant: sw_gpa, then_park })
            }
            VcpuState::Stepping => (VcpuState::Running, StepTrap::StepDone),
            other => (other, StepTrap::NotOurs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_park_is_left_to_run_step_or_step_over() {
        assert_eq!(VcpuState::leave_park(false, None), VcpuState::Running);
        assert_eq!(VcpuState::leave_park(true, None), VcpuState::Stepping);
        let over = VcpuState::leave_park(true, Some(Some(0x1000)));
        assert_eq!(over, VcpuState::SteppingOver(StepOver { sw_gpa: Some(0x1000), then_park: true }));
        assert!(over.single_steps() && over.lifts_breakpoints());
        assert!(VcpuState::Stepping.single_steps() && !VcpuState::Stepping.lifts_breakpoints());
        assert!(!VcpuState::Running.single_steps());
    }

    #[test]
    fn a_step_trap_ends_the_step_it_belongs_to() {
        assert_eq!(VcpuState::Stepping.on_step_trap(), (VcpuState::Running, StepTrap::StepDone));
        let over = VcpuState::SteppingOver(StepOver { sw_gpa: Some(0x1000), then_park: false });
        assert_eq!(
            over.on_step_trap(),
            (VcpuState::Running, StepTrap::SteppedOver { replant: Some(0x1000), then_park: false })
        );
        // A hardware breakpoint stepped over (no int3 to put back), as part of the user's step.
        let hw = VcpuState::SteppingOver(StepOver { sw_gpa: None, then_park: true });
        assert_eq!(hw.on_step_trap().1, StepTrap::SteppedOver { replant: None, then_park: true });
        assert_eq!(VcpuState::Running.on_step_trap(), (VcpuState::Running, StepTrap::NotOurs));
    }
}

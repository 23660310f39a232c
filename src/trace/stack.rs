//! A sampled call stack: the guest's frames at one exit (`--stacks`), innermost first, with the
//! exit's reason, so that a flame graph can say which code paths make which exits.

/// One exit's guest call stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackSample {
    /// The exit's sequence number.
    pub seq: u64,
    pub vcpu: u32,
    /// The exit's reason name.
    pub reason: String,
    /// The exit's RIP, then each frame's return address.
    pub frames: Vec<u64>,
}

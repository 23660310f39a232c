//! Taking and putting back the whole state of a running VM: its vCPUs parked and settled, each
//! asked on its own thread for what KVM holds, then the chips, devices and RAM (`snapshot` holds
//! the state's parts; this is where they meet the live machine).

use super::memory::GuestRam;
use super::shared::Shared;
use super::snapshot::checkpoints::OverBudget;
use super::snapshot::{KernelChips, MachineState, SnapshotError, VcpuSnapshot, restore_devices, save_devices};
use super::timeline::Place;
use crate::debug::VcpuCommand;
use crate::decode::PhysRead;
use crate::sync::lock;

/// How long a parked vCPU has to answer.
const ANSWER: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `f` with parked vCPU `vcpu`'s fd, on its thread; its answer.
fn with_vcpu<T: Send + 'static>(
    shared: &Shared,
    vcpu: usize,
    f: impl FnOnce(&kvm_ioctls::VcpuFd) -> T + Send + 'static,
) -> Result<T, SnapshotError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (done, finished) = std::sync::mpsc::channel();
    let run = Box::new(move |fd: &kvm_ioctls::VcpuFd| {
        let _ = tx.send(f(fd));
    });
    if !shared.debug.command(vcpu, VcpuCommand::WithFd { run, done }) {
        return Err(SnapshotError::Running);
    }
    let silent = || SnapshotError::Guest(format!("vCPU {vcpu} did not answer"));
    let answer = rx.recv_timeout(ANSWER).map_err(|_| silent())?;
    finished.recv_timeout(ANSWER).map_err(|_| silent())?;
    Ok(answer)
}

/// Every vCPU parked, each with the instruction it was in finished (KVM holds a pending port or
/// MMIO read's completion outside the registers).
pub fn settle(shared: &Shared) -> Result<(), SnapshotError> {
    let n = shared.debug.vcpus();
    if (0..n).any(|i| shared.debug.stop_of(i).is_none()) {
        return Err(SnapshotError::Running);
    }
    for vcpu in 0..n {
        let (tx, rx) = std::sync::mpsc::channel();
        if !shared.debug.command(vcpu, VcpuCommand::Settle { reply: tx }) {
            return Err(SnapshotError::Running);
        }
        match rx.recv_timeout(ANSWER) {
            Ok(true) => {}
            Ok(false) => return Err(SnapshotError::Guest("the run ended".into())),
            Err(_) => return Err(SnapshotError::Guest(format!("vCPU {vcpu} did not answer"))),
        }
    }
    Ok(())
}

/// Takes the state of a VM whose vCPUs are all parked, but for its RAM: the machine, and where
/// on the timeline (exits) and when (ns since the start) it is.
pub fn capture_machine(shared: &Shared) -> Result<(MachineState, u64, u64), SnapshotError> {
    settle(shared)?;
    let mut vcpus = Vec::new();
    for vcpu in 0..shared.debug.vcpus() {
        let (msrs, lapic) = (shared.msr_list.clone(), shared.irqchip);
        let state = with_vcpu(shared, vcpu, move |fd| VcpuSnapshot::capture(fd, &msrs, lapic))?;
        vcpus.push(state.map_err(|source| SnapshotError::Vcpu { vcpu, source })?);
    }
    machine_with(shared, vcpus)
}

/// The machine around the vCPUs' states (taken by their threads, every vCPU stopped with its
/// instruction finished): the chips, the devices once the virtio workers settled; with where on
/// the timeline and when it is.
pub fn machine_with(shared: &Shared, vcpus: Vec<VcpuSnapshot>) -> Result<(MachineState, u64, u64), SnapshotError> {
    let chips = match shared.irqchip {
        true => Some(KernelChips::capture(&shared.vm).map_err(SnapshotError::Chips)?),
        false => None,
    };
    shared.virtio.settle();
    let devices = save_devices(&shared.buses);
    let seq = shared.timeline.position();
    let t_ns = shared.clock.ns_since_start(shared.clock.now());
    Ok((MachineState { vcpus, chips, devices }, seq, t_ns))
}

/// The guest's own bytes under kvmscope's int3s, as (guest-physical address, byte).
pub fn planted_originals(shared: &Shared) -> Vec<(u64, u8)> {
    shared.debug.breakpoints().sw_all().map(|bp| (bp.gpa, bp.original)).collect()
}

/// Puts a state back into a VM whose vCPUs are all parked: RAM by `write_ram` (a checkpoint
/// writes only the pages that differ), kvmscope's int3s planted again over it, the in-kernel
/// chips, the devices, then each vCPU.
pub fn restore_with(
    shared: &Shared,
    machine: &MachineState,
    write_ram: impl FnOnce(&GuestRam) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    let n = shared.debug.vcpus();
    if machine.vcpus.len() != n {
        return Err(SnapshotError::Vcpus { snapshot: machine.vcpus.len(), vm: n });
    }
    settle(shared)?;
    shared.virtio.settle();
    write_ram(&shared.ram)?;
    {
        let mut bps = shared.debug.breakpoints();
        let planted: Vec<u64> = bps.sw_all().map(|b| b.gpa).collect();
        for gpa in planted {
            let mut byte = [0u8];
            shared.ram.read_phys(gpa, &mut byte);
            bps.replace_original(gpa, byte[0]);
            shared.ram.write(gpa, &[0xcc]);
        }
    }
    if let (Some(chips), true) = (&machine.chips, shared.irqchip) {
        chips.restore(&shared.vm).map_err(SnapshotError::Chips)?;
    }
    restore_devices(&shared.buses.pio, &shared.buses.mmio, &machine.devices)?;
    for (vcpu, state) in machine.vcpus.iter().enumerate() {
        let state = state.clone();
        with_vcpu(shared, vcpu, move |fd| state.restore(fd))?.map_err(|source| SnapshotError::Vcpu { vcpu, source })?;
    }
    Ok(())
}

/// Keeps `machine`, taken at `place` (`t_ns` since the start), with guest RAM as it is now, as a
/// checkpoint (`manual`: the user asked); its number. Every vCPU is stopped — parked, or the lone
/// vCPU taking one at its exit — and the virtio workers settled. From the first one on, KVM logs
/// the guest's writes, so that the next one looks only at the pages written since.
pub fn keep_checkpoint(
    shared: &Shared,
    machine: MachineState,
    place: Place,
    t_ns: u64,
    manual: bool,
) -> Result<u32, OverBudget> {
    prune_future(shared);
    let planted = planted_originals(shared);
    shared.timeline.keep_history();
    let exit_hits = shared.debug.exit_breakpoint_hits();
    let logged = shared.log_for_checkpoints();
    let mut checkpoints = lock(&shared.checkpoints);
    match logged {
        Ok(()) => shared.written_into(&mut checkpoints),
        Err(_) => checkpoints.forget_base(),
    }
    // SAFETY: every vCPU is stopped and the virtio workers settled (the caller's promise).
    let ram = unsafe { shared.ram.slices() };
    let id = checkpoints.add(place, t_ns, manual, machine, &ram)?;
    checkpoints.refused = None;
    for (gpa, byte) in planted {
        checkpoints.poke_newest(gpa, byte);
    }
    checkpoints.mark_disks(id, shared.virtio.mark_disks());
    checkpoints.set_exit_hits(id, exit_hits);
    // Thinning may have dropped the oldest: the disks need not go back further than what is left.
    if let Some(marks) = checkpoints.list().first().and_then(|c| c.disks.as_deref()) {
        shared.virtio.forget_disks_before(marks);
    }
    shared.checkpoint_placed(place.exits);
    Ok(id)
}

/// Forgets the checkpoints of a future the guest has left (it took another path since).
pub fn prune_future(shared: &Shared) {
    if let Some((exits, steps)) = shared.timeline.take_left_at() {
        lock(&shared.checkpoints).drop_from(exits, steps);
    }
}

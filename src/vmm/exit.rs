//! Turning one `KVM_RUN` return into what kvmscope records of it: the exit's kind with its payload,
//! the device that took the access, and what that device asked of the VM. Port and MMIO accesses
//! are dispatched to the buses here, element by element. A free function over the exit and the
//! buses, so it is tested without a VM.

use kvm_bindings::kvm_run;
use kvm_ioctls::VcpuExit;

use super::bus::{Buses, RAM_DEVICE, VmRequest};
use super::memory::GuestRam;
use crate::decode::PhysRead;
use crate::trace::{Dir, ExitKind};

/// What `kvm_run` holds beyond what kvm-ioctls' `VcpuExit` hands over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunDetail {
    /// Port accesses: the size of one element (`rep ins/outs` come as several).
    pub io_size: u8,
    /// `KVM_EXIT_INTERNAL_ERROR`: the suberror and its data words.
    pub suberror: u32,
    pub internal: Vec<u64>,
    /// `KVM_EXIT_UNKNOWN`: the hardware exit reason.
    pub hardware_reason: u64,
}

/// Gives a port, MMIO or MSR read `value` instead of what the device answered (going forward
/// again over the history: what it read the first time). False when the exit is no such read.
///
/// # Safety
/// `run` points to a vCPU's mapped `kvm_run` after `KVM_RUN` returned for this exit, before the
/// next `KVM_RUN`; no reference into it lives (kvm-ioctls' `VcpuExit` is gone).
pub unsafe fn answer_read(run: *mut kvm_run, value: u64) -> bool {
    // SAFETY: as the caller promises; each member written is the one `exit_reason` makes valid,
    // and KVM reads it at the next KVM_RUN.
    unsafe {
        let reason = std::ptr::addr_of!((*run).exit_reason).read();
        let union = std::ptr::addr_of_mut!((*run).__bindgen_anon_1);
        match reason {
            kvm_bindings::KVM_EXIT_IO => {
                let io = std::ptr::addr_of!((*union).io).read();
                if io.direction != kvm_bindings::KVM_EXIT_IO_IN as u8 || io.count != 1 || io.size > 8 {
                    return false;
                }
                let data = (run as *mut u8).add(io.data_offset as usize);
                std::ptr::copy_nonoverlapping(value.to_le_bytes().as_ptr(), data, io.size as usize);
                true
            }
            kvm_bindings::KVM_EXIT_MMIO => {
                let mmio = std::ptr::addr_of_mut!((*union).mmio);
                if (*mmio).is_write != 0 || (*mmio).len > 8 {
                    return false;
                }
                let data = std::ptr::addr_of_mut!((*mmio).data) as *mut u8;
                std::ptr::copy_nonoverlapping(value.to_le_bytes().as_ptr(), data, (*mmio).len as usize);
                true
            }
            kvm_bindings::KVM_EXIT_X86_RDMSR => {
                let msr = std::ptr::addr_of_mut!((*union).msr);
                (*msr).data = value;
                (*msr).error = 0;
                true
            }
            _ => false,
        }
    }
}

impl RunDetail {
    /// Reads the detail of the exit `run` describes.
    ///
    /// # Safety
    /// `run` points to a vCPU's mapped `kvm_run` after `KVM_RUN` returned; only the union member
    /// the exit reason names is read, through the raw pointer (no reference to `kvm_run` is made
    /// while kvm-ioctls' `VcpuExit` may borrow its data).
    pub unsafe fn read(run: *const kvm_run) -> Self {
        // SAFETY: as the caller promises; each member read is the one `exit_reason` makes valid.
        unsafe {
            let reason = std::ptr::addr_of!((*run).exit_reason).read();
            let union = std::ptr::addr_of!((*run).__bindgen_anon_1);
            match reason {
                kvm_bindings::KVM_EXIT_IO => {
                    let io = std::ptr::addr_of!((*union).io).read();
                    RunDetail { io_size: io.size, ..Default::default() }
                }
                kvm_bindings::KVM_EXIT_INTERNAL_ERROR => {
                    let internal = std::ptr::addr_of!((*union).internal).read();
                    let n = (internal.ndata as usize).min(internal.data.len());
                    RunDetail {
                        suberror: internal.suberror,
                        internal: internal.data[..n].to_vec(),
                        ..Default::default()
                    }
                }
                kvm_bindings::KVM_EXIT_UNKNOWN => {
                    let hw = std::ptr::addr_of!((*union).hw).read();
                    RunDetail { hardware_reason: hw.hardware_exit_reason, ..Default::default() }
                }
                _ => RunDetail::default(),
            }
        }
    }
}

/// One exit, translated and dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub kind: ExitKind,
    /// The device that took the access (`None`: unclaimed, or not an access).
    pub device: Option<&'static str>,
    /// What the device asked of the VM (end the run, reset).
    pub request: Option<VmRequest>,
}

impl Translated {
    fn plain(kind: ExitKind) -> Self {
        Self { kind, device: None, request: None }
    }
}

/// Little-endian value of up to 8 bytes.
pub fn le_value(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

/// Translates an exit and carries out its access on the buses. An MMIO access to RAM is one to a
/// page kvmscope keeps from the guest (a watchpoint): it is completed in `ram`.
pub fn translate(exit: VcpuExit<'_>, detail: &RunDetail, buses: &Buses, ram: &GuestRam) -> Translated {
    match exit {
        VcpuExit::IoOut(port, data) => port_out(port, data, detail.io_size, buses),
        VcpuExit::IoIn(port, data) => port_in(port, data, detail.io_size, buses),
        VcpuExit::MmioRead(addr, data) => {
            let device = if ram.map.is_ram(addr, data.len() as u64) {
                ram.read_phys(addr, data).then_some(RAM_DEVICE)
            } else {
                buses.mmio.read(addr, data)
            };
            let kind = ExitKind::Mmio { addr, dir: Dir::In, len: data.len() as u8, data: le_value(data) };
            Translated { kind, device, request: None }
        }
        VcpuExit::MmioWrite(addr, data) => {
            let (device, request) = if ram.map.is_ram(addr, data.len() as u64) {
                (ram.write(addr, data).then_some(RAM_DEVICE), None)
            } else {
                buses.mmio.write(addr, data)
            };
            let kind = ExitKind::Mmio { addr, dir: Dir::Out, len: data.len() as u8, data: le_value(data) };
            Translated { kind, device, request }
        }
        VcpuExit::InternalError => {
            Translated::plain(ExitKind::InternalError { suberror: detail.suberror, data: detail.internal.clone() })
        }
        VcpuExit::Unknown => Translated::plain(ExitKind::Unknown { hardware_reason: detail.hardware_reason }),
        // A trapped MSR (`--trap-msr`): the vCPU completes it on the real MSR (`vmm::msr`).
        VcpuExit::X86Rdmsr(m) => Translated::plain(ExitKind::Msr { index: m.index, dir: Dir::In, data: 0 }),
        VcpuExit::X86Wrmsr(m) => Translated::plain(ExitKind::Msr { index: m.index, dir: Dir::Out, data: m.data }),
        other => Translated::plain(plain_kind(other)),
    }
}

/// A port write of `data.len() / size` elements, each handed to the bus in turn.
fn port_out(port: u16, data: &[u8], size: u8, buses: &Buses) -> Translated {
    let elem = (size as usize).max(1);
    let (mut device, mut request) = (None, None);
    for chunk in data.chunks(elem) {
        let (d, r) = buses.pio.write(port as u64, chunk);
        device = d;
        request = request.or(r);
    }
    Translated { kind: port_kind(port, Dir::Out, data, size), device, request }
}

/// A port read of `data.len() / size` elements, each answered by the bus in turn.
fn port_in(port: u16, data: &mut [u8], size: u8, buses: &Buses) -> Translated {
    let elem = (size as usize).max(1);
    let mut device = None;
    for chunk in data.chunks_mut(elem) {
        device = buses.pio.read(port as u64, chunk);
    }
    Translated { kind: port_kind(port, Dir::In, data, size), device, request: None }
}

fn port_kind(port: u16, dir: Dir, data: &[u8], size: u8) -> ExitKind {
    let elem = (size as usize).max(1);
    let count = (data.len() / elem) as u32;
    ExitKind::Io { port, dir, size, count, data: le_value(data.get(..elem).unwrap_or(&[])) }
}

/// The kinds of the exits that carry no access.
fn plain_kind(exit: VcpuExit<'_>) -> ExitKind {
    use kvm_bindings::*;
    match exit {
        VcpuExit::Hlt => ExitKind::Hlt,
        VcpuExit::Shutdown => ExitKind::Shutdown,
        VcpuExit::FailEntry(reason, cpu) => ExitKind::FailEntry { reason, cpu },
        VcpuExit::SystemEvent(kind, data) => ExitKind::SystemEvent { kind, data: data.to_vec() },
        VcpuExit::Debug(d) => ExitKind::Debug { exception: d.exception, pc: d.pc, dr6: d.dr6, dr7: d.dr7 },
        VcpuExit::Hypercall(h) => ExitKind::Hypercall { nr: h.nr },
        VcpuExit::IoapicEoi(vector) => ExitKind::IoapicEoi { vector },
        VcpuExit::MemoryFault { flags, gpa, size } => ExitKind::MemoryFault { gpa, size, flags },
        VcpuExit::Intr => ExitKind::Intr,
        VcpuExit::Exception => ExitKind::Other { code: KVM_EXIT_EXCEPTION },
        VcpuExit::IrqWindowOpen => ExitKind::Other { code: KVM_EXIT_IRQ_WINDOW_OPEN },
        VcpuExit::SetTpr => ExitKind::Other { code: KVM_EXIT_SET_TPR },
        VcpuExit::TprAccess => ExitKind::Other { code: KVM_EXIT_TPR_ACCESS },
        VcpuExit::Nmi => ExitKind::Other { code: KVM_EXIT_NMI },
        VcpuExit::Hyperv => ExitKind::Other { code: KVM_EXIT_HYPERV },
        VcpuExit::Unsupported(code) => ExitKind::Other { code },
        // The non-x86 reasons kvm-ioctls names (never seen on x86, kept for completeness).
        VcpuExit::S390Sieic => ExitKind::Other { code: KVM_EXIT_S390_SIEIC },
        VcpuExit::S390Reset => ExitKind::Other { code: KVM_EXIT_S390_RESET },
        VcpuExit::Dcr => ExitKind::Other { code: KVM_EXIT_DCR },
        VcpuExit::Osi => ExitKind::Other { code: KVM_EXIT_OSI },
        VcpuExit::PaprHcall => ExitKind::Other { code: KVM_EXIT_PAPR_HCALL },
        VcpuExit::S390Ucontrol => ExitKind::Other { code: KVM_EXIT_S390_UCONTROL },
        VcpuExit::Watchdog => ExitKind::Other { code: KVM_EXIT_WATCHDOG },
        VcpuExit::S390Tsch => ExitKind::Other { code: KVM_EXIT_S390_TSCH },
        VcpuExit::Epr => ExitKind::Other { code: KVM_EXIT_EPR },
        VcpuExit::S390Stsi => ExitKind::Other { code: KVM_EXIT_S390_STSI },
        _ => ExitKind::Other { code: u32::MAX },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::vmm::bus::BusDevice;

    /// A device that remembers what was written and answers reads with a counter.
    #[derive(Default)]
    struct Probe {
        written: Vec<u8>,
        reads: u8,
    }

    impl BusDevice for Probe {
        fn read(&mut self, _offset: u64, data: &mut [u8]) {
            self.reads += 1;
            data.fill(self.reads);
        }
        fn write(&mut self, _offset: u64, data: &[u8]) -> Option<VmRequest> {
            self.written.extend_from_slice(data);
            (data == [0xee]).then_some(VmRequest::Exit(1))
        }
    }

    fn setup() -> (Buses, Arc<Mutex<Probe>>, GuestRam) {
        let probe = Arc::new(Mutex::new(Probe::default()));
        let mut buses = Buses::default();
        buses.pio.insert("probe", 0x80, 1, probe.clone()).unwrap();
        buses.mmio.insert("probe-mmio", 0xd000_0000, 0x1000, probe.clone()).unwrap();
        (buses, probe, GuestRam::new(4 << 20).unwrap())
    }

    fn io(size: u8) -> RunDetail {
        RunDetail { io_size: size, ..Default::default() }
    }

    #[test]
    fn port_writes_go_to_the_device_element_by_element() {
        let (buses, probe, ram) = setup();
        let data = [1, 2, 3];
        let t = translate(VcpuExit::IoOut(0x80, &data), &io(1), &buses, &ram);
        assert_eq!(t.kind, ExitKind::Io { port: 0x80, dir: Dir::Out, size: 1, count: 3, data: 1 });
        assert_eq!((t.device, t.request), (Some("probe"), None));
        assert_eq!(probe.lock().unwrap().written, [1, 2, 3]);
        let t = translate(VcpuExit::IoOut(0x80, &[0xee]), &io(1), &buses, &ram);
        assert_eq!(t.request, Some(VmRequest::Exit(1)), "the device's request comes back");
    }

    #[test]
    fn port_reads_are_answered_and_unclaimed_ports_read_all_ones() {
        let (buses, _, ram) = setup();
        let mut data = [0u8; 4];
        let t = translate(VcpuExit::IoIn(0x80, &mut data), &io(2), &buses, &ram);
        assert_eq!(t.kind, ExitKind::Io { port: 0x80, dir: Dir::In, size: 2, count: 2, data: 0x0101 });
        assert_eq!(data, [1, 1, 2, 2]);
        let mut data = [0u8; 1];
        let t = translate(VcpuExit::IoIn(0x61, &mut data), &io(1), &buses, &ram);
        assert_eq!((t.device, data), (None, [0xff]));
    }

    #[test]
    fn mmio_goes_to_the_bus_and_a_ram_access_is_completed_in_ram() {
        let (buses, probe, ram) = setup();
        let t = translate(VcpuExit::MmioWrite(0xd000_0010, &[0x34, 0x12]), &RunDetail::default(), &buses, &ram);
        assert_eq!(t.kind, ExitKind::Mmio { addr: 0xd000_0010, dir: Dir::Out, len: 2, data: 0x1234 });
        assert_eq!(t.device, Some("probe-mmio"));
        assert_eq!(probe.lock().unwrap().written, [0x34, 0x12]);
        let t = translate(VcpuExit::MmioWrite(0x2000, &[0xaa, 0xbb]), &RunDetail::default(), &buses, &ram);
        assert_eq!(t.device, Some(RAM_DEVICE));
        let mut back = [0u8; 2];
        assert!(ram.read_phys(0x2000, &mut back) && back == [0xaa, 0xbb]);
        let mut data = [0u8; 2];
        let t = translate(VcpuExit::MmioRead(0x2000, &mut data), &RunDetail::default(), &buses, &ram);
        assert_eq!((t.device, data), (Some(RAM_DEVICE), [0xaa, 0xbb]));
    }

    #[test]
    fn payloads_come_from_the_run_detail() {
        let (buses, _, ram) = setup();
        let detail = RunDetail { suberror: 1, internal: vec![7, 8], ..Default::default() };
        let t = translate(VcpuExit::InternalError, &detail, &buses, &ram);
        assert_eq!(t.kind, ExitKind::InternalError { suberror: 1, data: vec![7, 8] });
        let detail = RunDetail { hardware_reason: 0x30, ..Default::default() };
        assert_eq!(
            translate(VcpuExit::Unknown, &detail, &buses, &ram).kind,
            ExitKind::Unknown { hardware_reason: 0x30 }
        );
        assert_eq!(translate(VcpuExit::Hlt, &RunDetail::default(), &buses, &ram).kind, ExitKind::Hlt);
    }
}

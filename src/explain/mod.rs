//! Explaining exits: for each port or MMIO access, the device that lives at that address on a
//! PC/QEMU machine (whether kvmscope models it or not), the register, and the value decoded into
//! named fields — with the little per-device state that takes (the CMOS index, the PCI address
//! latch, the PIC's initialisation sequence, the UART's DLAB) — and why the exit reached userspace.
//!
//! Pure decoding of exit events, with no knowledge of KVM: the same code explains a live exit (in
//! the TUI, `--trace`), a recorded one (`stats`, the exports, `replay`) and one in a unit test. It
//! runs beside the vCPUs, never on their threads. One file per device family; [`Explainer`] sends
//! each access to the family that lives at its address.

pub mod answers;
pub mod ata;
pub mod cmos;
pub mod coverage;
pub mod fw_cfg;
pub mod i8042;
pub mod ioapic;
pub mod lapic;
pub mod legacy;
pub mod pci;
pub mod pic;
pub mod pit;
pub mod uart;
pub mod vga;
pub mod virtio_mmio;
pub mod why;

use std::sync::Arc;

use serde::Deserialize;

use crate::trace::{Dir, ExitEvent, ExitKind};

pub use answers::Explained;
use answers::{Answers, Family, Stateless};

pub use why::{Why, why};

/// One port or MMIO access, as the exit reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Access {
    /// The port, or the guest-physical address.
    pub at: u64,
    pub write: bool,
    /// Bytes.
    pub size: u8,
    /// What was written, or what the read returned.
    pub value: u64,
}

impl Access {
    fn dir(&self) -> &'static str {
        if self.write { "write" } else { "read" }
    }
}

/// What an exit means.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Explanation {
    /// The device at that port or address ("16550 UART (COM1)"), or that none is known.
    pub device: String,
    /// The register's short name (`LSR`, `ICR_LO`, `CONFIG_ADDRESS`); empty where there is none.
    pub register: String,
    /// The value decoded: (field, meaning).
    pub fields: Vec<(String, String)>,
    /// The access in one line: "LSR read 0x60: THR empty, transmitter empty".
    pub summary: String,
    /// What was tracked of the device at this access (the CMOS index, the UART's LCR ...).
    pub state: Vec<String>,
}

/// What a port or address with no known device is called.
pub const NO_PORT_DEVICE: &str = "no known PC device at this port";
pub const NO_MMIO_DEVICE: &str = "no known PC device at this address";

impl Explanation {
    /// An access to `device`'s `register`, summed up in `what` (after the register's name and the
    /// access).
    pub fn new(device: impl Into<String>, register: impl Into<String>, a: &Access, what: impl Into<String>) -> Self {
        let (device, register, what) = (device.into(), register.into(), what.into());
        let value = hex(a.value, a.size);
        let summary = match (register.is_empty(), what.is_empty()) {
            (true, true) => format!("{} {value}", a.dir()),
            (true, false) => format!("{} {value}: {what}", a.dir()),
            (false, true) => format!("{register} {} {value}", a.dir()),
            (false, false) => format!("{register} {} {value}: {what}", a.dir()),
        };
        Self { device, register, fields: Vec::new(), summary, state: Vec::new() }
    }

    /// With these fields, also appended to the summary.
    pub fn with_fields(mut self, fields: Vec<(String, String)>) -> Self {
        self.fields = fields;
        self
    }

    pub fn with_state(mut self, state: impl Into<String>) -> Self {
        self.state.push(state.into());
        self
    }

    /// The device and register in a few words, for a column: "COM1 LSR", "PCI CONFIG_ADDRESS".
    pub fn short(&self) -> String {
        let tag = tag(&self.device);
        if self.register.is_empty() { tag } else { format!("{tag} {}", self.register) }
    }

    /// The explanation in one line, as the exports carry it: the device, then the access in words.
    pub fn line(&self) -> String {
        format!("{}: {}", self.device, self.summary)
    }

    /// What the access means, without the register and value it starts with ("THR empty|...").
    pub fn meaning(&self) -> &str {
        self.summary.split_once(": ").map_or("", |(_, m)| m)
    }
}

/// A device's name in a word, for narrow columns: "COM1", "PIC1", "CMOS", "virtio-blk0", "?".
pub fn tag(device: &str) -> String {
    let inner = |d: &str| d.split_once('(').and_then(|(_, r)| r.strip_suffix(')')).map(str::to_string);
    let t = match device {
        d if d.starts_with("16550 UART") => inner(d).unwrap_or_default(),
        "8259 PIC (master)" => "PIC1".into(),
        "8259 PIC (slave)" => "PIC2".into(),
        d if d.starts_with("8259 PIC edge") => "ELCR".into(),
        "8254 PIT" => "PIT".into(),
        d if d.starts_with("NMI status") => "port61".into(),
        "CMOS RTC/NVRAM" => "CMOS".into(),
        d if d.starts_with("PCI configuration") => "PCI".into(),
        "QEMU fw_cfg" => "fw_cfg".into(),
        d if d.starts_with("i8042") => "i8042".into(),
        "ATA primary channel" => "ATA0".into(),
        "ATA secondary channel" => "ATA1".into(),
        "local APIC" => "LAPIC".into(),
        d if d.starts_with("virtio-mmio slot") => {
            d.replace("virtio-mmio slot ", "virtio").replace(" (empty)", "-empty")
        }
        d if d.starts_with("virtio-mmio") => inner(d).unwrap_or_else(|| d.replace("virtio-mmio ", "virtio")),
        d if d.starts_with("parallel port") => inner(d).unwrap_or_else(|| "LPT".into()),
        "System Control Port A" => "port92".into(),
        "reset control register" => "port_cf9".into(),
        "POST diagnostic port" => "POST".into(),
        d if d.starts_with("QEMU debug console") => "debugcon".into(),
        d if d.starts_with("Bochs") => "port_e9".into(),
        "8237 DMA controller #1" => "DMA1".into(),
        "8237 DMA controller #2" => "DMA2".into(),
        "ISA DMA page registers" => "DMAPAGE".into(),
        NO_PORT_DEVICE | NO_MMIO_DEVICE => "?".into(),
        d if d.starts_with("guest RAM") => "RAM".into(),
        d => d.to_string(),
    };
    if t.is_empty() { device.to_string() } else { t }
}

/// `value` in hex as wide as an access of `size` bytes.
pub fn hex(value: u64, size: u8) -> String {
    format!("{value:#0w$x}", w = 2 + 2 * size.clamp(1, 8) as usize)
}

/// The names of the set bits of `value` among `bits` (bit, name), joined with `|`; "none".
pub fn bit_names(value: u64, bits: &[(u32, &str)]) -> String {
    let set: Vec<&str> = bits.iter().filter(|(b, _)| value & (1 << b) != 0).map(|(_, n)| *n).collect();
    if set.is_empty() { "none".into() } else { set.join("|") }
}

/// A field of the value: `name = meaning`.
pub fn field(name: &str, meaning: impl Into<String>) -> (String, String) {
    (name.to_string(), meaning.into())
}

/// The per-device state explaining takes, as far as the accesses showed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Devices {
    uart: uart::Uarts,
    pic: pic::Pics,
    pit: pit::Pit,
    cmos: cmos::Cmos,
    pci: pci::Pci,
    fw_cfg: fw_cfg::FwCfg,
    i8042: i8042::Kbc,
    vga: vga::Vga,
    ata: ata::Ata,
    ioapic: ioapic::IoApic,
    virtio: virtio_mmio::VirtioMmio,
}

/// Each family's answers given so far.
#[derive(Default)]
struct Given {
    uart: Answers<<uart::Uarts as Family>::State>,
    pic: Answers<<pic::Pics as Family>::State>,
    pit: Answers<<pit::Pit as Family>::State>,
    cmos: Answers<<cmos::Cmos as Family>::State>,
    pci: Answers<<pci::Pci as Family>::State>,
    fw_cfg: Answers<<fw_cfg::FwCfg as Family>::State>,
    i8042: Answers<<i8042::Kbc as Family>::State>,
    vga: Answers<<vga::Vga as Family>::State>,
    ata: Answers<<ata::Ata as Family>::State>,
    ioapic: Answers<<ioapic::IoApic as Family>::State>,
    virtio: Answers<<virtio_mmio::VirtioMmio as Family>::State>,
    stateless: Answers<()>,
}

/// Explains the exits of one run, in the order they happened: the per-device state lives here,
/// and the answers given so far (see [`answers`]).
#[derive(Default)]
pub struct Explainer {
    devices: Devices,
    given: Box<Given>,
}

/// A clone has the same device state and no answers yet: they are a speed-up, not state (the
/// replay keeps many clones).
impl Clone for Explainer {
    fn clone(&self) -> Self {
        Self { devices: self.devices.clone(), given: Box::default() }
    }
}

impl std::fmt::Debug for Explainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.devices.fmt(f)
    }
}

impl Explainer {
    /// The explanation of a port or MMIO exit (`None` for other exits), looked up where the same
    /// access met the same state before.
    pub fn explain(&mut self, e: &ExitEvent) -> Option<Arc<Explained>> {
        match e.kind {
            ExitKind::Io { port, dir, size, data, .. } => {
                let a = Access { at: port as u64, write: dir == Dir::Out, size, value: data };
                Some(if unanswered(&a, e.device) && !reads_the_floating_bus(port) {
                    self.given.stateless.answer(&mut Stateless, a, None, |_| nothing_answered(a, true))
                } else {
                    self.port_answer(a)
                })
            }
            ExitKind::Mmio { addr, dir, len, data } => {
                let a = Access { at: addr, write: dir == Dir::Out, size: len, value: data };
                Some(if unanswered(&a, e.device) {
                    self.given.stateless.answer(&mut Stateless, a, None, |_| nothing_answered(a, false))
                } else {
                    self.mmio_answer(a, e.device)
                })
            }
            _ => None,
        }
    }

    /// How many answers are kept (a test counts the ones looked up).
    #[cfg(test)]
    fn given_so_far(&self) -> usize {
        let g = &self.given;
        g.uart.len()
            + g.pic.len()
            + g.pit.len()
            + g.cmos.len()
            + g.pci.len()
            + g.fw_cfg.len()
            + g.i8042.len()
            + g.vga.len()
            + g.ata.len()
            + g.ioapic.len()
            + g.virtio.len()
            + g.stateless.len()
    }

    /// The device state, as data: a recording's index keeps it every so many exits, so that a
    /// reader going far explains from there, not from the start.
    pub fn state(&self) -> serde_json::Value {
        serde_json::to_value(&self.devices).unwrap_or_default()
    }

    /// An explainer with that device state; `None` if `state` is not one.
    pub fn with_state(state: &serde_json::Value) -> Option<Self> {
        Some(Self { devices: Devices::deserialize(state).ok()?, given: Box::default() })
    }

    /// A port access, explained afresh.
    pub fn port(&mut self, a: Access) -> Explanation {
        self.devices.port(a)
    }

    /// An MMIO access, explained afresh; `device` is the model that took it, if any.
    pub fn mmio(&mut self, a: Access, device: Option<&str>) -> Explanation {
        self.devices.mmio(a, device)
    }

    /// A port access's answer, from the family that lives there.
    fn port_answer(&mut self, a: Access) -> Arc<Explained> {
        let (d, g) = (&mut self.devices, &mut self.given);
        match Devices::port_family(a.at) {
            PortFamily::Uart => g.uart.answer(&mut d.uart, a, None, |f| f.explain(&a)),
            PortFamily::Pic => g.pic.answer(&mut d.pic, a, None, |f| f.explain(&a)),
            PortFamily::Pit => g.pit.answer(&mut d.pit, a, None, |f| f.explain(&a)),
            PortFamily::Cmos => g.cmos.answer(&mut d.cmos, a, None, |f| f.explain(&a)),
            PortFamily::Pci => g.pci.answer(&mut d.pci, a, None, |f| f.explain(&a)),
            PortFamily::FwCfg => g.fw_cfg.answer(&mut d.fw_cfg, a, None, |f| f.explain(&a)),
            PortFamily::I8042 => g.i8042.answer(&mut d.i8042, a, None, |f| f.explain(&a)),
            PortFamily::Vga => g.vga.answer(&mut d.vga, a, None, |f| f.explain(&a)),
            PortFamily::Ata => g.ata.answer(&mut d.ata, a, None, |f| f.explain(&a)),
            PortFamily::Other => g.stateless.answer(&mut Stateless, a, None, |_| other_port(&a)),
        }
    }

    /// An MMIO access's answer; `device` is the model that took it.
    fn mmio_answer(&mut self, a: Access, device: Option<&'static str>) -> Arc<Explained> {
        let (d, g) = (&mut self.devices, &mut self.given);
        match a.at {
            ioapic::BASE..=ioapic::END => g.ioapic.answer(&mut d.ioapic, a, None, |f| f.explain(&a)),
            virtio_mmio::BASE..=virtio_mmio::END => {
                g.virtio.answer(&mut d.virtio, a, device, |f| f.explain(&a, device))
            }
            _ => g.stateless.answer(&mut Stateless, a, device, |_| stateless_mmio(&a, device)),
        }
    }
}

/// Which family lives at a port.
enum PortFamily {
    Uart,
    Pic,
    Pit,
    Cmos,
    Pci,
    FwCfg,
    I8042,
    Vga,
    Ata,
    Other,
}

impl Devices {
    fn port_family(port: u64) -> PortFamily {
        match port {
            0x3f8..=0x3ff | 0x2f8..=0x2ff | 0x3e8..=0x3ef | 0x2e8..=0x2ef => PortFamily::Uart,
            0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1 => PortFamily::Pic,
            0x40..=0x43 | 0x61 => PortFamily::Pit,
            0x70 | 0x71 => PortFamily::Cmos,
            0xcf8..=0xcff => PortFamily::Pci,
            0x510 | 0x511 | 0x514..=0x51b => PortFamily::FwCfg,
            0x60 | 0x64 => PortFamily::I8042,
            0x3b0..=0x3df => PortFamily::Vga,
            0x1f0..=0x1f7 | 0x3f6 | 0x170..=0x177 | 0x376 => PortFamily::Ata,
            _ => PortFamily::Other,
        }
    }

    fn port(&mut self, a: Access) -> Explanation {
        match Self::port_family(a.at) {
            PortFamily::Uart => self.uart.explain(&a),
            PortFamily::Pic => self.pic.explain(&a),
            PortFamily::Pit => self.pit.explain(&a),
            PortFamily::Cmos => self.cmos.explain(&a),
            PortFamily::Pci => self.pci.explain(&a),
            PortFamily::FwCfg => self.fw_cfg.explain(&a),
            PortFamily::I8042 => self.i8042.explain(&a),
            PortFamily::Vga => self.vga.explain(&a),
            PortFamily::Ata => self.ata.explain(&a),
            PortFamily::Other => other_port(&a),
        }
    }

    fn mmio(&mut self, a: Access, device: Option<&str>) -> Explanation {
        match a.at {
            ioapic::BASE..=ioapic::END => self.ioapic.explain(&a),
            virtio_mmio::BASE..=virtio_mmio::END => self.virtio.explain(&a, device),
            _ => stateless_mmio(&a, device),
        }
    }
}

/// An MMIO address no stateful family lives at: the local APIC, the HPET, a watched RAM page, or
/// nothing known.
fn stateless_mmio(a: &Access, device: Option<&str>) -> Explanation {
    match a.at {
        lapic::BASE..=lapic::END => lapic::explain(a),
        ioapic::HPET_BASE..=ioapic::HPET_END => ioapic::hpet(a),
        _ if device == Some(crate::vmm::bus::RAM_DEVICE) => Explanation::new("guest RAM (a watched page)", "", a, ""),
        _ => Explanation::new(NO_MMIO_DEVICE, "", a, ""),
    }
}

/// A port no stateful family lives at: a legacy device, or none.
fn other_port(a: &Access) -> Explanation {
    legacy::explain(a).unwrap_or_else(|| {
        Explanation::new(NO_PORT_DEVICE, "", a, "").with_state("nothing on a PC or QEMU machine answers here")
    })
}

/// Whether a read got all ones because no device in this VM took it (none claimed the exit):
/// the value is the bus floating, not a register's.
fn unanswered(a: &Access, device: Option<&str>) -> bool {
    let ones = if a.size >= 8 { u64::MAX } else { (1u64 << (8 * a.size.max(1) as u32)) - 1 };
    !a.write && device.is_none() && a.value == ones
}

/// Ports whose explainer reads all ones itself, as the absence it means there: PCI configuration
/// data (no device at the latched address), the ATA channels (nothing drives the bus).
fn reads_the_floating_bus(port: u16) -> bool {
    matches!(port, 0xcfc..=0xcff | 0x1f0..=0x1f7 | 0x3f6 | 0x170..=0x177 | 0x376)
}

/// A read nothing answered: the device and register a PC has there, and that the all ones
/// are not their value (the device's state is not touched).
fn nothing_answered(a: Access, port: bool) -> Explanation {
    // The names as a first access of this size there has them (the value is not the device's).
    let mut x = Devices::default();
    let named = if port { x.port(a) } else { x.mmio(a, None) };
    let (device, register) = (named.device, named.register);
    let absent =
        if device == NO_PORT_DEVICE || device == NO_MMIO_DEVICE { "" } else { " (this VM has no such device)" };
    Explanation::new(device, register, &a, format!("all ones: nothing answered{absent}"))
        .with_state("no device in this VM took the read: the bus floats high")
}

/// What `--trace` appends to each exit's line: the device and the access in words, explained in
/// the order the lines are printed.
pub fn trace_note() -> crate::sink::printer::Annotate {
    let mut explainer = Explainer::default();
    Box::new(move |e| explainer.explain(e).map(|x| x.line.clone()))
}

/// The device and register at a port (`port`) or an MMIO address, as an access there with no
/// history before it names them: for tables counted by address, where the values are gone.
pub fn register_at(at: u64, port: bool, write: bool) -> (String, String) {
    register_of(at, port, write, None)
}

/// [`register_at`], for an MMIO address that device model `device` took (a virtio device's
/// name on the bus): every output names it as the trace does.
pub fn register_of(at: u64, port: bool, write: bool, device: Option<&str>) -> (String, String) {
    let a = Access { at, write, size: if port { 1 } else { 4 }, value: 0 };
    let mut x = Devices::default();
    let e = if port { x.port(a) } else { x.mmio(a, device) };
    (e.device, e.register)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn out(at: u64, size: u8, value: u64) -> Access {
        Access { at, write: true, size, value }
    }

    pub fn inp(at: u64, size: u8, value: u64) -> Access {
        Access { at, write: false, size, value }
    }

    fn unclaimed_read(at: u64, port: bool, size: u8, value: u64) -> ExitEvent {
        let kind = match port {
            true => ExitKind::Io { port: at as u16, dir: Dir::In, size, count: 1, data: value },
            false => ExitKind::Mmio { addr: at, dir: Dir::In, len: size, data: value },
        };
        ExitEvent { seq: 0, vcpu: 0, t_ns: 0, rip: 0, kind, device: None, insn: None, cost_ns: 0 }
    }

    #[test]
    fn all_ones_that_nothing_answered_are_said_first_not_decoded() {
        let mut x = Explainer::default();
        for (at, port, size, register) in [
            (0xfee0_00f0u64, false, 4, "SVR"),
            (0xfee0_0030, false, 4, "VERSION"),
            (0x64, true, 1, "STATUS"),
            (0x2f9, true, 1, "IER"),
            (0xcf8, true, 4, "CONFIG_ADDRESS"),
            (0x510, true, 2, "SELECTOR"),
        ] {
            let ones = (1u64 << (8 * size)) - 1;
            let e = x.explain(&unclaimed_read(at, port, size, ones)).unwrap();
            assert_eq!(e.register, register, "{at:#x}");
            assert!(e.meaning().starts_with("all ones: nothing answered"), "{at:#x}: {}", e.summary);
            assert!(e.fields.is_empty(), "{at:#x}: no fields decoded from the bus floating: {:?}", e.fields);
        }
        // A device that answered all ones is decoded as its value.
        // PCI configuration data and the ATA channels say what all ones mean there themselves.
        let mut x = Explainer::default();
        let select = ExitKind::Io { port: 0xcf8, dir: Dir::Out, size: 4, count: 1, data: 0x8000_0000 };
        x.explain(&ExitEvent { kind: select, ..unclaimed_read(0xcf8, true, 4, 0) });
        let vendor = x.explain(&unclaimed_read(0xcfc, true, 2, 0xffff)).unwrap();
        assert_eq!(vendor.summary, "VENDOR_ID read 0xffff: no device at 00:00.0");
        let ata = x.explain(&unclaimed_read(0x1f7, true, 1, 0xff)).unwrap();
        assert!(ata.summary.contains("nothing drives the bus"), "{}", ata.summary);
        let answered = ExitEvent { device: Some("com1"), ..unclaimed_read(0x3f9, true, 1, 0xff) };
        assert!(!x.explain(&answered).unwrap().summary.contains("nothing answered"));
    }

    /// For each device family, a long random run of accesses to its ports or registers, with
    /// values that change its state (CMOS index, PCI latch, DLAB, ICW sequence, selectors): every
    /// answer looked up equals the one built afresh by an explainer that has seen the same run.
    #[test]
    fn a_cached_answer_is_the_answer_built_afresh_across_state_changes() {
        let values: &[u64] = &[0, 1, 3, 0x0a, 0x0b, 0x11, 0x20, 0x41, 0x60, 0x80, 0x8b, 0xa0, 0xb6, 0xec, 0xff];
        let wide: &[u64] = &[0, 1, 0x19, 0x8000_0000, 0x8000_0800, 0x8000_1004, 0x8000_0010, 0xffff, 0xffff_ffff];
        let virtio = virtio_mmio::BASE;
        // (family, its ports or addresses, whether ports, access sizes, values written or read)
        type Family<'a> = (&'a str, &'a [u64], bool, &'a [u8], &'a [u64]);
        let families: &[Family] = &[
            ("uart", &[0x3f8, 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd, 0x2f8, 0x2fb], true, &[1], values),
            ("pic", &[0x20, 0x21, 0xa0, 0xa1, 0x4d0], true, &[1], values),
            ("pit", &[0x40, 0x42, 0x43, 0x61], true, &[1], values),
            ("cmos", &[0x70, 0x71], true, &[1], values),
            ("pci", &[0xcf8, 0xcfc, 0xcfe], true, &[1, 2, 4], wide),
            ("fw_cfg", &[0x510, 0x511], true, &[1, 2], values),
            ("i8042", &[0x60, 0x64], true, &[1], values),
            ("vga", &[0x3d4, 0x3d5, 0x3c4, 0x3c5, 0x3ce, 0x3cf, 0x3da], true, &[1], values),
            ("ata", &[0x1f6, 0x1f7, 0x1f2, 0x3f6, 0x176], true, &[1], values),
            ("ioapic", &[ioapic::BASE, ioapic::BASE + 0x10], false, &[4], wide),
            (
                "virtio",
                &[virtio + 0x10, virtio + 0x14, virtio + 0x24, virtio + 0x30, virtio + 0x34, virtio + 0x70],
                false,
                &[4],
                wide,
            ),
            ("lapic", &[lapic::BASE + 0x300, lapic::BASE + 0xb0], false, &[4], wide),
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut pick = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for &(name, places, port, sizes, values) in families {
            let (mut cached, mut fresh) = (Explainer::default(), Explainer::default());
            let device = if port { Some("a device") } else { Some("virtio-blk0") };
            let (mut hits, n) = (0, 20_000u64);
            for i in 0..n {
                let a = Access {
                    at: places[pick(places.len())],
                    write: pick(2) == 0,
                    size: sizes[pick(sizes.len())],
                    value: values[pick(values.len())],
                };
                let kind = match port {
                    true => ExitKind::Io {
                        port: a.at as u16,
                        dir: if a.write { Dir::Out } else { Dir::In },
                        size: a.size,
                        count: 1,
                        data: a.value,
                    },
                    false => ExitKind::Mmio {
                        addr: a.at,
                        dir: if a.write { Dir::Out } else { Dir::In },
                        len: a.size,
                        data: a.value,
                    },
                };
                let e = ExitEvent { seq: i, vcpu: 0, t_ns: 0, rip: 0, kind, device, insn: None, cost_ns: 0 };
                let given = cached.given_so_far();
                let answer = cached.explain(&e).unwrap();
                hits += u64::from(cached.given_so_far() == given);
                let afresh = if port { fresh.port(a) } else { fresh.mmio(a, device) };
                assert_eq!(answer.explanation, afresh, "{name}: access {i} {a:?}");
                assert_eq!(answer.line, afresh.line());
            }
            // Random values churn the state more than guests do: some answers are still looked up.
            assert!(hits > n / 50, "{name}: only {hits} of {n} answers were looked up");
        }
    }

    #[test]
    fn an_access_nothing_is_known_for_says_so() {
        let mut x = Explainer::default();
        let e = x.port(out(0x1234, 1, 0));
        assert_eq!(e.device, NO_PORT_DEVICE);
        assert_eq!(e.summary, "write 0x00");
        let e = x.mmio(inp(0xe000_1000, 4, 0xffff_ffff), None);
        assert_eq!(e.device, NO_MMIO_DEVICE);
    }
}

//! Explaining exits: for each port or MMIO access, the device that lives at that address on a
//! PC/QEMU machine (whether kvmscope models it or not), the register, and the value decoded into
//! named fields — with the little per-device state that takes (the CMOS index, the PCI address
//! latch, the PIC's initialisation sequence, the UART's DLAB) — and why the exit reached userspace.
//!
//! Pure decoding of exit events, with no knowledge of KVM: the same code explains a live exit (in
//! the TUI, `--trace`), a recorded one (`stats`, the exports, `replay`) and one in a unit test. It
//! runs beside the vCPUs, never on their threads. One file per device family; [`Explainer`] sends
//! each access to the family that lives at its address.

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

use crate::trace::{Dir, ExitEvent, ExitKind};

pub use why::{Why, why};

/// One port or MMIO access, as the exit reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Explains the exits of one run, in the order they happened: the per-device state lives here.
#[derive(Debug, Default, Clone)]
pub struct Explainer {
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

impl Explainer {
    /// The explanation of a port or MMIO exit (`None` for other exits).
    pub fn explain(&mut self, e: &ExitEvent) -> Option<Explanation> {
        match e.kind {
            ExitKind::Io { port, dir, size, data, .. } => {
                let a = Access { at: port as u64, write: dir == Dir::Out, size, value: data };
                let floating = unanswered(&a, e.device) && !reads_the_floating_bus(port);
                Some(if floating { nothing_answered(a, true) } else { self.port(a) })
            }
            ExitKind::Mmio { addr, dir, len, data } => {
                let a = Access { at: addr, write: dir == Dir::Out, size: len, value: data };
                Some(if unanswered(&a, e.device) { nothing_answered(a, false) } else { self.mmio(a, e.device) })
            }
            _ => None,
        }
    }

    /// A port access.
    pub fn port(&mut self, a: Access) -> Explanation {
        let p = a.at;
        match p {
            0x3f8..=0x3ff | 0x2f8..=0x2ff | 0x3e8..=0x3ef | 0x2e8..=0x2ef => self.uart.explain(&a),
            0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1 => self.pic.explain(&a),
            0x40..=0x43 | 0x61 => self.pit.explain(&a),
            0x70 | 0x71 => self.cmos.explain(&a),
            0xcf8..=0xcff => self.pci.explain(&a),
            0x510 | 0x511 | 0x514..=0x51b => self.fw_cfg.explain(&a),
            0x60 | 0x64 => self.i8042.explain(&a),
            0x3b0..=0x3df => self.vga.explain(&a),
            0x1f0..=0x1f7 | 0x3f6 | 0x170..=0x177 | 0x376 => self.ata.explain(&a),
            _ => legacy::explain(&a).unwrap_or_else(|| {
                Explanation::new(NO_PORT_DEVICE, "", &a, "").with_state("nothing on a PC or QEMU machine answers here")
            }),
        }
    }

    /// An MMIO access; `device` is the model that took it, if any (a virtio device's name).
    pub fn mmio(&mut self, a: Access, device: Option<&str>) -> Explanation {
        match a.at {
            lapic::BASE..=lapic::END => lapic::explain(&a),
            ioapic::BASE..=ioapic::END => self.ioapic.explain(&a),
            ioapic::HPET_BASE..=ioapic::HPET_END => ioapic::hpet(&a),
            virtio_mmio::BASE..=virtio_mmio::END => self.virtio.explain(&a, device),
            _ if device == Some(crate::vmm::bus::RAM_DEVICE) => {
                Explanation::new("guest RAM (a watched page)", "", &a, "")
            }
            _ => Explanation::new(NO_MMIO_DEVICE, "", &a, ""),
        }
    }
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
    let mut x = Explainer::default();
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
    Box::new(move |e| explainer.explain(e).map(|x| format!("{}: {}", x.device, x.summary)))
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
    let mut x = Explainer::default();
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

//! PCI configuration mechanism #1 (0xcf8 CONFIG_ADDRESS, 0xcfc-0xcff CONFIG_DATA): the address as
//! `BB:DD.F` the way lspci writes it, and the data's register at that offset by name (vendor and
//! device ID, command, status, class, BARs, capabilities, interrupt line and pin ...). A read of
//! all ones from the vendor ID says no device is there.

use super::{Access, Explanation, bit_names, field};

/// The latched CONFIG_ADDRESS.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Pci {
    address: Option<u32>,
}

/// `BB:DD.F` of a CONFIG_ADDRESS.
pub fn bdf(address: u32) -> String {
    format!("{:02x}:{:02x}.{}", (address >> 16) & 0xff, (address >> 11) & 0x1f, (address >> 8) & 7)
}

/// The register of a type-0 header at `offset`.
pub fn register(offset: u32) -> &'static str {
    match offset {
        0x00..=0x01 => "VENDOR_ID",
        0x02..=0x03 => "DEVICE_ID",
        0x04..=0x05 => "COMMAND",
        0x06..=0x07 => "STATUS",
        0x08 => "REVISION_ID",
        0x09 => "PROG_IF",
        0x0a => "SUBCLASS",
        0x0b => "CLASS",
        0x0c => "CACHE_LINE_SIZE",
        0x0d => "LATENCY_TIMER",
        0x0e => "HEADER_TYPE",
        0x0f => "BIST",
        0x10..=0x13 => "BAR0",
        0x14..=0x17 => "BAR1",
        0x18..=0x1b => "BAR2",
        0x1c..=0x1f => "BAR3",
        0x20..=0x23 => "BAR4",
        0x24..=0x27 => "BAR5",
        0x28..=0x2b => "CARDBUS_CIS",
        0x2c..=0x2d => "SUBSYSTEM_VENDOR_ID",
        0x2e..=0x2f => "SUBSYSTEM_ID",
        0x30..=0x33 => "EXPANSION_ROM",
        0x34 => "CAPABILITIES_POINTER",
        0x3c => "INTERRUPT_LINE",
        0x3d => "INTERRUPT_PIN",
        0x3e => "MIN_GNT",
        0x3f => "MAX_LAT",
        0x40..=0xff => "DEVICE_SPECIFIC",
        _ => "RESERVED",
    }
}

/// A base class (and subclass) by name.
fn class_name(class: u32, sub: u32) -> &'static str {
    match (class, sub) {
        (0x01, 0x01) => "IDE controller",
        (0x01, 0x06) => "SATA controller",
        (0x01, 0x08) => "NVMe controller",
        (0x01, _) => "storage controller",
        (0x02, _) => "network controller",
        (0x03, _) => "display controller",
        (0x06, 0x00) => "host bridge",
        (0x06, 0x01) => "ISA bridge",
        (0x06, 0x04) => "PCI-to-PCI bridge",
        (0x06, _) => "bridge",
        (0x0c, 0x03) => "USB controller",
        (0x0c, 0x05) => "SMBus controller",
        (0x0c, _) => "serial bus controller",
        _ => "other",
    }
}

impl Pci {
    pub fn explain(&mut self, a: &Access) -> Explanation {
        let device = "PCI configuration (mechanism #1)";
        if a.at == 0xcf8 && a.size == 4 {
            let v = a.value as u32;
            if a.write {
                self.address = Some(v);
            }
            let what = if v & 0x8000_0000 == 0 {
                "configuration access off (bit 31 clear)".to_string()
            } else {
                format!("select {} register {:#04x} ({})", bdf(v), v & 0xfc, register(v & 0xfc))
            };
            return Explanation::new(device, "CONFIG_ADDRESS", a, what);
        }
        if !(0xcfc..=0xcff).contains(&a.at) {
            // 0xcf9 (reset control) is another device; other bytes of 0xcf8 are not the address.
            return Explanation::new(device, "", a, "not a CONFIG_ADDRESS access (it takes 32 bits)");
        }
        let Some(addr) = self.address.filter(|x| x & 0x8000_0000 != 0) else {
            return Explanation::new(device, "CONFIG_DATA", a, "no enabled CONFIG_ADDRESS latched")
                .with_state("CONFIG_ADDRESS not written, or with bit 31 clear");
        };
        let offset = (addr & 0xfc) + (a.at as u32 - 0xcfc);
        let reg = register(offset);
        let v = a.value as u32;
        let all_ones = a.value == (1u64 << (8 * a.size as u32)) - 1;
        let what = match offset {
            0x00 if !a.write && all_ones => format!("no device at {}", bdf(addr)),
            0x00 if a.size >= 4 => format!("{}: vendor {:#06x}, device {:#06x}", bdf(addr), v & 0xffff, v >> 16),
            0x00..=0x03 => format!("{}: {reg} {v:#x}", bdf(addr)),
            0x04 => {
                let bits = [
                    (0, "I/O space"),
                    (1, "memory space"),
                    (2, "bus master"),
                    (6, "parity errors"),
                    (8, "SERR#"),
                    (10, "INTx disabled"),
                ];
                format!("{}: {}", bdf(addr), bit_names((v & 0xffff) as u64, &bits))
            }
            0x08 if a.size >= 4 => {
                let (class, sub) = (v >> 24, (v >> 16) & 0xff);
                format!(
                    "{}: revision {}, class {class:#04x}{sub:02x} ({})",
                    bdf(addr),
                    v & 0xff,
                    class_name(class, sub)
                )
            }
            0x0b => format!("{}: class {v:#04x}", bdf(addr)),
            0x0e => format!("{}: {}", bdf(addr), if v & 0x80 != 0 { "multi-function" } else { "single-function" }),
            0x10..=0x27 if a.write && v == 0xffff_ffff => format!("{}: {reg} sizing (all ones written)", bdf(addr)),
            0x10..=0x27 => {
                let kind =
                    if v & 1 != 0 { format!("I/O at {:#x}", v & !3) } else { format!("memory at {:#x}", v & !0xf) };
                format!("{}: {reg} {kind}", bdf(addr))
            }
            0x3c => format!("{}: IRQ {}", bdf(addr), v & 0xff),
            0x3d => format!(
                "{}: {}",
                bdf(addr),
                ["no interrupt pin", "INTA#", "INTB#", "INTC#", "INTD#"].get((v & 0xff) as usize).unwrap_or(&"pin ?")
            ),
            _ => bdf(addr),
        };
        Explanation::new(device, reg, a, what)
            .with_fields(vec![field("device", bdf(addr)), field("offset", format!("{offset:#04x}"))])
            .with_state(format!("CONFIG_ADDRESS {addr:#010x} latched ({} register {:#04x})", bdf(addr), addr & 0xfc))
    }
}

crate::whole_state_family!(Pci);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::tests::{inp, out};

    #[test]
    fn addresses_as_lspci_writes_them_and_registers_by_name() {
        let mut p = Pci::default();
        assert_eq!(
            p.explain(&out(0xcf8, 4, 0x8000_0800)).summary,
            "CONFIG_ADDRESS write 0x80000800: select 00:01.0 register 0x00 (VENDOR_ID)"
        );
        assert_eq!(
            p.explain(&inp(0xcfc, 4, 0x7000_8086)).summary,
            "VENDOR_ID read 0x70008086: 00:01.0: vendor 0x8086, device 0x7000"
        );
        assert_eq!(p.explain(&inp(0xcfc, 2, 0xffff)).summary, "VENDOR_ID read 0xffff: no device at 00:01.0");
        p.explain(&out(0xcf8, 4, 0x8000_0808));
        assert_eq!(
            p.explain(&inp(0xcfc, 4, 0x0601_0000)).summary,
            "REVISION_ID read 0x06010000: 00:01.0: revision 0, class 0x0601 (ISA bridge)"
        );
        p.explain(&out(0xcf8, 4, 0x8000_1810));
        assert_eq!(
            p.explain(&out(0xcfc, 4, 0xffff_ffff)).summary,
            "BAR0 write 0xffffffff: 00:03.0: BAR0 sizing (all ones written)"
        );
        p.explain(&out(0xcf8, 4, 0x8000_183c));
        assert_eq!(p.explain(&inp(0xcfd, 1, 1)).summary, "INTERRUPT_PIN read 0x01: 00:03.0: INTA#");
    }
}

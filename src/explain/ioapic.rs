//! The IOAPIC (0xfec00000: IOREGSEL selects, IOWIN reads and writes the selected register): its
//! id, version and redirection entries, low and high halves decoded; and the HPET (0xfed00000),
//! its registers by name.

use super::{Access, Explanation};
use crate::explain::lapic::delivery_mode;

pub const BASE: u64 = 0xfec0_0000;
pub const END: u64 = 0xfec0_0fff;
pub const HPET_BASE: u64 = 0xfed0_0000;
pub const HPET_END: u64 = 0xfed0_03ff;

/// The selected register.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct IoApic {
    select: Option<u32>,
}

fn register(index: u32) -> String {
    match index {
        0x00 => "IOAPICID".into(),
        0x01 => "IOAPICVER".into(),
        0x02 => "IOAPICARB".into(),
        0x10..=0x3f => format!("REDTBL{}_{}", (index - 0x10) / 2, if index % 2 == 0 { "LO" } else { "HI" }),
        _ => "RESERVED".into(),
    }
}

/// A redirection entry's low half in words.
fn redirection_low(v: u64) -> String {
    let mut parts = vec![
        format!("vector {:#04x}", v & 0xff),
        delivery_mode((v >> 8) & 7).to_string(),
        if v & (1 << 11) != 0 { "logical".into() } else { "physical".into() },
        if v & (1 << 13) != 0 { "active low".into() } else { "active high".into() },
        if v & (1 << 15) != 0 { "level".into() } else { "edge".into() },
    ];
    if v & (1 << 16) != 0 {
        parts.push("masked".into());
    }
    parts.join(", ")
}

impl IoApic {
    pub fn explain(&mut self, a: &Access) -> Explanation {
        let device = "IOAPIC";
        match a.at - BASE {
            0x00 => {
                if a.write {
                    self.select = Some(a.value as u32 & 0xff);
                }
                Explanation::new(device, "IOREGSEL", a, format!("select {}", register(a.value as u32 & 0xff)))
            }
            0x10 => match self.select {
                Some(index) => {
                    let v = a.value;
                    let what = match index {
                        0x00 => format!("IOAPIC id {}", (v >> 24) & 0xf),
                        0x01 => format!("version {:#x}, {} redirection entries", v & 0xff, ((v >> 16) & 0xff) + 1),
                        0x10..=0x3f if index % 2 == 0 => format!("IRQ {}: {}", (index - 0x10) / 2, redirection_low(v)),
                        0x10..=0x3f => format!("IRQ {}: to APIC id {}", (index - 0x10) / 2, v >> 24),
                        _ => String::new(),
                    };
                    Explanation::new(device, register(index), a, what)
                        .with_state(format!("IOREGSEL {index:#04x} latched"))
                }
                None => Explanation::new(device, "IOWIN", a, "no register selected yet"),
            },
            0x40 => Explanation::new(device, "EOI", a, format!("end of interrupt, vector {:#04x}", a.value & 0xff)),
            _ => Explanation::new(device, "", a, "not a register"),
        }
    }
}

/// An HPET register.
pub fn hpet(a: &Access) -> Explanation {
    let off = a.at - HPET_BASE;
    let (reg, what) = match off {
        0x000..=0x007 => (
            "GENERAL_CAPABILITIES",
            if a.size == 8 || off == 4 {
                format!("period {} fs", a.value >> if off == 4 { 0 } else { 32 })
            } else {
                String::new()
            },
        ),
        0x010..=0x017 => (
            "GENERAL_CONFIG",
            format!(
                "{}{}",
                if a.value & 1 != 0 { "counter on" } else { "counter off" },
                if a.value & 2 != 0 { ", legacy routing" } else { "" }
            ),
        ),
        0x020..=0x027 => ("GENERAL_INTERRUPT_STATUS", String::new()),
        0x0f0..=0x0f7 => ("MAIN_COUNTER", format!("{}", a.value)),
        0x100..=0x3ff => {
            let n = (off - 0x100) / 0x20;
            let reg = match (off - 0x100) % 0x20 {
                0x00..=0x07 => "CONFIG",
                0x08..=0x0f => "COMPARATOR",
                _ => "FSB_ROUTE",
            };
            return Explanation::new("HPET", format!("TIMER{n}_{reg}"), a, "");
        }
        _ => ("RESERVED", String::new()),
    };
    Explanation::new("HPET", reg, a, what)
}

crate::whole_state_family!(IoApic);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::tests::{inp, out};

    #[test]
    fn index_and_window_and_redirection_entries() {
        let mut io = IoApic::default();
        assert_eq!(io.explain(&out(BASE, 4, 0x12)).summary, "IOREGSEL write 0x00000012: select REDTBL1_LO");
        assert_eq!(
            io.explain(&out(BASE + 0x10, 4, 0x0001_0031)).summary,
            "REDTBL1_LO write 0x00010031: IRQ 1: vector 0x31, fixed, physical, active high, edge, masked"
        );
        io.explain(&out(BASE, 4, 0x01));
        assert_eq!(
            io.explain(&inp(BASE + 0x10, 4, 0x0017_0020)).summary,
            "IOAPICVER read 0x00170020: version 0x20, 24 redirection entries"
        );
        assert_eq!(
            hpet(&inp(HPET_BASE + 0x10, 4, 3)).summary,
            "GENERAL_CONFIG read 0x00000003: counter on, legacy routing"
        );
    }
}

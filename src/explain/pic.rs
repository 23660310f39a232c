//! The two 8259 PICs (master 0x20/0x21, slave 0xa0/0xa1) and their edge/level registers
//! (0x4d0/0x4d1): ICW1-ICW4 in their sequence (vector base, cascade, 8086 mode), OCW1 (the mask, as
//! IRQs), OCW2 (EOI, specific EOI of IRQ n, rotation), OCW3 (read IRR or ISR).

use super::{Access, Explanation, field};

/// Where a PIC is in its initialisation: the next data-port write is this ICW.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
enum Next {
    #[default]
    Ocw1,
    Icw2,
    Icw3,
    Icw4,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
struct Pic {
    next: Next,
    /// ICW1 said there is no ICW3 (a single PIC) and whether ICW4 follows.
    single: bool,
    icw4: bool,
    vector_base: u8,
    /// OCW3: a command-port read returns ISR (else IRR).
    read_isr: bool,
}

/// Both PICs.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Pics {
    pics: [Pic; 2],
}

/// The usual use of each IRQ line on a PC.
fn irq_name(irq: u8) -> &'static str {
    match irq {
        0 => "timer",
        1 => "keyboard",
        2 => "cascade",
        3 => "COM2",
        4 => "COM1",
        5 => "LPT2",
        6 => "floppy",
        7 => "LPT1",
        8 => "RTC",
        9 => "ACPI",
        12 => "PS/2 mouse",
        13 => "FPU",
        14 => "primary ATA",
        15 => "secondary ATA",
        _ => "free",
    }
}

/// The IRQs of a mask byte of PIC `first` (0 or 8), with their use.
fn irqs(mask: u8, first: u8) -> String {
    let v: Vec<String> =
        (0..8).filter(|b| mask & (1 << b) != 0).map(|b| format!("{} ({})", first + b, irq_name(first + b))).collect();
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

impl Pics {
    pub fn explain(&mut self, a: &Access) -> Explanation {
        if a.at == 0x4d0 || a.at == 0x4d1 {
            let first = if a.at == 0x4d0 { 0 } else { 8 };
            let what = format!("level-triggered IRQs: {}", irqs(a.value as u8, first));
            return Explanation::new(
                "8259 PIC edge/level control (ELCR)",
                format!("ELCR{}", a.at - 0x4d0 + 1),
                a,
                what,
            );
        }
        let slave = a.at >= 0xa0;
        let (name, first) = if slave { ("8259 PIC (slave)", 8u8) } else { ("8259 PIC (master)", 0u8) };
        let pic = &mut self.pics[usize::from(slave)];
        let v = a.value as u8;
        let command = a.at & 1 == 0;
        let e = |reg: &str, what: String| Explanation::new(name, reg, a, what);
        let out = match (command, a.write) {
            (true, true) if v & 0x10 != 0 => {
                *pic = Pic { next: Next::Icw2, single: v & 2 != 0, icw4: v & 1 != 0, ..*pic };
                let trigger = if v & 8 != 0 { "level-triggered" } else { "edge-triggered" };
                let cascade = if v & 2 != 0 { "single PIC" } else { "cascaded" };
                let icw4 = if v & 1 != 0 { ", ICW4 follows" } else { "" };
                e("ICW1", format!("initialise: {trigger}, {cascade}{icw4}"))
            }
            (true, true) if v & 0x08 != 0 => {
                if v & 2 != 0 {
                    pic.read_isr = v & 1 != 0;
                }
                let mut what = match v & 3 {
                    2 => "the next read of this port returns IRR (requested)".to_string(),
                    3 => "the next read of this port returns ISR (in service)".to_string(),
                    _ => "no register change".to_string(),
                };
                if v & 4 != 0 {
                    what.push_str(", poll");
                }
                match (v >> 5) & 3 {
                    3 => what.push_str(", special mask mode on"),
                    2 => what.push_str(", special mask mode off"),
                    _ => {}
                }
                e("OCW3", what)
            }
            (true, true) => {
                let irq = first + (v & 7);
                let what = match v >> 5 {
                    1 => "end of interrupt (non-specific EOI)".to_string(),
                    3 => format!("specific EOI of IRQ {irq} ({})", irq_name(irq)),
                    5 => "rotate on non-specific EOI".to_string(),
                    7 => format!("rotate on specific EOI of IRQ {irq}"),
                    6 => format!("lowest priority to IRQ {irq}"),
                    4 => "rotate in automatic EOI mode: on".to_string(),
                    0 => "rotate in automatic EOI mode: off".to_string(),
                    _ => "no operation".to_string(),
                };
                e("OCW2", what)
            }
            (true, false) => {
                if pic.read_isr {
                    e("ISR", format!("in service: {}", irqs(v, first)))
                } else {
                    e("IRR", format!("requested: {}", irqs(v, first)))
                }
            }
            (false, true) => match pic.next {
                Next::Icw2 => {
                    pic.vector_base = v & 0xf8;
                    pic.next = if !pic.single {
                        Next::Icw3
                    } else if pic.icw4 {
                        Next::Icw4
                    } else {
                        Next::Ocw1
                    };
                    e("ICW2", format!("IRQ {first}-{} at vectors {:#04x}-{:#04x}", first + 7, v & 0xf8, (v & 0xf8) + 7))
                }
                Next::Icw3 => {
                    pic.next = if pic.icw4 { Next::Icw4 } else { Next::Ocw1 };
                    let what = if slave {
                        format!("this PIC answers as cascade line {}", v & 7)
                    } else {
                        format!("slave PIC on IRQ line(s) {}", irqs(v, 0))
                    };
                    e("ICW3", what)
                }
                Next::Icw4 => {
                    pic.next = Next::Ocw1;
                    let mut parts = vec![if v & 1 != 0 { "8086 mode" } else { "MCS-80/85 mode" }];
                    if v & 2 != 0 {
                        parts.push("automatic EOI");
                    }
                    if v & 8 != 0 {
                        parts.push(if v & 4 != 0 { "buffered (master)" } else { "buffered (slave)" });
                    }
                    if v & 0x10 != 0 {
                        parts.push("special fully nested");
                    }
                    e("ICW4", parts.join(", "))
                }
                Next::Ocw1 => e("OCW1", format!("masked: {}", irqs(v, first))),
            },
            (false, false) => e("IMR", format!("masked: {}", irqs(v, first))),
        };
        let state = match pic.next {
            Next::Ocw1 => format!("initialised: IRQ {first} at vector {:#04x}", pic.vector_base),
            Next::Icw2 => "initialising: the next data write is ICW2".to_string(),
            Next::Icw3 => "initialising: the next data write is ICW3".to_string(),
            Next::Icw4 => "initialising: the next data write is ICW4".to_string(),
        };
        out.with_fields(vec![field("vector base", format!("{:#04x}", pic.vector_base))]).with_state(state)
    }
}

crate::whole_state_family!(Pics);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::tests::{inp, out};

    #[test]
    fn the_initialisation_words_in_their_order_then_masks_and_eois() {
        let mut p = Pics::default();
        let s = |p: &mut Pics, a| p.explain(&a).summary;
        // Linux's and SeaBIOS's sequence: ICW1 0x11, ICW2 0x20, ICW3 0x04, ICW4 0x01.
        assert_eq!(
            s(&mut p, out(0x20, 1, 0x11)),
            "ICW1 write 0x11: initialise: edge-triggered, cascaded, ICW4 follows"
        );
        assert_eq!(s(&mut p, out(0x21, 1, 0x20)), "ICW2 write 0x20: IRQ 0-7 at vectors 0x20-0x27");
        assert_eq!(s(&mut p, out(0x21, 1, 0x04)), "ICW3 write 0x04: slave PIC on IRQ line(s) 2 (cascade)");
        assert_eq!(s(&mut p, out(0x21, 1, 0x01)), "ICW4 write 0x01: 8086 mode");
        assert_eq!(
            s(&mut p, out(0x21, 1, 0xfb)),
            "OCW1 write 0xfb: masked: 0 (timer), 1 (keyboard), 3 (COM2), 4 (COM1), 5 (LPT2), 6 (floppy), 7 (LPT1)"
        );
        assert_eq!(s(&mut p, out(0x20, 1, 0x20)), "OCW2 write 0x20: end of interrupt (non-specific EOI)");
        assert_eq!(s(&mut p, out(0xa0, 1, 0x60)), "OCW2 write 0x60: specific EOI of IRQ 8 (RTC)");
        assert_eq!(
            s(&mut p, out(0x20, 1, 0x0b)),
            "OCW3 write 0x0b: the next read of this port returns ISR (in service)"
        );
        assert_eq!(s(&mut p, inp(0x20, 1, 0x01)), "ISR read 0x01: in service: 0 (timer)");
        // The slave's own sequence: its cascade identity.
        p.explain(&out(0xa0, 1, 0x11));
        assert_eq!(s(&mut p, out(0xa1, 1, 0x28)), "ICW2 write 0x28: IRQ 8-15 at vectors 0x28-0x2f");
        assert_eq!(s(&mut p, out(0xa1, 1, 0x02)), "ICW3 write 0x02: this PIC answers as cascade line 2");
    }
}

//! The PC's small fixed ports: System Control Port A (0x92), reset control (0xcf9), POST codes
//! (0x80), the debug consoles (0x402, 0xe9), isa-debug-exit (0xf4), the ISA DMA controllers
//! (0x00-0x0f, 0xc0-0xdf) and their page registers (0x81-0x8f), the parallel ports (0x378,
//! 0x278, 0x3bc).

use super::{Access, Explanation, bit_names};

/// The explanation of an access to one of these ports, `None` for any other port.
pub fn explain(a: &Access) -> Option<Explanation> {
    let v = a.value;
    let e = |device: &str, reg: &str, what: String| Some(Explanation::new(device, reg, a, what));
    match a.at {
        0x92 => e("System Control Port A", "PORT_A", bit_names(v & 0xff, &[(0, "fast reset"), (1, "A20 on")])),
        0xcf9 => {
            let what = if v & 4 != 0 {
                format!(
                    "reset the system ({})",
                    if v & 8 != 0 {
                        "full reset"
                    } else if v & 2 != 0 {
                        "hard reset"
                    } else {
                        "soft reset"
                    }
                )
            } else {
                format!("reset type {}, no reset yet", if v & 2 != 0 { "hard" } else { "soft" })
            };
            e("reset control register", "RST_CNT", what)
        }
        0x80 => e("POST diagnostic port", "POST_CODE", format!("POST code {v:#04x}")),
        0x402 | 0xe9 => {
            let who = if a.at == 0x402 { "QEMU debug console (0x402)" } else { "Bochs/QEMU debug port (0xe9)" };
            let b = v as u8;
            let c =
                if b.is_ascii_graphic() || b == b' ' { format!("'{}'", b as char) } else { format!("byte {b:#04x}") };
            e(who, "DATA", if a.write { format!("print {c}") } else { "reads 0xe9 when present".into() })
        }
        0xf4..=0xf7 => {
            let status = ((v << 1) | 1) & 0xff;
            e("isa-debug-exit", "EXIT", format!("end the run: status ({v} << 1) | 1 = {status}"))
        }
        0x00..=0x0f | 0xc0..=0xdf => Some(dma(a)),
        0x81..=0x8f => {
            let channel = match a.at {
                0x87 => "0",
                0x83 => "1",
                0x81 => "2",
                0x82 => "3",
                0x8f => "4 (refresh)",
                0x8b => "5",
                0x89 => "6",
                0x8a => "7",
                _ => "none",
            };
            e("ISA DMA page registers", "PAGE", format!("address bits 16-23 of DMA channel {channel}"))
        }
        0x378..=0x37a | 0x278..=0x27a | 0x3bc..=0x3be => {
            let (lpt, base) = match a.at & !7 {
                0x378 => ("LPT1", 0x378),
                0x278 => ("LPT2", 0x278),
                _ => ("LPT (0x3bc)", 0x3bc),
            };
            let device = format!("parallel port ({lpt})");
            let (reg, what) = match a.at - base {
                0 => ("DATA", format!("data byte {:#04x}", v as u8)),
                1 => (
                    "STATUS",
                    bit_names(
                        v & 0xff,
                        &[(3, "no error"), (4, "selected"), (5, "paper out"), (6, "acknowledge"), (7, "not busy")],
                    ),
                ),
                _ => (
                    "CONTROL",
                    bit_names(
                        v & 0xff,
                        &[
                            (0, "strobe"),
                            (1, "auto linefeed"),
                            (2, "not initialise"),
                            (3, "select"),
                            (4, "IRQ on"),
                            (5, "bidirectional"),
                        ],
                    ),
                ),
            };
            Some(Explanation::new(device, reg, a, what))
        }
        _ => None,
    }
}

/// A DMA channel's mode byte: how it transfers (demand, single, block, cascade), which way, and
/// its auto-initialise and decrement bits.
fn dma_mode(channel: u64, v: u64) -> String {
    let mode = ["demand", "single", "block", "cascade"][(v >> 6 & 3) as usize];
    if v >> 6 & 3 == 3 {
        return format!("channel {channel}: cascade mode (another controller's requests pass through)");
    }
    let transfer = ["verify", "write to memory", "read from memory", "(invalid transfer)"][(v >> 2 & 3) as usize];
    let mut s = format!("channel {channel}: {mode} mode, {transfer}");
    if v & 0x10 != 0 {
        s.push_str(", auto-initialise");
    }
    if v & 0x20 != 0 {
        s.push_str(", address decrements");
    }
    s
}

/// The 8237 DMA controllers: #1 (channels 0-3) at 0x00-0x0f, #2 (channels 4-7) at 0xc0-0xde in
/// steps of two.
fn dma(a: &Access) -> Explanation {
    let (device, first, r) = if a.at <= 0x0f {
        ("8237 DMA controller #1", 0, a.at)
    } else {
        ("8237 DMA controller #2", 4, (a.at - 0xc0) / 2)
    };
    let (reg, what) = match r {
        0..=7 => {
            let ch = first + r / 2;
            if r % 2 == 0 {
                ("ADDRESS", format!("channel {ch} address byte"))
            } else {
                ("COUNT", format!("channel {ch} count byte"))
            }
        }
        8 => {
            if a.write {
                ("COMMAND", String::new())
            } else {
                ("STATUS", String::new())
            }
        }
        9 => ("REQUEST", String::new()),
        0xa => (
            "SINGLE_MASK",
            format!("{} channel {}", if a.value & 4 != 0 { "mask" } else { "unmask" }, first + (a.value & 3)),
        ),
        0xb => ("MODE", dma_mode(first + (a.value & 3), a.value)),
        0xc => ("CLEAR_FLIP_FLOP", "the next address/count byte is the low one".into()),
        0xd => {
            if a.write {
                ("MASTER_CLEAR", "reset the controller".into())
            } else {
                ("TEMPORARY", String::new())
            }
        }
        0xe => ("CLEAR_MASK", "unmask every channel".into()),
        _ => ("MASK", format!("masked channels: {:04b}", a.value & 0xf)),
    };
    Explanation::new(device, reg, a, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::tests::out;

    #[test]
    fn the_small_fixed_ports() {
        let s = |a| explain(&a).unwrap().summary;
        assert_eq!(s(out(0xf4, 4, 0x10)), "EXIT write 0x00000010: end the run: status (16 << 1) | 1 = 33");
        assert_eq!(s(out(0x402, 1, b'h' as u64)), "DATA write 0x68: print 'h'");
        assert_eq!(s(out(0xcf9, 1, 0x06)), "RST_CNT write 0x06: reset the system (hard reset)");
        assert_eq!(s(out(0x92, 1, 0x02)), "PORT_A write 0x02: A20 on");
        assert_eq!(s(out(0x80, 1, 0x33)), "POST_CODE write 0x33: POST code 0x33");
        assert_eq!(s(out(0x0a, 1, 0x06)), "SINGLE_MASK write 0x06: mask channel 2");
        assert_eq!(s(out(0xd4, 1, 0x04)), "SINGLE_MASK write 0x04: mask channel 4");
        assert_eq!(
            s(out(0xd6, 1, 0xc0)),
            "MODE write 0xc0: channel 4: cascade mode (another controller's requests pass through)"
        );
        assert_eq!(s(out(0x0b, 1, 0x56)), "MODE write 0x56: channel 2: single mode, write to memory, auto-initialise");
        assert!(explain(&out(0x1234, 1, 0)).is_none());
    }
}

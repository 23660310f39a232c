//! 16550 UARTs at COM1-COM4 (0x3f8, 0x2f8, 0x3e8, 0x2e8): each register by name, with the divisor
//! latch (DLL/DLM) while LCR's DLAB bit is set, the divisor as a baud rate.

use super::{Access, Explanation, bit_names, field};

/// The UART clock divided by 16: the baud rate of divisor 1.
const BASE_BAUD: u64 = 115_200;

/// What one UART's registers hold, as far as the accesses showed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Uart {
    lcr: u8,
    dll: u8,
    dlm: u8,
}

/// The four COM ports' state.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Uarts {
    ports: [Uart; 4],
}

const PORTS: [(u64, &str); 4] = [(0x3f8, "COM1"), (0x2f8, "COM2"), (0x3e8, "COM3"), (0x2e8, "COM4")];

/// A character as the console shows it: printable, or its escape.
fn char_text(b: u8) -> String {
    match b {
        b'\n' => "'\\n'".into(),
        b'\r' => "'\\r'".into(),
        b'\'' => "'\\''".into(),
        b'\\' => "'\\\\'".into(),
        0x20..=0x7e => format!("'{}'", b as char),
        _ => format!("byte {b:#04x}"),
    }
}

/// LCR in words: "8N1", break, DLAB.
fn lcr_text(lcr: u8) -> String {
    let bits = 5 + (lcr & 3);
    let parity = match (lcr >> 3) & 7 {
        0 | 2 | 4 | 6 => 'N',
        1 => 'O',
        3 => 'E',
        5 => 'M',
        _ => 'S',
    };
    let stop = if lcr & 4 == 0 {
        "1"
    } else if bits == 5 {
        "1.5"
    } else {
        "2"
    };
    let mut s = format!("{bits}{parity}{stop}");
    if lcr & 0x40 != 0 {
        s.push_str(", break");
    }
    if lcr & 0x80 != 0 {
        s.push_str(", DLAB (divisor latch) on");
    }
    s
}

/// The COM port an access is to: its index, base port and name.
fn port_of(a: &Access) -> (usize, &'static (u64, &'static str)) {
    PORTS.iter().enumerate().find(|(_, (b, _))| a.at & !7 == *b).unwrap_or((0, &PORTS[0]))
}

/// An access's answer depends on its own UART's registers (LCR, the divisor).
impl super::answers::Family for Uarts {
    type State = Uart;
    fn state(&self, a: &Access) -> Uart {
        self.ports[port_of(a).0]
    }
    fn set_state(&mut self, a: &Access, state: Uart) {
        self.ports[port_of(a).0] = state;
    }
}

impl Uarts {
    pub fn explain(&mut self, a: &Access) -> Explanation {
        let (i, (base, com)) = port_of(a);
        let device = format!("16550 UART ({com})");
        let u = &mut self.ports[i];
        let dlab = u.lcr & 0x80 != 0;
        let v = a.value as u8;
        let e = |reg: &str, what: String| Explanation::new(device.clone(), reg, a, what);
        let divisor = |u: &Uart| {
            let d = u.dll as u64 | (u.dlm as u64) << 8;
            match BASE_BAUD.checked_div(d) {
                Some(baud) => format!("divisor {d}: {baud} baud"),
                None => "divisor 0 (no clock)".to_string(),
            }
        };
        let out = match (a.at - base, a.write, dlab) {
            (0, true, false) => e("THR", format!("transmit {}", char_text(v))),
            (0, false, false) => e("RBR", format!("received {}", char_text(v))),
            // Written or read back, the latch holds this byte (a driver reads what a firmware set).
            (0, _, true) => {
                u.dll = v;
                e("DLL", divisor(u))
            }
            (1, _, true) => {
                u.dlm = v;
                e("DLM", divisor(u))
            }
            (1, _, false) => {
                let bits = [(0, "received data"), (1, "THR empty"), (2, "line status"), (3, "modem status")];
                e("IER", format!("interrupts on: {}", bit_names(v as u64, &bits)))
            }
            (2, false, _) => {
                let what = if v & 1 != 0 {
                    "no interrupt pending".to_string()
                } else {
                    let id = match (v >> 1) & 7 {
                        0 => "modem status",
                        1 => "THR empty",
                        2 => "received data available",
                        3 => "line status",
                        6 => "character timeout",
                        _ => "unknown",
                    };
                    format!("interrupt pending: {id}")
                };
                let fifo = if v & 0xc0 == 0xc0 { ", FIFOs on" } else { "" };
                e("IIR", format!("{what}{fifo}"))
            }
            (2, true, _) => {
                let mut parts = vec![if v & 1 != 0 { "FIFOs on" } else { "FIFOs off" }.to_string()];
                if v & 2 != 0 {
                    parts.push("clear receive FIFO".into());
                }
                if v & 4 != 0 {
                    parts.push("clear transmit FIFO".into());
                }
                if v & 1 != 0 {
                    parts.push(format!("receive trigger {} bytes", [1, 4, 8, 14][(v >> 6) as usize]));
                }
                e("FCR", parts.join(", "))
            }
            (3, w, _) => {
                if w {
                    u.lcr = v;
                }
                e("LCR", lcr_text(v))
            }
            (4, _, _) => {
                let bits = [(0, "DTR"), (1, "RTS"), (2, "OUT1"), (3, "OUT2 (interrupts to the PIC)"), (4, "loopback")];
                e("MCR", bit_names(v as u64, &bits))
            }
            (5, _, _) => {
                let bits = [
                    (0, "data ready"),
                    (1, "overrun"),
                    (2, "parity error"),
                    (3, "framing error"),
                    (4, "break"),
                    (5, "THR empty"),
                    (6, "transmitter empty"),
                    (7, "FIFO error"),
                ];
                e("LSR", bit_names(v as u64, &bits))
            }
            (6, _, _) => {
                let bits = [
                    (0, "CTS changed"),
                    (1, "DSR changed"),
                    (2, "RI ended"),
                    (3, "DCD changed"),
                    (4, "CTS"),
                    (5, "DSR"),
                    (6, "RI"),
                    (7, "DCD"),
                ];
                e("MSR", bit_names(v as u64, &bits))
            }
            _ => e("SCR", "scratch register".into()),
        };
        let fields = vec![field("LCR", lcr_text(u.lcr))];
        out.with_fields(fields).with_state(format!("{com}: LCR {:#04x} ({}), {}", u.lcr, lcr_text(u.lcr), divisor(u)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::tests::{inp, out};

    #[test]
    fn registers_by_name_and_the_divisor_as_a_baud_rate() {
        let mut u = Uarts::default();
        assert_eq!(u.explain(&out(0x3f8, 1, b'A' as u64)).summary, "THR write 0x41: transmit 'A'");
        assert_eq!(u.explain(&inp(0x3fd, 1, 0x60)).summary, "LSR read 0x60: THR empty|transmitter empty");
        let lcr = u.explain(&out(0x3fb, 1, 0x80));
        assert_eq!((lcr.register.as_str(), lcr.device.as_str()), ("LCR", "16550 UART (COM1)"));
        // With DLAB set, offsets 0 and 1 are the divisor: 1 is 115200 baud, 12 is 9600.
        assert_eq!(u.explain(&out(0x3f8, 1, 12)).summary, "DLL write 0x0c: divisor 12: 9600 baud");
        assert_eq!(u.explain(&out(0x3f9, 1, 0)).register, "DLM");
        // Read back (memtest86+ reads what the firmware latched): the pair is kept.
        let mut v = Uarts::default();
        v.explain(&out(0x3fb, 1, 0x80));
        assert_eq!(v.explain(&inp(0x3f8, 1, 0x0c)).summary, "DLL read 0x0c: divisor 12: 9600 baud");
        assert_eq!(v.explain(&inp(0x3f9, 1, 0x00)).summary, "DLM read 0x00: divisor 12: 9600 baud");
        assert_eq!(u.explain(&out(0x3fb, 1, 0x03)).summary, "LCR write 0x03: 8N1");
        assert_eq!(u.explain(&out(0x3f9, 1, 0x01)).summary, "IER write 0x01: interrupts on: received data");
        assert_eq!(u.explain(&inp(0x3fa, 1, 0xc1)).summary, "IIR read 0xc1: no interrupt pending, FIFOs on");
        assert_eq!(
            u.explain(&out(0x3fa, 1, 0xc7)).summary,
            "FCR write 0xc7: FIFOs on, clear receive FIFO, clear transmit FIFO, receive trigger 14 bytes"
        );
        // Each COM port keeps its own state.
        assert_eq!(u.explain(&out(0x2f8, 1, 0x0a)).summary, "THR write 0x0a: transmit '\\n'");
        assert!(u.explain(&out(0x3f8, 1, 0)).state[0].contains("divisor 12: 9600 baud"));
    }
}

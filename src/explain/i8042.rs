//! The i8042 keyboard controller (0x60 data, 0x64 command/status): controller commands by name
//! (read/write the command byte, self-test, reset, A20 ...), the status bits, and what a data
//! write is — a command's parameter, or a byte for the keyboard.

use super::{Access, Explanation, bit_names};

/// The controller command whose parameter the next data write is.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Kbc {
    pending: Option<u8>,
}

fn command_name(c: u8) -> &'static str {
    match c {
        0x20 => "read the command byte",
        0x60 => "write the command byte (next data byte)",
        0xa7 => "disable the mouse port",
        0xa8 => "enable the mouse port",
        0xa9 => "test the mouse port",
        0xaa => "controller self-test (answers 0x55)",
        0xab => "test the keyboard port",
        0xad => "disable the keyboard",
        0xae => "enable the keyboard",
        0xc0 => "read the input port",
        0xd0 => "read the output port",
        0xd1 => "write the output port (next data byte; bit 1 is A20)",
        0xd2 => "write the keyboard output buffer",
        0xd3 => "write the mouse output buffer",
        0xd4 => "send the next data byte to the mouse",
        0xdd => "disable A20",
        0xdf => "enable A20",
        0xfe => "pulse the reset line: reset the CPU",
        0xf0..=0xff => "pulse output lines",
        _ => "unknown command",
    }
}

fn keyboard_command(c: u8) -> &'static str {
    match c {
        0xed => "keyboard: set the LEDs (next byte)",
        0xee => "keyboard: echo",
        0xf0 => "keyboard: get or set the scan code set",
        0xf2 => "keyboard: identify",
        0xf3 => "keyboard: set the typematic rate",
        0xf4 => "keyboard: enable scanning",
        0xf5 => "keyboard: disable scanning",
        0xf6 => "keyboard: set defaults",
        0xff => "keyboard: reset and self-test",
        _ => "a byte for the keyboard",
    }
}

impl Kbc {
    pub fn explain(&mut self, a: &Access) -> Explanation {
        let device = "i8042 keyboard controller";
        let v = a.value as u8;
        match (a.at, a.write) {
            (0x64, true) => {
                self.pending = matches!(v, 0x60 | 0xd1 | 0xd2 | 0xd3 | 0xd4).then_some(v);
                Explanation::new(device, "COMMAND", a, command_name(v))
            }
            (0x64, false) => {
                let bits = [
                    (0, "output buffer full"),
                    (1, "input buffer full"),
                    (2, "system flag"),
                    (3, "last write was a command"),
                    (4, "keyboard not inhibited"),
                    (5, "mouse data"),
                    (6, "timeout"),
                    (7, "parity error"),
                ];
                Explanation::new(device, "STATUS", a, bit_names(v as u64, &bits))
            }
            (_, true) => {
                let what = match self.pending.take() {
                    Some(0x60) => format!(
                        "command byte: {}",
                        bit_names(
                            v as u64,
                            &[
                                (0, "keyboard interrupt"),
                                (1, "mouse interrupt"),
                                (2, "system flag"),
                                (4, "keyboard disabled"),
                                (5, "mouse disabled"),
                                (6, "scan code translation"),
                            ]
                        )
                    ),
                    Some(0xd1) => format!(
                        "output port: A20 {}, {}",
                        if v & 2 != 0 { "on" } else { "off" },
                        if v & 1 != 0 { "running" } else { "reset asserted" }
                    ),
                    Some(c) => format!("parameter of command {c:#04x}"),
                    None => keyboard_command(v).to_string(),
                };
                Explanation::new(device, "DATA", a, what)
            }
            (_, false) => Explanation::new(device, "DATA", a, "output buffer byte"),
        }
    }
}

crate::whole_state_family!(Kbc);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::tests::{inp, out};

    #[test]
    fn commands_status_and_parameters() {
        let mut k = Kbc::default();
        assert_eq!(k.explain(&out(0x64, 1, 0xfe)).summary, "COMMAND write 0xfe: pulse the reset line: reset the CPU");
        assert_eq!(
            k.explain(&inp(0x64, 1, 0x1c)).summary,
            "STATUS read 0x1c: system flag|last write was a command|keyboard not inhibited"
        );
        k.explain(&out(0x64, 1, 0x60));
        assert_eq!(
            k.explain(&out(0x60, 1, 0x47)).summary,
            "DATA write 0x47: command byte: keyboard interrupt|mouse interrupt|system flag|scan code translation"
        );
        assert_eq!(k.explain(&out(0x60, 1, 0xff)).summary, "DATA write 0xff: keyboard: reset and self-test");
    }
}

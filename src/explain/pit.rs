//! The 8254 PIT (0x40-0x43): control words (channel, access mode, operating mode, BCD), each
//! channel's counter bytes in the order the access mode wants them, the resulting frequency; and
//! port 0x61 (NMI status and control: timer 2's gate, the speaker, the NMI sources).

use super::{Access, Explanation, bit_names, field};

/// The PIT's input clock, in Hz.
pub const PIT_HZ: f64 = 1_193_182.0;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
struct Channel {
    /// 1 low byte, 2 high byte, 3 low then high.
    access: u8,
    mode: u8,
    /// Low-then-high: the low byte has come, the high one is next.
    have_low: bool,
    low: u8,
    reload: Option<u32>,
}

/// The three channels.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Pit {
    channels: [Channel; 3],
}

fn mode_name(mode: u8) -> &'static str {
    match mode {
        0 => "mode 0 (interrupt on terminal count)",
        1 => "mode 1 (hardware one-shot)",
        2 | 6 => "mode 2 (rate generator)",
        3 | 7 => "mode 3 (square wave)",
        4 => "mode 4 (software strobe)",
        _ => "mode 5 (hardware strobe)",
    }
}

fn access_name(access: u8) -> &'static str {
    match access {
        0 => "counter latch",
        1 => "low byte only",
        2 => "high byte only",
        _ => "low byte, then high byte",
    }
}

/// A reload value's rate: 0 counts as 65536.
fn frequency(reload: u32) -> String {
    let n = if reload == 0 { 65_536 } else { reload };
    format!("reload {n}: {:.0} Hz", PIT_HZ / n as f64)
}

impl Pit {
    pub fn explain(&mut self, a: &Access) -> Explanation {
        let v = a.value as u8;
        if a.at == 0x61 {
            let bits = [
                (0, "timer 2 gate"),
                (1, "speaker on"),
                (2, "parity check off"),
                (3, "channel check off"),
                (4, "refresh toggle"),
                (5, "timer 2 output"),
                (6, "channel check (IOCHK)"),
                (7, "parity error (SERR)"),
            ];
            return Explanation::new("NMI status and control (port 0x61)", "NMI_SC", a, bit_names(v as u64, &bits));
        }
        let device = "8254 PIT";
        if a.at == 0x43 {
            if !a.write {
                return Explanation::new(device, "CONTROL", a, "the control word port is write-only");
            }
            let channel = v >> 6;
            if channel == 3 {
                let which: Vec<String> = (0..3).filter(|c| v & (2 << c) != 0).map(|c| c.to_string()).collect();
                let mut what = format!("read-back of channel(s) {}", which.join(", "));
                if v & 0x20 == 0 {
                    what.push_str(": latch count");
                }
                if v & 0x10 == 0 {
                    what.push_str(": latch status");
                }
                return Explanation::new(device, "CONTROL", a, what);
            }
            let (access, mode) = ((v >> 4) & 3, (v >> 1) & 7);
            let c = &mut self.channels[channel as usize];
            if access == 0 {
                return Explanation::new(device, "CONTROL", a, format!("latch channel {channel}'s count"));
            }
            *c = Channel { access, mode, have_low: false, low: 0, reload: c.reload };
            let bcd = if v & 1 != 0 { ", BCD" } else { ", binary" };
            let what = format!("channel {channel}: {}, {}{bcd}", access_name(access), mode_name(mode));
            return Explanation::new(device, "CONTROL", a, what).with_fields(vec![
                field("channel", channel.to_string()),
                field("access", access_name(access)),
                field("mode", mode_name(mode)),
            ]);
        }
        let n = (a.at - 0x40) as usize;
        let c = &mut self.channels[n];
        let use_ = ["channel 0: the system timer (IRQ 0)", "channel 1: DRAM refresh", "channel 2: the speaker"][n];
        let register = format!("COUNTER{n}");
        if !a.write {
            return Explanation::new(device, register, a, format!("count byte read ({use_})"));
        }
        let what = match c.access {
            1 => {
                c.reload = Some(v as u32);
                frequency(v as u32)
            }
            2 => {
                c.reload = Some((v as u32) << 8);
                frequency((v as u32) << 8)
            }
            _ if !c.have_low => {
                (c.have_low, c.low) = (true, v);
                "low byte of the reload value; the high byte follows".to_string()
            }
            _ => {
                c.have_low = false;
                let reload = c.low as u32 | (v as u32) << 8;
                c.reload = Some(reload);
                format!("high byte: {}", frequency(reload))
            }
        };
        let state = match c.reload {
            Some(r) => format!("{use_}, {}, {}", mode_name(c.mode), frequency(r)),
            None => format!("{use_}, {}", mode_name(c.mode)),
        };
        Explanation::new(device, register, a, what).with_state(state)
    }
}

crate::whole_state_family!(Pit);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::tests::{inp, out};

    #[test]
    fn a_mode_2_divisor_of_1193_is_1000_hz() {
        let mut p = Pit::default();
        let s = |p: &mut Pit, a| p.explain(&a).summary;
        assert_eq!(
            s(&mut p, out(0x43, 1, 0x34)),
            "CONTROL write 0x34: channel 0: low byte, then high byte, mode 2 (rate generator), binary"
        );
        assert_eq!(
            s(&mut p, out(0x40, 1, 1193 & 0xff)),
            "COUNTER0 write 0xa9: low byte of the reload value; the high byte follows"
        );
        assert_eq!(s(&mut p, out(0x40, 1, 1193 >> 8)), "COUNTER0 write 0x04: high byte: reload 1193: 1000 Hz");
        // Channel 2 for the speaker, square wave at 1 kHz, and its gate in port 0x61.
        p.explain(&out(0x43, 1, 0xb6));
        p.explain(&out(0x42, 1, 0xa9));
        assert!(p.explain(&out(0x42, 1, 0x04)).state[0].starts_with("channel 2: the speaker, mode 3 (square wave)"));
        assert_eq!(s(&mut p, inp(0x61, 1, 0x21)), "NMI_SC read 0x21: timer 2 gate|timer 2 output");
        assert_eq!(
            s(&mut p, out(0x43, 1, 0xc2)),
            "CONTROL write 0xc2: read-back of channel(s) 0: latch count: latch status"
        );
    }
}

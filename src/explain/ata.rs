//! ATA (IDE) task files: primary 0x1f0-0x1f7 with control at 0x3f6, secondary 0x170-0x177 with
//! 0x376: each register by name, status bits, commands by name, the drive selected.

use super::{Access, Explanation, bit_names};

/// Which drive each channel has selected.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Ata {
    drive: [u8; 2],
}

fn command_name(c: u8) -> &'static str {
    match c {
        0x08 => "DEVICE RESET",
        0x20 => "READ SECTORS",
        0x24 => "READ SECTORS EXT",
        0x25 => "READ DMA EXT",
        0x30 => "WRITE SECTORS",
        0x34 => "WRITE SECTORS EXT",
        0x35 => "WRITE DMA EXT",
        0x90 => "EXECUTE DEVICE DIAGNOSTIC",
        0x91 => "INITIALIZE DEVICE PARAMETERS",
        0xa0 => "PACKET (ATAPI)",
        0xa1 => "IDENTIFY PACKET DEVICE",
        0xc6 => "SET MULTIPLE MODE",
        0xc8 => "READ DMA",
        0xca => "WRITE DMA",
        0xe0 => "STANDBY IMMEDIATE",
        0xe1 => "IDLE IMMEDIATE",
        0xe7 => "FLUSH CACHE",
        0xea => "FLUSH CACHE EXT",
        0xec => "IDENTIFY DEVICE",
        0xef => "SET FEATURES",
        _ => "unknown command",
    }
}

fn status(v: u8) -> String {
    if v == 0xff {
        return "all ones: nothing drives the bus (no controller or drive)".into();
    }
    let bits = [(0, "ERR"), (3, "DRQ"), (4, "DSC"), (5, "DF"), (6, "DRDY"), (7, "BSY")];
    bit_names(v as u64, &bits)
}

impl Ata {
    pub fn explain(&mut self, a: &Access) -> Explanation {
        let secondary = matches!(a.at, 0x170..=0x177 | 0x376);
        let device = if secondary { "ATA secondary channel" } else { "ATA primary channel" };
        let ch = usize::from(secondary);
        let v = a.value as u8;
        if a.at == 0x3f6 || a.at == 0x376 {
            return if a.write {
                let bits = [(1, "interrupts off (nIEN)"), (2, "software reset (SRST)")];
                Explanation::new(device, "DEVICE_CONTROL", a, bit_names(v as u64, &bits))
            } else {
                Explanation::new(device, "ALT_STATUS", a, status(v))
            };
        }
        let reg_off = a.at & 7;
        let (reg, what) = match (reg_off, a.write) {
            (0, _) => ("DATA", "a data word".to_string()),
            (1, false) => ("ERROR", format!("{v:#04x}")),
            (1, true) => ("FEATURES", format!("{v:#04x}")),
            (2, _) => ("SECTOR_COUNT", format!("{v} sectors")),
            (3, _) => ("LBA_LOW", format!("LBA bits 0-7 (or sector number): {v}")),
            (4, _) => ("LBA_MID", format!("LBA bits 8-15 (or cylinder low): {v}")),
            (5, _) => ("LBA_HIGH", format!("LBA bits 16-23 (or cylinder high): {v}")),
            (6, w) => {
                if w {
                    self.drive[ch] = (v >> 4) & 1;
                }
                let mode = if v & 0x40 != 0 { "LBA" } else { "CHS" };
                (
                    "DEVICE",
                    format!(
                        "drive {} ({}), {mode}, head/LBA bits 24-27: {}",
                        (v >> 4) & 1,
                        if v & 0x10 != 0 { "slave" } else { "master" },
                        v & 0xf
                    ),
                )
            }
            (_, true) => ("COMMAND", command_name(v).to_string()),
            (_, false) => ("STATUS", status(v)),
        };
        Explanation::new(device, reg, a, what).with_state(format!("drive {} selected", self.drive[ch]))
    }
}

crate::whole_state_family!(Ata);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::tests::{inp, out};

    #[test]
    fn task_file_registers_commands_and_an_empty_bus() {
        let mut t = Ata::default();
        assert_eq!(
            t.explain(&out(0x1f6, 1, 0xa0)).summary,
            "DEVICE write 0xa0: drive 0 (master), CHS, head/LBA bits 24-27: 0"
        );
        assert_eq!(t.explain(&out(0x1f7, 1, 0xec)).summary, "COMMAND write 0xec: IDENTIFY DEVICE");
        assert_eq!(
            t.explain(&inp(0x1f7, 1, 0xff)).summary,
            "STATUS read 0xff: all ones: nothing drives the bus (no controller or drive)"
        );
        assert_eq!(t.explain(&inp(0x177, 1, 0x50)).summary, "STATUS read 0x50: DSC|DRDY");
        assert_eq!(t.explain(&out(0x3f6, 1, 0x04)).device, "ATA primary channel");
    }
}

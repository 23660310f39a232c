//! The CMOS RTC and NVRAM (0x70 index, 0x71 data): the index with its NMI-disable bit; each
//! register by name (the clock, the alarms, status A-D and their fields, shutdown status, memory
//! sizes, QEMU's extra bytes); a data access names the register the last index selected.

use super::{Access, Explanation, bit_names, field};

/// The index register's value, as far as the accesses showed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Cmos {
    index: Option<u8>,
}

/// A register's name and what it holds.
pub fn register(index: u8) -> (&'static str, &'static str) {
    match index {
        0x00 => ("SECONDS", "seconds"),
        0x01 => ("SECONDS_ALARM", "seconds alarm"),
        0x02 => ("MINUTES", "minutes"),
        0x03 => ("MINUTES_ALARM", "minutes alarm"),
        0x04 => ("HOURS", "hours"),
        0x05 => ("HOURS_ALARM", "hours alarm"),
        0x06 => ("DAY_OF_WEEK", "day of the week"),
        0x07 => ("DAY_OF_MONTH", "day of the month"),
        0x08 => ("MONTH", "month"),
        0x09 => ("YEAR", "year"),
        0x0a => ("STATUS_A", "status A"),
        0x0b => ("STATUS_B", "status B"),
        0x0c => ("STATUS_C", "status C (interrupt flags)"),
        0x0d => ("STATUS_D", "status D"),
        0x0e => ("DIAGNOSTIC", "diagnostic status"),
        0x0f => ("SHUTDOWN", "shutdown status"),
        0x10 => ("FLOPPY_TYPES", "floppy drive types"),
        0x12 => ("DISK_TYPES", "hard disk types"),
        0x14 => ("EQUIPMENT", "equipment byte"),
        0x15 => ("BASE_MEM_LO", "base memory in KiB, low byte"),
        0x16 => ("BASE_MEM_HI", "base memory in KiB, high byte"),
        0x17 => ("EXT_MEM_LO", "extended memory in KiB, low byte"),
        0x18 => ("EXT_MEM_HI", "extended memory in KiB, high byte"),
        0x2e => ("CHECKSUM_HI", "checksum of 0x10-0x2d, high byte"),
        0x2f => ("CHECKSUM_LO", "checksum of 0x10-0x2d, low byte"),
        0x30 => ("EXT_MEM2_LO", "memory above 1 MiB in KiB, low byte"),
        0x31 => ("EXT_MEM2_HI", "memory above 1 MiB in KiB, high byte"),
        0x32 => ("CENTURY", "century"),
        0x34 => ("MEM_ABOVE_16M_LO", "QEMU: memory above 16 MiB in 64 KiB, low byte"),
        0x35 => ("MEM_ABOVE_16M_HI", "QEMU: memory above 16 MiB in 64 KiB, high byte"),
        0x38 => ("BOOT_FLAGS", "QEMU: boot flags and the third boot device"),
        0x3d => ("BOOT_DEVICES", "QEMU: first and second boot devices"),
        0x5b => ("MEM_ABOVE_4G_LO", "QEMU: memory above 4 GiB in 64 KiB, low byte"),
        0x5c => ("MEM_ABOVE_4G_MID", "QEMU: memory above 4 GiB in 64 KiB, middle byte"),
        0x5d => ("MEM_ABOVE_4G_HI", "QEMU: memory above 4 GiB in 64 KiB, high byte"),
        0x5f => ("CPUS", "QEMU: the number of CPUs less one"),
        _ => ("NVRAM", "battery-backed RAM"),
    }
}

/// A clock register's value: BCD as the RTC keeps it by default.
fn clock_value(v: u8) -> String {
    if v >> 4 <= 9 && v & 0xf <= 9 { format!("{:x} (BCD) or {v} (binary)", v) } else { format!("{v} (binary)") }
}

/// The value of register `index` in words.
fn value_text(index: u8, v: u8) -> String {
    match index {
        0x00..=0x09 | 0x32 => clock_value(v),
        0x0a => {
            let rate = v & 0xf;
            let hz = if rate == 0 {
                "periodic interrupt off".to_string()
            } else {
                format!("periodic rate {} Hz", 65536 >> rate)
            };
            let uip = if v & 0x80 != 0 { "update in progress, " } else { "" };
            format!("{uip}divider {}, {hz}", (v >> 4) & 7)
        }
        0x0b => bit_names(
            v as u64,
            &[
                (7, "SET (updates stopped)"),
                (6, "periodic interrupt"),
                (5, "alarm interrupt"),
                (4, "update-ended interrupt"),
                (3, "square wave"),
                (2, "binary (not BCD)"),
                (1, "24-hour"),
                (0, "daylight saving"),
            ],
        ),
        0x0c => bit_names(v as u64, &[(7, "IRQF"), (6, "periodic"), (5, "alarm"), (4, "update ended")]),
        0x0d => (if v & 0x80 != 0 { "RAM and time valid" } else { "battery dead: RAM and time not valid" }).into(),
        0x0f => match v {
            0x00 => "0: normal power-on or soft reset".into(),
            0x05 => "5: flush the keyboard, jump via 40:67".into(),
            0x0a => "0x0a: jump via 40:67 without EOI".into(),
            _ => format!("{v:#04x}"),
        },
        0x5f => format!("{} CPUs", v as u32 + 1),
        _ => String::new(),
    }
}

impl Cmos {
    pub fn explain(&mut self, a: &Access) -> Explanation {
        let device = "CMOS RTC/NVRAM";
        let v = a.value as u8;
        if a.at == 0x70 {
            if !a.write {
                return Explanation::new(device, "INDEX", a, "the index port reads back nothing useful");
            }
            let index = v & 0x7f;
            self.index = Some(index);
            let (name, what) = register(index);
            let nmi = if v & 0x80 != 0 { "; NMI disabled" } else { "" };
            return Explanation::new(device, "INDEX", a, format!("select {name} ({index:#04x}: {what}){nmi}"))
                .with_fields(vec![
                    field("index", format!("{index:#04x}")),
                    field("NMI disabled", (v & 0x80 != 0).to_string()),
                ]);
        }
        match self.index {
            Some(index) => {
                let (name, what) = register(index);
                let value = value_text(index, v);
                let text = if value.is_empty() { what.to_string() } else { format!("{what}: {value}") };
                Explanation::new(device, name, a, text).with_state(format!("index {index:#04x} latched ({name})"))
            }
            None => Explanation::new(device, "DATA", a, "")
                .with_state("no index written yet: the register is the one the index held before"),
        }
    }
}

crate::whole_state_family!(Cmos);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::tests::{inp, out};

    #[test]
    fn the_data_port_names_the_register_the_index_selected() {
        let mut c = Cmos::default();
        assert_eq!(
            c.explain(&out(0x70, 1, 0x8b)).summary,
            "INDEX write 0x8b: select STATUS_B (0x0b: status B); NMI disabled"
        );
        assert_eq!(c.explain(&inp(0x71, 1, 0x02)).summary, "STATUS_B read 0x02: status B: 24-hour");
        c.explain(&out(0x70, 1, 0x00));
        assert_eq!(c.explain(&inp(0x71, 1, 0x59)).summary, "SECONDS read 0x59: seconds: 59 (BCD) or 89 (binary)");
        c.explain(&out(0x70, 1, 0x5f));
        assert_eq!(c.explain(&inp(0x71, 1, 1)).summary, "CPUS read 0x01: QEMU: the number of CPUs less one: 2 CPUs");
        c.explain(&out(0x70, 1, 0x0a));
        assert_eq!(
            c.explain(&inp(0x71, 1, 0x26)).summary,
            "STATUS_A read 0x26: status A: divider 2, periodic rate 1024 Hz"
        );
    }
}

//! The PC's CMOS RTC and NVRAM (MC146818) on ports 0x70 (index) and 0x71 (data): the host's time of
//! day in BCD, and the NVRAM bytes firmware reads to learn the machine — base and extended memory,
//! memory above 16 MiB and 4 GiB, and (as QEMU's bochs BIOS convention has it) the vCPU count at
//! 0x5f. SeaBIOS waits at its SMP scan for as many CPUs as 0x5f says; all-ones there meant 256.
//! Alarms, periodic interrupts and setting the clock are not modelled: writes to the clock are
//! dropped, other NVRAM writes are kept.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::vmm::bus::{BusDevice, StateError, VmRequest};

pub const PORT: u16 = 0x70;
pub const SIZE: u64 = 2;

/// Status register A: 32.768 kHz time base, 1024 Hz rate; update-in-progress never set.
const STATUS_A: u8 = 0x26;
/// Status register B: 24-hour clock, BCD.
const STATUS_B: u8 = 0x02;
/// Status register D: the battery is good (the clock and RAM are valid).
const STATUS_D: u8 = 0x80;

/// The CMOS: an index register and 128 bytes.
#[derive(Debug)]
pub struct Cmos {
    index: u8,
    nvram: [u8; 128],
}

/// The CMOS as a snapshot keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CmosState {
    index: u8,
    nvram: Vec<u8>,
}

impl Cmos {
    /// The CMOS of a machine with `below_4g` and `above_4g` bytes of RAM and `cpus` vCPUs.
    pub fn new(below_4g: u64, above_4g: u64, cpus: u8) -> Cmos {
        let mut nvram = [0u8; 128];
        let kib = |bytes: u64| (bytes >> 10).min(0xffff) as u16;
        let chunks_64k = |bytes: u64| bytes >> 16;
        nvram[0x0a] = STATUS_A;
        nvram[0x0b] = STATUS_B;
        nvram[0x0d] = STATUS_D;
        nvram[0x15..0x17].copy_from_slice(&640u16.to_le_bytes());
        // Memory from 1 MiB to 64 MiB in KiB, in both places firmware looks.
        let extended = kib(below_4g.saturating_sub(1 << 20).min(63 << 20));
        nvram[0x17..0x19].copy_from_slice(&extended.to_le_bytes());
        nvram[0x30..0x32].copy_from_slice(&extended.to_le_bytes());
        // Memory from 16 MiB to the hole, and above 4 GiB, in 64 KiB units.
        let above_16m = chunks_64k(below_4g.saturating_sub(16 << 20)).min(0xffff) as u16;
        nvram[0x34..0x36].copy_from_slice(&above_16m.to_le_bytes());
        nvram[0x5b..0x5e].copy_from_slice(&chunks_64k(above_4g).min(0xff_ffff).to_le_bytes()[..3]);
        nvram[0x5f] = cpus.saturating_sub(1);
        Cmos { index: 0, nvram }
    }
}

/// A byte in BCD (0-99).
fn bcd(v: u64) -> u8 {
    (((v / 10 % 10) << 4) | (v % 10)) as u8
}

/// The clock registers (0x00 seconds … 0x09 year, 0x32 century) for `unix` seconds, UTC.
fn clock(unix: u64, reg: u8) -> Option<u8> {
    let days = unix / 86400;
    let secs = unix % 86400;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let year = (yoe + era * 400 + (month <= 2) as i64) as u64;
    Some(bcd(match reg {
        0x00 => secs % 60,
        0x02 => secs / 60 % 60,
        0x04 => secs / 3600,
        0x06 => (days + 4) % 7 + 1, // 1970-01-01 was a Thursday; Sunday is 1
        0x07 => day,
        0x08 => month,
        0x09 => year % 100,
        0x32 => year / 100,
        _ => return None,
    }))
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            0 => self.index,
            _ => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                clock(now, self.index).unwrap_or(self.nvram[self.index as usize])
            }
        };
        data.fill(value);
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(CmosState { index: self.index, nvram: self.nvram.to_vec() }).unwrap_or_default()
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), StateError> {
        let s = CmosState::deserialize(state)?;
        if s.index >= 0x80 {
            return Err(StateError::OutOfRange { what: "index", value: s.index as u64, allowed: "0-127" });
        }
        let len = s.nvram.len() as u64;
        self.nvram = s.nvram.try_into().map_err(|_| StateError::OutOfRange {
            what: "NVRAM bytes",
            value: len,
            allowed: "128",
        })?;
        self.index = s.index;
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        let &value = data.first()?;
        match offset {
            // Bit 7 of the index port masks NMIs on a PC; it is not part of the index.
            0 => self.index = value & 0x7f,
            _ if clock(0, self.index).is_some() => {}
            _ => self.nvram[self.index as usize] = value,
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(cmos: &mut Cmos, index: u8) -> u8 {
        cmos.write(0, &[index | 0x80]);
        let mut b = [0];
        cmos.read(1, &mut b);
        b[0]
    }

    #[test]
    fn firmware_finds_the_memory_and_the_cpus() {
        let mut cmos = Cmos::new(3 << 30, 1 << 30, 2);
        assert_eq!(read(&mut cmos, 0x5f), 1, "two vCPUs: SeaBIOS waits for one AP");
        let word = |c: &mut Cmos, i| u16::from_le_bytes([read(c, i), read(c, i + 1)]);
        assert_eq!(word(&mut cmos, 0x15), 640);
        assert_eq!(word(&mut cmos, 0x30), 63 * 1024, "1-64 MiB, in KiB, capped");
        assert_eq!(word(&mut cmos, 0x34), (((3u64 << 30) - (16 << 20)) >> 16) as u16);
        assert_eq!([read(&mut cmos, 0x5b), read(&mut cmos, 0x5c), read(&mut cmos, 0x5d)], [0, 0x40, 0]);
        assert_eq!(read(&mut cmos, 0x0d), STATUS_D);
        assert_eq!(read(&mut cmos, 0x0a) & 0x80, 0, "no update in progress, ever");
        let mut small = Cmos::new(32 << 20, 0, 1);
        assert_eq!(read(&mut small, 0x5f), 0);
        assert_eq!(word(&mut small, 0x30), 31 * 1024);
        assert_eq!(word(&mut small, 0x34), 0x100);
    }

    #[test]
    fn the_clock_is_the_hosts_in_bcd() {
        // 2026-12-02 01:09:42 UTC, a Wednesday.
        let t = 1_796_173_782;
        let regs: Vec<u8> =
            [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32].iter().map(|&r| clock(t, r).unwrap()).collect();
        assert_eq!(regs, [0x42, 0x09, 0x01, 0x04, 0x02, 0x12, 0x26, 0x20]);
        assert_eq!(clock(0, 0x06), Some(5), "1970-01-01 was a Thursday");
        assert_eq!(clock(951_782_400, 0x07), Some(0x29), "2000-02-29 exists");
        assert_eq!(clock(t, 0x0b), None, "status B is NVRAM, not clock");
    }

    #[test]
    fn nvram_keeps_writes_and_the_clock_ignores_them() {
        let mut cmos = Cmos::new(64 << 20, 0, 1);
        cmos.write(0, &[0x0f]);
        cmos.write(1, &[0x0a]);
        assert_eq!(read(&mut cmos, 0x0f), 0x0a, "the shutdown status byte is kept");
        cmos.write(0, &[0x09]);
        cmos.write(1, &[0x99]);
        assert_ne!(read(&mut cmos, 0x09), 0x99, "the year is the host's");
        let mut all = [0u8; 2];
        cmos.read(0, &mut all);
        assert_eq!(all, [0x09; 2], "the index port reads back");
    }
}

//! How often kvmscope takes checkpoints of its own (`--checkpoint-every`): every so many guest
//! exits, or every so long of the guest running. Once time travel is on (a first checkpoint:
//! gdb's attach, the TUI's start), the vCPU takes them at its exits while the guest runs, and the
//! controller at the stops a user holds; going back then re-executes at most one interval.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The interval between kvmscope's own checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    /// Only the checkpoints the user takes (`--checkpoint-every 0`).
    Off,
    /// Every so many guest exits.
    Exits(u64),
    /// Every so long of the guest running (paused time does not count).
    Running(Duration),
}

/// By default: going back re-executes at most about 50 ms of the guest's running.
pub const DEFAULT: Every = Every::Running(Duration::from_millis(50));

impl Default for Every {
    fn default() -> Self {
        DEFAULT
    }
}

impl Every {
    /// Whether a checkpoint is due: `exits` since the newest, after `ran` of the guest running.
    pub fn due(&self, exits: u64, ran: Duration) -> bool {
        match *self {
            Every::Off => false,
            Every::Exits(n) => exits >= n,
            Every::Running(d) => ran >= d,
        }
    }
}

impl FromStr for Every {
    type Err = String;

    /// `0` (off), a count of exits (`10000`), or a time of the guest running (`50ms`, `1s`).
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || format!("`{text}`: give a number of exits (10000), a time (50ms, 2s), or 0 for none");
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let n: u64 = number.parse().map_err(|_| bad())?;
        let time = match unit.trim() {
            "" if n == 0 => return Ok(Every::Off),
            "" => return Ok(Every::Exits(n)),
            "us" => Duration::from_micros(n),
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            _ => return Err(bad()),
        };
        if time.is_zero() { Ok(Every::Off) } else { Ok(Every::Running(time)) }
    }
}

impl fmt::Display for Every {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Every::Off => write!(f, "0"),
            Every::Exits(n) => write!(f, "{n}"),
            Every::Running(d) if d.subsec_nanos() == 0 => write!(f, "{}s", d.as_secs()),
            Every::Running(d) if d.subsec_nanos() % 1_000_000 == 0 => write!(f, "{}ms", d.as_millis()),
            Every::Running(d) => write!(f, "{}us", d.as_micros()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_times_and_off_read_back_as_written() {
        for text in ["0", "10000", "50ms", "2s", "250us"] {
            assert_eq!(text.parse::<Every>().unwrap().to_string(), text);
        }
        assert_eq!("0ms".parse::<Every>(), Ok(Every::Off));
        assert_eq!("1000ms".parse::<Every>().unwrap().to_string(), "1s");
        for bad in ["", "ms", "5 minutes", "-3", "1.5s", "9999999999999999999999"] {
            assert!(bad.parse::<Every>().is_err(), "{bad}");
        }
    }

    #[test]
    fn due_by_its_own_measure() {
        let ms = Duration::from_millis;
        assert!(!Every::Off.due(u64::MAX, ms(u64::MAX)));
        assert!(Every::Exits(10).due(10, ms(0)) && !Every::Exits(10).due(9, ms(1000)));
        assert!(Every::Running(ms(50)).due(0, ms(50)) && !Every::Running(ms(50)).due(1 << 40, ms(49)));
    }
}

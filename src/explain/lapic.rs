//! The local APIC's page (0xfee00000): every register by name; the ICR decoded (vector, delivery
//! mode INIT/STARTUP/fixed/NMI/ExtINT ..., destination mode, level, trigger, shorthand such as
//! "all excluding self", destination); LVT entries (timer mode, mask, delivery mode, vector); the
//! spurious vector register; the timer's counts and divider.

use super::{Access, Explanation, field};

pub const BASE: u64 = 0xfee0_0000;
pub const END: u64 = 0xfee0_0fff;

/// A register by its offset in the page.
pub fn register(offset: u64) -> &'static str {
    match offset & 0xff0 {
        0x020 => "ID",
        0x030 => "VERSION",
        0x080 => "TPR",
        0x090 => "APR",
        0x0a0 => "PPR",
        0x0b0 => "EOI",
        0x0c0 => "RRD",
        0x0d0 => "LDR",
        0x0e0 => "DFR",
        0x0f0 => "SVR",
        0x100..=0x170 => "ISR",
        0x180..=0x1f0 => "TMR",
        0x200..=0x270 => "IRR",
        0x280 => "ESR",
        0x2f0 => "LVT_CMCI",
        0x300 => "ICR_LO",
        0x310 => "ICR_HI",
        0x320 => "LVT_TIMER",
        0x330 => "LVT_THERMAL",
        0x340 => "LVT_PERF",
        0x350 => "LVT_LINT0",
        0x360 => "LVT_LINT1",
        0x370 => "LVT_ERROR",
        0x380 => "TIMER_INITIAL_COUNT",
        0x390 => "TIMER_CURRENT_COUNT",
        0x3e0 => "TIMER_DIVIDE",
        _ => "RESERVED",
    }
}

/// Delivery mode bits 8-10, by name.
pub fn delivery_mode(mode: u64) -> &'static str {
    match mode & 7 {
        0 => "fixed",
        1 => "lowest priority",
        2 => "SMI",
        4 => "NMI",
        5 => "INIT",
        6 => "STARTUP",
        7 => "ExtINT",
        _ => "reserved",
    }
}

/// The ICR's low word in words.
pub fn icr_low(v: u64) -> String {
    let mode = (v >> 8) & 7;
    let shorthand = match (v >> 18) & 3 {
        0 => "the destination in ICR_HI",
        1 => "self",
        2 => "all including self",
        _ => "all excluding self",
    };
    let what = match mode {
        5 if v & (1 << 14) == 0 => "INIT de-assert".to_string(),
        5 => "INIT".to_string(),
        6 => format!("STARTUP at {:#x}", (v & 0xff) << 12),
        0 | 1 => format!("{} vector {:#04x}", delivery_mode(mode), v & 0xff),
        _ => delivery_mode(mode).to_string(),
    };
    let dest = if v & (1 << 11) != 0 { "logical" } else { "physical" };
    let trigger = if v & (1 << 15) != 0 { "level" } else { "edge" };
    format!("{what} to {shorthand} ({dest} destination, {trigger})")
}

/// An LVT entry in words.
fn lvt(name: &str, v: u64) -> String {
    let mut parts = Vec::new();
    if name == "LVT_TIMER" {
        parts.push(["one-shot", "periodic", "TSC-deadline", "reserved"][((v >> 17) & 3) as usize].to_string());
    } else if name == "LVT_LINT0" || name == "LVT_LINT1" {
        parts.push(delivery_mode((v >> 8) & 7).to_string());
        parts.push(if v & (1 << 15) != 0 { "level".into() } else { "edge".into() });
    }
    parts.push(format!("vector {:#04x}", v & 0xff));
    if v & (1 << 16) != 0 {
        parts.push("masked".into());
    }
    parts.join(", ")
}

pub fn explain(a: &Access) -> Explanation {
    let device = "local APIC";
    let reg = register(a.at - BASE);
    let v = a.value;
    let what = match reg {
        "ICR_LO" if a.write => icr_low(v),
        "ICR_HI" => format!("destination APIC id {}", v >> 24),
        "SVR" => {
            format!("spurious vector {:#04x}, APIC {}", v & 0xff, if v & 0x100 != 0 { "enabled" } else { "disabled" })
        }
        "EOI" => "end of interrupt".into(),
        "ID" => format!("APIC id {}", v >> 24),
        "VERSION" => format!("version {:#x}, {} LVT entries", v & 0xff, ((v >> 16) & 0xff) + 1),
        "TPR" => format!("task priority {}", (v >> 4) & 0xf),
        "TIMER_DIVIDE" => {
            let d = (v & 3) | ((v >> 1) & 4);
            format!("divide by {}", if d == 7 { 1 } else { 2 << d })
        }
        "TIMER_INITIAL_COUNT" | "TIMER_CURRENT_COUNT" => format!("{v} ticks"),
        r if r.starts_with("LVT") => lvt(r, v),
        _ => String::new(),
    };
    let fields = if reg == "ICR_LO" {
        vec![
            field("vector", format!("{:#04x}", v & 0xff)),
            field("delivery mode", delivery_mode((v >> 8) & 7)),
            field("destination mode", if v & (1 << 11) != 0 { "logical" } else { "physical" }),
            field("level", if v & (1 << 14) != 0 { "assert" } else { "de-assert" }),
            field("trigger", if v & (1 << 15) != 0 { "level" } else { "edge" }),
            field("shorthand", ["none", "self", "all including self", "all excluding self"][((v >> 18) & 3) as usize]),
        ]
    } else {
        Vec::new()
    };
    Explanation::new(device, reg, a, what).with_fields(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::tests::{inp, out};

    #[test]
    fn icr_lvt_svr_and_the_timer() {
        let s = |a| explain(&a).summary;
        assert_eq!(
            s(out(0xfee0_0300, 4, 0x000c_4500)),
            "ICR_LO write 0x000c4500: INIT to all excluding self (physical destination, edge)"
        );
        assert_eq!(
            s(out(0xfee0_0300, 4, 0x0000_0608)),
            "ICR_LO write 0x00000608: STARTUP at 0x8000 to the destination in ICR_HI (physical destination, edge)"
        );
        assert_eq!(s(out(0xfee0_0310, 4, 0x0100_0000)), "ICR_HI write 0x01000000: destination APIC id 1");
        assert_eq!(s(out(0xfee0_00f0, 4, 0x1ff)), "SVR write 0x000001ff: spurious vector 0xff, APIC enabled");
        assert_eq!(s(out(0xfee0_0320, 4, 0x2_00ec)), "LVT_TIMER write 0x000200ec: periodic, vector 0xec");
        assert_eq!(s(out(0xfee0_0350, 4, 0x700)), "LVT_LINT0 write 0x00000700: ExtINT, edge, vector 0x00");
        assert_eq!(s(out(0xfee0_03e0, 4, 0xb)), "TIMER_DIVIDE write 0x0000000b: divide by 1");
        assert_eq!(s(inp(0xfee0_0030, 4, 0x0005_0014)), "VERSION read 0x00050014: version 0x14, 6 LVT entries");
        assert_eq!(s(out(0xfee0_00b0, 4, 0)), "EOI write 0x00000000: end of interrupt");
    }
}

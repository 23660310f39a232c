//! Model-specific registers by name, for showing MSR exits and for reading the names a user types
//! (`--trap-msr EFER,LSTAR`, `:break msr APIC_BASE`): the architectural MSRs a kernel touches and
//! KVM's paravirtual ones.

/// (index, name), the names as Intel's SDM and Linux's msr-index.h spell them, without `IA32_`.
pub const MSRS: &[(u32, &str)] = &[
    (0x10, "TSC"),
    (0x1b, "APIC_BASE"),
    (0x3a, "FEATURE_CONTROL"),
    (0x3b, "TSC_ADJUST"),
    (0x48, "SPEC_CTRL"),
    (0x49, "PRED_CMD"),
    (0x8b, "BIOS_SIGN_ID"),
    (0xe7, "MPERF"),
    (0xe8, "APERF"),
    (0xfe, "MTRRCAP"),
    (0x10a, "ARCH_CAPABILITIES"),
    (0x174, "SYSENTER_CS"),
    (0x175, "SYSENTER_ESP"),
    (0x176, "SYSENTER_EIP"),
    (0x179, "MCG_CAP"),
    (0x17a, "MCG_STATUS"),
    (0x1a0, "MISC_ENABLE"),
    (0x1d9, "DEBUGCTL"),
    (0x277, "PAT"),
    (0x2ff, "MTRR_DEF_TYPE"),
    (0x6e0, "TSC_DEADLINE"),
    (0x802, "X2APIC_APICID"),
    (0x803, "X2APIC_VERSION"),
    (0x808, "X2APIC_TPR"),
    (0x80b, "X2APIC_EOI"),
    (0x80f, "X2APIC_SPIV"),
    (0x830, "X2APIC_ICR"),
    (0x832, "X2APIC_LVTT"),
    (0x838, "X2APIC_TMICT"),
    (0x839, "X2APIC_TMCCT"),
    (0x83e, "X2APIC_TDCR"),
    (0xc000_0080, "EFER"),
    (0xc000_0081, "STAR"),
    (0xc000_0082, "LSTAR"),
    (0xc000_0083, "CSTAR"),
    (0xc000_0084, "SFMASK"),
    (0xc000_0100, "FS_BASE"),
    (0xc000_0101, "GS_BASE"),
    (0xc000_0102, "KERNEL_GS_BASE"),
    (0xc000_0103, "TSC_AUX"),
    (0x11, "KVM_WALL_CLOCK"),
    (0x12, "KVM_SYSTEM_TIME"),
    (0x4b56_4d00, "KVM_WALL_CLOCK_NEW"),
    (0x4b56_4d01, "KVM_SYSTEM_TIME_NEW"),
    (0x4b56_4d02, "KVM_ASYNC_PF_EN"),
    (0x4b56_4d03, "KVM_STEAL_TIME"),
    (0x4b56_4d04, "KVM_PV_EOI_EN"),
    (0x4b56_4d05, "KVM_POLL_CONTROL"),
    (0x4b56_4d06, "KVM_ASYNC_PF_INT"),
    (0x4b56_4d07, "KVM_ASYNC_PF_ACK"),
];

/// The name of MSR `index`, if kvmscope knows it.
pub fn name(index: u32) -> Option<&'static str> {
    MSRS.iter().find(|(i, _)| *i == index).map(|(_, n)| *n)
}

/// An MSR by name (any case, `IA32_`/`MSR_` prefix allowed) or number (hex with 0x, or decimal).
pub fn parse(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let upper = t.to_uppercase();
    let bare = upper.strip_prefix("IA32_").or_else(|| upper.strip_prefix("MSR_")).unwrap_or(&upper);
    if let Some((i, _)) = MSRS.iter().find(|(_, n)| *n == bare) {
        return Ok(*i);
    }
    // A number first as a wide one: one too wide for an MSR index is said as such.
    let number = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u128::from_str_radix(hex, 16).ok(),
        None => t.parse::<u128>().ok(),
    };
    match number {
        Some(n) => u32::try_from(n).map_err(|_| format!("MSR {t}: MSR numbers are 32 bits (at most 0xffffffff)")),
        None => {
            let known: Vec<&str> = MSRS.iter().map(|(_, n)| *n).collect();
            Err(format!("unknown MSR {t:?}: give a number (0x...) or one of {}", known.join(", ")))
        }
    }
}

/// A comma-separated list of MSRs, each as [`parse`] reads it; at least one.
pub fn parse_list(text: &str) -> Result<Vec<u32>, String> {
    let mut v: Vec<u32> = text.split(',').filter(|w| !w.trim().is_empty()).map(parse).collect::<Result<_, _>>()?;
    if v.is_empty() {
        return Err(format!("{text:?} names no MSR: give names or numbers, e.g. EFER,LSTAR,0x277"));
    }
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_both_work() {
        assert_eq!(parse("efer"), Ok(0xc000_0080));
        assert_eq!(parse("IA32_APIC_BASE"), Ok(0x1b));
        assert_eq!(parse("0x277"), Ok(0x277));
        assert_eq!(parse("16"), Ok(0x10));
        assert!(parse("nosuch").unwrap_err().contains("LSTAR"));
        assert_eq!(parse_list("PAT, 0x1b,pat"), Ok(vec![0x1b, 0x277]));
        assert!(parse("0x100000000").unwrap_err().contains("32 bits"));
        for nothing in ["", ",,,", " , "] {
            assert!(parse_list(nothing).unwrap_err().contains("names no MSR"), "{nothing:?}");
        }
        assert_eq!(name(0x4b56_4d01), Some("KVM_SYSTEM_TIME_NEW"));
        assert_eq!(name(0x1234), None);
    }
}

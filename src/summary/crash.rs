//! The state of a crashed vCPU, printed before the summary.

use std::fmt::Write as _;

use crate::vmm::CrashReport;

/// The state of a crashed vCPU: registers, the instruction at RIP, and its last exits.
pub fn crash_text(c: &CrashReport) -> String {
    let r = &c.regs;
    let s = &c.sregs;
    let mut out = String::new();
    let _ = writeln!(out, "kvmscope: vCPU {} state at the crash:", c.vcpu);
    let _ = writeln!(out, "  rax {:016x} rbx {:016x} rcx {:016x} rdx {:016x}", r.rax, r.rbx, r.rcx, r.rdx);
    let _ = writeln!(out, "  rsi {:016x} rdi {:016x} rbp {:016x} rsp {:016x}", r.rsi, r.rdi, r.rbp, r.rsp);
    let _ = writeln!(out, "  r8  {:016x} r9  {:016x} r10 {:016x} r11 {:016x}", r.r8, r.r9, r.r10, r.r11);
    let _ = writeln!(out, "  r12 {:016x} r13 {:016x} r14 {:016x} r15 {:016x}", r.r12, r.r13, r.r14, r.r15);
    let _ = writeln!(out, "  rip {:016x} rflags {:08x}", r.rip, r.rflags);
    let _ = writeln!(
        out,
        "  cs {:#06x} ss {:#06x} ds {:#06x} cr0 {:#x} cr2 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x}",
        s.cs.selector, s.ss.selector, s.ds.selector, s.cr0, s.cr2, s.cr3, s.cr4, s.efer
    );
    match &c.insn {
        Some(i) => {
            let _ = writeln!(out, "  at rip: {}  ({})", i.text, i.hex());
        }
        None if c.rip_bytes.is_empty() => {
            let _ = writeln!(out, "  at rip: (unreadable: not mapped to guest RAM)");
        }
        None => {
            let hex: Vec<String> = c.rip_bytes.iter().map(|b| format!("{b:02x}")).collect();
            let _ = writeln!(out, "  at rip: undecodable bytes {}", hex.join(" "));
        }
    }
    if !c.last_exits.is_empty() {
        let _ = writeln!(out, "  last exits:");
        for e in &c.last_exits {
            let insn = e.insn.as_ref().map(|i| i.text.as_str()).unwrap_or("");
            let _ =
                writeln!(out, "    #{:<8} {:<14} rip {:#x} {}  {}", e.seq, e.kind.reason(), e.rip, e.detail(), insn);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_at_undecodable_bytes_shows_them() {
        let report = |rip_bytes: Vec<u8>| CrashReport {
            vcpu: 0,
            regs: Default::default(),
            sregs: Default::default(),
            insn: None,
            rip_bytes,
            last_exits: Vec::new(),
        };
        let text = crash_text(&report(vec![0xff; 4]));
        assert!(text.contains("at rip: undecodable bytes ff ff ff ff"), "{text}");
        let text = crash_text(&report(Vec::new()));
        assert!(text.contains("at rip: (unreadable: not mapped to guest RAM)"), "{text}");
        assert!(text.contains("cr0 0x0 cr2 0x0"), "numbers in hex say so: {text}");
    }
}

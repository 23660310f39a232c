//! The view reader: fills the code and memory panes from guest memory — disassembly around the
//! stopped vCPU's RIP, the bytes at the memory pane's target — without stopping the guest. The UI
//! state never reads guest memory itself.

use crate::decode::insn::decode_many;
use crate::decode::paging::{read_virt, translate};
use crate::decode::{CpuMode, PhysRead};
use crate::trace::Insn;
use crate::ui::app::App;

/// Re-reads what the code and memory panes show.
pub fn refresh(app: &mut App, mem: &dyn PhysRead) {
    let stop = app.stop.as_ref().map(|s| (CpuMode::from(&s.sregs), s.regs.rip));
    app.code.lines = match stop {
        Some((mode, rip)) => code_around(mem, &mode, rip),
        None => Vec::new(),
    };
    let memory = &mut app.memory;
    if let (true, Some((mode, rip))) = (memory.target.follow_rip, stop) {
        memory.target.addr = mode.code_linear(rip) & !0xf;
        memory.target.physical = false;
    }
    let target = memory.target;
    let mut buf = vec![0u8; target.len as usize];
    let (n, note) = match (target.physical, stop) {
        (true, _) => {
            let n = if mem.read_phys(target.addr, &mut buf) {
                buf.len()
            } else {
                read_phys_prefix(mem, target.addr, &mut buf)
            };
            (n, None)
        }
        (false, Some((mode, _))) => {
            let n = read_virt(mem, &mode, target.addr, &mut buf);
            let note = (n < buf.len()).then(|| match translate(mem, &mode, target.addr + n as u64) {
                Err(e) => e.to_string(),
                Ok(t) => format!("{:#x} (guest-physical {:#x}) is not RAM", t.gva, t.gpa),
            });
            (n, note)
        }
        (false, None) => (0, Some("pause first: virtual addresses need the vCPU's page tables".into())),
    };
    buf.truncate(n);
    memory.bytes = buf;
    memory.note = note.or_else(|| (n == 0).then(|| format!("{:#x} is not guest RAM", target.addr)));
}

/// Some instructions before RIP (found by decoding from a point that lands exactly on RIP) and the
/// ones after it.
pub fn code_around(mem: &dyn PhysRead, mode: &CpuMode, rip: u64) -> Vec<Insn> {
    const AFTER: usize = 48;
    let bitness = mode.bitness();
    let linear = mode.code_linear(rip);
    let mut after = [0u8; AFTER];
    let n = read_virt(mem, mode, linear, &mut after);
    let mut out = Vec::new();
    // Try starting 24..1 bytes before RIP; take the earliest start whose decoding lands on RIP.
    for back in (1..=24u64).rev() {
        let mut bytes = vec![0u8; back as usize];
        if read_virt(mem, mode, linear.wrapping_sub(back), &mut bytes) != bytes.len() {
            continue;
        }
        let insns = decode_many(&bytes, bitness, rip.wrapping_sub(back));
        let lands = insns.last().is_some_and(|i| i.addr.wrapping_add(i.bytes.len() as u64) == rip);
        if lands && insns.iter().all(|i| i.text != "(bad)") {
            let skip = insns.len().saturating_sub(4);
            out.extend(insns.into_iter().skip(skip));
            break;
        }
    }
    out.extend(decode_many(&after[..n], bitness, rip).into_iter().take(16));
    out
}

fn read_phys_prefix(mem: &dyn PhysRead, addr: u64, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() && mem.read_phys(addr.wrapping_add(n as u64), &mut buf[n..n + 1]) {
        n += 1;
    }
    n
}

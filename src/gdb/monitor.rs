//! gdb's `monitor` commands: help, exits, break-exit, delete-exit, regs, translate, info, virtio,
//! probe.

use gdbstub::outputln;
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd};

use super::target::GdbTarget;
use crate::controller::ControlError;
use crate::debug::exit_breakpoints::{SYNTAX, parse_breakpoint, parse_breakpoint_id};
use crate::debug::exit_spec::parse_number;
use crate::decode::CpuMode;
use crate::summary;
use crate::vmm::snapshot::SnapshotError;
use crate::vmm::virtio::view::virtio_text;

const HELP: &str = "\
kvmscope monitor commands:
  help                 this list
  exits                exit statistics (like perf kvm stat report)
  break-exit SPEC      stop when an exit matches: io PORT | mmio ADDR[-END] | reason NAME |
                       msr NAME|NUMBER [read|write] (the MSR is trapped if it was not) [nth N]
  delete-exit [N]      delete exit breakpoint N, or all
  regs                 the special registers of the stopped vCPU
  translate GVA        GVA through every layer: each paging level's entry and flags, guest-physical,
                       memory slot, host-virtual, host page frame (root)
  translate-phys GPA   the same from a guest-physical address
  info mem|tlb|mtree   QEMU's: mapped ranges by protection, every page, the memory tree
  virtio [NAME]        the virtio devices: status, features, queues (QEMU's info virtio-*);
                       with NAME, its chains in flight and last requests, descriptor by descriptor
  probe                what this host's KVM does for a debugger, and what kvmscope uses
  checkpoint           take a checkpoint of the stopped guest (in memory)
  checkpoints          list them: number, exit, time, size
  restore N            go back to checkpoint N (then `maintenance flush register-cache`, or a
                       step, for gdb to see it)
  snapshot FILE        write the stopped guest's whole state to FILE (`run --restore FILE`)
  timeline             where the guest is (exits, the stop it ran to, steps since), how far back it
                       can go, and why the last going back failed";

impl MonitorCmd for GdbTarget {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), Self::Error> {
        let cmd = String::from_utf8_lossy(cmd);
        let (word, rest) = cmd.trim().split_once(' ').unwrap_or((cmd.trim(), ""));
        let rest = rest.trim();
        match word {
            "" | "help" => outputln!(out, "{HELP}"),
            "exits" => {
                let counters = self.controller.counters();
                outputln!(out, "{}", summary::table::table(&counters));
            }
            "break-exit" => match parse_breakpoint(rest) {
                Ok((spec, nth)) => match self.controller.add_exit_breakpoint_trapping(spec, nth) {
                    Ok((bp, trapped)) => {
                        outputln!(out, "exit breakpoint {bp}");
                        if let Some(msr) = trapped {
                            outputln!(
                                out,
                                "(MSR {} is trapped from now on: its accesses exit to kvmscope)",
                                msr_name(msr)
                            );
                        }
                    }
                    Err(e) => outputln!(out, "error: {e}"),
                },
                Err(e) => outputln!(out, "error: {e}; usage: monitor break-exit {SYNTAX}"),
            },
            "delete-exit" => match parse_breakpoint_id(rest) {
                Ok(id) => outputln!(out, "deleted {} exit breakpoint(s)", self.controller.delete_exit_breakpoint(id)),
                Err(_) => outputln!(out, "error: usage: monitor delete-exit [N]"),
            },
            "regs" => match self.controller.stops().into_iter().flatten().next() {
                None => outputln!(out, "error: the guest is running"),
                Some(s) => {
                    let r = &s.sregs;
                    outputln!(
                        out,
                        "vCPU {}: {} ({}-bit code)",
                        s.vcpu,
                        CpuMode::from(r).paging_name(),
                        CpuMode::from(r).bitness()
                    );
                    outputln!(out, "cr0 {:#018x}  cr2 {:#018x}  cr3 {:#018x}", r.cr0, r.cr2, r.cr3);
                    outputln!(out, "cr4 {:#018x}  cr8 {:#018x}  efer {:#018x}", r.cr4, r.cr8, r.efer);
                    outputln!(out, "apic_base {:#x}", r.apic_base);
                    for (name, seg) in [
                        ("cs", r.cs),
                        ("ds", r.ds),
                        ("es", r.es),
                        ("fs", r.fs),
                        ("gs", r.gs),
                        ("ss", r.ss),
                        ("tr", r.tr),
                        ("ldt", r.ldt),
                    ] {
                        outputln!(
                            out,
                            "{name:<3} sel {:#06x} base {:#018x} limit {:#010x} type {:#x} dpl {} p {} db {} l {} g {}",
                            seg.selector,
                            seg.base,
                            seg.limit,
                            seg.type_,
                            seg.dpl,
                            seg.present,
                            seg.db,
                            seg.l,
                            seg.g
                        );
                    }
                    outputln!(out, "gdt base {:#x} limit {:#x}", r.gdt.base, r.gdt.limit);
                    outputln!(out, "idt base {:#x} limit {:#x}", r.idt.base, r.idt.limit);
                }
            },
            "translate" | "translate-phys" => match parse_number(rest) {
                Err(e) => outputln!(out, "error: {e}"),
                Ok(addr) => match self.controller.address_chain(0, addr, word == "translate") {
                    Err(ControlError::Walk(e)) => outputln!(out, "{e}"),
                    Err(e) => outputln!(out, "error: {e}"),
                    Ok(chain) => {
                        let text = chain.to_string();
                        for line in text.lines() {
                            outputln!(out, "{line}");
                        }
                        if let Some(gva) = chain.gva {
                            outputln!(
                                out,
                                "{gva:#x} -> guest-physical {:#x} ({} KiB page)",
                                chain.gpa,
                                chain.page_size / 1024
                            );
                        }
                    }
                },
            },
            "info" => match rest {
                "mem" | "tlb" => match self.controller.page_map(0) {
                    Err(e) => outputln!(out, "error: {e}"),
                    // QEMU's words, and what they mean.
                    Ok(map) if map.paging_off => {
                        outputln!(out, "PG disabled: paging is off, a virtual address is its guest-physical address")
                    }
                    Ok(map) => {
                        let text = if rest == "mem" { map.info_mem() } else { map.info_tlb() };
                        for line in text.lines() {
                            outputln!(out, "{line}");
                        }
                    }
                },
                "mtree" => {
                    for line in self.controller.memory_map().mtree().lines() {
                        outputln!(out, "{line}");
                    }
                }
                _ => outputln!(out, "error: usage: monitor info mem|tlb|mtree"),
            },
            "virtio" => match virtio_text(&self.controller.virtio(), rest) {
                Ok(text) => {
                    for line in text.lines() {
                        outputln!(out, "{line}");
                    }
                }
                Err(e) => outputln!(out, "error: {e}"),
            },
            "probe" => match self.controller.host() {
                Ok(h) => outputln!(out, "{h}"),
                Err(e) => outputln!(out, "error: {e}"),
            },
            "checkpoint" => match self.controller.checkpoint(true) {
                Ok(id) => outputln!(out, "checkpoint #{id} {}", self.controller.place()),
                Err(e) => outputln!(out, "error: {e}"),
            },
            "checkpoints" => {
                for line in self.controller.checkpoints().to_string().lines() {
                    outputln!(out, "{line}");
                }
            }
            "restore" => match rest.parse::<u32>() {
                Ok(id) => match self.controller.restore_checkpoint(id) {
                    Ok(at) => {
                        outputln!(out, "back at checkpoint #{id}: {at}");
                        outputln!(
                            out,
                            "(gdb still shows the registers it read before: `maintenance flush register-cache` reads them again)"
                        );
                    }
                    Err(e @ ControlError::Snapshot(SnapshotError::NoCheckpoint(_))) => {
                        outputln!(out, "error: {e} (monitor checkpoints lists them)")
                    }
                    Err(e) => outputln!(out, "error: {e}"),
                },
                Err(_) => outputln!(out, "error: usage: monitor restore N (monitor checkpoints lists them)"),
            },
            "snapshot" if !rest.is_empty() => match self.controller.snapshot(std::path::Path::new(rest)) {
                Ok(bytes) => outputln!(
                    out,
                    "wrote {rest} ({}) {}",
                    crate::vmm::memory::data_size(bytes),
                    self.controller.place()
                ),
                Err(e) => outputln!(out, "error: {e}"),
            },
            "snapshot" => outputln!(out, "error: usage: monitor snapshot FILE"),
            "timeline" => {
                let c = self.controller.checkpoints();
                outputln!(out, "{}", self.controller.place());
                match c.checkpoints.first() {
                    Some(first) => outputln!(
                        out,
                        "{} checkpoint(s), the first at exit {}: reverse-stepi and reverse-continue go back that far",
                        c.checkpoints.len(),
                        first.position()
                    ),
                    None => outputln!(out, "no checkpoints yet: nothing to go back to"),
                }
                if let Some(why) = self.controller.travel_note() {
                    outputln!(out, "the last going back failed: {why}");
                }
            }
            other => outputln!(out, "unknown monitor command {other:?}; try `monitor help`"),
        }
        Ok(())
    }
}

/// An MSR by name where kvmscope knows it, else by number.
fn msr_name(index: u32) -> String {
    crate::trace::msr::name(index).map_or(format!("{index:#x}"), str::to_string)
}

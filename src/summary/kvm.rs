//! What KVM counted itself (its binary statistics), in the summary.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::vmm::kvm_stats::{KvmCounts, Reading, StatsError, value};

/// KVM's vCPU statistics shown first, by name (kvm_stat's); the other non-zero ones follow.
pub const KVM_NAMED: [&str; 16] = [
    "exits",
    "io_exits",
    "mmio_exits",
    "halt_exits",
    "irq_exits",
    "irq_window_exits",
    "signal_exits",
    "pf_taken",
    "pf_fixed",
    "pf_emulate",
    "insn_emulation",
    "insn_emulation_fail",
    "hypercalls",
    "irq_injections",
    "halt_attempted_poll",
    "halt_successful_poll",
];

/// KVM's vCPU statistics to show: the named ones, then every other that is not zero.
pub fn kvm_shown(vcpus: &Reading) -> Vec<(&str, u64)> {
    let mut shown: Vec<(&str, u64)> = KVM_NAMED.iter().map(|&n| (n, value(vcpus, n))).collect();
    shown.extend(
        vcpus.iter().filter(|(n, _, v)| *v > 0 && !KVM_NAMED.contains(&n.as_str())).map(|(n, _, v)| (n.as_str(), *v)),
    );
    shown
}

/// The text summary's section on what KVM counted itself.
pub fn kvm_text(kvm: &Result<KvmCounts, StatsError>, userspace_exits: u64) -> String {
    let counts = match kvm {
        Ok(c) => c,
        Err(why) => return format!("\nIn KVM: not shown ({why})\n"),
    };
    let mut out = String::new();
    let total = value(&counts.vcpus, "exits");
    let _ = writeln!(
        out,
        "\nIn KVM (its own statistics, all vCPUs): of {total} exits, {userspace_exits} reached userspace"
    );
    for (name, v) in kvm_shown(&counts.vcpus) {
        let _ = writeln!(out, "{name:>26} {v:>12}");
    }
    let vm: Vec<String> = counts.vm.iter().filter(|(_, _, v)| *v > 0).map(|(n, _, v)| format!("{n} {v}")).collect();
    if !vm.is_empty() {
        let _ = writeln!(out, "{:>26} {}", "VM", vm.join(", "));
    }
    out
}

/// The JSON summary's `kvm` object: every statistic of the vCPUs (added up) and of the VM, the
/// exits KVM counted and those that reached userspace; `null` with `kvm_unavailable` where the host
/// has no binary statistics.
pub fn kvm_json(kvm: &Result<KvmCounts, StatsError>, userspace_exits: u64) -> Value {
    match kvm {
        Ok(c) => {
            let map = |r: &Reading| -> serde_json::Map<String, Value> {
                r.iter().map(|(n, _, v)| (n.clone(), json!(v))).collect()
            };
            json!({
                "exits": value(&c.vcpus, "exits"),
                "userspace_exits": userspace_exits,
                "vcpu": map(&c.vcpus),
                "vm": map(&c.vm),
            })
        }
        Err(why) => json!({ "unavailable": why.to_string() }),
    }
}

//! Crafted snapshots: a real snapshot of a guest with every kind of device state (UART, CMOS,
//! POST, reset registers, virtio transports and queues), its machine section rewritten — a value
//! out of range, of another type, missing, or a field the state does not have — with a valid CRC
//! so that it reaches the device models, and restored into the running VM. Each must be refused
//! with a line or restored; none may panic (a CMOS index of 200 once did).

mod common;

use common::reverse::{Guest, launch};
use common::*;
use serde_json::Value;

/// The snapshot's sections: (kind, payload), after the 22-byte magic and version.
fn sections(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 22;
    while at + 13 <= bytes.len() {
        let kind = bytes[at];
        let len = u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap()) as usize;
        out.push((kind, bytes[at + 13..at + 13 + len].to_vec()));
        at += 13 + len;
    }
    out
}

/// A snapshot file of these sections, each with its CRC.
fn encode(head: &[u8], sections: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = head[..22].to_vec();
    for (kind, payload) in sections {
        out.push(*kind);
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        out.extend_from_slice(payload);
    }
    out
}

/// Every leaf of `v`, as a JSON pointer.
fn leaves(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, x)| leaves(x, format!("{at}/{k}"), out)),
        Value::Array(a) if a.len() <= 16 => a.iter().enumerate().for_each(|(i, x)| leaves(x, format!("{at}/{i}"), out)),
        _ => out.push(at),
    }
}

#[test]
fn crafted_device_and_vcpu_states_are_refused_or_restored_never_a_panic() {
    if !kvm_or_skip("crafted_device_and_vcpu_states_are_refused_or_restored_never_a_panic") {
        return;
    }
    let disk = std::env::temp_dir().join(format!("kvmscope-fuzz-{}.img", std::process::id()));
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let guest = Guest::virtio_with_disk(&disk);
    let launched = launch(&guest);
    let c = launched.controller.clone();
    let file = std::env::temp_dir().join(format!("kvmscope-fuzz-{}.snap", std::process::id()));
    c.snapshot(&file).unwrap();
    let real = std::fs::read(&file).unwrap();
    let parts = sections(&real);
    let machine_at = parts.iter().position(|(k, _)| *k == 2).expect("a machine section");
    let machine: Value = serde_json::from_slice(&parts[machine_at].1).unwrap();
    let mut points = Vec::new();
    leaves(&machine["devices"], "/devices".into(), &mut points);
    leaves(&machine["vcpus"][0]["regs"], "/vcpus/0/regs".into(), &mut points);
    leaves(&machine["vcpus"][0]["sregs"]["cs"], "/vcpus/0/sregs/cs".into(), &mut points);
    assert!(points.len() > 50, "device and vCPU state to craft: {}", points.len());
    let crafted = [
        Value::from(200),
        Value::from(u64::MAX),
        Value::from(-1),
        Value::from("x"),
        Value::Null,
        Value::from(vec![0u8; 4096]),
    ];
    let (mut refused, mut restored) = (0, 0);
    for (i, point) in points.iter().enumerate() {
        let mut m = machine.clone();
        match i % 8 {
            // A field the state does not have, or one taken away.
            7 => {
                let (parent, _) = point.rsplit_once('/').unwrap();
                if let Some(Value::Object(o)) = m.pointer_mut(parent) {
                    o.insert("unknown".into(), Value::from(1));
                }
            }
            6 => {
                let (parent, key) = point.rsplit_once('/').unwrap();
                if let Some(Value::Object(o)) = m.pointer_mut(parent) {
                    o.remove(key);
                }
            }
            k => match m.pointer_mut(point) {
                Some(v) => *v = crafted[k % crafted.len()].clone(),
                None => continue,
            },
        }
        let mut parts = parts.clone();
        parts[machine_at].1 = serde_json::to_vec(&m).unwrap();
        std::fs::write(&file, encode(&real, &parts)).unwrap();
        match c.restore_snapshot(&file) {
            Ok(_) => restored += 1,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                refused += 1
            }
        }
        assert!(!c.is_ending(), "{point}: the VM ended");
    }
    // The real one still restores, and the guest runs to its end after it.
    std::fs::write(&file, &real).unwrap();
    c.restore_snapshot(&file).expect("the real snapshot");
    eprintln!("{} crafted: {refused} refused, {restored} restored", points.len());
    assert!(refused > points.len() / 4, "most crafted states are refused: {refused} of {}", points.len());
    let _ = launched.finish(kvmscope::vmm::RunEnd::Quit);
    for f in [file, disk] {
        let _ = std::fs::remove_file(f);
    }
}

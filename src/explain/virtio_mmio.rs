//! kvmscope's virtio-mmio devices (0xd0000000 up, one 4 KiB page each): each transport register by
//! name (MagicValue ... QueueNotify, with the queue's name), the status bits, the feature bits of
//! the selected half, and the configuration space's fields for blk, console and rng.

use super::{Access, Explanation, field};
use crate::vmm::virtio::features::{feature_names, status_names};

pub const BASE: u64 = crate::vmm::virtio::MMIO_BASE;
pub const END: u64 = BASE + crate::vmm::virtio::MAX_DEVICES as u64 * crate::vmm::virtio::MMIO_STRIDE - 1;

/// What each device's selector registers hold.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Selects {
    device_features: u32,
    driver_features: u32,
    queue: u32,
}

/// Every device's selectors.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VirtioMmio {
    devices: [Selects; crate::vmm::virtio::MAX_DEVICES],
}

impl Default for VirtioMmio {
    fn default() -> Self {
        Self { devices: [Selects::default(); crate::vmm::virtio::MAX_DEVICES] }
    }
}

/// The device slot an access is to.
fn slot(a: &Access) -> usize {
    (((a.at - BASE) / crate::vmm::virtio::MMIO_STRIDE) as usize).min(crate::vmm::virtio::MAX_DEVICES - 1)
}

/// An access's answer depends on its own device's selectors.
impl super::answers::Family for VirtioMmio {
    type State = Selects;
    fn state(&self, a: &Access) -> Selects {
        self.devices[slot(a)]
    }
    fn set_state(&mut self, a: &Access, state: Selects) {
        self.devices[slot(a)] = state;
    }
}

/// The transport register at `offset`.
pub fn register(offset: u64) -> &'static str {
    match offset {
        0x000 => "MagicValue",
        0x004 => "Version",
        0x008 => "DeviceID",
        0x00c => "VendorID",
        0x010 => "DeviceFeatures",
        0x014 => "DeviceFeaturesSel",
        0x020 => "DriverFeatures",
        0x024 => "DriverFeaturesSel",
        0x030 => "QueueSel",
        0x034 => "QueueNumMax",
        0x038 => "QueueNum",
        0x044 => "QueueReady",
        0x050 => "QueueNotify",
        0x060 => "InterruptStatus",
        0x064 => "InterruptACK",
        0x070 => "Status",
        0x080 => "QueueDescLow",
        0x084 => "QueueDescHigh",
        0x090 => "QueueDriverLow",
        0x094 => "QueueDriverHigh",
        0x0a0 => "QueueDeviceLow",
        0x0a4 => "QueueDeviceHigh",
        0x0fc => "ConfigGeneration",
        0x100.. => "Config",
        _ => "Reserved",
    }
}

/// The kind of device from its name on the bus: (virtio device id, queue names).
fn kind(device: Option<&str>) -> (u32, &'static [&'static str]) {
    match device {
        Some(d) if d.starts_with("virtio-blk") => (2, &["requestq"]),
        Some("virtio-rng") => (4, &["requestq"]),
        Some("virtio-console") => (3, &["receiveq", "transmitq"]),
        Some("virtio-net") => (1, &["receiveq0", "transmitq0"]),
        _ => (0, &[]),
    }
}

/// A configuration-space field of a device with `id` at `offset` from the space's start.
fn config_field(id: u32, offset: u64) -> &'static str {
    match (id, offset) {
        (2, 0x00..=0x07) => "capacity (512-byte sectors)",
        (2, 0x08..=0x0b) => "size_max",
        (2, 0x0c..=0x0f) => "seg_max",
        (2, 0x10..=0x13) => "geometry",
        (2, 0x14..=0x17) => "blk_size",
        (1, 0x00..=0x05) => "mac",
        (1, 0x06..=0x07) => "status (link up)",
        (3, 0x00..=0x01) => "cols",
        (3, 0x02..=0x03) => "rows",
        (3, 0x04..=0x07) => "max_nr_ports",
        (3, 0x08..=0x0b) => "emerg_wr",
        _ => "device-specific",
    }
}

impl VirtioMmio {
    /// An access to the registers of the device at this address, `device` its name on the bus.
    pub fn explain(&mut self, a: &Access, device: Option<&str>) -> Explanation {
        let index = ((a.at - BASE) / crate::vmm::virtio::MMIO_STRIDE) as usize;
        let offset = (a.at - BASE) % crate::vmm::virtio::MMIO_STRIDE;
        let Some(d) = device else {
            // kvmscope's window for device #index, with no device there in this run.
            let what =
                if a.write { "no device here: the write went nowhere" } else { "no device here: read as all ones" };
            return Explanation::new(format!("virtio-mmio slot #{index} (empty)"), register(offset), a, what);
        };
        let name = format!("virtio-mmio #{index} ({d})");
        let (id, queues) = kind(device);
        let sel = &mut self.devices[index.min(crate::vmm::virtio::MAX_DEVICES - 1)];
        let reg = register(offset);
        let v = a.value;
        let queue = |q: u32| queues.get(q as usize).map_or(format!("queue {q}"), |n| format!("queue {q} ({n})"));
        let what = match reg {
            "MagicValue" => {
                (if v == 0x7472_6976 { "\"virt\": a virtio-mmio device" } else { "not the virtio magic" }).into()
            }
            "Version" => format!("transport version {v}"),
            "DeviceID" => format!("device id {v} ({})", crate::vmm::virtio::features::device_name(v as u32)),
            "DeviceFeaturesSel" | "DriverFeaturesSel" => {
                if a.write {
                    if reg == "DeviceFeaturesSel" {
                        sel.device_features = v as u32
                    } else {
                        sel.driver_features = v as u32
                    };
                }
                format!("select feature bits {}-{}", 32 * v, 32 * v + 31)
            }
            "DeviceFeatures" | "DriverFeatures" => {
                let half = if reg == "DeviceFeatures" { sel.device_features } else { sel.driver_features };
                let bits = (v & 0xffff_ffff) << (32 * half.min(1));
                let names = feature_names(id, bits);
                if names.is_empty() { "none".into() } else { names.join(" ") }
            }
            "QueueSel" => {
                if a.write {
                    sel.queue = v as u32;
                }
                format!("select {}", queue(v as u32))
            }
            "QueueNotify" => format!("notify {}: it has new buffers", queue(v as u32)),
            "QueueNumMax" | "QueueNum" => format!("{}: {v} entries", queue(sel.queue)),
            "QueueReady" => format!("{}: {}", queue(sel.queue), if v & 1 != 0 { "ready" } else { "not ready" }),
            "QueueDescLow" | "QueueDescHigh" | "QueueDriverLow" | "QueueDriverHigh" | "QueueDeviceLow"
            | "QueueDeviceHigh" => {
                format!(
                    "{}'s {} ring address, {} half",
                    queue(sel.queue),
                    if reg.starts_with("QueueDesc") {
                        "descriptor"
                    } else if reg.starts_with("QueueDriver") {
                        "available"
                    } else {
                        "used"
                    },
                    if reg.ends_with("Low") { "low" } else { "high" }
                )
            }
            "InterruptStatus" | "InterruptACK" => {
                let mut parts = Vec::new();
                if v & 1 != 0 {
                    parts.push("used buffer");
                }
                if v & 2 != 0 {
                    parts.push("configuration change");
                }
                if parts.is_empty() { "none".into() } else { parts.join(", ") }
            }
            "Status" => status_names(v as u32),
            "Config" => config_field(id, offset - 0x100).to_string(),
            _ => String::new(),
        };
        let register = if reg == "Config" {
            format!("Config.{}", config_field(id, offset - 0x100).split(' ').next().unwrap_or(""))
        } else {
            reg.to_string()
        };
        Explanation::new(name, register, a, what)
            .with_fields(vec![field("queue selected", queue(sel.queue))])
            .with_state(format!(
                "QueueSel {}, DeviceFeaturesSel {}, DriverFeaturesSel {}",
                sel.queue, sel.device_features, sel.driver_features
            ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::tests::{inp, out};

    #[test]
    fn transport_registers_queues_status_and_features() {
        let mut m = VirtioMmio::default();
        let blk = Some("virtio-blk0");
        let s = |m: &mut VirtioMmio, a, d| m.explain(&a, d).summary;
        assert_eq!(
            s(&mut m, inp(BASE, 4, 0x7472_6976), blk),
            "MagicValue read 0x74726976: \"virt\": a virtio-mmio device"
        );
        assert_eq!(
            s(&mut m, out(BASE + 0x50, 4, 0), blk),
            "QueueNotify write 0x00000000: notify queue 0 (requestq): it has new buffers"
        );
        assert_eq!(s(&mut m, out(BASE + 0x70, 4, 0xb), blk), "Status write 0x0000000b: ACKNOWLEDGE|DRIVER|FEATURES_OK");
        m.explain(&out(BASE + 0x14, 4, 1), blk);
        assert_eq!(s(&mut m, inp(BASE + 0x10, 4, 1), blk), "DeviceFeatures read 0x00000001: VERSION_1");
        let console = Some("virtio-console");
        assert_eq!(
            s(&mut m, out(BASE + 0x2030, 4, 1), console),
            "QueueSel write 0x00000001: select queue 1 (transmitq)"
        );
        assert_eq!(m.explain(&inp(BASE + 0x100, 4, 2048), blk).register, "Config.capacity");
        // A slot with no device in this run: said, not explained as a device that is not there.
        let empty = m.explain(&out(BASE + 0x3000, 4, 0x45), None);
        assert_eq!(empty.device, "virtio-mmio slot #3 (empty)");
        assert_eq!(empty.summary, "MagicValue write 0x00000045: no device here: the write went nowhere");
    }
}

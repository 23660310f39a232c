//! Names for the bits a virtio view decodes: device status, and the feature bits common to all
//! devices and those of each device kvmscope has, as the spec names them.

use virtio_bindings::virtio_ids::{VIRTIO_ID_BLOCK, VIRTIO_ID_CONSOLE, VIRTIO_ID_NET, VIRTIO_ID_RNG};

/// `VIRTIO_F_RING_INDIRECT_DESC`.
pub const F_INDIRECT_DESC: u64 = 1 << 28;
/// `VIRTIO_F_RING_EVENT_IDX`.
pub const F_EVENT_IDX: u64 = 1 << 29;
/// `VIRTIO_F_VERSION_1`: the modern interface, required by this transport.
pub const F_VERSION_1: u64 = 1 << 32;

/// Device status bits, in bit order.
const STATUS: &[(u32, &str)] = &[
    (1, "ACKNOWLEDGE"),
    (2, "DRIVER"),
    (4, "DRIVER_OK"),
    (8, "FEATURES_OK"),
    (64, "DEVICE_NEEDS_RESET"),
    (128, "FAILED"),
];

pub const STATUS_DRIVER_OK: u32 = 4;
pub const STATUS_FEATURES_OK: u32 = 8;
pub const STATUS_NEEDS_RESET: u32 = 64;

/// The status register by name, e.g. `ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK`.
pub fn status_names(status: u32) -> String {
    let names: Vec<&str> = STATUS.iter().filter(|(b, _)| status & b != 0).map(|(_, n)| *n).collect();
    if names.is_empty() { "reset".into() } else { names.join("|") }
}

/// The name of feature bit `bit` of a device with id `device_id`.
pub fn feature_name(device_id: u32, bit: u32) -> String {
    let common = match bit {
        28 => Some("RING_INDIRECT_DESC"),
        29 => Some("RING_EVENT_IDX"),
        32 => Some("VERSION_1"),
        33 => Some("ACCESS_PLATFORM"),
        34 => Some("RING_PACKED"),
        35 => Some("IN_ORDER"),
        36 => Some("ORDER_PLATFORM"),
        37 => Some("SR_IOV"),
        38 => Some("NOTIFICATION_DATA"),
        _ => None,
    };
    let specific = match (device_id, bit) {
        (VIRTIO_ID_BLOCK, 1) => Some("BLK_SIZE_MAX"),
        (VIRTIO_ID_BLOCK, 2) => Some("BLK_SEG_MAX"),
        (VIRTIO_ID_BLOCK, 4) => Some("BLK_GEOMETRY"),
        (VIRTIO_ID_BLOCK, 5) => Some("BLK_RO"),
        (VIRTIO_ID_BLOCK, 6) => Some("BLK_BLK_SIZE"),
        (VIRTIO_ID_BLOCK, 9) => Some("BLK_FLUSH"),
        (VIRTIO_ID_BLOCK, 10) => Some("BLK_TOPOLOGY"),
        (VIRTIO_ID_BLOCK, 11) => Some("BLK_CONFIG_WCE"),
        (VIRTIO_ID_BLOCK, 12) => Some("BLK_MQ"),
        (VIRTIO_ID_BLOCK, 13) => Some("BLK_DISCARD"),
        (VIRTIO_ID_BLOCK, 14) => Some("BLK_WRITE_ZEROES"),
        (VIRTIO_ID_NET, 0) => Some("NET_CSUM"),
        (VIRTIO_ID_NET, 1) => Some("NET_GUEST_CSUM"),
        (VIRTIO_ID_NET, 2) => Some("NET_CTRL_GUEST_OFFLOADS"),
        (VIRTIO_ID_NET, 3) => Some("NET_MTU"),
        (VIRTIO_ID_NET, 5) => Some("NET_MAC"),
        (VIRTIO_ID_NET, 7) => Some("NET_GUEST_TSO4"),
        (VIRTIO_ID_NET, 8) => Some("NET_GUEST_TSO6"),
        (VIRTIO_ID_NET, 9) => Some("NET_GUEST_ECN"),
        (VIRTIO_ID_NET, 10) => Some("NET_GUEST_UFO"),
        (VIRTIO_ID_NET, 11) => Some("NET_HOST_TSO4"),
        (VIRTIO_ID_NET, 12) => Some("NET_HOST_TSO6"),
        (VIRTIO_ID_NET, 13) => Some("NET_HOST_ECN"),
        (VIRTIO_ID_NET, 14) => Some("NET_HOST_UFO"),
        (VIRTIO_ID_NET, 15) => Some("NET_MRG_RXBUF"),
        (VIRTIO_ID_NET, 16) => Some("NET_STATUS"),
        (VIRTIO_ID_NET, 17) => Some("NET_CTRL_VQ"),
        (VIRTIO_ID_NET, 18) => Some("NET_CTRL_RX"),
        (VIRTIO_ID_NET, 19) => Some("NET_CTRL_VLAN"),
        (VIRTIO_ID_NET, 21) => Some("NET_GUEST_ANNOUNCE"),
        (VIRTIO_ID_NET, 22) => Some("NET_MQ"),
        (VIRTIO_ID_NET, 23) => Some("NET_CTRL_MAC_ADDR"),
        (VIRTIO_ID_CONSOLE, 0) => Some("CONSOLE_SIZE"),
        (VIRTIO_ID_CONSOLE, 1) => Some("CONSOLE_MULTIPORT"),
        (VIRTIO_ID_CONSOLE, 2) => Some("CONSOLE_EMERG_WRITE"),
        _ => None,
    };
    common.or(specific).map_or_else(|| format!("bit{bit}"), str::to_string)
}

/// The set bits of `features` by name, in bit order.
pub fn feature_names(device_id: u32, features: u64) -> Vec<String> {
    (0..64).filter(|b| features & (1 << b) != 0).map(|b| feature_name(device_id, b)).collect()
}

/// The device kind's name, as QEMU's `info virtio` calls it.
pub fn device_name(device_id: u32) -> &'static str {
    match device_id {
        VIRTIO_ID_BLOCK => "virtio-blk",
        VIRTIO_ID_RNG => "virtio-rng",
        VIRTIO_ID_CONSOLE => "virtio-serial",
        VIRTIO_ID_NET => "virtio-net",
        _ => "virtio",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_have_the_spec_names() {
        assert_eq!(status_names(1 | 2 | 8 | 4), "ACKNOWLEDGE|DRIVER|DRIVER_OK|FEATURES_OK");
        assert_eq!(status_names(0), "reset");
        assert_eq!(feature_names(VIRTIO_ID_BLOCK, F_VERSION_1 | 1 << 9 | 1 << 5), ["BLK_RO", "BLK_FLUSH", "VERSION_1"]);
        assert_eq!(feature_name(VIRTIO_ID_RNG, 3), "bit3");
    }
}

//! QEMU's firmware configuration device (0x510 selector, 0x511 data, 0x514-0x51b DMA address):
//! selector keys by name (signature, id, file directory, kernel and initrd sizes, command line
//! ...), each data byte with the key it belongs to and its offset.

use super::{Access, Explanation, field};

/// The selected key and how far into its item the reads are.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FwCfg {
    key: Option<u16>,
    offset: u64,
}

/// A selector key's name.
pub fn key_name(key: u16) -> String {
    if key & 0x8000 != 0 {
        return match key & 0x3fff {
            0 => "ACPI_TABLES (x86)".into(),
            1 => "SMBIOS_ENTRIES (x86)".into(),
            2 => "IRQ0_OVERRIDE (x86)".into(),
            3 => "E820_TABLE (x86)".into(),
            4 => "HPET (x86)".into(),
            _ => format!("arch-local key {key:#06x}"),
        };
    }
    let name = match key & 0x3fff {
        0x00 => "SIGNATURE",
        0x01 => "ID (features)",
        0x02 => "UUID",
        0x03 => "RAM_SIZE",
        0x04 => "NOGRAPHIC",
        0x05 => "NB_CPUS",
        0x06 => "MACHINE_ID",
        0x07 => "KERNEL_ADDR",
        0x08 => "KERNEL_SIZE",
        0x09 => "KERNEL_CMDLINE",
        0x0a => "INITRD_ADDR",
        0x0b => "INITRD_SIZE",
        0x0c => "BOOT_DEVICE",
        0x0d => "NUMA",
        0x0e => "BOOT_MENU",
        0x0f => "MAX_CPUS",
        0x10 => "KERNEL_ENTRY",
        0x11 => "KERNEL_DATA",
        0x12 => "INITRD_DATA",
        0x13 => "CMDLINE_ADDR",
        0x14 => "CMDLINE_SIZE",
        0x15 => "CMDLINE_DATA",
        0x16 => "SETUP_ADDR",
        0x17 => "SETUP_SIZE",
        0x18 => "SETUP_DATA",
        0x19 => "FILE_DIR",
        k if k >= 0x20 => return format!("file #{} of the directory", k - 0x20),
        _ => return format!("key {key:#06x}"),
    };
    let write = if key & 0x4000 != 0 { " (write)" } else { "" };
    format!("{name}{write}")
}

impl FwCfg {
    pub fn explain(&mut self, a: &Access) -> Explanation {
        let device = "QEMU fw_cfg";
        match a.at {
            0x510 => {
                if a.write {
                    (self.key, self.offset) = (Some(a.value as u16), 0);
                }
                Explanation::new(device, "SELECTOR", a, format!("select {}", key_name(a.value as u16)))
            }
            0x511 => {
                let Some(key) = self.key else {
                    return Explanation::new(device, "DATA", a, "no key selected yet");
                };
                let at = self.offset;
                self.offset += a.size as u64;
                let byte = a.value as u8;
                let shown = if byte.is_ascii_graphic() { format!(" '{}'", byte as char) } else { String::new() };
                Explanation::new(device, "DATA", a, format!("{} byte {at}{shown}", key_name(key)))
                    .with_fields(vec![field("key", key_name(key)), field("offset", at.to_string())])
                    .with_state(format!("key {key:#06x} ({}) selected, {at} bytes read", key_name(key)))
            }
            0x514..=0x517 => {
                Explanation::new(device, "DMA_ADDRESS_HI", a, "DMA descriptor address, high half (big-endian)")
            }
            _ => Explanation::new(
                device,
                "DMA_ADDRESS_LO",
                a,
                "DMA descriptor address, low half (big-endian): starts the transfer",
            ),
        }
    }
}

crate::whole_state_family!(FwCfg);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::tests::{inp, out};

    #[test]
    fn keys_by_name_and_data_bytes_in_order() {
        let mut f = FwCfg::default();
        assert_eq!(f.explain(&out(0x510, 2, 0)).summary, "SELECTOR write 0x0000: select SIGNATURE");
        assert_eq!(f.explain(&inp(0x511, 1, b'Q' as u64)).summary, "DATA read 0x51: SIGNATURE byte 0 'Q'");
        assert_eq!(f.explain(&inp(0x511, 1, b'E' as u64)).summary, "DATA read 0x45: SIGNATURE byte 1 'E'");
        assert_eq!(f.explain(&out(0x510, 2, 0x19)).summary, "SELECTOR write 0x0019: select FILE_DIR");
        assert_eq!(key_name(0x8003), "E820_TABLE (x86)");
        assert_eq!(key_name(0x0021), "file #1 of the directory");
    }
}

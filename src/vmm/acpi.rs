//! ACPI tables for Linux guests, as Firecracker and cloud-hypervisor give them (rust-vmm's
//! `acpi_tables`): an RSDP in the BIOS area (where the boot protocol's scan finds it, and where
//! PVH's `hvm_start_info.rsdp_paddr` points), an XSDT, a hardware-reduced FADT with an empty DSDT,
//! and a MADT with one local APIC per vCPU and the IOAPIC. A distribution kernel finds its CPUs
//! and interrupt controller through these; the MP table stays for kernels without ACPI. The ISA
//! interrupts are identity-mapped on the IOAPIC (as the MP table says), so no source overrides.

use acpi_tables::Aml;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::madt::{EnabledStatus, IoApic, LocalInterruptController, MADT, ProcessorLocalApic};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;

use super::memory::GuestRam;

/// Where the RSDP goes: the start of the BIOS area, reserved in the guest's memory map.
pub const RSDP_ADDR: u64 = 0xe_0000;
/// The end of the area the tables may use.
const TABLES_END: u64 = 0xf_0000;
const OEM_ID: [u8; 6] = *b"KVMSCP";
const OEM_TABLE: [u8; 8] = *b"KVMSCOPE";
/// The local APICs' and the IOAPIC's registers, as KVM's in-kernel irqchip has them.
const LAPIC_ADDR: u32 = 0xfee0_0000;
const IOAPIC_ADDR: u32 = 0xfec0_0000;

fn bytes(table: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    table.to_aml_bytes(&mut v);
    v
}

/// Writes the tables for `cpus` vCPUs; false when they do not fit in RAM.
pub fn write(ram: &GuestRam, cpus: u8) -> bool {
    let mut at = RSDP_ADDR + 64;
    let mut place = |table: Vec<u8>| -> Option<u64> {
        let addr = at;
        at = (at + table.len() as u64).next_multiple_of(16);
        (at <= TABLES_END && ram.write(addr, &table)).then_some(addr)
    };
    let written = (|| {
        let dsdt = place(bytes(&Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE, 1)))?;
        let fadt = FADTBuilder::new(OEM_ID, OEM_TABLE, 1).dsdt_64(dsdt).flag(Flags::HwReducedAcpi).finalize();
        let fadt = place(bytes(&fadt))?;
        let mut madt = MADT::new(OEM_ID, OEM_TABLE, 1, LocalInterruptController::Address(LAPIC_ADDR));
        for id in 0..cpus {
            madt.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
        }
        // The IOAPIC's id follows the CPUs', as in the MP table.
        madt.add_structure(IoApic::new(cpus, IOAPIC_ADDR, 0));
        let madt = place(bytes(&madt))?;
        let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE, 1);
        xsdt.add_entry(fadt);
        xsdt.add_entry(madt);
        place(bytes(&xsdt))
    })();
    match written {
        Some(xsdt) => ram.write(RSDP_ADDR, &bytes(&Rsdp::new(OEM_ID, xsdt))),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::PhysRead;

    fn checksum_ok(b: &[u8]) -> bool {
        b.iter().fold(0u8, |s, x| s.wrapping_add(*x)) == 0
    }

    #[test]
    fn the_tables_are_found_from_the_rsdp_with_valid_checksums() {
        let ram = GuestRam::new(16 << 20).unwrap();
        assert!(write(&ram, 2));
        let mut rsdp = [0u8; 36];
        assert!(ram.read_phys(RSDP_ADDR, &mut rsdp));
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert!(checksum_ok(&rsdp[..20]) && checksum_ok(&rsdp));
        let table = |addr: u64| {
            let mut head = [0u8; 8];
            ram.read_phys(addr, &mut head);
            let mut t = vec![0u8; u32::from_le_bytes(head[4..8].try_into().unwrap()) as usize];
            ram.read_phys(addr, &mut t);
            t
        };
        let xsdt = table(u64::from_le_bytes(rsdp[24..32].try_into().unwrap()));
        assert!(&xsdt[..4] == b"XSDT" && checksum_ok(&xsdt));
        let entries: Vec<u64> = xsdt[36..].chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
        let (fadt, madt) = (table(entries[0]), table(entries[1]));
        assert!(&fadt[..4] == b"FACP" && checksum_ok(&fadt));
        assert!(&madt[..4] == b"APIC" && checksum_ok(&madt));
        // Two local APICs (type 0) and one IOAPIC (type 1) after the 44-byte header.
        let mut kinds = Vec::new();
        let mut i = 44;
        while i < madt.len() {
            kinds.push(madt[i]);
            i += madt[i + 1] as usize;
        }
        assert_eq!(kinds, vec![0, 0, 1]);
    }
}

//! The x86-64 target gdb sees: the core and SSE registers (as gdbstub_arch's `X86_64_SSE`), plus
//! fs_base/gs_base and the system registers cr0, cr2, cr3, cr4 and efer, described in target.xml.

use gdbstub::arch::{Arch, Registers};
use gdbstub_arch::x86::reg::X86_64CoreRegs;
use gdbstub_arch::x86::reg::id::X86_64CoreRegId;

/// The register set: core and SSE, then the extra 64-bit registers in target.xml order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KvmscopeRegs {
    pub core: X86_64CoreRegs,
    pub fs_base: u64,
    pub gs_base: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

impl KvmscopeRegs {
    fn extra(&self) -> [u64; 7] {
        [self.fs_base, self.gs_base, self.cr0, self.cr2, self.cr3, self.cr4, self.efer]
    }
}

/// Bytes of the core and SSE registers in a `g` packet.
const CORE_LEN: usize = 0x218;

impl Registers for KvmscopeRegs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.core.rip
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        self.core.gdb_serialize(&mut write_byte);
        for v in self.extra() {
            for b in v.to_le_bytes() {
                write_byte(Some(b));
            }
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        self.core.gdb_deserialize(bytes.get(..CORE_LEN).ok_or(())?)?;
        let extra = bytes.get(CORE_LEN..).unwrap_or(&[]);
        let mut values = self.extra();
        for (v, chunk) in values.iter_mut().zip(extra.chunks_exact(8)) {
            *v = u64::from_le_bytes(chunk.try_into().map_err(|_| ())?);
        }
        [self.fs_base, self.gs_base, self.cr0, self.cr2, self.cr3, self.cr4, self.efer] = values;
        Ok(())
    }
}

/// kvmscope's x86-64 architecture for gdbstub.
pub enum KvmscopeX86_64 {}

impl Arch for KvmscopeX86_64 {
    type Usize = u64;
    type Registers = KvmscopeRegs;
    type RegId = X86_64CoreRegId;
    type BreakpointKind = usize;

    fn target_description_xml() -> Option<&'static str> {
        Some(include_str!("target.xml"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_round_trip_with_the_extra_ones() {
        let mut r = KvmscopeRegs { cr3: 0x1000, efer: 0x500, fs_base: 7, ..Default::default() };
        r.core.rip = 0x10_0000;
        r.core.regs[0] = 42;
        let mut bytes = Vec::new();
        r.gdb_serialize(|b| bytes.push(b.unwrap_or(0)));
        assert_eq!(bytes.len(), CORE_LEN + 7 * 8);
        let mut back = KvmscopeRegs::default();
        back.gdb_deserialize(&bytes).unwrap();
        assert_eq!(back, r);
        assert!(back.gdb_deserialize(&bytes[..10]).is_err(), "a short packet is refused");
    }

    #[test]
    fn target_xml_names_every_register_once_in_order() {
        let xml = KvmscopeX86_64::target_description_xml().unwrap();
        let names: Vec<&str> = xml.split("<reg name=\"").skip(1).map(|s| &s[..s.find('"').unwrap()]).collect();
        assert_eq!(names.len(), 16 + 2 + 6 + 8 + 8 + 16 + 1 + 2 + 5);
        assert_eq!(&names[..3], ["rax", "rbx", "rcx"]);
        assert_eq!(&names[names.len() - 7..], ["fs_base", "gs_base", "cr0", "cr2", "cr3", "cr4", "efer"]);
    }
}

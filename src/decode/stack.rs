//! A guest's call stack from its frame-pointer chain: from the exit's RIP, each frame's saved
//! frame pointer and return address, read through the guest's page tables. Bounded in depth, and
//! every step checked (aligned, readable, moving up the stack), since the guest may keep no frame
//! pointers at all or be in the middle of making one.

use super::paging::{CpuMode, PhysRead, read_virt};

/// Frames walked at most.
pub const MAX_DEPTH: usize = 32;
/// A frame larger than this ends the walk: it is not a frame.
const MAX_FRAME: u64 = 1 << 20;

/// The RIP, then the return address of each frame, innermost first.
pub fn frame_pointer_walk(mem: &dyn PhysRead, mode: &CpuMode, rip: u64, bp: u64) -> Vec<u64> {
    let word = if mode.bitness() == 64 { 8 } else { 4 };
    let mut frames = vec![rip];
    let mut bp = if word == 4 { bp & 0xffff_ffff } else { bp };
    while frames.len() <= MAX_DEPTH && bp != 0 && bp % word == 0 {
        let mut raw = [0u8; 16];
        let raw = &mut raw[..2 * word as usize];
        if read_virt(mem, mode, bp, raw) != raw.len() {
            break;
        }
        let (next, ret) = if word == 8 {
            (u64::from_le_bytes(raw[..8].try_into().unwrap()), u64::from_le_bytes(raw[8..].try_into().unwrap()))
        } else {
            (
                u32::from_le_bytes(raw[..4].try_into().unwrap()) as u64,
                u32::from_le_bytes(raw[4..].try_into().unwrap()) as u64,
            )
        };
        if ret == 0 {
            break;
        }
        frames.push(ret);
        if next <= bp || next - bp > MAX_FRAME {
            break;
        }
        bp = next;
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flat memory at 0 for 32-bit protected mode without paging.
    struct Flat(Vec<u8>);
    impl PhysRead for Flat {
        fn read_phys(&self, gpa: u64, buf: &mut [u8]) -> bool {
            let Some(end) = (gpa as usize).checked_add(buf.len()).filter(|&e| e <= self.0.len()) else { return false };
            buf.copy_from_slice(&self.0[gpa as usize..end]);
            true
        }
    }

    fn protected() -> CpuMode {
        CpuMode { cr0: 1, cr3: 0, cr4: 0, efer: 0, cs_base: 0, cs_l: false, cs_db: true }
    }

    #[test]
    fn walks_saved_frames_and_stops_where_the_chain_ends_or_loops() {
        let mut m = Flat(vec![0; 0x1000]);
        // Frame at 0x800 -> 0x900 (ret 0x1111) -> 0 (ret 0x2222).
        m.0[0x800..0x804].copy_from_slice(&0x900u32.to_le_bytes());
        m.0[0x804..0x808].copy_from_slice(&0x1111u32.to_le_bytes());
        m.0[0x904..0x908].copy_from_slice(&0x2222u32.to_le_bytes());
        assert_eq!(frame_pointer_walk(&m, &protected(), 0x500, 0x800), vec![0x500, 0x1111, 0x2222]);
        // A frame pointing back at itself, and one outside memory, end the walk.
        m.0[0x900..0x904].copy_from_slice(&0x900u32.to_le_bytes());
        assert_eq!(frame_pointer_walk(&m, &protected(), 0x500, 0x800).len(), 3);
        assert_eq!(frame_pointer_walk(&m, &protected(), 0x500, 0xfffff0), vec![0x500]);
        assert_eq!(frame_pointer_walk(&m, &protected(), 0x500, 0x801), vec![0x500], "misaligned");
    }
}

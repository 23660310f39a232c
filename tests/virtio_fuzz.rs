//! A deterministic fuzz of the virtio-mmio transport and the queue parser: thousands of generated
//! hostile drivers — random register writes in any order, random queue sizes and ring addresses
//! (inside RAM, outside it, misaligned), descriptor tables full of loops, huge lengths, addresses in
//! the MMIO hole, indirect tables pointing at garbage, avail indexes far ahead — against virtio-blk
//! and virtio-rng. Nothing may panic; the device must never write outside the buffers it was given
//! (here: outside RAM), and a device marked DEVICE_NEEDS_RESET takes no more requests.

use kvmscope::trace::QueueCounts;
use kvmscope::vmm::bus::BusDevice;
use kvmscope::vmm::virtio::blk::Block;
use kvmscope::vmm::virtio::rng::Rng;
use kvmscope::vmm::virtio::{DeviceView, DiskSpec, Transport, VirtioDevice};
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest RAM of the fuzzed VM: 64 KiB at 0.
const RAM: u64 = 0x10000;

/// xorshift64*: the same drivers on every run.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// An address: mostly in RAM, sometimes past it, in the MMIO hole, or near the top.
    fn addr(&mut self) -> u64 {
        match self.below(8) {
            0 => 0xd000_0000 + self.below(0x1000),
            1 => u64::MAX - self.below(64),
            2 => RAM - self.below(32),
            _ => self.below(RAM) & !self.below(16),
        }
    }
}

fn write_reg(t: &mut Transport, offset: u64, value: u32) {
    t.write(offset, &value.to_le_bytes());
}

fn read_reg(t: &mut Transport, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(offset, &mut b);
    u32::from_le_bytes(b)
}

/// Fills the descriptor table and avail ring at random, with the structures a driver would use:
/// gentle (three-descriptor chains in RAM, as a driver makes them, a few made available after
/// `next_avail`) or wild (anything at all).
fn scribble(g: &mut Gen, mem: &GuestMemoryMmap, desc: u64, avail: u64, size: u64, next_avail: u16) {
    let gentle = g.below(2) == 0;
    for i in 0..size {
        let (addr, len, flags, next) = if gentle {
            let last = i % 3 == 2;
            let flags = if last { 2 } else { 1 | (g.below(2) as u16 * 2) };
            (g.below(RAM - 4096), 16 + g.below(1024) as u32, flags, ((i + 1) % size) as u16)
        } else {
            let len = match g.below(4) {
                0 => u32::MAX - g.below(4) as u32,
                1 => 0,
                _ => g.below(4096) as u32,
            };
            let next = if g.below(4) == 0 { g.below(0x10000) as u16 } else { g.below(size) as u16 };
            (g.addr(), len, g.below(8) as u16, next) // NEXT, WRITE, INDIRECT in any mix
        };
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..16].copy_from_slice(&next.to_le_bytes());
        let _ = mem.write_slice(&raw, GuestAddress(desc + 16 * i));
    }
    let idx = match (gentle, g.below(5)) {
        (true, _) | (false, 0..=2) => next_avail.wrapping_add(1 + g.below(3) as u16),
        _ => g.below(0x10000) as u16,
    };
    let _ = mem.write_obj(idx.to_le(), GuestAddress(avail + 2));
    for i in 0..size {
        let head = match (gentle, g.below(6)) {
            (true, _) => (3 * g.below(size / 3)) as u16,
            (false, 0) => g.below(0x10000) as u16,
            _ => g.below(size) as u16,
        };
        let _ = mem.write_obj(head.to_le(), GuestAddress(avail + 4 + 2 * i));
    }
    // Request headers where buffers point: blk requests of every type, sectors near the disk's end.
    for _ in 0..8 {
        let at = g.below(RAM - 16);
        let header = [g.below(10) as u32, 0, g.below(80) as u32, 0];
        for (k, w) in header.iter().enumerate() {
            let _ = mem.write_obj(w.to_le(), GuestAddress(at + 4 * k as u64));
        }
    }
}

/// Drives one device with one generated driver; what its events counted.
fn one_driver(g: &mut Gen, device: Box<dyn VirtioDevice>) -> QueueCounts {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
    let mut t = Transport::new("fuzzed", device, mem.clone(), None).unwrap();
    let queues = t.queues().len() as u32;
    for _ in 0..g.below(40) + 4 {
        match g.below(14) {
            // Now and then a driver that does it all right, so that requests get to the device.
            12 | 13 => {
                for status in [0, 1, 3] {
                    write_reg(&mut t, 0x70, status);
                }
                write_reg(&mut t, 0x24, 1);
                write_reg(&mut t, 0x20, 1);
                write_reg(&mut t, 0x24, 0);
                let offered = read_reg(&mut t, 0x10);
                write_reg(&mut t, 0x20, g.next() as u32 & offered);
                write_reg(&mut t, 0x70, 0xb);
                for q in 0..queues {
                    write_reg(&mut t, 0x30, q);
                    write_reg(&mut t, 0x38, 8 << g.below(2));
                    write_reg(&mut t, 0x80, (g.below(RAM / 2) & !15) as u32);
                    write_reg(&mut t, 0x90, (g.below(RAM / 2) & !1) as u32);
                    write_reg(&mut t, 0xa0, (g.below(RAM / 2) & !3) as u32);
                    write_reg(&mut t, 0x44, 1);
                }
                write_reg(&mut t, 0x70, 0xf);
            }
            // A driver that mostly follows the steps, out of order and with wrong values.
            0 => write_reg(&mut t, 0x70, [0, 1, 3, 0xb, 0xf, 0x4, 0x80, g.next() as u32][g.below(8) as usize]),
            1 => {
                write_reg(&mut t, 0x24, g.below(3) as u32);
                write_reg(&mut t, 0x20, if g.below(2) == 0 { g.next() as u32 } else { 1 });
            }
            2 => write_reg(&mut t, 0x30, g.below(queues as u64 + 2) as u32),
            3 => write_reg(&mut t, 0x38, [8, 3, 0, 1 << 15, 64, 256, g.next() as u32][g.below(7) as usize]),
            4 => {
                let (desc, avail, used) = (g.addr(), g.addr(), g.addr());
                for (reg, a) in [(0x80, desc), (0x90, avail), (0xa0, used)] {
                    write_reg(&mut t, reg, a as u32);
                    write_reg(&mut t, reg + 4, (a >> 32) as u32);
                }
            }
            5 => write_reg(&mut t, 0x44, g.below(3) as u32),
            6 => {
                let q = g.below(queues as u64 + 1) as u32;
                write_reg(&mut t, 0x50, q);
                t.count_notifies(q.min(queues - 1) as usize, 1 + g.below(3));
            }
            7 => {
                // Rings the queue really uses, scribbled over.
                let q = &t.queues()[g.below(queues as u64) as usize];
                let (desc, avail, size, next) = (q.desc_table(), q.avail_ring(), q.size() as u64, q.next_avail());
                if desc < RAM && avail < RAM {
                    scribble(g, &mem, desc, avail, size.min(256), next);
                }
            }
            8 => {
                let before = (0..queues as usize).map(|q| t.queues()[q].next_used()).collect::<Vec<_>>();
                let broken = t.status() & 64 != 0;
                for q in 0..queues as usize {
                    t.process_queue(q, 0);
                }
                if broken {
                    let after: Vec<u16> = (0..queues as usize).map(|q| t.queues()[q].next_used()).collect();
                    assert_eq!(before, after, "a device that needs a reset took requests");
                }
            }
            9 => {
                let mut b = vec![0u8; [1, 2, 4, 8][g.below(4) as usize]];
                t.read(g.below(0x200), &mut b);
            }
            10 => {
                let value = g.next().to_le_bytes();
                t.write(g.below(0x200), &value[..[1, 2, 4, 8][g.below(4) as usize]]);
            }
            _ => {
                let _ = read_reg(&mut t, 0x60);
                write_reg(&mut t, 0x64, g.next() as u32);
            }
        }
        // The view walks the chains in flight too: it must survive the same garbage.
        if g.below(8) == 0 {
            let _ = DeviceView::of(&t, 0xd000_0000, 5, false).text(true);
        }
    }
    t.events.counters().device("fuzzed")
}

#[test]
fn thousands_of_hostile_drivers_never_break_the_vmm() {
    let disk = std::env::temp_dir().join(format!("kvmscope-fuzz-{}.img", std::process::id()));
    std::fs::write(&disk, vec![0u8; 64 * 512]).unwrap();
    let spec = DiskSpec { path: disk.clone(), read_only: false };
    let mut g = Gen(0x6b76_6d73_636f_7065);
    let (mut completed, mut errors, mut broken) = (0, 0, 0);
    for i in 0..3000 {
        let device: Box<dyn VirtioDevice> =
            if i % 2 == 0 { Box::new(Block::open(&spec).unwrap()) } else { Box::new(Rng) };
        let c = one_driver(&mut g, device);
        completed += c.completed;
        errors += c.errors;
        broken += u64::from(c.errors > 0 && c.interrupts > 0);
    }
    eprintln!("fuzz: {completed} requests completed, {errors} driver errors, {broken} devices refused a driver");
    // The drivers got far enough to matter: requests were carried out, and refused.
    assert!(completed > 300 && errors > 5000 && broken > 100, "{completed} {errors} {broken}");
    // The disk is the 32 KiB it was: no request wrote past its end.
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 64 * 512);
    let _ = std::fs::remove_file(disk);
}

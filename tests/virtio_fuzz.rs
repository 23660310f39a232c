//! A deterministic fuzz of the virtio-mmio transport and the queue parser: thousands of generated
//! hostile drivers — random register writes in any order, random queue sizes and ring addresses
//! (inside RAM, outside it, misaligned), descriptor tables full of loops, huge lengths, addresses in
//! the MMIO hole, indirect tables pointing at garbage, avail indexes far ahead — against virtio-blk
//! and virtio-rng, then virtio-net on a TAP with a peer that floods it (in a network namespace of
//! the test's own), and the frame decoder on random bytes. Nothing may panic; the device must
//! never write outside the buffers it was given (here: outside RAM), and a device marked
//! DEVICE_NEEDS_RESET takes no more requests.

use kvmscope::trace::QueueCounts;
use kvmscope::vmm::bus::BusDevice;
use kvmscope::vmm::memory::Mem as GuestMemoryMmap;
use kvmscope::vmm::virtio::blk::Block;
use kvmscope::vmm::virtio::rng::Rng;
use kvmscope::vmm::virtio::{DeviceView, DiskSpec, Transport, VirtioDevice};
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};

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

// ---------------------------------------------------------------------------------------------
// virtio-net: hostile drivers and hostile peers, on a TAP in a network namespace of the test's
// own (made with unshare(CLONE_NEWNET) on the thread that opens it; root). The peer is a packet
// socket on the TAP's interface: what it sends, the card receives; what the card sends, it reads.

use kvmscope::vmm::virtio::NetSpec;
use kvmscope::vmm::virtio::net::{INBOX_FRAMES, Net};

/// Runs `f` on a thread in a new network namespace; `None` (said) without the rights.
fn in_private_netns<T: Send>(test: &str, f: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare affects this thread only.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                let e = std::io::Error::last_os_error();
                if std::env::var("KVMSCOPE_REQUIRE_KVM").as_deref() == Ok("1") {
                    panic!("{test}: a network namespace cannot be made: {e}");
                }
                eprintln!("SKIPPED {test}: a network namespace cannot be made ({e}; root needed)");
                return None;
            }
            // No IPv6 chatter of the namespace's own on the wire: the frames are the test's.
            let _ = std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
            Some(f())
        })
        .join()
        .unwrap()
    })
}

/// A packet socket on interface `name`: the other end of the card's wire.
struct Peer(i32);

impl Peer {
    fn on(name: &str) -> Self {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: plain socket calls with valid arguments; the descriptor is closed on drop.
        unsafe {
            let index = libc::if_nametoindex(c.as_ptr()) as i32;
            assert!(index > 0, "no interface {name}");
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, (libc::ETH_P_ALL as u16).to_be() as i32);
            assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            addr.sll_ifindex = index;
            let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            assert_eq!(libc::bind(fd, (&raw const addr).cast(), len), 0);
            Self(fd)
        }
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: `frame` is a readable buffer of its length.
        let n = unsafe { libc::send(self.0, frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(n, frame.len() as isize, "{}", std::io::Error::last_os_error());
    }

    /// The frames the peer has received, waiting up to `ms` for the first.
    fn received(&self, ms: i32) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut pfd = libc::pollfd { fd: self.0, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; a readable buffer for recv.
        while unsafe { libc::poll(&mut pfd, 1, if out.is_empty() { ms } else { 50 }) } > 0 {
            let mut buf = vec![0u8; 70_000];
            // SAFETY: `buf` is a writable buffer of its length.
            let n = unsafe { libc::recv(self.0, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n <= 0 {
                break;
            }
            buf.truncate(n as usize);
            out.push(buf);
        }
        out
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SAFETY: the descriptor this Peer owns.
        unsafe { libc::close(self.0) };
    }
}

/// An Ethernet frame of `len` bytes from the peer to `dst`, of a local experimental type.
fn frame_to(dst: [u8; 6], len: usize, tag: u8) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend([0x02, 0, 0, 0, 0, 0x99, 0x88, 0xb5]);
    f.resize(len, tag);
    f
}

const NET_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
/// Where the hand-made driver keeps each queue's rings and buffers (queue q at q * 0x4000).
const QSIZE: u16 = 8;

/// A card on TAP `tap`, set up by a driver that follows the spec (MAC and STATUS, queues of 8).
fn card(tap: &str) -> (Transport, GuestMemoryMmap) {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
    let net = Net::open(&NetSpec { tap: tap.into(), mac: Some(NET_MAC) }).unwrap();
    let mut t = Transport::new("virtio-net", Box::new(net), mem.clone(), None).unwrap();
    let wake = std::sync::Arc::new(vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap());
    t.connect_device(wake);
    for status in [0, 1, 3] {
        write_reg(&mut t, 0x70, status);
    }
    write_reg(&mut t, 0x24, 1);
    write_reg(&mut t, 0x20, 1);
    write_reg(&mut t, 0x24, 0);
    write_reg(&mut t, 0x20, (1 << 5) | (1 << 16));
    write_reg(&mut t, 0x70, 0xb);
    for q in 0..2u32 {
        write_reg(&mut t, 0x30, q);
        write_reg(&mut t, 0x38, QSIZE as u32);
        write_reg(&mut t, 0x80, q * 0x4000);
        write_reg(&mut t, 0x90, q * 0x4000 + 0x1000);
        write_reg(&mut t, 0xa0, q * 0x4000 + 0x2000);
        write_reg(&mut t, 0x44, 1);
    }
    write_reg(&mut t, 0x70, 0xf);
    assert_eq!(t.status(), 0xf, "the card is set up");
    (t, mem)
}

/// Makes a chain of (address, length, device writes) available on queue `q` and processes it.
fn offer(t: &mut Transport, mem: &GuestMemoryMmap, q: u16, bufs: &[(u64, u32, bool)]) {
    make_available(mem, q, bufs);
    while t.process_queue(q as usize, 0) {}
}

/// Makes a chain of (address, length, device writes) available on queue `q`.
fn make_available(mem: &GuestMemoryMmap, q: u16, bufs: &[(u64, u32, bool)]) {
    let base = q as u64 * 0x4000;
    let idx: u16 = mem.read_obj(GuestAddress(base + 0x1002)).unwrap();
    let first = (idx % QSIZE) * 2 % QSIZE;
    for (i, &(addr, len, write)) in bufs.iter().enumerate() {
        let d = (first + i as u16) % QSIZE;
        let more = i + 1 < bufs.len();
        let flags = u16::from(more) | if write { 2 } else { 0 };
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..16].copy_from_slice(&((d + 1) % QSIZE).to_le_bytes());
        mem.write_slice(&raw, GuestAddress(base + 16 * d as u64)).unwrap();
    }
    mem.write_obj(first, GuestAddress(base + 0x1004 + 2 * (idx % QSIZE) as u64)).unwrap();
    mem.write_obj(idx.wrapping_add(1), GuestAddress(base + 0x1002)).unwrap();
}

/// The card's counts of queue `q` (None: its own events).
fn counts(t: &Transport, q: Option<u16>) -> QueueCounts {
    t.events.counters().queue("virtio-net", q)
}

fn wait_until(mut ready: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "timed out");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_network_card_survives_hostile_drivers_and_peers() {
    in_private_netns("a_network_card_survives_hostile_drivers_and_peers", || {
        let (mut t, mem) = card("hostile0");
        let peer = Peer::on("hostile0");
        let header = [0u8; 12];
        // A frame the guest sends: header and 60 bytes at 0x8000.
        mem.write_slice(&header, GuestAddress(0x8000)).unwrap();
        mem.write_slice(&frame_to([0xff; 6], 60, 1), GuestAddress(0x800c)).unwrap();
        offer(&mut t, &mem, 1, &[(0x8000, 72, false)]);
        let got = peer.received(2000);
        assert!(got.iter().any(|f| f.len() == 60 && f[59] == 1), "the peer gets the frame: {got:?}");
        assert_eq!(counts(&t, Some(1)).frames, 1);

        // Shorter than the header; more than a frame can be; a buffer the device would write.
        offer(&mut t, &mem, 1, &[(0x8000, 4, false)]);
        offer(&mut t, &mem, 1, &[(0x100, 40_000, false), (0x100, 40_000, false)]);
        assert_eq!(counts(&t, Some(1)).drops, 2, "both dropped, each counted");
        offer(&mut t, &mem, 1, &[(0x8000, 72, false), (0x9000, 16, true)]);
        let c = counts(&t, Some(1));
        assert_eq!((c.frames, c.errors), (2, 1), "sent, and the writable buffer is the driver's error");
        assert_eq!(t.status() & 64, 0, "a bad frame does not break the card");
        // The view: features by name, a transmit chain in flight decoded, the receive side's inbox.
        make_available(&mem, 1, &[(0x8000, 72, false)]);
        let view = DeviceView::of(&t, 0xd000_0000, 5, false).text(true);
        for want in [
            "virtio-net: virtio-net (device id 1)",
            "device features: NET_CSUM NET_GUEST_CSUM NET_MAC NET_GUEST_TSO4",
            "driver features: NET_MAC NET_STATUS VERSION_1",
            ": transmit 02:00:00:00:00:99 > ff:ff:ff:ff:ff:ff, length 60: ethertype 0x88b5",
            "frames waiting for them: 0",
        ] {
            assert!(view.contains(want), "{want:?} in:\n{view}");
        }
        while t.process_queue(1, 0) {}

        // Frames while the guest has posted no buffers: the inbox fills, then frames are dropped.
        for i in 0..INBOX_FRAMES + 20 {
            peer.send(&frame_to(NET_MAC, 60 + i % 100, 2));
        }
        wait_until(|| counts(&t, Some(0)).drops >= 20);
        assert!(t.device().queue_note(0).unwrap().contains(&format!("frames waiting for them: {INBOX_FRAMES}")));
        // A receive chain too small for the frame: that frame is dropped, the next delivered.
        let before = counts(&t, Some(0)).drops;
        offer(&mut t, &mem, 0, &[(0xa000, 20, true)]);
        assert_eq!(counts(&t, Some(0)).drops, before + 1);
        offer(&mut t, &mem, 0, &[(0xa000, 12, true), (0xa100, 1514, true)]);
        let c = counts(&t, Some(0));
        assert_eq!(c.frames, 1);
        let (mut header, mut dst) = ([0u8; 12], [0u8; 6]);
        mem.read_slice(&mut header, GuestAddress(0xa000)).unwrap();
        mem.read_slice(&mut dst, GuestAddress(0xa100)).unwrap();
        assert_eq!(u16::from_le_bytes([header[10], header[11]]), 1, "num_buffers");
        assert_eq!(dst, NET_MAC, "the frame follows the header, in the chain's next buffer");

        // The TAP goes away: an event, and frames after it are dropped; no panic, no hang.
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let del = std::process::Command::new("nsenter")
            .arg(format!("--net=/proc/{}/task/{tid}/ns/net", std::process::id()))
            .args(["ip", "link", "del", "hostile0"])
            .output()
            .unwrap();
        assert!(del.status.success(), "{}", String::from_utf8_lossy(&del.stderr));
        wait_until(|| counts(&t, None).errors == 1);
        let before = counts(&t, Some(1)).drops;
        offer(&mut t, &mem, 1, &[(0x8000, 72, false)]);
        assert_eq!(counts(&t, Some(1)).drops, before + 1);
        let mut config = [0u8; 2];
        t.read(0x106, &mut config);
        assert_eq!(config, [0, 0], "the link is down");
        t.device_mut().stop();
    });
}

#[test]
fn hundreds_of_hostile_drivers_against_a_network_card_with_a_chatty_peer() {
    in_private_netns("hundreds_of_hostile_drivers_against_a_network_card", || {
        let mut g = Gen(0x6e65_7466_757a_7a31);
        let (mut frames, mut drops, mut errors) = (0, 0, 0);
        for i in 0..300 {
            let name = format!("fz{i}");
            let mut net = Net::open(&NetSpec { tap: name.clone(), mac: Some(NET_MAC) }).unwrap();
            let peer = Peer::on(&name);
            for k in 0..g.below(40) {
                peer.send(&frame_to(
                    if k % 2 == 0 { NET_MAC } else { [0xff; 6] },
                    14 + g.below(1500) as usize,
                    k as u8,
                ));
            }
            let wake = std::sync::Arc::new(vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap());
            let link_events = kvmscope::vmm::virtio::stats::EventOut::default();
            net.connect(kvmscope::vmm::virtio::DeviceLink { name: "virtio-net", events: link_events.clone(), wake });
            let c = one_driver(&mut g, Box::new(net));
            let from_reader = link_events.counters().device("virtio-net");
            frames += c.frames + from_reader.frames;
            drops += c.drops + from_reader.drops;
            errors += c.errors;
        }
        eprintln!("net fuzz: {frames} frames, {drops} dropped, {errors} driver errors");
        // How many frames arrive while a driver has the card up varies with the threads' timing.
        assert!(frames > 10 && frames + drops > 20 && errors > 300, "{frames} {drops} {errors}");
    });
}

#[test]
fn frames_decode_whatever_their_bytes() {
    let mut g = Gen(0x6672_616d_6573_2121);
    for _ in 0..20_000 {
        let len = g.below(200) as usize;
        let mut f: Vec<u8> = (0..len).map(|_| g.next() as u8).collect();
        if len > 14 {
            // Mostly the types the summary reads further into.
            let t: u16 = [0x0800, 0x0806, 0x86dd, 0x8100, g.next() as u16][g.below(5) as usize];
            f[12..14].copy_from_slice(&t.to_be_bytes());
            if len > 23 && g.below(2) == 0 {
                f[14] = 0x45;
                f[23] = [1, 6, 17, 58][g.below(4) as usize];
            }
        }
        let claimed = len + g.below(3) as usize * 1000;
        let s = kvmscope::trace::frame::summary(&f, claimed);
        assert!(!s.is_empty());
    }
}

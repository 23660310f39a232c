//! Real GNU gdb against kvmscope's stub (`gdb -batch`), on the project's guests: attach with
//! --gdb-wait, registers (with the system ones), hbreak/break/stepi, memory, watchpoints with
//! old/new values, monitor commands, detach and re-attach; Ctrl-C; malformed packets.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::gdb_stub::*;
use common::*;

#[test]
fn gdb_session_on_a_held_guest() {
    if !gdb_or_skip("gdb_session_on_a_held_guest") {
        return;
    }
    let stub = Stub::start("gdbtest.elf", true);
    let out = stub.gdb(
        Some("gdbtest.elf"),
        &[
            "info registers rip",
            "p/x $cr0",
            "p/x $efer",
            "p/x $cs",
            "p/x $fs_base",
            "hbreak bump",
            "continue",
            "stepi",
            "info registers rip",
            "x/4xb &counter",
            "delete",
            "break bump",
            "continue",
            "p *(int*)&counter",
            "delete",
            "watch *(int*)&counter",
            "continue",
            "delete",
            "set var *(int*)&counter = 3",
            "set $rbx = 0x1234",
            "p/x $rbx",
            "monitor break-exit io 0x3f8 nth 2",
            "continue",
            "info registers rip",
            "monitor delete-exit",
            "monitor probe",
            "monitor help",
            "monitor exits",
            "monitor translate 0x200000",
            "monitor translate 0x500000000",
            "monitor translate-phys 0x201000",
            "monitor info mem",
            "monitor info tlb",
            "monitor info mtree",
            "monitor regs",
            "detach",
        ],
    );
    let want = [
        "rip            0x200000            0x200000 <_start>", // held before the first instruction
        "$1 = 0x80000011",                                      // cr0: PG | ET | PE
        "$2 = 0x500",                                           // efer: LMA | LME
        "$3 = 0x8",
        "$4 = 0x0",
        "Hardware assisted breakpoint 1 at 0x20001e",
        "Breakpoint 1, 0x000000000020001e in bump ()",
        "rip            0x200024            0x200024 <bump+6>", // stepi: one instruction on
        "0x201000 <counter>:\t0x01\t0x00\t0x00\t0x00",
        "Breakpoint 2, 0x000000000020001e in bump ()",
        "$5 = 1",
        "Hardware watchpoint 3: *(int*)&counter",
        "Old value = 1",
        "New value = 2",
        "$6 = 0x1234", // registers are writable
        "exit breakpoint #1 io 0x3f8 nth 2",
        "Program received signal SIGTRAP", // the second `out` to the serial port
        "            0x20002",             // at the `out` (VT-x) or just past it (PVM): <bump+12> or <bump+13>
        "deleted 1 exit breakpoint(s)",
        "kvmscope uses:",
        "kvmscope monitor commands",
        "VM-EXIT",
        "PML4 entry at 0x000000001000",
        "0x200000 -> guest-physical 0x200000 (2048 KiB page)",
        "= 0x00000000002000e3  P RW A D PS", // the 2 MiB page's PD entry, its flags by name
        "memory slot    0: 0x0-0x",          // the slot that holds it
        "host-virtual   0x",
        "host page      ",                                        // its frame as root, else why not
        "guest-physical 0x201000 (4 KiB page)",                   // translate-phys starts there
        "0000000000000000-0000000100000000 0000000100000000 -rw", // info mem: the 4 GiB identity map
        "0000000000200000: 0000000000200000 ",                    // info tlb: its 2 MiB pages
        "(prio 0, ram): slot 0",                                  // info mtree
        "(prio 1, i/o): serial",
        "is not mapped", // beyond the 4 GiB identity map
        "cr3 0x0000000000001000",
        "[Inferior 1 (process 1) detached]",
    ];
    for w in want {
        assert!(out.contains(w), "want {w:?} in gdb's output:\n{out}");
    }
    // The software breakpoint's hit is counted as what it is, whatever exit told kvmscope of it.
    let rows: Vec<&str> = out.lines().map(str::trim_start).collect();
    assert!(rows.iter().any(|l| l.starts_with("breakpoint ")), "a breakpoint row in monitor exits:\n{out}");
    assert!(!rows.iter().any(|l| l.starts_with("internal_error ")), "no internal_error row:\n{out}");
    // The counter was set to 3 by gdb inside the second bump, which went on to the third bump's
    // `out` (the exit breakpoint); after detach, one more bump: the guest exits with 5.
    let (status, stdout, stderr) = stub.finish();
    assert_eq!(status, 11, "stderr: {stderr}");
    assert_eq!(stdout, "....", "one dot per bump");
}

#[test]
fn gdb_access_and_read_watchpoints() {
    if !gdb_or_skip("gdb_access_and_read_watchpoints") {
        return;
    }
    let stub = Stub::start("gdbtest.elf", true);
    let out = stub.gdb(
        Some("gdbtest.elf"),
        &[
            "awatch *(int*)&counter",
            "continue",
            "continue",
            "delete",
            "rwatch *(int*)&counter",
            "continue",
            "delete",
            "awatch *(int*)0x200000",
            "continue",
            "delete",
            "detach",
        ],
    );
    let want = [
        "Hardware access (read/write) watchpoint 1: *(int*)&counter",
        "Old value = 0\nNew value = 1\n0x0000000000200024 in bump ()", // incl: read and write
        "Value = 1\n0x0000000000200013 in _start ()",                  // cmpl: a read
        "Hardware read watchpoint 2: *(int*)&counter",
        "Value = 2\n0x0000000000200024 in bump ()", // incl reads too
    ];
    for w in want {
        assert!(out.contains(w), "want {w:?} in:\n{out}");
    }
    let (status, stdout, stderr) = stub.finish();
    assert_eq!((status, stdout.as_str()), (11, "....."), "{stderr}");
    if is_pvm() {
        // Reads are watched by unmapping the page here: one holding code is refused, clearly.
        assert!(stderr.contains("runs code on that page"), "{stderr}");
    }
}

#[test]
fn gdb_reattaches_and_ctrl_c_interrupts() {
    if !gdb_or_skip("gdb_reattaches_and_ctrl_c_interrupts") {
        return;
    }
    let stub = Stub::start("spin.elf", false);
    let first = stub.gdb(None, &["p $eax", "detach"]);
    assert!(first.contains("$1 = ") && first.contains("detached"), "{first}");
    let second = stub.gdb(None, &["p $eax", "detach"]);
    assert!(second.contains("$1 = ") && second.contains("detached"), "{second}");
    let value = |s: &str| s.split("$1 = ").nth(1).unwrap().split_whitespace().next().unwrap().parse::<u64>().unwrap();
    assert!(value(&second) > value(&first), "the guest ran on between the sessions");

    // Ctrl-C by the protocol: continue, then 0x03 -> a stop reply with SIGINT (T02).
    let mut s = TcpStream::connect(&stub.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 512];
    s.write_all(b"$?#3f").unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(n > 0);
    s.write_all(b"+$c#63").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(b"\x03").unwrap();
    let mut reply = Vec::new();
    while !String::from_utf8_lossy(&reply).contains("$T02") {
        let n = s.read(&mut buf).expect("a stop reply after Ctrl-C");
        assert!(n > 0, "connection closed: {}", String::from_utf8_lossy(&reply));
        reply.extend_from_slice(&buf[..n]);
    }
    s.write_all(b"+$D#44").unwrap();
    drop(s);
    stub.interrupt();
    let (status, _, stderr) = stub.finish();
    assert_eq!(status, 130, "{stderr}");
}

#[test]
fn malformed_packets_never_harm_the_vmm() {
    if !gdb_or_skip("malformed_packets_never_harm_the_vmm") {
        return;
    }
    let stub = Stub::start("spin.elf", false);
    let junk: [&[u8]; 5] =
        [b"$garbage#00", b"$qSupported:xx#ff", b"\x00\xff\xfe$#", b"$m ffffffffffffffff,ffffffff#00", b"$Z0,zz,1#00"];
    for j in junk {
        let mut s = TcpStream::connect(&stub.addr).unwrap();
        let _ = s.write_all(j);
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut s = TcpStream::connect(&stub.addr).unwrap();
    let mut big = b"$".to_vec();
    big.extend(std::iter::repeat_n(b'A', 100_000));
    big.extend_from_slice(b"#00");
    let _ = s.write_all(&big);
    drop(s);
    // A well-formed but hostile request: read from an unmapped address.
    let out = stub.gdb(None, &["x/4xb 0x7fff00000000", "p/x $rip", "detach"]);
    assert!(out.contains("Cannot access memory at address 0x7fff00000000"), "{out}");
    assert!(out.contains("$1 = 0x1000"), "registers still read: {out}");
    assert!(out.contains("detached"), "{out}");
    stub.interrupt();
    let (status, _, stderr) = stub.finish();
    assert_eq!(status, 130, "still running until Ctrl-C: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn breakpoint_errors_reach_gdb_and_nothing_is_half_applied() {
    if !gdb_or_skip("breakpoint_errors_reach_gdb_and_nothing_is_half_applied") {
        return;
    }
    let stub = Stub::start("gdbtest.elf", true);
    let out = stub.gdb(
        Some("gdbtest.elf"),
        &[
            "hbreak *0x200010",
            "hbreak *0x200011",
            "hbreak *0x200012",
            "hbreak *0x200013",
            "hbreak *0x200014",
            "continue",
            "delete",
            "break *0x7fff00000000",
            "continue",
            "delete",
            "info registers rip",
            "detach",
        ],
    );
    assert!(out.contains("Cannot insert hardware breakpoint 5"), "{out}");
    assert!(
        out.contains("Cannot insert breakpoint 6") && out.contains("Cannot access memory at address 0x7fff00000000"),
        "{out}"
    );
    assert!(out.contains("rip            0x200000"), "nothing ran while inserting failed: {out}");
    let (status, _, stderr) = stub.finish();
    assert!(stderr.contains("DR0-3) are in use"), "{stderr}");
    assert!(stderr.contains("not mapped"), "{stderr}");
    assert_eq!(status, 11, "after detach the guest runs to its end: {stderr}");
}

#[test]
fn gdb_port_in_use_is_a_clear_error() {
    if !kvm_or_skip("gdb_port_in_use_is_a_clear_error") {
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let run = run_headless(&["--kernel", guest("spin.elf").to_str().unwrap(), "--gdb", &port]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains(&format!("--gdb 127.0.0.1:{port}: cannot listen")), "{}", run.stderr);
}

/// A packet framed as gdb frames it.
fn packet(data: &str) -> Vec<u8> {
    let sum = data.bytes().fold(0u8, |s, b| s.wrapping_add(b));
    format!("${data}#{sum:02x}").into_bytes()
}

/// Reads the stub's next reply packet (skipping acks), acks it, and returns its data.
fn reply(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8];
    loop {
        s.read_exact(&mut byte).expect("a reply");
        match byte[0] {
            b'+' if got.is_empty() => {}
            b'$' if got.is_empty() => got.push(b'$'),
            b => {
                assert!(!got.is_empty(), "unexpected byte {b:#x} before a reply");
                got.push(b);
                if got.len() >= 3 && got[got.len() - 3] == b'#' {
                    break;
                }
            }
        }
    }
    s.write_all(b"+").unwrap();
    // Run-length encoding: `c*n` is `c` and then n - 29 more of it.
    let mut data = Vec::new();
    let body = &got[1..got.len() - 3];
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'*' && i + 1 < body.len() {
            let last = *data.last().unwrap();
            data.extend(std::iter::repeat_n(last, (body[i + 1] - 29) as usize));
            i += 2;
        } else {
            data.push(body[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&data).into_owned()
}

fn ask(s: &mut TcpStream, data: &str) -> String {
    s.write_all(&packet(data)).unwrap();
    reply(s)
}

#[test]
fn memory_packets_are_all_or_nothing_and_a_bad_checksum_is_sent_again() {
    if !gdb_or_skip("memory_packets_are_all_or_nothing_and_a_bad_checksum_is_sent_again") {
        return;
    }
    let stub = Stub::start("gdbtest.elf", true);
    let mut s = TcpStream::connect(&stub.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"+").unwrap();
    assert!(ask(&mut s, "?").starts_with('T'), "a stop reply");
    // 8 KiB across the end of the 256 MiB of RAM: the readable 4 KiB, and no error inside.
    let across = ask(&mut s, "m0ffff000,2000");
    assert_eq!(across.len(), 2 * 4096, "the readable prefix");
    assert!(across.bytes().all(|b| b.is_ascii_hexdigit()), "data only, no error glued in");
    assert!(ask(&mut s, "m10000000,10").starts_with('E'), "nothing readable: an error");
    // Writes: length and hex checked, all or nothing.
    let before = ask(&mut s, "m100000,5");
    assert_eq!(ask(&mut s, "M100000,1:0011223344"), "E16", "5 bytes where 1 is declared");
    assert_eq!(ask(&mut s, "M100000,1:0"), "E16", "odd hex");
    assert_eq!(ask(&mut s, "m100000,5"), before, "nothing was written");
    let tail = ask(&mut s, "m0ffffffc,4");
    assert!(ask(&mut s, "M0ffffffc,8:0102030405060708").starts_with('E'), "half of it is past RAM");
    assert_eq!(ask(&mut s, "m0ffffffc,4"), tail, "and none of it was written");
    assert_eq!(ask(&mut s, "M0ffffffc,4:01020304"), "OK");
    assert_eq!(ask(&mut s, "m0ffffffc,4"), "01020304");
    // A damaged packet is answered `-`; the session goes on and the packet sent again is answered.
    s.write_all(b"$m200000,1#00").unwrap();
    let mut nak = [0u8];
    s.read_exact(&mut nak).unwrap();
    assert_eq!(nak[0], b'-');
    assert_eq!(ask(&mut s, "m200000,1"), "48", "the session survived");
    assert_eq!(ask(&mut s, "D"), "OK");
    drop(s);
    let (status, _, stderr) = stub.finish();
    assert_eq!(status, 11, "after detach the guest runs to its end: {stderr}");
}

/// Lines of `out` that look like `info mem` ranges or `info tlb` pages (16 hex digits first).
fn table_lines<'a>(out: &'a str, sep: &str) -> Vec<&'a str> {
    out.lines()
        .filter(|l| l.len() > 17 && l[..16].chars().all(|c| c.is_ascii_hexdigit()) && l[16..].starts_with(sep))
        .collect()
}

#[test]
fn gdb_shows_the_page_tables_a_guest_built_itself() {
    if !gdb_or_skip("gdb_shows_the_page_tables_a_guest_built_itself") {
        return;
    }
    // higherhalf maps 8 MiB at 0 in 2 MiB pages and one 4 KiB page at 16 GiB, through a PDPT that
    // PML4 entry 256 shares: the same again at 0xffff800000000000. Stopped at its first port write
    // (from the higher half), its tables are in use.
    let stub = Stub::start("higherhalf.elf", true);
    let out = stub.gdb(
        None,
        &[
            "monitor break-exit io 0x511",
            "continue",
            "monitor info mem",
            "monitor info tlb",
            "monitor translate 0xffff800000100000",
            "monitor translate 0x400000000",
            "monitor delete-exit",
            "detach",
        ],
    );
    assert_eq!(
        table_lines(&out, "-"),
        [
            "0000000000000000-0000000000800000 0000000000800000 -rw",
            "0000000400000000-0000000400001000 0000000000001000 -rw",
            "ffff800000000000-ffff800000800000 0000000000800000 -rw",
            "ffff800400000000-ffff800400001000 0000000000001000 -rw",
        ],
        "info mem lists exactly its mappings:\n{out}"
    );
    let tlb = table_lines(&out, ": ");
    assert_eq!(tlb.len(), 10, "four 2 MiB pages and one 4 KiB page, twice:\n{out}");
    for (i, virt) in [0u64, 0xffff_8000_0000_0000].iter().flat_map(|b| (0..4).map(move |i| (i, b + i * 0x20_0000))) {
        let line = format!("{virt:016x}: {:016x} ", i * 0x20_0000);
        assert!(tlb.iter().any(|l| l.starts_with(&line) && l.contains('P')), "{line:?} (a large page) in:\n{out}");
    }
    // The higher half: PML4 entry 256, the PDPT, the PD's 2 MiB page; 1 MiB physical, in slot 0.
    for want in [
        "0xffff800000100000 -> guest-physical 0x100000 (2048 KiB page)",
        "memory slot    0: 0x0-0x",
        "host-virtual   0x",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    let pml4 = out.lines().find(|l| l.trim_start().starts_with("PML4 entry at ")).unwrap_or_default();
    assert!(pml4.ends_with("P RW") || pml4.contains(" P RW "), "PML4 entry 256 present and writable: {out}");
    // The 4 KiB page at 16 GiB: the same frame in translate and in info tlb.
    let far = out
        .split("0x400000000 -> guest-physical ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no translation of 0x400000000:\n{out}"));
    let far = u64::from_str_radix(far.trim_start_matches("0x"), 16).unwrap();
    assert_eq!(far & 0xfff, 0);
    for virt in ["0000000400000000", "ffff800400000000"] {
        assert!(tlb.iter().any(|l| l.starts_with(&format!("{virt}: {far:016x} "))), "{out}");
    }
    let (status, _, stderr) = stub.finish();
    assert_eq!(status, 67, "{stderr}");
}

#[test]
fn info_mem_and_tlb_say_when_paging_is_off() {
    if !gdb_or_skip("info_mem_and_tlb_say_when_paging_is_off") {
        return;
    }
    // The multiboot guest starts in protected mode with paging off, as QEMU would say: PG disabled.
    let stub = Stub::start("hello.elf", true);
    let out = stub.gdb(None, &["monitor info mem", "monitor info tlb", "kill"]);
    assert_eq!(out.matches("PG disabled: paging is off").count(), 2, "{out}");
    drop(stub.finish());
}

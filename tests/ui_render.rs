//! Rendering tests with ratatui's TestBackend: each pane, both layouts, the help overlay, NO_COLOR.

use std::sync::Arc;

use kvm_bindings::{kvm_regs, kvm_sregs};
use kvmscope::debug::{Stop, StopReason};
use kvmscope::trace::{Dir, ExitEvent, ExitKind, Insn};
use kvmscope::trace::{KernelLine, KernelLineKind};
use kvmscope::ui::app::{App, InputMode};
use kvmscope::ui::panes::memory::MemoryTarget;
use kvmscope::ui::reader;
use kvmscope::ui::screen::{PaneId, Screen};
use kvmscope::ui::view;
use kvmscope::vmm::memory::GuestRam;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::style::{Color, Modifier};

fn screen(app: &mut App, w: u16, h: u16) -> (String, ratatui::buffer::Buffer) {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| {
        app.pane_rects = view::draw(f, app);
    })
    .unwrap();
    let buf = term.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..h {
        for x in 0..w {
            text.push_str(buf[(x, y)].symbol());
        }
        text.push('\n');
    }
    (text, buf)
}

fn out_event(seq: u64) -> ExitEvent {
    ExitEvent {
        seq,
        vcpu: 0,
        t_ns: seq * 1000,
        rip: 0x10_0005,
        kind: ExitKind::Io { port: 0x3f8, dir: Dir::Out, size: 1, count: 1, data: 0x41 },
        device: Some("serial"),
        insn: Some(Arc::new(Insn { addr: 0x10_0004, bytes: vec![0xee], text: "out dx,al".into() })),
        cost_ns: 1500,
    }
}

/// A stopped vCPU in flat protected mode at 0x100004, over RAM holding `mov dx,0x3f8; out dx,al; hlt`.
fn stopped_app() -> (App, GuestRam) {
    let ram = GuestRam::new(4 << 20).unwrap();
    assert!(ram.write(0x10_0000, &[0x66, 0xba, 0xf8, 0x03, 0xee, 0xf4]));
    assert!(ram.write(0x20_0000, b"kvmscope memory!"));
    let mut sregs = kvm_sregs { cr0: 0x11, ..Default::default() };
    sregs.cs.selector = 0x10;
    sregs.cs.db = 1;
    let regs = kvm_regs { rip: 0x10_0004, rflags: 0x246, rax: 0x41, rdx: 0x3f8, ..Default::default() };
    let mut app = App::new("test");
    app.no_color = false;
    let before = Stop {
        vcpu: 0,
        reason: StopReason::Pause,
        fpu: Default::default(),
        regs: kvm_regs { rax: 0x40, ..regs },
        sregs,
        event: None,
        serial: 1,
    };
    let now = Stop {
        vcpu: 0,
        reason: StopReason::Step,
        regs,
        sregs,
        fpu: Default::default(),
        event: Some(out_event(7)),
        serial: 2,
    };
    app.set_stops(&[Some(before)], true);
    app.set_stops(&[Some(now)], true);
    app.memory.target = MemoryTarget { addr: 0x20_0000, len: 16, physical: true, follow_rip: false };
    reader::refresh(&mut app, &ram);
    (app, ram)
}

#[test]
fn exits_pane_shows_the_stream_with_decoded_instructions() {
    let mut app = App::new("test");
    app.exits.push((0..30).map(out_event));
    app.exits.dropped = 12;
    app.focus = PaneId::Exits;
    let (text, _) = screen(&mut app, 80, 24);
    assert!(text.contains("Exits"), "{text}");
    assert!(text.contains("view dropped 12"), "{text}");
    assert!(text.contains("29 ") && text.contains("out 0x03f8 1=0x41"), "{text}");
    assert!(text.contains("out dx,al"), "{text}");
    assert!(!text.contains("\n│0 "), "the oldest rows scroll off: {text}");
}

#[test]
fn stats_pane_has_kvm_stat_columns() {
    let mut app = App::new("test");
    for i in 0..40 {
        app.stats.counters.record(&out_event(i));
    }
    app.focus = PaneId::Stats;
    let (text, _) = screen(&mut app, 80, 24);
    for col in ["Event", "Total", "%Total", "CurAvg/s"] {
        assert!(text.contains(col), "{col}: {text}");
    }
    assert!(text.contains("io ") && text.contains("40") && text.contains("100.0"), "{text}");
    assert!(text.contains("io 0x3f8 out"), "per-port breakdown: {text}");
}

#[test]
fn stats_pane_shows_what_kvm_counted_below_kvmscopes_own() {
    use kvmscope::vmm::kvm_stats::{KvmCounts, StatKind};
    let mut app = App::new("test");
    for i in 0..40 {
        app.stats.counters.record(&out_event(i));
    }
    let reading = |exits| {
        vec![("exits".to_string(), StatKind::Cumulative, exits), ("insn_emulation".into(), StatKind::Cumulative, 7)]
    };
    let now = std::time::Instant::now();
    app.stats.kvm.sample(Ok(KvmCounts { vm: Vec::new(), vcpus: reading(50) }), now);
    app.stats
        .kvm
        .sample(Ok(KvmCounts { vm: Vec::new(), vcpus: reading(150) }), now + std::time::Duration::from_secs(2));
    app.focus = PaneId::Stats;
    let (text, _) = screen(&mut app, 80, 24);
    assert!(text.contains("│In KVM "), "{text}");
    assert!(text.lines().any(|l| l.contains("│to userspace") && l.contains("40") && l.contains("26.7")), "{text}");
    assert!(text.contains("│insn_emulation") && text.contains("│exits "), "{text}");
    assert!(
        text.lines().any(|l| l.contains("│exits ") && l.contains("150") && l.contains("50")),
        "exits/s over the interval: {text}"
    );
    // KVM's own counters are counts and rates, not a share of the exits.
    let emulation = text.lines().find(|l| l.contains("insn_emulation")).unwrap();
    assert!(!emulation.contains('.'), "no percentage: {emulation}");
    app.stats.kvm.sample(Err(kvmscope::vmm::kvm_stats::StatsError::Layout("no binary statistics")), now);
    let (text, _) = screen(&mut app, 80, 24);
    assert!(text.contains("unavailable on this host"), "{text}");
}

#[test]
fn registers_pane_decodes_flags_and_highlights_changes() {
    let (mut app, _ram) = stopped_app();
    app.focus = PaneId::Registers;
    let (text, buf) = screen(&mut app, 80, 24);
    assert!(text.contains("Registers: vCPU 0 (stepped)"), "{text}");
    assert!(text.contains("rip 0000000000100004"), "{text}");
    assert!(text.contains("flags PF ZF IF"), "{text}");
    assert!(text.contains("protected, no paging (32-bit code)"), "{text}");
    // rax changed from 0x40 to 0x41 since the previous stop: its value is highlighted; rbx is not.
    let find = |needle: &str| {
        let (row, line) = text.lines().enumerate().find(|(_, l)| l.contains(needle)).unwrap();
        let col = line.find(needle).unwrap();
        (line[..col].chars().count() as u16, row as u16)
    };
    let (x, y) = find("0000000000000041");
    assert!(buf[(x, y)].modifier.contains(Modifier::REVERSED), "rax is highlighted");
    let (x, y) = find("rbx 0000000000000000");
    assert!(!buf[(x + 4, y)].modifier.contains(Modifier::REVERSED), "rbx is not");
}

#[test]
fn code_pane_marks_the_current_instruction() {
    let (mut app, _ram) = stopped_app();
    app.focus = PaneId::Code;
    let (text, _) = screen(&mut app, 80, 24);
    let current = text.lines().find(|l| l.contains('▶')).expect("a marked line");
    assert!(current.contains("0x100004") && current.contains("out dx,al"), "{text}");
    assert!(text.contains("mov dx,3F8h"), "the instruction before RIP: {text}");
    assert!(text.contains("hlt"), "{text}");
}

#[test]
fn memory_pane_follows_the_stop_until_an_address_is_chosen() {
    let (mut app, ram) = stopped_app();
    app.memory.target.follow_rip = true;
    reader::refresh(&mut app, &ram);
    app.focus = PaneId::Memory;
    let (text, _) = screen(&mut app, 80, 24);
    assert!(text.contains("Memory: virtual 0x100000"), "{text}");
    assert!(text.contains("000000100000  66 ba f8 03 ee f4"), "the code at RIP: {text}");
}

#[test]
fn memory_pane_shows_an_address_through_every_layer_above_its_bytes() {
    let (mut app, ram) = stopped_app();
    app.memory.show_chain("guest-physical 0x200000 (4 KiB page)\nmemory slot    0: 0x0-0x3fffff\n", 0x20_0000, true);
    reader::refresh(&mut app, &ram);
    app.focus = PaneId::Memory;
    let (text, _) = screen(&mut app, 80, 24);
    let chain = text.find("memory slot    0: 0x0-0x3fffff").expect("the chain");
    let bytes = text.find("000000200000  6b 76 6d 73").expect("the bytes at the address");
    assert!(chain < bytes, "the layers come first: {text}");
}

/// Page tables mapping the low 4 GiB one to one, writable, in 1 GiB pages.
fn four_gib_identity_map() -> kvmscope::decode::page_map::PageMap {
    use kvmscope::decode::page_map::{Mapping, PageMap};
    let gib = |i: u64| Mapping {
        virt: i << 30,
        phys: i << 30,
        size: 1 << 30,
        entry: (i << 30) | 0xe3,
        writable: true,
        user: false,
        executable: true,
    };
    PageMap { mappings: (0..4).map(gib).collect(), truncated: false, wide: true, paging_off: false }
}

#[test]
fn the_memory_screen_shows_slots_devices_and_the_layout() {
    use kvmscope::memory_view::{MemoryMapView, SlotView};
    use kvmscope::vmm::memory::MemoryMap;
    use kvmscope::vmm::slots::Slot;
    let mut app = App::new("test");
    let slot = Slot { gpa: 0, len: 64 << 20, host: 0x7f00_0000_0000, readonly: false, dirty_log: true };
    let ro = Slot { gpa: 0x20_0000, len: 0x1000, host: 0x7f00_0020_0000, readonly: true, dirty_log: false };
    let view = MemoryMapView {
        slots: vec![
            SlotView { index: 0, slot, populated: Ok((256, Some(0))) },
            SlotView { index: 1, slot: ro, populated: Ok((1, None)) },
        ],
        ports: vec![("serial", 0x3f8, 8)],
        mmio: vec![("virtio-blk", 0xd000_0000, 0x200)],
        layout: MemoryMap::new(64 << 20).unwrap().entries(),
        kvm: None,
        guest_pages: Ok(four_gib_identity_map()),
        dirty: Some({
            let mut d = kvmscope::vmm::dirty::DirtyTracker::default();
            d.add_interval((0..16).map(|i| 0x40_0000 + i * 0x1000).collect());
            d
        }),
    };
    app.on_key(ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Char('3')));
    // The guest's symbols name what its hottest dirty page holds.
    let symbols = kvmscope::decode::symbols::Symbols::default();
    app.memmap.symbols = symbols.with_data(vec![(0x40_0000, 0x1_0000, "pages".into())], Vec::new());
    let now = std::time::Instant::now();
    let pages = |n| {
        use kvmscope::vmm::kvm_stats::StatKind;
        Some(vec![("pages_4k".to_string(), StatKind::Instant, n)])
    };
    app.memmap.show(MemoryMapView { kvm: pages(100), ..view.clone() }, now);
    app.memmap.show(MemoryMapView { kvm: pages(160), ..view.clone() }, now + std::time::Duration::from_secs(2));
    let (text, _) = screen(&mut app, 160, 45);
    assert!(text.contains("pages_4k 160 (+30/s)"), "KVM's mapping counters with their rates: {text}");
    app.memmap.show(view, now + std::time::Duration::from_secs(3));
    assert_eq!(app.screen, Screen::Memory);
    let (text, _) = screen(&mut app, 160, 45);
    for want in [
        "┌ Memory map",
        "0x0-0x3ffffff",
        "0x7f0000000000",
        "64.0 MiB rw",
        "1.0 MiB",
        "0x200000-0x200fff",
        " ro ",
        "root only",
        "port 0x3f8-0x3ff",
        "serial",
        "mmio 0xd0000000-0xd00001ff",
        "0x4000000-0xbfffffff           hole",
        "no binary statistics",
        "Dirty pages (last interval: 16; 1 intervals, max 16)",
        "KVM's MMU events: run with --kernel-events (root) to see them",
        "0x400000 pages (1)",
        "Guest page tables (vCPU 0, as QEMU's info mem; t switches)",
        "0000000000000000-0000000100000000 0000000100000000 -rw",
        "┌ Memory:",
        "3:memory",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
    // With --kernel-events: KVM's MMU tracepoints, and what this host does not report.
    let counts = [("kvm_mmu_get_page".to_string(), 12)].into_iter().collect();
    app.memmap.mmu = Some((counts, [("kvm_mmu_get_page".to_string(), 3.0)].into_iter().collect()));
    let (text, _) = screen(&mut app, 160, 45);
    assert!(text.contains("KVM's MMU events (tracepoints): kvm_mmu_get_page 12 (3/s)"), "{text}");
    assert!(text.contains("not reported by this host: kvm_mmu_set_spte, kvm_tdp_mmu_spte_changed"), "{text}");
    // t: the page tables as every page (QEMU's info tlb), and back.
    let key = |c| ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Char(c));
    app.on_key(key('t'));
    let (text, _) = screen(&mut app, 160, 45);
    assert!(text.contains("Guest page tables (vCPU 0, every page, as QEMU's info tlb; t switches)"), "{text}");
    assert!(text.contains("0000000040000000: 0000000040000000 --PDA---W"), "{text}");
    app.on_key(key('t'));
    let (text, _) = screen(&mut app, 160, 45);
    assert!(text.contains("0000000000000000-0000000100000000 0000000100000000 -rw"), "{text}");
}

#[test]
fn a_linux_sized_page_map_scrolls_in_the_memory_screen() {
    use kvmscope::decode::page_map::{Mapping, PageMap};
    use kvmscope::memory_view::MemoryMapView;
    use ratatui::crossterm::event::{KeyCode, KeyEvent};
    let mut app = App::new("test");
    app.on_key(KeyEvent::from(KeyCode::Char('3')));
    let page = |i: u64| Mapping {
        virt: 0xffff_8880_0000_0000 + (i << 12),
        phys: i << 12,
        size: 4096,
        entry: (i << 12) | 0x63,
        writable: true,
        user: false,
        executable: false,
    };
    let map = PageMap { mappings: (0..200_000).map(page).collect(), truncated: false, wide: true, paging_off: false };
    let view = MemoryMapView {
        slots: Vec::new(),
        ports: Vec::new(),
        mmio: Vec::new(),
        layout: Vec::new(),
        kvm: None,
        guest_pages: Ok(map),
        dirty: None,
    };
    app.memmap.show(view, std::time::Instant::now());
    app.on_key(KeyEvent::from(KeyCode::Char('t')));
    let lines = app.memmap.text().len();
    assert!(lines > 200_000, "every page a line: {lines}");
    for _ in 0..5000 {
        app.on_key(KeyEvent::from(KeyCode::PageDown));
    }
    let (text, _) = screen(&mut app, 160, 45);
    // 5000 pages of 20 lines down: the map shows from line 100000, page 99994 (six lines come first).
    assert!(text.contains("ffff8880186a0000: 00000000186a0000 ---DA---W"), "{text}");
    assert!(!text.contains("ffff888018690000:"), "{text}");
    for _ in 0..20_000 {
        app.on_key(KeyEvent::from(KeyCode::PageDown));
    }
    assert_eq!(app.memmap.scroll, lines - 1, "never past the last line");
}

#[test]
fn memory_and_console_panes() {
    let (mut app, _ram) = stopped_app();
    app.focus = PaneId::Memory;
    let (text, _) = screen(&mut app, 80, 24);
    assert!(text.contains("Memory: physical 0x200000"), "{text}");
    assert!(text.contains("6b 76 6d 73") && text.contains("kvmscope"), "{text}");
    app.console.text = (1..=40).map(|i| format!("line {i}\n")).collect();
    app.focus = PaneId::Console;
    let (text, _) = screen(&mut app, 80, 24);
    assert!(text.contains("line 40") && !text.contains("line 3\n"), "the newest lines: {text}");
}

#[test]
fn wide_terminal_shows_every_pane_small_one_tabs() {
    let (mut app, _ram) = stopped_app();
    let (text, _) = screen(&mut app, 160, 45);
    for title in ["Exits", "Stats", "Registers", "Code", "Console", "Memory"] {
        assert!(text.contains(&format!("┌ {title}")), "{title} in:\n{text}");
    }
    assert_eq!(app.pane_rects.len(), 6);
    let (text, _) = screen(&mut app, 80, 24);
    assert!(text.starts_with(" Exits | Stats | Registers | Code | Console | Memory |"), "{text}");
    assert!(text.contains("PAUSED vCPU 0 at 0x100004"), "status line: {text}");
}

#[test]
fn the_screen_key_switches_screens_named_in_the_status_line() {
    let (mut app, _ram) = stopped_app();
    let (text, _) = screen(&mut app, 160, 45);
    assert!(text.contains("1:overview 2:exits"), "the screens in the status line: {text}");
    app.focus = PaneId::Memory;
    app.on_key(ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Char('2')));
    assert_eq!(app.screen, Screen::Exits);
    assert_eq!(app.focus, PaneId::Exits, "focus moves to a pane the screen holds");
    let (text, _) = screen(&mut app, 160, 45);
    for title in ["Exits", "Stats", "Code"] {
        assert!(text.contains(&format!("┌ {title}")), "{title} in:\n{text}");
    }
    assert!(!text.contains("┌ Registers") && !text.contains("┌ Memory"), "{text}");
    assert_eq!(app.pane_rects.len(), 3);
    let (text, _) = screen(&mut app, 80, 24);
    assert!(text.starts_with(" Exits | Stats | Code |"), "the narrow tabs are the screen's: {text}");
    app.on_key(ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Char('1')));
    assert_eq!(app.screen, Screen::Overview);
}

#[test]
fn help_overlay_lists_keys_and_commands() {
    let mut app = App::new("test");
    app.input = InputMode::Help;
    let (text, _) = screen(&mut app, 80, 24);
    for k in ["space", "single-step", ":break io PORT", ":x ADDR", "freeze", "1 overview"] {
        assert!(text.contains(k), "{k}: {text}");
    }
}

#[test]
fn no_color_uses_no_colors() {
    let (mut app, _ram) = stopped_app();
    app.exits.push((0..5).map(out_event));
    app.no_color = true;
    let (_, buf) = screen(&mut app, 160, 45);
    assert!(buf.content().iter().all(|c| c.fg == Color::Reset && c.bg == Color::Reset));
    app.no_color = false;
    let (_, buf) = screen(&mut app, 160, 45);
    assert!(buf.content().iter().any(|c| c.fg != Color::Reset), "colours without NO_COLOR");
}

/// An entropy device whose driver has set up queue 0, had one request completed, and left one in
/// flight; its state as the views see it.
fn rng_device() -> kvmscope::vmm::virtio::DeviceView {
    use kvmscope::vmm::bus::BusDevice;
    use kvmscope::vmm::virtio::{DeviceView, Transport, rng::Rng};
    use vm_memory::{Bytes, GuestAddress};
    let ram = GuestRam::new(4 << 20).unwrap();
    let mut t = Transport::new("virtio-rng", Box::new(Rng), ram.mem.clone(), None).unwrap();
    let reg = |t: &mut Transport, offset: u64, v: u32| t.write(offset, &v.to_le_bytes());
    for (offset, v) in [(0x70, 1), (0x70, 3), (0x24, 1), (0x20, 1), (0x70, 0xb), (0x38, 8)] {
        reg(&mut t, offset, v);
    }
    for (offset, v) in [(0x80, 0x1000), (0x90, 0x2000), (0xa0, 0x3000), (0x44, 1), (0x70, 0xf)] {
        reg(&mut t, offset, v);
    }
    // Descriptor 0: 16 writable bytes at 0x5000; descriptor 1: 32 at 0x6000.
    let desc = |i: u64, addr: u64, len: u32| {
        ram.mem.write_obj(addr, GuestAddress(0x1000 + 16 * i)).unwrap();
        ram.mem.write_obj(len, GuestAddress(0x1008 + 16 * i)).unwrap();
        ram.mem.write_obj(2u16, GuestAddress(0x100c + 16 * i)).unwrap();
    };
    desc(0, 0x5000, 16);
    desc(1, 0x6000, 32);
    ram.mem.write_obj(0u16, GuestAddress(0x2004)).unwrap();
    ram.mem.write_obj(1u16, GuestAddress(0x2006)).unwrap();
    ram.mem.write_obj(1u16, GuestAddress(0x2002)).unwrap();
    t.process_queue(0, 0); // chain 0 completed
    ram.mem.write_obj(2u16, GuestAddress(0x2002)).unwrap(); // chain 1 made available, not taken
    DeviceView::of(&t, 0xd000_0000, 5, false)
}

#[test]
fn the_devices_screen_shows_virtqueues_events_and_opens_a_buffer() {
    use kvmscope::trace::{DeviceEvent, DeviceEventKind, NotifyPath};
    use ratatui::crossterm::event::{KeyCode, KeyEvent};
    let mut app = App::new("test");
    app.on_key(KeyEvent::from(KeyCode::Char('4')));
    assert_eq!((app.screen, app.focus), (Screen::Devices, PaneId::Virtio));
    let now = std::time::Instant::now();
    app.virtio.show(vec![rng_device()], now);
    let event = |kind| DeviceEvent { t_ns: 1_500_000, device: "virtio-rng".into(), queue: Some(0), kind };
    app.devices.push([
        event(DeviceEventKind::Notify { path: NotifyPath::Trapped, count: 1 }),
        event(DeviceEventKind::Error { problem: "queue size 3 refused".into() }),
    ]);
    app.devices.push_kernel(["kvm_pio: pio_write at 0x3f8 size 1 count 1 val 0x48".to_string()]);
    let (text, _) = screen(&mut app, 160, 45);
    assert!(text.contains("in-kernel kvm_pio: pio_write at 0x3f8"), "{text}");
    for want in [
        "┌ Virtqueues",
        "virtio-rng: virtio-rng (device id 4) at 0xd0000000, irq 5, notifications trapped",
        "status: ACKNOWLEDGE|DRIVER|DRIVER_OK|FEATURES_OK (0xf)",
        "driver features: VERSION_1",
        "queue 0 (requestq): size 8/64, ready",
        "descriptors 0x1000, driver area (avail) 0x2000, device area (used) 0x3000",
        "avail idx: last seen 1, guest 2; used idx 1; in flight 1; event idx off",
        "chain 1: entropy 32 bytes",
        "chain 0: entropy 16 bytes -> ok, 16 bytes written",
        "desc 0: addr 0x6000 len 32 flags WRITE next 0",
        "┌ Device and in-kernel events (3)",
        "0.001500s virtio-rng q0 notify (trapped)",
        "virtio-rng q0 error: queue size 3 refused",
        "4:devices",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
    // The first descriptor listed is the one in flight: Enter opens its buffer.
    app.on_key(KeyEvent::from(KeyCode::Enter));
    assert_eq!((app.memory.target.addr, app.memory.target.physical), (0x6000, true));
    app.on_key(KeyEvent::from(KeyCode::Down));
    app.on_key(KeyEvent::from(KeyCode::Enter));
    assert_eq!(app.memory.target.addr, 0x5000, "the completed request's buffer");
    let (text, _) = screen(&mut app, 160, 45);
    assert!(text.contains("virtqueue buffer: guest-physical 0x5000, 16 bytes"), "{text}");
    // The overview: the stats pane counts notifications by how they came, the console its sources.
    let mut counters = kvmscope::trace::DeviceCounters::default();
    counters.record(&event(DeviceEventKind::Notify { path: NotifyPath::Ioeventfd, count: 7 }));
    counters.record(&event(DeviceEventKind::Notify { path: NotifyPath::Trapped, count: 3 }));
    app.stats.virtio = counters;
    app.console.sources = vec![("serial", 120), ("virtio-console", 40), ("debugcon", 0)];
    app.console.input_to = "virtio-console";
    app.on_key(KeyEvent::from(KeyCode::Char('1')));
    let (text, _) = screen(&mut app, 160, 45);
    assert!(text.contains("virtio notifications"), "{text}");
    for (row, count) in [("trapped (an exit each)", " 3 "), ("by ioeventfd (exits saved)", " 7 ")] {
        let line = text.lines().find(|l| l.contains(row)).unwrap_or_else(|| panic!("{row:?} in:\n{text}"));
        assert!(line.contains(count), "{row:?} counts {count}: {line}");
    }
    assert!(text.contains("Console from serial 120 B, virtio-console 40 B"), "{text}");
    app.on_key(KeyEvent::from(KeyCode::Char('4')));
    // `:virtio NAME` narrows the pane to one device; an unknown name is an error.
    for c in ":virtio nosuch".chars() {
        app.on_key(KeyEvent::from(KeyCode::Char(c)));
    }
    app.on_key(KeyEvent::from(KeyCode::Enter));
    assert!(app.current_message().is_some_and(|(m, error)| error && m.contains("nosuch")));
}

#[test]
fn a_network_cards_frames_show_in_tcpdumps_words_with_their_counts() {
    use kvmscope::trace::{DeviceEvent, DeviceEventKind, FrameDir};
    use ratatui::crossterm::event::{KeyCode, KeyEvent};
    let mut app = App::new("test");
    let mut arp = vec![0xff; 6];
    arp.extend([0x02, 0xd4, 0x8c, 0x24, 0xb7, 0x25, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend([0x02, 0xd4, 0x8c, 0x24, 0xb7, 0x25, 10, 0, 2, 2, 0, 0, 0, 0, 0, 0, 10, 0, 2, 15]);
    let event = |queue, kind| DeviceEvent { t_ns: 2_000_000, device: "virtio-net".into(), queue: Some(queue), kind };
    let frame = event(0, DeviceEventKind::Frame { dir: FrameDir::Rx, len: 42, bytes: arp });
    let drop = event(0, DeviceEventKind::Dropped { dir: FrameDir::Rx, len: 90, why: "no receive buffers".into() });
    app.devices.push([frame.clone(), drop.clone()]);
    let mut counters = kvmscope::trace::DeviceCounters::default();
    counters.record(&frame);
    counters.record(&drop);
    app.stats.virtio = counters;
    app.on_key(KeyEvent::from(KeyCode::Char('4')));
    app.on_key(KeyEvent::from(KeyCode::Tab)); // the events pane: on 80x24, the one shown
    for (w, h) in [(160, 45), (80, 24)] {
        let (text, _) = screen(&mut app, w, h);
        // The events pane's rows, joined: a long line wraps at the pane's edge.
        let lines: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
        let header = lines
            .iter()
            .position(|l| String::from_iter(l.iter()).contains("┌ Device and in-kernel events"))
            .unwrap_or_else(|| panic!("{text}"));
        let col = String::from_iter(lines[header].iter()).split("┌ Device").next().unwrap().chars().count();
        let width = lines[header][col..].iter().position(|&c| c == '┐').unwrap();
        let pane: String = lines[header + 1..]
            .iter()
            .take_while(|l| l.get(col) == Some(&'│'))
            .flat_map(|l| l[col + 1..col + width].iter().filter(|c| !c.is_whitespace()))
            .collect();
        for want in [
            "virtio-net q0 rx frame: 02:d4:8c:24:b7:25 > ff:ff:ff:ff:ff:ff, length 42: ARP, Request who-has 10.0.2.15 \
             tell 10.0.2.2, length 28",
            "virtio-net q0 rx dropped a 90-byte frame: no receive buffers",
        ] {
            let want: String = want.chars().filter(|c| !c.is_whitespace()).collect();
            assert!(pane.contains(&want), "{want:?} at {w}x{h} in:\n{text}");
        }
    }
    app.on_key(KeyEvent::from(KeyCode::Char('1')));
    let (text, _) = screen(&mut app, 160, 45);
    for (row, count) in [("received (42 bytes)", " 1 "), ("sent (0 bytes)", " 0 "), ("dropped", " 1 ")] {
        let line = text.lines().find(|l| l.contains(row)).unwrap_or_else(|| panic!("{row:?} in:\n{text}"));
        assert!(line.contains(count), "{row:?} counts {count}: {line}");
    }
}

#[test]
fn the_profile_screen_ranks_guest_functions_by_exits_or_time() {
    use kvmscope::decode::symbols::Symbols;
    use ratatui::crossterm::event::{KeyCode, KeyEvent};
    let mut app = App::new("test");
    app.profile.symbols =
        Symbols::from_entries(vec![(0x10_0000, 0x10, "putc".into()), (0x10_0010, 0x10, "slow".into())]);
    let mut events: Vec<ExitEvent> = (0..3).map(out_event).collect(); // rip 0x100005: putc, 1.5 us each
    let mut slow = out_event(3);
    (slow.rip, slow.cost_ns) = (0x10_0012, 9_000_000);
    events.push(slow);
    app.profile.record(&events);
    app.on_key(KeyEvent::from(KeyCode::Char('5')));
    assert_eq!((app.screen, app.focus), (Screen::Profile, PaneId::Profile));
    let (text, _) = screen(&mut app, 160, 45);
    let row = |name: &str| text.lines().find(|l| l.contains(name)).unwrap_or_default().to_string();
    assert!(text.contains("Profile by guest function: 4 exits, sorted by exits (t)"), "{text}");
    assert!(row("putc").contains("75.00%") && row("putc").contains("io 3"), "{text}");
    let putc_first = text.find("putc").unwrap() < text.find("slow").unwrap();
    assert!(putc_first, "most exits first");
    app.on_key(KeyEvent::from(KeyCode::Char('t')));
    let (text, _) = screen(&mut app, 160, 45);
    assert!(text.contains("sorted by time") && text.find("slow").unwrap() < text.find("putc").unwrap(), "{text}");
    assert!(text.lines().find(|l| l.contains("slow")).unwrap().contains("99.95%"), "{text}");
    // With --kernel-events, the in-kernel events by function below.
    app.profile.show_kernel(vec![(0x10_0004, 30), (0x10_0014, 10)], std::time::Instant::now());
    let (text, _) = screen(&mut app, 160, 45);
    assert!(text.contains("In-kernel events by function (40, kvm_emulate_insn / kvm_exit)"), "{text}");
    let in_kernel = &text[text.find("In-kernel events").unwrap()..];
    assert!(in_kernel.lines().nth(2).is_some_and(|l| l.contains("75.00%") && l.contains("putc")), "{text}");
}

/// An MMIO exit with the widest data column: an unclaimed 4-byte write.
fn mmio_event(seq: u64, vcpu: u32) -> ExitEvent {
    ExitEvent {
        seq,
        vcpu,
        t_ns: seq * 1000,
        rip: 0x10_0069,
        kind: ExitKind::Mmio { addr: 0xd000_0000, dir: Dir::Out, len: 4, data: 0x26 },
        device: None,
        insn: Some(Arc::new(Insn { addr: 0x10_0063, bytes: vec![0x89, 0x1d], text: "mov [0D0000000h],ebx".into() })),
        cost_ns: 1500,
    }
}

#[test]
fn exit_rows_keep_every_number_and_their_vcpu_at_both_sizes() {
    for (w, h) in [(80, 24), (160, 45)] {
        let mut app = App::new("test");
        app.exits.push((0..40).map(|i| mmio_event(i, (i % 2) as u32)));
        app.focus = PaneId::Exits;
        let (text, _) = screen(&mut app, w, h);
        assert!(text.contains("seq") && text.contains("cpu"), "{w}x{h}: the vCPU column: {text}");
        assert!(text.contains("write 0xd0000000 4=0x00000026 (unclaimed)"), "{w}x{h}: the data whole: {text}");
        assert!(text.contains("mov [0D0000000h],ebx"), "{w}x{h}: the instruction whole: {text}");
        assert!(text.lines().any(|l| l.contains("│39 ") && l.contains(" 1 ")), "{w}x{h}: vCPU 1's row: {text}");
    }
}

#[test]
fn scrolling_back_fills_the_pane_and_holds_still() {
    let mut app = App::new("test");
    app.exits.push((0..100).map(out_event));
    app.focus = PaneId::Exits;
    screen(&mut app, 80, 24);
    app.on_key(KeyEvent::from(KeyCode::Home));
    let (text, _) = screen(&mut app, 80, 24);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("│") && l.contains("out 0x03f8")).collect();
    assert!(rows.len() >= 15, "Home fills the pane: {text}");
    assert!(rows[0].starts_with("│0 "), "from the oldest: {text}");
    // New exits arrive while scrolled back: the rows shown stay the same.
    app.on_key(KeyEvent::from(KeyCode::End));
    screen(&mut app, 80, 24);
    for _ in 0..5 {
        app.on_key(KeyEvent::from(KeyCode::Up));
    }
    let (before, _) = screen(&mut app, 80, 24);
    app.exits.push((100..130).map(out_event));
    let (after, _) = screen(&mut app, 80, 24);
    let body = |t: &str| t.lines().skip(2).take(18).map(String::from).collect::<Vec<_>>();
    assert_eq!(body(&before), body(&after), "the view held still");
}

#[test]
fn the_stats_pane_shows_handling_times_at_160x45_and_scrolls() {
    let (mut app, _ram) = stopped_app();
    for i in 0..40 {
        app.stats.counters.record(&out_event(i));
        app.stats.counters.record(&mmio_event(i, 0));
    }
    let (text, _) = screen(&mut app, 160, 45);
    assert!(text.contains("min us") && text.contains("avg us") && text.contains("max us"), "{text}");
    assert!(text.contains("mmio 0xd0000000 write"), "{text}");
    // At 80x24 the pane scrolls to rows below its height.
    app.stats.counters = Default::default();
    for port in 0..60u16 {
        let mut e = out_event(port as u64);
        e.kind = ExitKind::Io { port: 0x100 + port, dir: Dir::Out, size: 1, count: 1, data: 0 };
        app.stats.counters.record(&e);
    }
    app.focus = PaneId::Stats;
    let (text, _) = screen(&mut app, 80, 24);
    assert!(text.contains("↓ more"), "{text}");
    app.on_key(KeyEvent::from(KeyCode::End));
    let (text, _) = screen(&mut app, 80, 24);
    assert!(text.contains("↑ more"), "scrolled to the end: {text}");
}

#[test]
fn the_help_shows_every_line_and_scrolls_where_it_must() {
    let mut app = App::new("test");
    app.on_key(KeyEvent::from(KeyCode::Char('?')));
    let (text, _) = screen(&mut app, 160, 45);
    let last = kvmscope::ui::panes::help::HELP.lines().last().unwrap().trim();
    assert!(text.contains(last) && text.contains(":break msr") && text.contains("1 2 3 4 5"), "{text}");
    let (text, _) = screen(&mut app, 80, 24);
    assert!(text.contains("arrows scroll") && !text.contains(last), "{text}");
    app.on_key(KeyEvent::from(KeyCode::End));
    let (text, _) = screen(&mut app, 80, 24);
    assert!(text.contains(last), "the end of the help: {text}");
    assert_eq!(app.input, InputMode::Help, "scrolling keeps it open");
    // `:help` opens it too.
    app.on_key(KeyEvent::from(KeyCode::Char('x')));
    for c in ":help".chars() {
        app.on_key(KeyEvent::from(KeyCode::Char(c)));
    }
    app.on_key(KeyEvent::from(KeyCode::Enter));
    assert_eq!(app.input, InputMode::Help);
}

#[test]
fn a_resumed_guest_shows_no_stale_stop_and_messages_do_not_linger() {
    let (mut app, _ram) = stopped_app();
    app.set_stops(&[None], false);
    for (w, h) in [(80, 24), (160, 45)] {
        app.focus = PaneId::Registers;
        let (text, _) = screen(&mut app, w, h);
        assert!(!text.contains("(stepped)") && text.contains("running: space pauses"), "{w}x{h}: {text}");
        assert!(text.contains("? help"), "{w}x{h}: the hint in the status line: {text}");
    }
    app.focus = PaneId::Code;
    let (text, _) = screen(&mut app, 160, 45);
    assert!(!text.contains("▶"), "no old stop in the code pane: {text}");
    // A usage error, then a good command that says nothing: the error is gone.
    for c in ":break".chars() {
        app.on_key(KeyEvent::from(KeyCode::Char(c)));
    }
    app.on_key(KeyEvent::from(KeyCode::Enter));
    assert!(app.current_message().is_some_and(|(m, e)| e && m.contains("usage")));
    for c in ":sort total".chars() {
        app.on_key(KeyEvent::from(KeyCode::Char(c)));
    }
    app.on_key(KeyEvent::from(KeyCode::Enter));
    assert!(app.current_message().is_none(), "{:?}", app.current_message());
}

#[test]
fn gdb_notices_go_to_the_status_line_not_over_the_frame() {
    kvmscope::notice::hold();
    kvmscope::notice::say("gdb attached from 127.0.0.1:40000: the guest is stopped for it");
    let mut app = App::new("test");
    app.gdb = Some("target remote 127.0.0.1:1234".into());
    let (text, _) = screen(&mut app, 160, 45);
    assert!(text.contains("gdb: target remote 127.0.0.1:1234"), "{text}");
    for line in kvmscope::notice::take() {
        app.say(line, false);
    }
    kvmscope::notice::release();
    let (text, _) = screen(&mut app, 80, 24);
    let status: String = text.lines().rev().take(2).collect::<Vec<_>>().join(" ");
    assert!(status.contains("gdb attached from 127.0.0.1:40000"), "{text}");
}

#[test]
fn a_replay_says_what_a_recording_holds() {
    let mut app = App::new("replay");
    app.state = kvmscope::ui::app::RunState::Replay(Some(("debug-exit".into(), 33)));
    app.exits.push([mmio_event(5, 0)]);
    app.memory.note = Some("a recording holds no guest memory: :x and :xp look at a live guest".into());
    app.virtio.note = vec!["a recording holds the devices' events (the events pane), not their queues;".into()];
    let (text, _) = screen(&mut app, 160, 45);
    assert!(text.contains("a recording holds each exit's instruction") && text.contains("exit #5"), "{text}");
    assert!(!text.contains("running"), "{text}");
    assert!(text.contains("a recording holds no guest memory"), "{text}");
    app.on_key(KeyEvent::from(KeyCode::Char('4')));
    let (text, _) = screen(&mut app, 160, 45);
    assert!(text.contains("not their queues"), "{text}");
}

fn pio(seq: u64, port: u16, dir: Dir, size: u8, data: u64, text: &str) -> ExitEvent {
    ExitEvent {
        kind: ExitKind::Io { port, dir, size, count: 1, data },
        device: None,
        insn: Some(Arc::new(Insn { addr: 0x10_0004, bytes: vec![0xef], text: text.into() })),
        ..out_event(seq)
    }
}

#[test]
fn nothing_is_cut_and_rows_of_a_kind_take_one_height_at_any_size() {
    let mut app = App::new("test");
    app.gdb = Some("target remote 127.0.0.1:1234".into());
    let mut events = Vec::new();
    for i in 0..12 {
        events.push(pio(3 * i, 0x3f8, Dir::Out, 1, 0x41, "out dx,al"));
        events.push(pio(3 * i + 1, 0x80, Dir::Out, 1, 0x12, "out 80h,al"));
        events.push(mmio_event(3 * i + 2, 0));
    }
    app.exits.push(events);
    let words = [
        "seq",
        "cpu",
        "reason",
        "rip",
        "port/address",
        "data",
        "addr",
        "device/register",
        "device",
        "dev",
        "instruction",
        "insn",
    ];
    for (w, h) in [(80, 24), (160, 45), (220, 50)] {
        let (text, _) = screen(&mut app, w, h);
        let status: String = text.lines().rev().take(3).collect::<Vec<_>>().join(" ");
        assert!(status.contains("gdb: target remote 127.0.0.1:1234"), "the stub's address whole at {w}x{h}:\n{text}");
        // The exits pane: its heading's words whole, its rows without blank lines, each kind of
        // row one height.
        let lines: Vec<&str> = text.lines().collect();
        let title = lines.iter().position(|l| l.contains("┌ Exits")).expect("the exits pane");
        let inside = |l: &str| -> String {
            let start = l.find('│').map_or(0, |i| i + '│'.len_utf8());
            l[start..].split('│').next().unwrap_or("").trim_end().to_string()
        };
        let header = inside(lines[title + 1]);
        for word in header.split_whitespace() {
            assert!(words.contains(&word), "heading {word:?} cut at {w}x{h}: {header:?}");
        }
        let body: Vec<String> = lines[title + 2..].iter().take_while(|l| !l.contains('└')).map(|l| inside(l)).collect();
        let first = body.iter().position(|l| !l.is_empty()).unwrap_or(0);
        let last = body.iter().rposition(|l| !l.is_empty()).unwrap_or(0);
        let rows = &body[first..=last];
        assert!(rows.iter().all(|l| !l.trim().is_empty()), "a blank line among the rows at {w}x{h}:\n{text}");
        let starts: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].split_whitespace().next().is_some_and(|t| t.parse::<u64>().is_ok()))
            .collect();
        let mut height_of: std::collections::HashMap<String, usize> = Default::default();
        for pair in starts.windows(2) {
            let kind = rows[pair[0]].split_whitespace().nth(5).unwrap_or("").to_string();
            let height = pair[1] - pair[0];
            let seen = *height_of.entry(kind.clone()).or_insert(height);
            assert_eq!(seen, height, "rows of {kind} take {seen} and {height} lines at {w}x{h}:\n{text}");
        }
        assert!(height_of.len() >= 3, "UART, POST and MMIO rows at {w}x{h}: {height_of:?}\n{text}");
    }
}

#[test]
fn the_exit_inspector_opens_on_the_row_under_the_cursor() {
    let mut app = App::new("test");
    app.focus = PaneId::Exits;
    // A PCI configuration read: the data port names what the address port selected.
    app.exits.push([
        pio(0, 0xcf8, Dir::Out, 4, 0x8000_0800, "out dx,eax"),
        pio(1, 0xcfc, Dir::In, 4, 0x7000_8086, "in eax,dx"),
        out_event(2),
    ]);
    let (text, _) = screen(&mut app, 160, 45);
    assert!(text.contains("device/register"), "{text}");
    assert!(text.contains("PCI CONFIG_ADDRESS") || text.contains("CONFIG_ADDRESS"), "the column: {text}");
    // Up scrolls back a row and puts the cursor there; Up again moves it to the data read.
    app.on_key(KeyEvent::from(KeyCode::Up));
    app.on_key(KeyEvent::from(KeyCode::Up));
    assert_eq!(app.exits.selected, Some(1));
    app.on_key(KeyEvent::from(KeyCode::Enter));
    assert_eq!(app.input, InputMode::Inspect);
    let (text, _) = screen(&mut app, 160, 45);
    for want in [
        "Exit #1",
        "reason",
        "in 0x0cfc 4=0x70008086",
        "in eax,dx",
        "VENDOR_ID",
        "00:01.0",
        "vendor 0x8086",
        "why",
        "nothing claims this port",
        "latched (00:01.0 register 0x00)",
        "not recorded for this exit",
        "not followed (run with --kernel-events",
    ] {
        assert!(text.contains(want), "the inspector shows {want:?}:\n{text}");
    }
    // Any other key closes it; at 80x24 it still fits and scrolls.
    app.on_key(KeyEvent::from(KeyCode::Char('x')));
    assert_eq!(app.input, InputMode::Normal);
    assert!(app.inspector.is_none());
    app.on_key(KeyEvent::from(KeyCode::Enter));
    let (small, _) = screen(&mut app, 80, 24);
    assert!(small.contains("Exit #1") && small.contains("VENDOR_ID"), "{small}");
    app.on_key(KeyEvent::from(KeyCode::Esc));

    // With --kernel-events: its vCPU's events since its previous exit, timed against it.
    app.kernel_lines = Some(Default::default());
    let line = |thread: &str, t_ns: u64, text: &str| KernelLine {
        thread: thread.into(),
        t_ns: Some(t_ns),
        text: text.into(),
        kind: KernelLineKind::Event,
    };
    app.push_kernel(vec![
        line("vcpu0", 0, "kvm_pio: pio_write at 0xcf8 size 4 count 1 val 0x80000800"),
        line("vcpu0", 1200, "kvm_exit: reason IO_INSTRUCTION rip 0x100004"),
        line("vcpu0", 1300, "kvm_pio: pio_read at 0xcfc size 4 count 1"),
        line("vcpu1", 1300, "kvm_pio: pio_read at 0x60 size 1 count 1"),
    ]);
    app.on_key(KeyEvent::from(KeyCode::Enter));
    let (text, _) = screen(&mut app, 160, 45);
    assert!(text.contains("in-kernel") && text.contains("+0.3 µs kvm_pio: pio_read at 0xcfc"), "{text}");
    assert!(text.contains("+0.2 µs kvm_exit: reason IO_INSTRUCTION"), "{text}");
    assert!(!text.contains("0xcf8 size 4"), "before its previous exit: {text}");
    assert!(!text.contains("at 0x60"), "another vCPU's: {text}");
}

#[test]
fn page_up_keeps_the_exits_cursor_on_a_row_shown() {
    let mut app = App::new("test");
    app.focus = PaneId::Exits;
    app.exits.push((0..300).map(out_event));
    screen(&mut app, 160, 45);
    app.on_key(KeyEvent::from(KeyCode::Up));
    for _ in 0..3 {
        app.on_key(KeyEvent::from(KeyCode::PageUp));
    }
    let (text, _) = screen(&mut app, 160, 45);
    let selected = app.exits.selected.expect("a cursor");
    let shown = |seq: u64| text.lines().any(|l| l.trim_start_matches('│').starts_with(&format!("{seq} ")));
    assert!(shown(selected), "the cursor's exit #{selected} is on screen:\n{text}");
    assert_eq!(app.exits.chosen(), Some(selected), "Enter inspects it");
}

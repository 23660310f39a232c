//! The forward-versus-backward harness, rr's way of keeping a reverse debugger honest: run a guest
//! forward N single steps keeping its whole state at every step (registers, system registers, a
//! digest of all of RAM), go back with reverse-stepi N times and compare state for state, go
//! forward again and compare again; then reverse-continue from the end to breakpoints and write
//! watchpoints set at random places of the window, and check that it lands on the last state
//! going forward where it must (the last arrival at the breakpoint; the state before the last
//! instruction that wrote the watched bytes). Run in-process against the controller, the API gdb
//! and the TUI use.

use std::time::Duration;

use iced_x86::{Decoder, DecoderOptions, InstructionInfoFactory, OpAccess, Register};
use kvm_bindings::{kvm_regs, kvm_sregs};
use kvmscope::controller::Controller;
use kvmscope::debug::breakpoints::WatchKind;
use kvmscope::debug::{ExitSpec, Stop};
use kvmscope::session::{self, Launched, Session};
use kvmscope::vmm::loader::BootMode;
use kvmscope::vmm::{Image, RunEnd, RunLimits, VmConfig};

/// A guest to check and how to start it.
#[derive(Clone)]
pub struct Guest {
    pub image: Image,
    pub mem_mib: u64,
    pub trap_msrs: Vec<u32>,
    pub irqchip: bool,
    pub cmdline: String,
    /// Watch stack bytes too: not for a guest that takes exceptions, whose frames the CPU pushes
    /// on a page a write watchpoint keeps read-only (the delivery fails, the guest triple-faults).
    pub watch_stack: bool,
    /// Inputs no exit carries (the in-kernel timer's interrupts) may make going forward again
    /// leave the history: then kvmscope must say so, and the check ends there.
    pub may_diverge: bool,
    /// A checkpoint where the window starts, as gdb's stop would take one (a window far from the
    /// guest's start).
    pub checkpoint_window: bool,
    /// Its virtio devices.
    pub virtio: kvmscope::vmm::virtio::VirtioConfig,
    /// How often kvmscope takes its own checkpoints.
    pub checkpoint_every: kvmscope::vmm::snapshot::every::Every,
}

impl Guest {
    /// One of the project's guests, by file name.
    pub fn kernel(file: &str) -> Self {
        Guest {
            image: Image::Kernel(super::guest(file)),
            mem_mib: 256,
            trap_msrs: Vec::new(),
            irqchip: false,
            cmdline: String::new(),
            watch_stack: true,
            may_diverge: false,
            checkpoint_window: false,
            virtio: Default::default(),
            checkpoint_every: Default::default(),
        }
    }

    /// The `virtio` guest with `disk` as its virtio-blk disk, and entropy and a console.
    pub fn virtio_with_disk(disk: &std::path::Path) -> Self {
        use kvmscope::vmm::virtio::{DiskSpec, Extra, VirtioConfig};
        Guest {
            virtio: VirtioConfig {
                disks: vec![DiskSpec::parse(disk.to_str().unwrap()).unwrap()],
                extra: Some(vec![Extra::Rng, Extra::Console]),
                ioeventfd: false,
                net: None,
            },
            ..Guest::kernel("virtio.elf")
        }
    }

    /// A raw image loaded and entered at `at` in `mode`.
    pub fn raw(path: std::path::PathBuf, at: u64, mode: BootMode) -> Self {
        Self::raw_at(path, at, at, mode)
    }

    /// A raw image loaded at `load`, entered at `entry` in `mode`.
    pub fn raw_at(path: std::path::PathBuf, load: u64, entry: u64, mode: BootMode) -> Self {
        Guest { image: Image::Raw { path, load, entry, mode }, ..Guest::kernel("hello.elf") }
    }
}

/// Where the window of steps starts.
#[derive(Clone)]
pub enum Start {
    /// The guest's first instruction.
    Entry,
    /// The `hits`-th stop at a breakpoint at this address (run freely to it: a landmark).
    Breakpoint { gva: u64, hits: u32 },
    /// An exit breakpoint's stop (right after an exit).
    ExitBreakpoint { spec: &'static str, nth: u64 },
}

/// The state compared: registers, the system registers that matter, RAM.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub regs: kvm_regs,
    pub sys: [u64; 12],
    pub ram: u64,
}

impl State {
    fn of(c: &Controller) -> (Self, kvm_sregs) {
        let stop = stop0(c);
        let s = stop.sregs;
        let sys = [
            s.cr0,
            s.cr3,
            s.cr4,
            s.efer,
            s.cs.selector as u64,
            s.cs.base,
            s.ss.selector as u64,
            s.ds.selector as u64,
            s.es.selector as u64,
            s.fs.base,
            s.gs.base,
            s.cs.l as u64 | (s.cs.db as u64) << 1,
        ];
        (State { regs: stop.regs, sys, ram: c.ram_digest() }, s)
    }

    /// What differs from `other`, in words.
    fn differences(&self, other: &State) -> String {
        let mut d = Vec::new();
        let (a, b) = (&self.regs, &other.regs);
        let named = [
            ("rip", a.rip, b.rip),
            ("rflags", a.rflags, b.rflags),
            ("rax", a.rax, b.rax),
            ("rbx", a.rbx, b.rbx),
            ("rcx", a.rcx, b.rcx),
            ("rdx", a.rdx, b.rdx),
            ("rsi", a.rsi, b.rsi),
            ("rdi", a.rdi, b.rdi),
            ("rsp", a.rsp, b.rsp),
            ("rbp", a.rbp, b.rbp),
            ("r13", a.r13, b.r13),
            ("r14", a.r14, b.r14),
            ("r15", a.r15, b.r15),
        ];
        for (n, x, y) in named {
            if x != y {
                d.push(format!("{n} {x:#x} vs {y:#x}"));
            }
        }
        if self.regs != other.regs && d.is_empty() {
            d.push("other registers".into());
        }
        if self.sys != other.sys {
            d.push(format!("system registers {:x?} vs {:x?}", self.sys, other.sys));
        }
        if self.ram != other.ram {
            d.push("RAM".into());
        }
        d.join(", ")
    }
}

/// What a check found: how many states were compared, and every difference.
#[derive(Debug, Default)]
pub struct Report {
    pub compared: usize,
    pub failures: Vec<String>,
    /// Where kvmscope said the guest left the history (a guest that may), ending the check.
    pub said: Option<String>,
}

impl Report {
    fn expect(&mut self, what: &str, got: &State, want: &State) {
        self.compared += 1;
        if got != want {
            self.failures.push(format!("{what}: {}", got.differences(want)));
        }
    }
}

fn stop0(c: &Controller) -> Stop {
    c.stops().first().cloned().flatten().expect("vCPU 0 is stopped")
}

/// Waits for a stop newer than `since`.
fn wait_stop(c: &Controller, since: u64) -> Stop {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Some(s) = c.wait_for_stop(since, Duration::from_millis(20)) {
            return s;
        }
        let ended = c.final_states().first().cloned().flatten();
        assert!(ended.is_none(), "the guest ended while the harness waited for a stop (a window too long?)");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stops: Vec<_> = c.stops().into_iter().map(|s| s.map(|s| (s.reason, s.serial, s.regs.rip))).collect();
    panic!("no stop newer than #{since} in 60 s: {stops:?} at {}", c.place());
}

fn step(c: &Controller) -> Stop {
    let since = c.stop_serial();
    c.step(0).expect("vCPU 0 steps");
    let s = wait_stop(c, since);
    trace(&format!("step -> {:?} at {:#x}, {}", s.reason, s.regs.rip, c.place()));
    s
}

/// With KVMSCOPE_HARNESS_TRACE set, says what the harness does.
fn trace(what: &str) {
    if std::env::var_os("KVMSCOPE_HARNESS_TRACE").is_some() {
        eprintln!("harness: {what}");
    }
}

fn run(c: &Controller) -> Stop {
    let since = c.stop_serial();
    c.resume();
    wait_stop(c, since)
}

/// Launches `guest` held before its first instruction, with a checkpoint there.
pub fn launch(guest: &Guest) -> Launched {
    let config = VmConfig {
        debugcon: Some(Box::new(std::io::sink())),
        image: guest.image.clone(),
        mem_size: guest.mem_mib << 20,
        cmdline: guest.cmdline.clone(),
        cpus: 1,
        console: Box::new(std::io::sink()),
        initrd: None,
        host_workarounds: true,
        cpu_features: Vec::new(),
        virtio: guest.virtio.clone(),
        trap_msrs: guest.trap_msrs.clone(),
        dirty_log: false,
        irqchip: guest.irqchip,
        machine_args: Vec::new(),
    };
    let limits = RunLimits { start_paused: true, checkpoint_every: guest.checkpoint_every, ..Default::default() };
    let launched = session::launch(config, Session { limits, ..Default::default() }, Vec::new(), |_| {}).unwrap();
    assert!(launched.controller.wait_all_stopped(Duration::from_secs(10)));
    launched.controller.checkpoint(false).expect("a checkpoint at the start");
    launched
}

/// Runs the held guest to `start`.
fn go_to_start(c: &Controller, start: &Start) {
    match start {
        Start::Entry => {}
        Start::Breakpoint { gva, hits } => {
            c.add_sw_breakpoint(*gva).unwrap();
            for _ in 0..*hits {
                let s = run(c);
                assert_eq!(s.regs.rip, *gva, "stopped at the breakpoint: {:?}", s.reason);
            }
            c.remove_sw_breakpoint(*gva);
        }
        Start::ExitBreakpoint { spec, nth } => {
            let bp = c.add_exit_breakpoint(ExitSpec::parse(spec).unwrap(), *nth);
            run(c);
            c.delete_exit_breakpoint(Some(bp.id));
        }
    }
}

/// Pseudo-random numbers (xorshift), the same for the same seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The linear address of `offset` in the code segment (real and protected mode have a base).
fn code_linear(sregs: &kvm_sregs, offset: u64) -> u64 {
    if sregs.cs.l != 0 { offset } else { sregs.cs.base.wrapping_add(offset) }
}

/// The guest-virtual bytes the instruction at `state` writes, if it plainly does (no string
/// instruction, no conditional write): (address, length 1, 2, 4 or 8).
fn written(c: &Controller, state: &State, sregs: &kvm_sregs) -> Option<(u64, u64)> {
    let mut bytes = [0u8; 15];
    let n = c.read_memory(0, code_linear(sregs, state.regs.rip), &mut bytes).ok()?;
    let bitness = if sregs.cs.l != 0 {
        64
    } else if sregs.cs.db != 0 {
        32
    } else {
        16
    };
    let rip = state.regs.rip;
    let insn = Decoder::with_ip(bitness, &bytes[..n], rip, DecoderOptions::NONE).decode();
    if insn.has_rep_prefix() || insn.has_repne_prefix() || insn.is_string_instruction() {
        return None;
    }
    let r = &state.regs;
    let info = InstructionInfoFactory::new().info(&insn).clone();
    let mem = info.used_memory().iter().find(|m| matches!(m.access(), OpAccess::Write | OpAccess::ReadWrite))?;
    let len = mem.memory_size().size() as u64;
    if ![1, 2, 4, 8].contains(&len) {
        return None;
    }
    let value = |reg: Register, _: usize, _: usize| -> Option<u64> {
        let full = match reg.full_register() {
            Register::RAX => r.rax,
            Register::RBX => r.rbx,
            Register::RCX => r.rcx,
            Register::RDX => r.rdx,
            Register::RSI => r.rsi,
            Register::RDI => r.rdi,
            Register::RSP => r.rsp,
            Register::RBP => r.rbp,
            Register::R8 => r.r8,
            Register::R9 => r.r9,
            Register::R10 => r.r10,
            Register::R11 => r.r11,
            Register::R12 => r.r12,
            Register::R13 => r.r13,
            Register::R14 => r.r14,
            Register::R15 => r.r15,
            Register::RIP => insn.next_ip(),
            Register::ES => sregs.es.base,
            Register::CS => sregs.cs.base,
            Register::SS => sregs.ss.base,
            Register::DS => sregs.ds.base,
            Register::FS => sregs.fs.base,
            Register::GS => sregs.gs.base,
            _ => return None,
        };
        Some(full & if reg.size() >= 8 { u64::MAX } else { (1u64 << (reg.size() * 8)) - 1 })
    };
    let addr = mem.virtual_address(0, value)?;
    (addr % len == 0).then_some((addr, len))
}

/// Where the instruction at `state` may leave RIP when it executes once: after it, at its
/// branch target, at the return address on the stack (`ret`, `iret`), or on it again (a `rep`
/// string instruction between iterations). `None` where that cannot be told (an exception, an
/// interrupt, an indirect jump, a far transfer).
fn successors(c: &Controller, state: &State, sregs: &kvm_sregs) -> Option<Vec<u64>> {
    use iced_x86::{FlowControl, Mnemonic};
    let mut bytes = [0u8; 15];
    let n = c.read_memory(0, code_linear(sregs, state.regs.rip), &mut bytes).ok()?;
    let bitness = if sregs.cs.l != 0 {
        64
    } else if sregs.cs.db != 0 {
        32
    } else {
        16
    };
    let insn = Decoder::with_ip(bitness, &bytes[..n], state.regs.rip, DecoderOptions::NONE).decode();
    let width = bitness as u64 / 8;
    let stack_word = |at: u64| {
        let mut w = [0u8; 8];
        let at = if bitness == 64 { at } else { sregs.ss.base.wrapping_add(at & 0xffff_ffff) };
        c.read_memory(0, at, &mut w[..width as usize]).ok()?;
        Some(u64::from_le_bytes(w))
    };
    let next = insn.next_ip();
    if insn.mnemonic() == Mnemonic::Hlt {
        // Only an interrupt ends it: its handler is where the step goes on.
        return None;
    }
    let mut out = match insn.flow_control() {
        FlowControl::Next => vec![next],
        FlowControl::UnconditionalBranch | FlowControl::Call if insn.is_call_near() || insn.is_jmp_short_or_near() => {
            vec![insn.near_branch_target()]
        }
        FlowControl::ConditionalBranch => vec![next, insn.near_branch_target()],
        FlowControl::Return if matches!(insn.mnemonic(), Mnemonic::Ret) => vec![stack_word(state.regs.rsp)?],
        FlowControl::Return if matches!(insn.mnemonic(), Mnemonic::Iretq | Mnemonic::Iretd) && bitness == 64 => {
            vec![stack_word(state.regs.rsp)?]
        }
        _ => return None,
    };
    if insn.has_rep_prefix() || insn.has_repne_prefix() {
        out.push(state.regs.rip);
    }
    // A `hlt` with interrupts to come, an exiting instruction's step: never a jump elsewhere.
    Some(out)
}

/// What takes a probe's breakpoint or watchpoint away again.
type Undo = Box<dyn Fn(&Controller)>;

/// The check on one guest: `steps` steps from `start`, then reverse-stepi back and forward
/// again, then `probes` reverse-continues to random breakpoints and watchpoints.
pub fn check(guest: &Guest, start: Start, steps: usize, probes: usize, seed: u64) -> Report {
    let launched = launch(guest);
    let c = launched.controller.clone();
    go_to_start(&c, &start);
    if guest.checkpoint_window {
        c.checkpoint(false).expect("a checkpoint where the window starts");
    }
    let mut report = Report::default();
    // Forward, keeping every state.
    let mut states = vec![State::of(&c)];
    for _ in 0..steps {
        step(&c);
        let (now, sregs) = State::of(&c);
        // Each step executes one instruction: it lands where that instruction leads.
        let (was, was_sregs) = states.last().expect("the start");
        if let Some(next) = successors(&c, was, was_sregs)
            && !next.contains(&now.regs.rip)
        {
            report.failures.push(format!(
                "step {} from {:#x} landed at {:#x}, not at {:x?} (more than one instruction)",
                states.len(),
                was.regs.rip,
                now.regs.rip,
                next
            ));
        }
        report.compared += 1;
        states.push((now, sregs));
    }
    let n = states.len() - 1;
    // Back, one instruction at a time.
    for k in (0..n).rev() {
        let r = c.reverse_step();
        trace(&format!("reverse-stepi -> {r:?}"));
        if let Err(e) = r {
            match said(guest, &e.to_string()) {
                true => report.said = Some(format!("reverse-stepi to state {k}: {e}")),
                false => report.failures.push(format!("reverse-stepi to state {k}: {e}")),
            }
            return finish(launched, report);
        }
        report.expect(&format!("reverse-stepi to state {k} of {n}"), &State::of(&c).0, &states[k].0);
    }
    // Forward again.
    for (k, want) in states.iter().enumerate().skip(1) {
        step(&c);
        report.expect(&format!("stepping again to state {k}"), &State::of(&c).0, &want.0);
    }
    // Reverse-continue to breakpoints and watchpoints placed at random.
    let mut rng = Rng(seed | 1);
    for probe in 0..probes {
        let at_end = State::of(&c).0;
        if at_end != states[n].0 {
            report.failures.push(format!("probe {probe}: not at the end of the window to start from"));
            break;
        }
        let watch = probe % 2 == 1;
        // The first probe: a breakpoint where the window starts (a landmark, when the guest ran
        // to it), which stepping from there passed.
        let pick = if probe == 0 { 0 } else { rng.below(n) };
        let (expected, undo): (Option<usize>, Undo) = if watch {
            // A write to RAM (MMIO cannot be watched).
            let on_stack = |i: usize, a: u64| a >> 12 == states[i].0.regs.rsp >> 12;
            // The first watchpoint: what the window's last write wrote (at its very end, the
            // write the present stopped after is the first one met going back).
            let order: Box<dyn Iterator<Item = usize>> = match probe {
                1 => Box::new((0..n).rev()),
                _ => Box::new((pick..n).chain(0..pick)),
            };
            let mut candidates = order.filter_map(|i| {
                written(&c, &states[i].0, &states[i].1).filter(|&(a, _)| guest.watch_stack || !on_stack(i, a))
            });
            let Some((addr, len)) = candidates.find(|&(a, l)| c.add_watchpoint(a, l, WatchKind::Write).is_ok()) else {
                continue;
            };
            let last = (0..n).rev().find(|&i| {
                written(&c, &states[i].0, &states[i].1).is_some_and(|(a, l)| a < addr + len && addr < a + l)
            });
            (
                last,
                Box::new(move |c: &Controller| {
                    let _ = c.remove_watchpoint(addr, len, WatchKind::Write);
                }),
            )
        } else {
            // Breakpoints are linear addresses: RIP through the code segment's base.
            let code = |i: usize| {
                states[i].0.regs.rip.wrapping_add(if states[i].1.cs.l == 0 { states[i].1.cs.base } else { 0 })
            };
            let rip = code(pick);
            let last = (0..n).rev().find(|&i| code(i) == rip);
            c.add_sw_breakpoint(rip).unwrap();
            (
                last,
                Box::new(move |c: &Controller| {
                    c.remove_sw_breakpoint(rip);
                }),
            )
        };
        let what = if watch { "watchpoint" } else { "breakpoint" };
        let r = c.reverse_continue();
        trace(&format!("reverse-continue to a {what} (expected state {expected:?}) -> {r:?}"));
        match (r, expected) {
            (Ok(_), Some(i)) => {
                report.expect(&format!("reverse-continue to a {what} (state {i})"), &State::of(&c).0, &states[i].0)
            }
            (Err(e), _) if said(guest, &e.to_string()) => {
                report.said = Some(format!("reverse-continue to a {what}: {e}"));
                break;
            }
            (Err(e), _) => report.failures.push(format!("reverse-continue to a {what}: {e}")),
            (Ok(_), None) => {}
        }
        undo(&c);
        // Forward again to the end of the window.
        let here = State::of(&c).0;
        let Some(k) = states.iter().position(|s| s.0 == here) else {
            report.failures.push(format!("after the {what}: on no state of the window"));
            break;
        };
        for _ in k..n {
            step(&c);
        }
    }
    finish(launched, report)
}

/// Whether a reverse command's failure is kvmscope saying the guest left the history, which
/// `guest` may.
fn said(guest: &Guest, error: &str) -> bool {
    guest.may_diverge && (error.contains("left the history") || error.contains("another path"))
}

fn finish(launched: Launched, report: Report) -> Report {
    let _ = launched.finish(RunEnd::Quit);
    report
}

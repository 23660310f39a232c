//! Builds the project's own guests from assets/guests with the machine's GNU toolchain (gcc as the
//! assembler driver, ld). The name says the kind: `*.mb.S` multiboot ELF32, `*.elf64.S` 64-bit ELF,
//! `*.raw16.S` a raw real-mode binary loaded at 0x7c00, `*.mb.c` a multiboot ELF32 from freestanding C,
//! `*.elf64.c` a 64-bit ELF from freestanding C built for gdb (-O0 -g).

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (kvmscope's guests need gcc and ld)"));
    assert!(status.success(), "{cmd:?} failed");
}

fn build(src: &Path, out: &Path, dir: &Path) {
    let name = src.file_name().unwrap().to_str().unwrap();
    let (stem, bits, ld_args): (&str, &str, Vec<String>) = if let Some(s) = name.strip_suffix(".mb.S") {
        (s, "-m32", vec!["-m".into(), "elf_i386".into(), "-T".into(), dir.join("multiboot.ld").display().to_string()])
    } else if let Some(s) = name.strip_suffix(".elf64.S") {
        (s, "-m64", vec!["-m".into(), "elf_x86_64".into(), "-T".into(), dir.join("elf64.ld").display().to_string()])
    } else if let Some(s) = name.strip_suffix(".elf64.c") {
        (s, "-m64", vec!["-m".into(), "elf_x86_64".into(), "-T".into(), dir.join("elf64.ld").display().to_string()])
    } else if let Some(s) = name.strip_suffix(".mb.c") {
        (s, "-m32", vec!["-m".into(), "elf_i386".into(), "-T".into(), dir.join("multiboot.ld").display().to_string()])
    } else if let Some(s) = name.strip_suffix(".raw16.S") {
        (s, "-m32", vec!["-m".into(), "elf_i386".into(), "-Ttext=0x7c00".into(), "--oformat=binary".into()])
    } else {
        return;
    };
    let obj = out.join(format!("{stem}.o"));
    let image = out.join(if name.ends_with(".raw16.S") { format!("{stem}.bin") } else { format!("{stem}.elf") });
    // Freestanding C: no libc, no stack protector, no position independence, integer registers only.
    // The 64-bit C guests are gdb's, at the source level: no optimisation, debug information.
    let c_flags: &[&str] = if name.ends_with(".elf64.c") {
        &[
            "-ffreestanding",
            "-fno-pic",
            "-fno-stack-protector",
            "-mgeneral-regs-only",
            "-mno-red-zone",
            "-fno-asynchronous-unwind-tables",
            "-O0",
            "-g",
            "-Wall",
            "-Werror",
        ]
    } else if name.ends_with(".c") {
        &[
            "-ffreestanding",
            "-fno-pic",
            "-fno-stack-protector",
            "-mgeneral-regs-only",
            "-fno-asynchronous-unwind-tables",
            // Frame pointers, and no tail calls, so that the call-stack tests see every frame.
            "-fno-omit-frame-pointer",
            "-fno-optimize-sibling-calls",
            "-O2",
            "-Wall",
            "-Werror",
        ]
    } else {
        &[]
    };
    run(Command::new("gcc")
        .args([bits, "-c", "-nostdlib"])
        .args(c_flags)
        .arg("-I")
        .arg(dir)
        .arg(src)
        .arg("-o")
        .arg(&obj));
    run(Command::new("ld").args(&ld_args).args(["-nostdlib", "--build-id=none", "-o"]).arg(&image).arg(&obj));
}

/// The first sentence of a source's header comment ("hello: a multiboot guest that ..."), on one line.
fn summary(src: &Path) -> String {
    let text = std::fs::read_to_string(src).unwrap_or_default();
    let body: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("/*"))
        .skip(1)
        .take_while(|l| !l.contains("*/"))
        .map(|l| l.trim_start().trim_start_matches('*').trim())
        .take_while(|l| !l.is_empty())
        .collect();
    let joined = body.join(" ");
    let first = joined.split_once(". ").map_or(joined.as_str(), |(s, _)| s);
    let first = first.split_once(": ").map_or(first, |(_, rest)| rest);
    first.trim_end_matches('.').replace('\t', " ")
}

/// The options a guest needs besides its image, from a header line `Run with: OPTIONS`.
fn run_with(src: &Path) -> String {
    let text = std::fs::read_to_string(src).unwrap_or_default();
    let header = text.lines().take_while(|l| !l.contains("*/"));
    header
        .filter_map(|l| l.trim_start().trim_start_matches('*').trim().strip_prefix("Run with: "))
        .next()
        .unwrap_or("")
        .replace('\t', " ")
}

fn main() {
    let dir = PathBuf::from("assets/guests");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("guests");
    std::fs::create_dir_all(&out).unwrap();
    println!("cargo:rerun-if-changed=assets/guests");
    let mut sources: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    sources.sort();
    // `kvmscope guests` lists them: file, source, what the source's header says, the options it
    // needs.
    let mut index = String::new();
    for src in sources {
        println!("cargo:rerun-if-changed={}", src.display());
        build(&src, &out, &dir);
        let name = src.file_name().unwrap().to_str().unwrap();
        let built =
            [(".raw16.S", ".bin"), (".mb.S", ".elf"), (".elf64.S", ".elf"), (".mb.c", ".elf"), (".elf64.c", ".elf")]
                .iter()
                .find_map(|(from, to)| name.strip_suffix(from).map(|stem| format!("{stem}{to}")));
        if let Some(file) = built {
            index.push_str(&format!("{file}\t{name}\t{}\t{}\n", summary(&src), run_with(&src)));
        }
    }
    std::fs::write(out.join("index.tsv"), index).unwrap();
    println!("cargo:rustc-env=KVMSCOPE_GUEST_DIR={}", out.display());
}

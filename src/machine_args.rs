//! The `run` options that shape the machine — its image, memory, vCPUs, devices — as opposed to
//! those that say how to look at it (TUI or headless, gdb, recording). A snapshot keeps the first
//! kind (paths made absolute), and `run --restore FILE` builds the same machine from them, with
//! the second kind from its own command line.

use std::path::Path;

/// A machine option: its name, whether it takes a value, whether that value is a path.
struct MachineOption {
    name: &'static str,
    value: bool,
    path: bool,
}

const fn opt(name: &'static str, value: bool, path: bool) -> MachineOption {
    MachineOption { name, value, path }
}

const MACHINE_OPTIONS: &[MachineOption] = &[
    opt("--kernel", true, true),
    opt("--image", true, true),
    opt("--demo", false, false),
    opt("--load", true, false),
    opt("--entry", true, false),
    opt("--mode", true, false),
    opt("--mem", true, false),
    opt("--cmdline", true, false),
    opt("--initrd", true, true),
    opt("--cpus", true, false),
    opt("--no-host-workarounds", false, false),
    opt("--cpu-features", true, false),
    opt("--disk", true, true),
    opt("--virtio", true, false),
    opt("--irqchip", false, false),
    opt("--trap-msr", true, false),
    opt("--ioeventfd", false, false),
    opt("--net", true, false),
];

/// An option and its value (`None` for a flag).
pub type Given = (String, Option<String>);

/// `path` made absolute against the current directory (`FILE,ro` keeps its suffix).
fn absolute(value: &str) -> String {
    let (file, suffix) = match value.strip_suffix(",ro") {
        Some(f) => (f, ",ro"),
        None => (value, ""),
    };
    let p = Path::new(file);
    let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(p) };
    format!("{}{suffix}", abs.display())
}

/// Splits `run`'s arguments (after `run`) into the machine options, as (name, value) with paths
/// absolute, and the rest, as given.
pub fn split(args: &[String]) -> (Vec<Given>, Vec<String>) {
    let (mut machine, mut rest) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        match MACHINE_OPTIONS.iter().find(|o| o.name == name) {
            Some(o) => {
                let value = if o.value { inline.or_else(|| it.next().cloned()) } else { None };
                let value = value.map(|v| if o.path { absolute(&v) } else { v });
                machine.push((o.name.to_string(), value));
            }
            None => rest.push(a.clone()),
        }
    }
    (machine, rest)
}

/// The values given to machine option `name` in `args` (`--disk` may come several times), read
/// as [`split`] reads them.
pub fn values_of(args: &[String], name: &str) -> Vec<String> {
    split(args).0.into_iter().filter(|(n, _)| n == name).filter_map(|(_, v)| v).collect()
}

/// The machine options of this process's `run` command line, flattened (`--mem 256M ...`).
pub fn of_this_run() -> Vec<String> {
    let args: Vec<String> = std::env::args().skip_while(|a| a != "run").skip(1).collect();
    flatten(&split(&args).0)
}

/// (name, value) pairs as arguments again.
pub fn flatten(given: &[Given]) -> Vec<String> {
    given.iter().flat_map(|(n, v)| std::iter::once(n.clone()).chain(v.clone())).collect()
}

/// Whether two values of machine option `name` say the same (`--mem 256M` and `--mem 262144K`).
fn same_value(name: &str, a: &Option<String>, b: &Option<String>) -> bool {
    match (name, a, b) {
        ("--mem", Some(a), Some(b)) => {
            matches!((crate::vmm::memory::parse_mem(a), crate::vmm::memory::parse_mem(b)), (Ok(x), Ok(y)) if x == y)
        }
        ("--cpus", Some(a), Some(b)) => matches!((a.parse::<u32>(), b.parse::<u32>()), (Ok(x), Ok(y)) if x == y),
        _ => a == b,
    }
}

/// The `run` arguments that restore a snapshot: its machine options, then `view` (this command
/// line's other options). A machine option given here must say what the snapshot's does;
/// `effective` are the values the snapshot's machine had without them being given (`--mem`,
/// `--cpus` at their defaults).
pub fn for_restore(snapshot: &[String], here: &[String], effective: &[Given]) -> Result<Vec<String>, String> {
    let (mut theirs, _) = split(snapshot);
    for (name, value) in effective {
        if !theirs.iter().any(|(n, _)| n == name) {
            theirs.push((name.clone(), value.clone()));
        }
    }
    let (mine, view) = split(here);
    for (name, value) in &mine {
        let same = theirs.iter().filter(|(n, _)| n == name).any(|(_, v)| same_value(name, v, value));
        if !same {
            let had: Vec<String> = theirs
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.clone().unwrap_or_else(|| "set".into()))
                .collect();
            let given = value.as_deref().map_or(String::new(), |v| format!(" {v}"));
            let had = if had.is_empty() { "none".to_string() } else { had.join(", ") };
            return Err(format!(
                "{name}{given}: the snapshot's machine has {had}; a restored machine is the one saved (leave {name} out)"
            ));
        }
    }
    Ok(flatten(&theirs).into_iter().chain(view).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn machine_options_are_told_from_the_view_and_paths_made_absolute() {
        let (machine, rest) =
            split(&args("--kernel k.elf --headless --mem=512M --gdb 1234 --disk /d.img,ro --irqchip"));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(machine[0], ("--kernel".into(), Some(cwd.join("k.elf").display().to_string())));
        assert_eq!(machine[1], ("--mem".into(), Some("512M".into())));
        assert_eq!(machine[2], ("--disk".into(), Some("/d.img,ro".into())));
        assert_eq!(machine[3], ("--irqchip".into(), None));
        assert_eq!(rest, args("--headless --gdb 1234"));
    }

    #[test]
    fn a_restore_takes_the_snapshots_machine_and_refuses_another() {
        let snap = args("--kernel /k.elf --mem 256M --cpus 1");
        let run = for_restore(&snap, &args("--headless --gdb 1234"), &[]).unwrap();
        assert_eq!(run, args("--kernel /k.elf --mem 256M --cpus 1 --headless --gdb 1234"));
        assert!(for_restore(&snap, &args("--mem 256M --headless"), &[]).is_ok(), "the same value is fine");
        assert!(for_restore(&snap, &args("--mem 262144K"), &[]).is_ok(), "the same size, said otherwise");
        let e = for_restore(&snap, &args("--mem 512M"), &[]).unwrap_err();
        assert!(e.starts_with("--mem 512M: the snapshot's machine has 256M"), "{e}");
        let e = for_restore(&snap, &args("--cpus 2"), &[]).unwrap_err();
        assert!(e.contains("has 1"), "{e}");
        let e = for_restore(&snap, &args("--irqchip"), &[]).unwrap_err();
        assert!(e.starts_with("--irqchip: the snapshot's machine has none"), "{e}");
        // A machine run with the defaults: giving them is no change.
        let bare = args("--kernel /k.elf");
        let defaults = [("--mem".to_string(), Some("256M".to_string())), ("--cpus".to_string(), Some("1".to_string()))];
        assert!(for_restore(&bare, &args("--mem 256M --cpus 1"), &defaults).is_ok());
        let e = for_restore(&bare, &args("--mem 1G"), &defaults).unwrap_err();
        assert!(e.starts_with("--mem 1G: the snapshot's machine has 256M"), "{e}");
    }
}

//! The project's own guests, built by build.rs from assets/guests.

use std::path::PathBuf;

/// Directory holding the built guests (`NAME.elf`, `NAME.bin`).
pub const GUEST_DIR: &str = env!("KVMSCOPE_GUEST_DIR");

/// Path of a built guest, e.g. `guest_path("hello.elf")`.
pub fn guest_path(file: &str) -> PathBuf {
    PathBuf::from(GUEST_DIR).join(file)
}

/// The built-in demo guest, run by `kvmscope` with no arguments.
pub const DEMO: &[u8] = include_bytes!(concat!(env!("KVMSCOPE_GUEST_DIR"), "/demo.elf"));

/// What build.rs wrote of each guest: its file, its source, the first sentence of the source's
/// header, and the options it needs (its header's `Run with:` line).
const INDEX: &str = include_str!(concat!(env!("KVMSCOPE_GUEST_DIR"), "/index.tsv"));

/// One of the project's guests, as `kvmscope guests` lists it.
pub struct GuestInfo {
    pub file: &'static str,
    pub source: &'static str,
    pub about: &'static str,
    /// Options it needs besides its image (`--net tap=tap0`).
    pub options: &'static str,
}

impl GuestInfo {
    /// The `run` options that boot it (a raw real-mode image is loaded at 0x7c00).
    pub fn run_args(&self) -> String {
        let path = guest_path(self.file);
        let image = match self.source.ends_with(".raw16.S") {
            true => format!("--image {} --load 0x7c00 --entry 0x7c00 --mode real", path.display()),
            false => format!("--kernel {}", path.display()),
        };
        if self.options.is_empty() { image } else { format!("{image} {}", self.options) }
    }
}

/// Every guest built with this binary.
pub fn list() -> Vec<GuestInfo> {
    INDEX
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, '\t');
            let (file, source) = (f.next()?, f.next()?);
            Some(GuestInfo { file, source, about: f.next().unwrap_or(""), options: f.next().unwrap_or("") })
        })
        .collect()
}

/// `kvmscope guests`: each guest, what it does, and the command that runs it.
pub fn listing() -> String {
    let mut out = format!("The project's test and demo guests (sources in assets/guests, built into {GUEST_DIR}):\n");
    for g in list() {
        out.push_str(&format!("\n{:<16} {}\n{:<16} kvmscope run {}\n", g.file, g.about, "", g.run_args()));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_guest_is_listed_with_what_it_does_and_how_to_run_it() {
        let list = super::list();
        let hello = list.iter().find(|g| g.file == "hello.elf").expect("hello is listed");
        assert!(hello.about.contains("multiboot"), "{}", hello.about);
        let real = list.iter().find(|g| g.file == "real.bin").expect("real is listed");
        assert!(real.run_args().contains("--mode real"));
        assert!(list.iter().all(|g| !g.about.is_empty()), "every source has a header");
        assert!(super::listing().contains("kvmscope run --kernel"));
        let net = list.iter().find(|g| g.file == "net.elf").expect("net is listed");
        assert!(net.run_args().ends_with("net.elf --net tap=tap0"), "{}", net.run_args());
    }
}

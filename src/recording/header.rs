//! What a recording says about itself: kvmscope and host kernel versions, KVM capabilities, the
//! guest image and its hash, the command line, the start time.

use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::format::TraceHeader;
use crate::vmm::Image;

/// What the recording of the built-in demo guest names as its image.
pub const DEMO_IMAGE: &str = "demo (built in)";

/// One field of `uname(2)`: the running kernel's release, or the host's name.
fn uname(field: fn(&libc::utsname) -> &[libc::c_char; 65]) -> String {
    // SAFETY: uname fills the zeroed struct; the fields are NUL-terminated C strings.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "unknown".into();
        }
        std::ffi::CStr::from_ptr(field(&u).as_ptr()).to_string_lossy().into_owned()
    }
}

/// The running kernel's release (`uname -r`).
pub fn host_kernel() -> String {
    uname(|u| &u.release)
}

/// The host's name (`uname -n`).
pub fn host_name() -> String {
    uname(|u| &u.nodename)
}

/// The header for a run of `image`: the image by its absolute path (the recording is read from
/// other directories), with its SHA-256.
pub fn for_run(image: &Image, vcpus: u32) -> TraceHeader {
    let (name, bytes) = match image {
        Image::Demo => (DEMO_IMAGE.to_string(), Some(crate::guests::DEMO.to_vec())),
        Image::Kernel(p) | Image::Raw { path: p, .. } => {
            let absolute = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            let bytes = crate::files::read_regular(p, "guest image", crate::decode::symbols::MAX_SYMBOLS_FILE).ok();
            (absolute.display().to_string(), bytes)
        }
    };
    let sha = bytes.map(|b| Sha256::digest(&b).iter().map(|x| format!("{x:02x}")).collect()).unwrap_or_default();
    let kvm_caps = crate::vmm::kvm::open_kvm().map(|kvm| crate::vmm::probe::kvm_caps(&kvm)).unwrap_or_default();
    TraceHeader {
        kvmscope_version: env!("CARGO_PKG_VERSION").into(),
        host_kernel: host_kernel(),
        kvm_caps,
        guest_image: name,
        guest_sha256: sha,
        command_line: std::env::args().collect(),
        start_unix_secs: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        vcpus,
        host_name: host_name(),
        replayable: false,
    }
}

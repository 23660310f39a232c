//! A TAP device — the host's end of the guest's network card, as QEMU, Firecracker and
//! cloud-hypervisor use it: an Ethernet interface whose frames a process reads and writes on a
//! file descriptor. Opened with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR` and a 12-byte vnet header, so
//! every frame carries the virtio-net header the guest's driver reads and writes itself (checksum
//! and segmentation offloads pass through untouched).
//!
//! An interface that does not exist is created (which needs `CAP_NET_ADMIN`), brought up, and
//! goes when kvmscope closes it; one that exists (`ip tuntap add ...`) is used as it is.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The virtio-net header on every frame: `virtio_net_hdr_v1` (VERSION_1 has `num_buffers`).
pub const VNET_HDR: usize = 12;
/// Interface names are at most this long (`IFNAMSIZ` less the terminating zero).
const NAME_MAX: usize = 15;

/// Why a TAP cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("--net tap={0}: an interface name is 1 to 15 characters, without '/' or spaces")]
    BadName(String),
    #[error("--net: this host has no /dev/net/tun (load the tun module: modprobe tun)")]
    NoTunDevice,
    #[error("--net: cannot open /dev/net/tun: {0}")]
    Open(std::io::Error),
    #[error(
        "--net tap={name}: creating a TAP needs CAP_NET_ADMIN; create it once as root: \
         ip tuntap add dev {name} mode tap user $USER && ip link set {name} up"
    )]
    NoRights { name: String },
    #[error("--net tap={name}: the TAP is in use by another process")]
    Busy { name: String },
    #[error("--net tap={name}: an interface of that name exists and is not a TAP ({source})")]
    NotATap { name: String, source: std::io::Error },
    #[error("--net tap={name}: {what}: {source}")]
    Setup { name: String, what: &'static str, source: std::io::Error },
}

/// An open TAP.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    /// kvmscope made the interface (it goes when the file is closed).
    created: bool,
}

/// Whether an interface named `name` exists in this network namespace.
fn exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else { return false };
    // SAFETY: a valid NUL-terminated string.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all zeros is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

impl Tap {
    /// Opens (or, with the rights, creates) the TAP `name`.
    pub fn open(name: &str) -> Result<Self, TapError> {
        if name.is_empty() || name.len() > NAME_MAX || name.contains(['/', ' ', '\0']) || name == "." || name == ".." {
            return Err(TapError::BadName(name.into()));
        }
        let created = !exists(name);
        // SAFETY: open with a NUL-terminated path; the descriptor is owned below.
        let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.kind() == std::io::ErrorKind::NotFound {
                TapError::NoTunDevice
            } else {
                TapError::Open(e)
            });
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut req = ifreq(name);
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one ifreq, which lives across the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
            let source = std::io::Error::last_os_error();
            let name = name.to_string();
            return Err(match source.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => TapError::NoRights { name },
                Some(libc::EBUSY) => TapError::Busy { name },
                Some(libc::EINVAL) => TapError::NotATap { name, source },
                _ => TapError::Setup { name, what: "TUNSETIFF", source },
            });
        }
        let tap = Self { file, name: name.to_string(), created };
        let size = VNET_HDR as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int, which lives across the call.
        if unsafe { libc::ioctl(tap.file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) } < 0 {
            return Err(tap.setup_error("TUNSETVNETHDRSZ"));
        }
        tap.set_offload(0)?;
        if created {
            tap.bring_up()?;
        }
        Ok(tap)
    }

    fn setup_error(&self, what: &'static str) -> TapError {
        TapError::Setup { name: self.name.clone(), what, source: std::io::Error::last_os_error() }
    }

    /// The offloads the guest's driver takes (`TUN_F_*`): frames the TAP hands over may then
    /// have their checksum left to the guest, or be larger than the MTU.
    pub fn set_offload(&self, flags: u32) -> Result<(), TapError> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        if unsafe { libc::ioctl(self.file.as_raw_fd(), libc::TUNSETOFFLOAD, flags as libc::c_ulong) } < 0 {
            return Err(self.setup_error("TUNSETOFFLOAD"));
        }
        Ok(())
    }

    /// Sets IFF_UP on an interface kvmscope created (as `ip link set NAME up` would).
    fn bring_up(&self) -> Result<(), TapError> {
        // SAFETY: a socket for the interface ioctls, closed when `sock` drops.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(self.setup_error("socket for SIOCSIFFLAGS"));
        }
        // SAFETY: `raw` was just opened and nothing else owns it.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = ifreq(&self.name);
        // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write one ifreq, which lives across the calls.
        unsafe {
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
                return Err(self.setup_error("SIOCGIFFLAGS"));
            }
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
                return Err(self.setup_error("SIOCSIFFLAGS"));
            }
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether kvmscope created the interface (it goes at the end of the run).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Reads one frame with its vnet header; `WouldBlock` when none waits.
    pub fn read_frame(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one frame with its vnet header.
    pub fn write_frame(&self, frame: &[u8]) -> std::io::Result<usize> {
        (&self.file).write(frame)
    }

    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_kernel_would_refuse_are_refused_first() {
        for bad in ["", "a-name-far-too-long", "a/b", "a b", ".."] {
            assert!(matches!(Tap::open(bad), Err(TapError::BadName(_))), "{bad:?}");
        }
    }
}

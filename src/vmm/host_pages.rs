//! Where guest RAM sits on the host: the host page frame behind a host-virtual address, from
//! `/proc/self/pagemap`, and whether it is part of a huge page, from `/proc/kpageflags`. Frames are
//! only shown to root (CAP_SYS_ADMIN); others get a one-line reason instead.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// What the host says about one page of its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPage {
    /// Not populated yet (the guest has not touched it).
    NotPresent,
    /// Populated (swapped out pages count as not present); `frame` with root only, and whether the
    /// frame is part of a huge page (hugetlbfs or transparent).
    Present { frame: Option<u64>, huge: Option<bool> },
}

const PAGEMAP_PRESENT: u64 = 1 << 63;
const PAGEMAP_SWAPPED: u64 = 1 << 62;
const PAGEMAP_PFN: u64 = (1 << 55) - 1;
const KPF_HUGE: u64 = 1 << 17;
const KPF_THP: u64 = 1 << 22;

/// Why the host's pages cannot be read (kept with a view: it clones).
#[derive(Debug, Clone, thiserror::Error)]
#[error("/proc/self/pagemap: {0}")]
pub struct PagemapError(std::sync::Arc<std::io::Error>);

/// Two errors are alike when the OS said the same.
impl PartialEq for PagemapError {
    fn eq(&self, other: &Self) -> bool {
        (self.0.kind(), self.0.raw_os_error()) == (other.0.kind(), other.0.raw_os_error())
    }
}

impl Eq for PagemapError {}

impl From<std::io::Error> for PagemapError {
    fn from(e: std::io::Error) -> Self {
        PagemapError(std::sync::Arc::new(e))
    }
}

fn read_u64(path: &str, index: u64) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    File::open(path)?.read_exact_at(&mut b, index * 8)?;
    Ok(u64::from_le_bytes(b))
}

/// The host page behind host-virtual address `hva` of this process.
pub fn host_page(hva: u64) -> Result<HostPage, PagemapError> {
    let entry = read_u64("/proc/self/pagemap", hva / 4096)?;
    if entry & PAGEMAP_PRESENT == 0 {
        return Ok(HostPage::NotPresent);
    }
    // Without CAP_SYS_ADMIN the kernel reports frame 0.
    let frame = Some(entry & PAGEMAP_PFN).filter(|f| *f != 0);
    let huge = frame.and_then(|f| read_u64("/proc/kpageflags", f).ok()).map(|k| k & (KPF_HUGE | KPF_THP) != 0);
    Ok(HostPage::Present { frame, huge })
}

/// Which 4 KiB pages of a host range the host has ever given memory (present or swapped out): the
/// others were never touched and read as zeros. `None` when the pagemap cannot be read (then
/// every page must be looked at).
pub fn touched_pages(hva: u64, len: u64) -> Option<Vec<bool>> {
    let pagemap = File::open("/proc/self/pagemap").ok()?;
    let pages = (len / 4096) as usize;
    let mut touched = Vec::with_capacity(pages);
    // In pieces of 64 Ki pages (512 KiB of pagemap), so a big guest needs no big buffer.
    let mut entries = vec![0u8; 8 << 16];
    for first in (0..pages).step_by(1 << 16) {
        let n = (pages - first).min(1 << 16);
        let buf = &mut entries[..n * 8];
        pagemap.read_exact_at(buf, (hva / 4096 + first as u64) * 8).ok()?;
        touched.extend(buf.chunks_exact(8).map(|e| {
            let e = u64::from_le_bytes(e.try_into().unwrap_or_default());
            e & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED) != 0
        }));
    }
    Some(touched)
}

/// How much of a host range is populated: (4 KiB pages present, of them in huge pages — sampled at
/// every 2 MiB, and only where the frames can be seen, as root).
pub fn populated(hva: u64, len: u64) -> Result<(u64, Option<u64>), PagemapError> {
    let pagemap = File::open("/proc/self/pagemap")?;
    let pages = len / 4096;
    let mut entries = vec![0u8; pages as usize * 8];
    pagemap.read_exact_at(&mut entries, hva / 4096 * 8)?;
    let word = |i: usize| u64::from_le_bytes(entries[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    let present = (0..pages as usize).filter(|&i| word(i) & PAGEMAP_PRESENT != 0).count() as u64;
    let kpageflags = File::open("/proc/kpageflags").ok();
    let huge = kpageflags.map(|k| {
        (0..pages as usize)
            .step_by(512)
            .filter(|&i| {
                let frame = word(i) & PAGEMAP_PFN;
                let mut b = [0u8; 8];
                frame != 0
                    && k.read_exact_at(&mut b, frame * 8).is_ok()
                    && u64::from_le_bytes(b) & (KPF_HUGE | KPF_THP) != 0
            })
            .map(|i| (pages as usize - i).min(512) as u64)
            .sum()
    });
    Ok((present, huge))
}

impl std::fmt::Display for HostPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPage::NotPresent => write!(f, "not populated yet"),
            HostPage::Present { frame: None, .. } => write!(f, "present (host frame shown to root only)"),
            HostPage::Present { frame: Some(pfn), huge } => {
                write!(f, "host frame {pfn:#x}")?;
                match huge {
                    Some(true) => write!(f, ", part of a huge page"),
                    Some(false) => write!(f, ", a 4 KiB page"),
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_touched_page_of_this_process_is_present() {
        let page = vec![1u8; 4096 * 2];
        let hva = page.as_ptr() as u64;
        match host_page(hva).unwrap() {
            HostPage::Present { frame, .. } => {
                // SAFETY: geteuid has no preconditions.
                if unsafe { libc::geteuid() } == 0 {
                    assert!(frame.is_some(), "root sees the frame");
                }
            }
            HostPage::NotPresent => panic!("a written page is present"),
        }
    }
}

//! A disk's undo log, so that going back to a checkpoint takes the disk back with the memory:
//! before the guest overwrites sectors, their old contents are kept (once per sector between
//! two marks, as a journaling file system keeps a block once per transaction). A checkpoint
//! holds a mark; rewinding to it writes the kept sectors back, newest first. Nothing is kept
//! before the first mark: a run without checkpoints pays nothing.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Bytes per sector.
const SECTOR: u64 = 512;

/// One disk's undo log.
pub struct UndoLog {
    /// The image (its own descriptor: rewinding happens on the controller's thread).
    file: File,
    /// Entries dropped from the front; marks count from the log's start.
    base: u64,
    /// (byte offset, the bytes there before the write), oldest first.
    entries: Vec<(u64, Vec<u8>)>,
    /// Sectors kept since the last mark.
    kept: HashSet<u64>,
    /// A mark was taken: writes are logged.
    active: bool,
    bytes: u64,
}

impl UndoLog {
    pub fn new(file: File) -> Self {
        Self { file, base: 0, entries: Vec::new(), kept: HashSet::new(), active: false, bytes: 0 }
    }

    /// Keeps what `len` bytes at `offset` (whole sectors) hold now, before they are written.
    pub fn before_write(&mut self, offset: u64, len: u64) -> std::io::Result<()> {
        if !self.active || len == 0 {
            return Ok(());
        }
        let (first, last) = (offset / SECTOR, (offset + len - 1) / SECTOR);
        let mut sector = first;
        while sector <= last {
            if !self.kept.insert(sector) {
                sector += 1;
                continue;
            }
            // A run of sectors not kept yet, read at once.
            let start = sector;
            sector += 1;
            while sector <= last && self.kept.insert(sector) {
                sector += 1;
            }
            let mut old = vec![0u8; ((sector - start) * SECTOR) as usize];
            self.file.read_exact_at(&mut old, start * SECTOR)?;
            self.bytes += old.len() as u64;
            self.entries.push((start * SECTOR, old));
        }
        Ok(())
    }

    /// Where the log is now; writes after it are undone by [`UndoLog::rewind`] to it.
    pub fn mark(&mut self) -> u64 {
        self.active = true;
        self.kept.clear();
        self.base + self.entries.len() as u64
    }

    /// Writes back what was overwritten since `mark`, newest first; the disk is as it was then.
    pub fn rewind(&mut self, mark: u64) -> std::io::Result<()> {
        let keep = mark.saturating_sub(self.base) as usize;
        while self.entries.len() > keep {
            let Some((offset, old)) = self.entries.pop() else { break };
            self.bytes -= old.len() as u64;
            self.file.write_all_at(&old, offset)?;
        }
        self.kept.clear();
        Ok(())
    }

    /// Drops what only a rewind to before `mark` would need (the checkpoints before it are gone).
    pub fn forget_before(&mut self, mark: u64) {
        let drop = (mark.saturating_sub(self.base) as usize).min(self.entries.len());
        self.bytes -= self.entries.drain(..drop).map(|(_, old)| old.len() as u64).sum::<u64>();
        self.base += drop as u64;
    }

    /// Bytes of old sectors kept.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(sectors: usize) -> (File, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("kvmscope-undo-{}-{sectors}", std::process::id()));
        let bytes: Vec<u8> = (0..sectors * 512).map(|i| (i / 512) as u8).collect();
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        (file, path)
    }

    fn write(log: &mut UndoLog, file: &File, sector: u64, count: u64, byte: u8) {
        log.before_write(sector * 512, count * 512).unwrap();
        file.write_all_at(&vec![byte; (count * 512) as usize], sector * 512).unwrap();
    }

    #[test]
    fn rewinding_to_a_mark_gives_the_disk_back_as_it_was() {
        let (file, path) = disk(8);
        let original = std::fs::read(&path).unwrap();
        let mut log = UndoLog::new(file.try_clone().unwrap());
        write(&mut log, &file, 0, 1, 0xaa);
        assert_eq!(log.bytes(), 0, "nothing is kept before the first mark");
        let before = std::fs::read(&path).unwrap();
        let first = log.mark();
        write(&mut log, &file, 1, 3, 0xbb);
        write(&mut log, &file, 2, 1, 0xcc);
        assert_eq!(log.bytes(), 3 * 512, "a sector is kept once between two marks");
        let middle = std::fs::read(&path).unwrap();
        let second = log.mark();
        write(&mut log, &file, 2, 2, 0xdd);
        log.rewind(second).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), middle);
        write(&mut log, &file, 7, 1, 0xee);
        log.rewind(first).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_ne!(before, original);
        assert_eq!(log.bytes(), 0);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn what_no_checkpoint_needs_is_forgotten() {
        let (file, path) = disk(4);
        let mut log = UndoLog::new(file.try_clone().unwrap());
        let first = log.mark();
        write(&mut log, &file, 0, 2, 1);
        let second = log.mark();
        let at_second = std::fs::read(&path).unwrap();
        write(&mut log, &file, 1, 2, 2);
        log.forget_before(second);
        assert_eq!(log.bytes(), 2 * 512);
        write(&mut log, &file, 3, 1, 3);
        log.rewind(second).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), at_second);
        assert!(first < second);
        let _ = std::fs::remove_file(path);
    }
}

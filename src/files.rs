//! Files a user names (on the command line, or a recording names for them): opened so that they
//! cannot hang the run — without blocking (a FIFO with nobody at its other end would wait in
//! `open` forever), as regular files where a file's contents are what is meant (a FIFO or a
//! character device never ends), and read with a cap on their size.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why a named file cannot be used; each names the file and what it was for.
#[derive(Debug, Error)]
pub enum FileError {
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{what} {}: is {kind}, not a regular file", path.display())]
    NotRegular { what: &'static str, path: PathBuf, kind: &'static str },
    #[error("{what} {}: {size} bytes, more than the {cap} bytes kvmscope reads", path.display())]
    TooLarge { what: &'static str, path: PathBuf, size: u64, cap: u64 },
    #[error("{what} {}: a FIFO with no reader at its other end", path.display())]
    NoReader { what: &'static str, path: PathBuf },
    #[error("{what} {}: is the file being read ({}): writing it would destroy it", path.display(), input.display())]
    IsInput { what: &'static str, path: PathBuf, input: PathBuf },
}

/// What kind of file `meta` describes, in words.
pub fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a file"
    }
}

/// Opens `path` with `options` and `O_NONBLOCK` (so that opening a FIFO returns at once), then
/// puts the descriptor back in blocking mode.
pub fn open_nonblocking(path: &Path, options: &mut OpenOptions, what: &'static str) -> Result<File, FileError> {
    let file = options.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(path).map_err(|source| {
        if source.raw_os_error() == Some(libc::ENXIO) {
            FileError::NoReader { what, path: path.to_path_buf() }
        } else {
            FileError::Io { what, path: path.to_path_buf(), source }
        }
    })?;
    set_blocking(&file);
    Ok(file)
}

/// Clears `O_NONBLOCK` on `file`.
fn set_blocking(file: &File) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function's caller owns, with flags read from it.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
}

/// Opens an existing regular file for reading, without blocking on whatever else `path` is.
pub fn open_regular(path: &Path, what: &'static str) -> Result<File, FileError> {
    let file = open_nonblocking(path, OpenOptions::new().read(true), what)?;
    let meta = file.metadata().map_err(|source| FileError::Io { what, path: path.to_path_buf(), source })?;
    if !meta.is_file() {
        return Err(FileError::NotRegular { what, path: path.to_path_buf(), kind: kind_of(&meta) });
    }
    Ok(file)
}

/// Reads a whole regular file of at most `cap` bytes.
pub fn read_regular(path: &Path, what: &'static str, cap: u64) -> Result<Vec<u8>, FileError> {
    let file = open_regular(path, what)?;
    let io = |source| FileError::Io { what, path: path.to_path_buf(), source };
    let size = file.metadata().map_err(io)?.len();
    if size > cap {
        return Err(FileError::TooLarge { what, path: path.to_path_buf(), size, cap });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // Never more than the cap, even if the file grows while it is read.
    file.take(cap + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > cap {
        return Err(FileError::TooLarge { what, path: path.to_path_buf(), size: bytes.len() as u64, cap });
    }
    Ok(bytes)
}

/// Creates (or truncates) a regular file to write: what is there must be a regular file or
/// nothing (a FIFO or a device is refused rather than waited on).
pub fn create_regular(path: &Path, what: &'static str) -> Result<File, FileError> {
    if let Ok(meta) = std::fs::metadata(path)
        && !meta.is_file()
    {
        return Err(FileError::NotRegular { what, path: path.to_path_buf(), kind: kind_of(&meta) });
    }
    let file = open_nonblocking(path, OpenOptions::new().write(true).create(true).truncate(true), what)?;
    // Whatever appeared at the path between the check and the open is checked again.
    let meta = file.metadata().map_err(|source| FileError::Io { what, path: path.to_path_buf(), source })?;
    if !meta.is_file() {
        return Err(FileError::NotRegular { what, path: path.to_path_buf(), kind: kind_of(&meta) });
    }
    Ok(file)
}

/// An output written whole or not at all: into a temporary file beside its path, renamed over
/// the path by [`Output::commit`]; dropped before that (an error, a full disk), the temporary
/// file goes and whatever was at the path stays. The path must be a regular file or nothing (a
/// symbolic link is followed to its file), and never a file the command reads.
pub struct Output {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
    what: &'static str,
    done: bool,
}

/// (device, inode) of an existing file.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl Output {
    /// Starts writing `path` (for `what`), refusing it if it is one of `inputs`.
    pub fn create(path: &Path, what: &'static str, inputs: &[&Path]) -> Result<Self, FileError> {
        let io = |source| FileError::Io { what, path: path.to_path_buf(), source };
        // A link is written through: its target is what gets replaced.
        let path = match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).map_err(io)?,
            _ => path.to_path_buf(),
        };
        if let Ok(meta) = std::fs::metadata(&path)
            && !meta.is_file()
        {
            return Err(FileError::NotRegular { what, path, kind: kind_of(&meta) });
        }
        if let Some(me) = identity(&path)
            && let Some(input) = inputs.iter().find(|i| identity(i) == Some(me))
        {
            return Err(FileError::IsInput { what, path, input: input.to_path_buf() });
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.kvmscope-{}.partial", std::process::id()));
        let file = open_nonblocking(&tmp, OpenOptions::new().write(true).create_new(true), what)?;
        Ok(Self { file, tmp, path, what, done: false })
    }

    /// The file being written.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The path it is written to at the end.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Puts the written file in its place.
    pub fn commit(mut self) -> Result<(), FileError> {
        let io = |source| FileError::Io { what: self.what, path: self.path.clone(), source };
        self.file.sync_data().map_err(io)?;
        std::fs::rename(&self.tmp, &self.path).map_err(io)?;
        self.done = true;
        Ok(())
    }
}

impl std::io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("kvmscope-files-{}-{name}", std::process::id()))
    }

    fn fifo(name: &str) -> PathBuf {
        let path = temp(name);
        let _ = std::fs::remove_file(&path);
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        path
    }

    #[test]
    fn an_output_is_whole_or_not_there_and_never_an_input() {
        use std::io::Write;
        let input = temp("out-input");
        std::fs::write(&input, b"recording").unwrap();
        let e = Output::create(&input, "-o", &[&input]).err().expect("the input refused");
        assert!(e.to_string().contains("is the file being read"), "{e}");
        // The same file by another name (a hard link) too.
        let link = temp("out-link");
        let _ = std::fs::remove_file(&link);
        std::fs::hard_link(&input, &link).unwrap();
        assert!(Output::create(&link, "-o", &[&input]).is_err());
        assert_eq!(std::fs::read(&input).unwrap(), b"recording", "untouched");
        // Written and committed: there; dropped half way: the old file stays, no leftovers.
        let out = temp("out-file");
        std::fs::write(&out, b"old").unwrap();
        let mut o = Output::create(&out, "-o", &[&input]).unwrap();
        o.write_all(b"half").unwrap();
        drop(o);
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
        let mut o = Output::create(&out, "-o", &[&input]).unwrap();
        o.write_all(b"new").unwrap();
        o.commit().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        let leftovers = std::fs::read_dir(std::env::temp_dir()).unwrap().flatten().filter(|e| {
            e.file_name()
                .to_string_lossy()
                .contains(&format!("kvmscope-files-{}-out-file.kvmscope", std::process::id()))
        });
        assert_eq!(leftovers.count(), 0);
        // A FIFO or a device is refused, not replaced.
        let f = fifo("out-fifo");
        assert!(Output::create(&f, "-o", &[]).err().unwrap().to_string().contains("is a FIFO"));
        assert!(Output::create(Path::new("/dev/null"), "-o", &[]).err().unwrap().to_string().contains("device"));
        // A symbolic link writes its file.
        let sym = temp("out-sym");
        let _ = std::fs::remove_file(&sym);
        std::os::unix::fs::symlink(&out, &sym).unwrap();
        let mut o = Output::create(&sym, "-o", &[]).unwrap();
        o.write_all(b"through").unwrap();
        o.commit().unwrap();
        assert!(std::fs::symlink_metadata(&sym).unwrap().file_type().is_symlink(), "the link stays a link");
        assert_eq!(std::fs::read(&out).unwrap(), b"through");
        for p in [input, link, out, f, sym] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn a_fifo_or_device_is_refused_at_once_not_waited_on() {
        let f = fifo("in");
        let e = read_regular(&f, "symbols", 1 << 20).unwrap_err();
        assert!(e.to_string().ends_with("is a FIFO, not a regular file"), "{e}");
        let e = create_regular(&f, "--record").unwrap_err();
        assert!(e.to_string().contains("is a FIFO"), "{e}");
        let e = read_regular(Path::new("/dev/zero"), "symbols", 1 << 20).unwrap_err();
        assert!(e.to_string().contains("is a character device"), "{e}");
        let e = read_regular(Path::new("/"), "symbols", 1 << 20).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        // Writing to a FIFO nobody reads: said, not waited on.
        let e = open_nonblocking(&f, OpenOptions::new().write(true), "--debugcon").unwrap_err();
        assert!(e.to_string().contains("no reader"), "{e}");
        let _ = std::fs::remove_file(f);
    }

    #[test]
    fn a_file_over_the_cap_is_refused() {
        let p = temp("big");
        std::fs::write(&p, vec![0u8; 100]).unwrap();
        assert_eq!(read_regular(&p, "symbols", 100).unwrap().len(), 100);
        let e = read_regular(&p, "symbols", 99).unwrap_err();
        assert!(e.to_string().contains("100 bytes, more than the 99 bytes"), "{e}");
        let _ = std::fs::remove_file(p);
    }
}

//! The guest image a recording names, for its symbols: found where the recording says (a relative
//! path against the recording's own directory, then the current one), and checked against the
//! SHA-256 the recording holds, so that symbols of another build are not used without a word.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::AnalysisError;
use crate::decode::symbols::{MAX_SYMBOLS_FILE, Symbols, SymbolsError};
use crate::recording::TraceHeader;

/// Why the recorded guest image gives no symbols.
#[derive(Debug, thiserror::Error)]
pub enum GuestImageError {
    #[error(transparent)]
    Symbols(#[from] SymbolsError),
    #[error("{0} (named by the recording; give --symbols FILE)")]
    Unreadable(crate::files::FileError),
    #[error("guest image {}, named by the recording, is not there: give --symbols FILE", .0.display())]
    Missing(PathBuf),
    #[error(
        "guest image {}, named by the recording, is neither in the recording's directory ({}) nor in the \
         current one: give --symbols FILE",
        named.display(),
        dir.display()
    )]
    NotFound { named: PathBuf, dir: PathBuf },
}

pub use crate::recording::header::DEMO_IMAGE;

/// The guest's symbols for analysing a recording, with warnings to show: from `given`
/// (`--symbols FILE`), else from the image the recording names.
pub fn symbols(
    trace: &Path,
    header: &TraceHeader,
    given: Option<&Path>,
) -> Result<(Symbols, Vec<String>), AnalysisError> {
    if let Some(path) = given {
        return Ok((Symbols::load(path).map_err(GuestImageError::from)?, Vec::new()));
    }
    if header.guest_image == DEMO_IMAGE {
        return Ok((Symbols::from_bytes(crate::guests::DEMO), Vec::new()));
    }
    let path = locate(trace, &header.guest_image)?;
    let bytes =
        crate::files::read_regular(&path, "guest image", MAX_SYMBOLS_FILE).map_err(GuestImageError::Unreadable)?;
    let mut warnings = Vec::new();
    let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    if !header.guest_sha256.is_empty() && sha != header.guest_sha256 {
        warnings.push(format!(
            "guest image {} has SHA-256 {sha}, but the recording was made with {}: its symbols may not match",
            path.display(),
            header.guest_sha256
        ));
    }
    let symbols = Symbols::from_bytes(&bytes);
    if symbols.is_empty() {
        return Err(GuestImageError::Symbols(SymbolsError::NoFunctions(path)).into());
    }
    Ok((symbols, warnings))
}

/// Where the image the recording names is: an absolute path as is; a relative one in the
/// recording's directory, else in the current directory.
fn locate(trace: &Path, named: &str) -> Result<PathBuf, GuestImageError> {
    let named = Path::new(named);
    if named.is_absolute() {
        return if named.exists() { Ok(named.to_path_buf()) } else { Err(GuestImageError::Missing(named.into())) };
    }
    let dir = trace.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let beside = dir.join(named);
    if beside.exists() {
        return Ok(beside);
    }
    if named.exists() {
        return Ok(named.to_path_buf());
    }
    Err(GuestImageError::NotFound { named: named.into(), dir: dir.into() })
}

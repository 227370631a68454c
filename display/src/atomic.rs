//! Files replaced whole or not at all: written to a temporary file in the same folder, flushed
//! to disk, then renamed over the old one (and the folder flushed, so the rename survives a
//! power cut). A process killed mid-write, or a disk that fills up, leaves the previous version
//! intact and at most a `.tmp-…` file beside it, which the next successful write of that name
//! does not reuse.
//!
//! The runtime's weights, checkpoints and reports, plots and images saved from cells, and the
//! kernel's kernelspec all go through here (docs/ARCHITECTURE.md, "Files written atomically").
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("tb-atomic-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("metrics.json");
//! torchbook_display::atomic::write(&path, b"{\"accuracy\": 0.97}").unwrap();
//! // A writer that fails leaves the file as it was.
//! let failed = torchbook_display::atomic::write_with(&path, |_temporary| Err(std::io::Error::other("disk full")));
//! assert!(failed.is_err());
//! assert_eq!(std::fs::read(&path).unwrap(), b"{\"accuracy\": 0.97}");
//! # std::fs::remove_dir_all(dir).unwrap();
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces `path` with `bytes`.
pub fn write(path: impl AsRef<Path>, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
    write_with(path, |temporary| {
        let mut file = std::fs::File::create(temporary)?;
        file.write_all(bytes.as_ref())
    })
}

/// Replaces `path` with what `write_to` writes into the temporary file it is given (a path
/// in the same folder whose name ends with `path`'s name, so writers that choose a format by
/// extension keep working). Nothing replaces `path` unless `write_to` succeeds.
pub fn write_with(path: impl AsRef<Path>, write_to: impl FnOnce(&Path) -> std::io::Result<()>) -> std::io::Result<()> {
    let path = path.as_ref();
    let temporary = temporary_beside(path)?;
    let result = write_to(&temporary).and_then(|()| {
        std::fs::File::options().write(true).open(&temporary)?.sync_all()?;
        std::fs::rename(&temporary, path)
    });
    if let Err(error) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    // The rename is durable once the folder is; a folder that cannot be opened for this
    // (some file systems) still has the whole file.
    if let Ok(folder) = std::fs::File::open(folder_of(path)) {
        let _ = folder.sync_all();
    }
    Ok(())
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

fn temporary_beside(path: &Path) -> std::io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{} names no file", path.display()))
    })?;
    let mut temporary = std::ffi::OsString::from(format!(".tmp-{}-{}-", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    temporary.push(name);
    Ok(folder_of(path).join(temporary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tb-atomic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_no_temporary() {
        let dir = folder("failed");
        let path = dir.join("weights.safetensors");
        write(&path, b"old").unwrap();
        let err = write_with(&path, |temporary| {
            std::fs::write(temporary, b"half")?;
            Err(std::io::Error::other("No space left on device"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("No space"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "the temporary file was removed");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_temporary_keeps_the_extension() {
        let dir = folder("extension");
        let path = dir.join("plot.png");
        write_with(&path, |temporary| {
            assert_eq!(temporary.extension().unwrap(), "png");
            assert_eq!(temporary.parent().unwrap(), dir);
            std::fs::write(temporary, b"png")
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"png");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_folder_is_not_found() {
        let err = write("/nonexistent-torchbook-folder/file.json", b"x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}

//! The standard library's sources as rust-analyzer gets them: the toolchain's `rust-src`
//! without `stdarch` (the `core::arch` intrinsics, 16 of its 52 MB, each a separate item) and
//! the library's own test crates.
//!
//! rust-analyzer builds item trees for every module of `core` and `std`, `core::arch` included,
//! before it can name a single type; that module alone is about 120 MB of the engine's memory.
//! Cells do not name SIMD intrinsics' types; one that does gets evcxr's request for an annotation.
//! The copy is a tree of symbolic links next to the prelude cache, made once per toolchain, with
//! the library's workspace manifest rewritten to leave out the test crates it no longer has.
//! rust-analyzer finds it through `RUST_SRC_PATH`, which nothing else reads; a user's own
//! `RUST_SRC_PATH`, or `TORCHBOOK_RA_FULL_SYSROOT=1`, leaves rust-analyzer the whole library.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Folders of the toolchain's `library` that cells never need rust-analyzer to read.
const LEFT_OUT: [&str; 3] = ["stdarch", "coretests", "alloctests"];

/// Points rust-analyzer (in this process) at the trimmed sources, making them first if needed.
/// Call before evcxr starts, while this process has one thread.
pub fn use_trimmed_sources() {
    if std::env::var_os("RUST_SRC_PATH").is_some() || std::env::var("TORCHBOOK_RA_FULL_SYSROOT").is_ok_and(|v| v == "1") {
        return;
    }
    let library = Path::new(super::cell_build::BUILD_SYSROOT).join("lib/rustlib/src/rust/library");
    match trimmed(&library, &crate::prelude::cache_root()) {
        Ok(trimmed) => std::env::set_var("RUST_SRC_PATH", trimmed),
        Err(e) => crate::trace::trace(&format!("rust-analyzer reads the whole standard library ({e})")),
    }
}

/// The trimmed copy of `library` under `cache_root`, made if missing.
pub fn trimmed(library: &Path, cache_root: &Path) -> std::io::Result<PathBuf> {
    if !library.join("core").is_dir() {
        return Err(std::io::Error::other(format!("no rust-src at {}", library.display())));
    }
    let mut hash = Sha256::new();
    hash.update(library.as_os_str().as_encoded_bytes());
    hash.update(std::fs::read(library.join("Cargo.toml"))?);
    let folder = cache_root.join(format!("rust-src-{}", hex::encode(&hash.finalize()[..8])));
    let done = folder.join("library");
    if done.join("Cargo.toml").exists() {
        return Ok(done);
    }
    std::fs::create_dir_all(&folder)?;
    let building = folder.join(format!("library.building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(&building)?;
    for entry in std::fs::read_dir(library)? {
        let entry = entry?;
        let name = entry.file_name();
        if LEFT_OUT.iter().any(|left| name == *left) || name == "Cargo.toml" {
            continue;
        }
        std::os::unix::fs::symlink(entry.path(), building.join(&name))?;
    }
    let manifest = std::fs::read_to_string(library.join("Cargo.toml"))?;
    std::fs::write(building.join("Cargo.toml"), without_members(&manifest, &LEFT_OUT))?;
    // Another kernel may have finished first; either copy is as good.
    if std::fs::rename(&building, &done).is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    Ok(done)
}

/// The workspace manifest with the left-out folders' member lines removed.
fn without_members(manifest: &str, left_out: &[&str]) -> String {
    manifest
        .lines()
        .filter(|line| !left_out.iter().any(|name| line.trim().trim_end_matches(',') == format!("\"{name}\"")))
        .map(|line| format!("{line}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_leaves_out_stdarch_and_the_test_crates() {
        let root = std::env::temp_dir().join(format!("torchbook-rust-src-test-{}", std::process::id()));
        let library = root.join("toolchain/library");
        for dir in ["core/src", "std/src", "stdarch/crates", "coretests", "alloctests"] {
            std::fs::create_dir_all(library.join(dir)).unwrap();
        }
        std::fs::write(library.join("core/src/lib.rs"), "").unwrap();
        std::fs::write(library.join("Cargo.toml"), "[workspace]\nmembers = [\n  \"std\",\n  \"coretests\",\n  \"alloctests\",\n]\nexclude = [\"stdarch\"]\n").unwrap();
        let trimmed = trimmed(&library, &root.join("cache")).unwrap();
        assert!(trimmed.join("core/src/lib.rs").exists());
        assert!(!trimmed.join("stdarch").exists() && !trimmed.join("coretests").exists());
        let manifest = std::fs::read_to_string(trimmed.join("Cargo.toml")).unwrap();
        assert_eq!(manifest, "[workspace]\nmembers = [\n  \"std\",\n]\nexclude = [\"stdarch\"]\n");
        assert_eq!(super::trimmed(&library, &root.join("cache")).unwrap(), trimmed, "made once");
        std::fs::remove_dir_all(root).unwrap();
    }
}

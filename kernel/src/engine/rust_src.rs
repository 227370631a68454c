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
//!
//! While variable types come from rustc (`crate::engine::annotate`), evcxr's rust-analyzer
//! does not need the library at all until the first completion or inspection: it starts with
//! a *lean view* (an empty `core`, `alloc` and `std`, and, through the cargo stand-in, a cell
//! crate without dependencies), and [`widen`] gives it the trimmed library and the pruned
//! dependency graph on first use.

use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// What the cargo stand-in reads to choose its `cargo metadata` answer (see `cargo_metadata`).
pub const VIEW_ENV: &str = "TORCHBOOK_RA_VIEW";
/// `RUST_SRC_PATH` for the wide view; `None`: rust-analyzer finds the library itself.
static WIDE_SOURCES: OnceLock<Option<OsString>> = OnceLock::new();
static WIDENED: AtomicBool = AtomicBool::new(false);
static LEAN_SOURCES: OnceLock<PathBuf> = OnceLock::new();

/// Sets rust-analyzer's first view: lean while types come from rustc, else the trimmed
/// library. Call before evcxr starts, while this process has one thread.
pub fn start_view() {
    // Without the prelude there is no dependency whose second declaration would make
    // rust-analyzer reload (see `Session::reload_analysis`): it gets the library at once.
    if !crate::engine::annotate::enabled() || crate::prelude::PreludeConfig::from_env().is_err() {
        use_trimmed_sources();
        return;
    }
    use_trimmed_sources();
    let _ = WIDE_SOURCES.set(std::env::var_os("RUST_SRC_PATH"));
    match stub(&crate::prelude::cache_root()) {
        Ok(stub) => {
            std::env::set_var("RUST_SRC_PATH", &stub);
            let _ = LEAN_SOURCES.set(stub);
            std::env::set_var(VIEW_ENV, "lean");
        }
        Err(e) => {
            WIDENED.store(true, Ordering::Relaxed);
            crate::trace::trace(&format!("rust-analyzer starts with the whole view ({e})"));
        }
    }
}

/// Gives rust-analyzer the library and the dependencies from its next reload on, which
/// happens when evcxr next writes a changed manifest (see `Session::prepare_analysis`).
/// Returns false when the view was already wide.
pub fn widen() -> bool {
    if WIDENED.swap(true, Ordering::Relaxed) {
        return false;
    }
    match WIDE_SOURCES.get().cloned().flatten() {
        Some(path) => std::env::set_var("RUST_SRC_PATH", path),
        None => std::env::remove_var("RUST_SRC_PATH"),
    }
    std::env::set_var(VIEW_ENV, "wide");
    true
}

/// Gives a child process that runs evcxr on its own (`build-prelude`, whose probe cell gets its
/// type from rust-analyzer) the wide view, whatever this process's view is now: the lean one
/// would leave rust-analyzer without the dependencies, and the probe without a type.
pub fn wide_view_for(command: &mut std::process::Command) {
    command.env_remove(VIEW_ENV);
    match WIDE_SOURCES.get() {
        Some(Some(path)) => command.env("RUST_SRC_PATH", path),
        Some(None) => command.env_remove("RUST_SRC_PATH"),
        None => command,
    };
}

/// Back to the lean view (`:clear`: evcxr forgets the dependencies, the prelude comes again).
pub fn narrow() {
    if WIDENED.swap(false, Ordering::Relaxed) {
        if let Some(stub) = LEAN_SOURCES.get() {
            std::env::set_var("RUST_SRC_PATH", stub);
            std::env::set_var(VIEW_ENV, "lean");
        }
    }
}

/// An empty standard library: `core`, `alloc` and `std` crates with nothing in them.
fn stub(cache_root: &Path) -> std::io::Result<PathBuf> {
    let library = cache_root.join("rust-src-lean/library");
    for name in ["core", "alloc", "std"] {
        let lib = library.join(name).join("src/lib.rs");
        if !lib.exists() {
            std::fs::create_dir_all(lib.parent().expect("has a parent"))?;
            std::fs::write(&lib, "")?;
        }
    }
    Ok(library)
}

/// Folders of the toolchain's `library` that cells never need rust-analyzer to read.
const LEFT_OUT: [&str; 3] = ["stdarch", "coretests", "alloctests"];

/// Points rust-analyzer (in this process) at the trimmed sources, making them first if needed.
/// Call before evcxr starts, while this process has one thread.
fn use_trimmed_sources() {
    if std::env::var_os("RUST_SRC_PATH").is_some() || std::env::var("TORCHBOOK_RA_FULL_SYSROOT").is_ok_and(|v| v == "1") {
        return;
    }
    let library = super::cell_build::sysroot().join("lib/rustlib/src/rust/library");
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

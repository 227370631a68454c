//! The `torchbook` prelude in every session: which runtime crate and libtorch to use, the
//! persistent cache of its compiled form, and seeding a kernel's own evcxr folder from it.
//!
//! Building tch and the runtime inside evcxr takes minutes, so it happens once per cache key
//! (torchbook version, rustc, libtorch, runtime sources, lock file) into
//! `<cache>/prelude-<key>/`, by `torchbook install`, `make demo`, or the first kernel that needs
//! it. Each kernel then gets its own working folder seeded from the cache: large, immutable
//! build artifacts are hard-linked, everything cargo or rustc may rewrite in place is copied.
//! Two kernels never share a folder, so they can run at once.
//!
//! A shared install (`torchbook install --shared`, docs/DEPLOYMENT.md) adds a second, read-only
//! cache that an administrator built for every user (`TORCHBOOK_SHARED_CACHE`): a kernel seeds
//! from the prelude there when it has the kernel's key, and otherwise uses (and, if need be,
//! builds) its own in the user's `TORCHBOOK_CACHE`. Nothing is ever written into the shared one.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// What every fresh worker of a prelude session runs (again after a worker restart): the
/// interrupt handler, and the CUDA backend when the libtorch has one.
pub const PRELUDE_WORKER_SETUP: &str =
    "torchbook::interrupt::install_handler();\nlet _ = torchbook::device::load_cuda_backend();";

/// The Rust code that loads the prelude into a session.
pub fn prelude_cell(runtime: &Path) -> String {
    format!(
        ":dep torchbook = {{ path = {:?} }}\nuse torchbook::prelude::*;\n{PRELUDE_WORKER_SETUP}",
        runtime.display().to_string()
    )
}

/// The prelude cell's `:dep` line declared again with `default-features = true` spelled out:
/// the same dependency in another manifest line, which makes rust-analyzer reload (see
/// `Session::reload_analysis`). `build_cache` runs it too, so that evcxr's check of it is in
/// the cache (see `engine::cargo_metadata::answer_dependency_check`).
pub fn prelude_dep_declared_again(prelude_cell: &str) -> Option<String> {
    let dep = prelude_cell.lines().next().filter(|line| line.starts_with(":dep "))?;
    dep.strip_suffix(" }").map(|d| format!("{d}, default-features = true }}"))
}

/// Where the prelude comes from, as the environment (kernel.json `env`) says.
#[derive(Debug, Clone)]
pub struct PreludeConfig {
    /// The `runtime/` crate (package `torchbook`).
    pub runtime: PathBuf,
    pub libtorch: PathBuf,
    /// The user's own cache, where a missing prelude is built.
    pub cache_root: PathBuf,
    /// The administrator's read-only cache (`TORCHBOOK_SHARED_CACHE`), looked in first.
    pub shared_root: Option<PathBuf>,
}

/// Why a session runs without the prelude.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PreludeUnavailable {
    #[error("disabled by TORCHBOOK_PRELUDE=0")]
    Disabled,
    #[error("LIBTORCH is not set: install the kernelspec with `torchbook install --libtorch DIR` (make demo does)")]
    NoLibtorch,
    #[error("libtorch not found at {0} (no lib/libtorch_cpu.so there)")]
    MissingLibtorch(PathBuf),
    #[error("the torchbook runtime crate is not at {0} (set TORCHBOOK_RUNTIME)")]
    MissingRuntime(PathBuf),
}

/// The cache folder: `TORCHBOOK_CACHE`, else `$XDG_CACHE_HOME/torchbook`, else `~/.cache/torchbook`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("TORCHBOOK_CACHE") {
        return dir.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("torchbook")
}

/// The read-only cache of a shared install: `TORCHBOOK_SHARED_CACHE`, when set and not empty.
pub fn shared_cache_root() -> Option<PathBuf> {
    std::env::var_os("TORCHBOOK_SHARED_CACHE").filter(|dir| !dir.is_empty()).map(PathBuf::from)
}

/// Puts what the evcxr worker needs to load cell libraries on `LD_LIBRARY_PATH`: the
/// toolchain's shared `libstd` (cells use `-C prefer-dynamic`, and their relative RUNPATH breaks
/// when evcxr's folder is deep, e.g. under ~/.cache), the folder where cargo puts the prelude's
/// shared library (`libtorchbook.so`, which cell libraries name in `DT_NEEDED`; evcxr copies
/// each cell library one folder up, out of reach of its `$ORIGIN` RUNPATH) and
/// `$LIBTORCH/lib`. The dynamic loader reads the variable when a process starts, so this runs
/// before evcxr starts its worker. Works however the kernel was started. Call after
/// `WorkDir::create` (which sets `EVCXR_TMPDIR`) and before any thread starts: it sets an
/// environment variable.
pub fn prepare_library_path() {
    let std_lib = crate::engine::cell_build::sysroot().join("lib/rustlib").join(env!("TORCHBOOK_TARGET")).join("lib");
    let mut wanted = vec![std_lib];
    if let Some(evcxr) = std::env::var_os("EVCXR_TMPDIR") {
        wanted.push(cell_dependencies_dir(Path::new(&evcxr)));
    }
    if let Some(libtorch) = std::env::var_os("LIBTORCH") {
        wanted.push(PathBuf::from(libtorch).join("lib"));
    }
    let current = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
    let existing: Vec<PathBuf> = std::env::split_paths(&current).collect();
    let missing: Vec<PathBuf> = wanted.into_iter().filter(|p| !existing.contains(p)).collect();
    if missing.is_empty() {
        return;
    }
    let joined = std::env::join_paths(missing.into_iter().chain(existing)).expect("paths without ':'");
    std::env::set_var("LD_LIBRARY_PATH", joined);
}

/// Where cargo puts the cell crate's dependencies in evcxr's folder `evcxr`.
pub fn cell_dependencies_dir(evcxr: &Path) -> PathBuf {
    evcxr.join("target").join(env!("TORCHBOOK_TARGET")).join("debug").join("deps")
}

/// The runtime crate this binary was built with, unless `TORCHBOOK_RUNTIME` names another.
pub fn default_runtime() -> PathBuf {
    std::env::var_os("TORCHBOOK_RUNTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime"))
}

/// The workspace crates a prelude compiles (the runtime first): what `install --shared` copies
/// and what the cache key hashes.
pub const PRELUDE_CRATES: [&str; 3] = ["runtime", "display", "c10d"];

impl PreludeConfig {
    pub fn from_env() -> Result<Self, PreludeUnavailable> {
        if std::env::var("TORCHBOOK_PRELUDE").is_ok_and(|v| v == "0") {
            return Err(PreludeUnavailable::Disabled);
        }
        let libtorch = std::env::var_os("LIBTORCH").map(PathBuf::from).ok_or(PreludeUnavailable::NoLibtorch)?;
        if !libtorch.join("lib/libtorch_cpu.so").exists() {
            return Err(PreludeUnavailable::MissingLibtorch(libtorch));
        }
        let runtime = default_runtime();
        let runtime = runtime.canonicalize().map_err(|_| PreludeUnavailable::MissingRuntime(runtime.clone()))?;
        if !runtime.join("Cargo.toml").exists() {
            return Err(PreludeUnavailable::MissingRuntime(runtime));
        }
        Ok(PreludeConfig { runtime, libtorch, cache_root: cache_root(), shared_root: shared_cache_root() })
    }

    /// Everything that invalidates a compiled prelude, hashed: also the c10d shim's sources and
    /// what its build script reads (a changed shim must never be served from an old cache).
    pub fn key(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(env!("CARGO_PKG_VERSION"));
        hash.update(env!("TORCHBOOK_RUSTC_VERSION"));
        hash.update(self.libtorch.to_string_lossy().as_bytes());
        hash.update(self.runtime.to_string_lossy().as_bytes());
        hash.update(b"evcxr-0.22 opt-level=2");
        let workspace = self.runtime.parent().unwrap_or(&self.runtime);
        for krate in PRELUDE_CRATES.iter().skip(1) {
            let dir = workspace.join(krate);
            hash_tree(&mut hash, &dir, &dir);
        }
        hash_tree(&mut hash, &self.runtime, &self.runtime);
        for var in ["GLOO_INCLUDE", "TORCHBOOK_NCCL", "NCCL_INCLUDE", "CUDA_INCLUDE"] {
            hash.update(format!("{var}={:?}", std::env::var_os(var)).as_bytes());
        }
        if let Ok(lock) = std::fs::read(workspace.join("Cargo.lock")) {
            hash.update(&lock);
        }
        hex::encode(&hash.finalize()[..8])
    }

    /// The compiled prelude to seed from: the shared cache's when it has this key, else the
    /// user's own (which may not exist yet).
    pub fn cache_dir(&self) -> PathBuf {
        let name = format!("prelude-{}", self.key());
        match &self.shared_root {
            Some(shared) if shared.join(&name).is_dir() => shared.join(name),
            _ => self.cache_root.join(name),
        }
    }

    /// The prelude in the shared cache, if that cache has this key.
    pub fn shared_dir(&self) -> Option<PathBuf> {
        let dir = self.shared_root.as_ref()?.join(format!("prelude-{}", self.key()));
        dir.is_dir().then_some(dir)
    }

    /// The workspace lock file, so evcxr resolves the same crate versions we test with.
    pub fn lock_file(&self) -> Option<PathBuf> {
        let lock = self.runtime.parent()?.join("Cargo.lock");
        lock.exists().then_some(lock)
    }
}

fn hash_tree(hash: &mut Sha256, root: &Path, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            hash_tree(hash, root, &path);
        } else if let Ok(bytes) = std::fs::read(&path) {
            hash.update(path.strip_prefix(root).unwrap_or(&path).to_string_lossy().as_bytes());
            hash.update(&bytes);
        }
    }
}

/// True for build artifacts that are only ever replaced, never rewritten in place, and that
/// belong to dependencies (not to evcxr's per-cell crate `ctx`): safe to share by hard link.
fn shareable(relative: &Path) -> bool {
    let name = relative.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let in_artifacts = relative.components().any(|c| matches!(c.as_os_str().to_str(), Some("deps" | "build")));
    let is_binary = [".rlib", ".rmeta", ".so", ".a", ".o"].iter().any(|ext| name.ends_with(ext));
    in_artifacts && is_binary && !name.starts_with("ctx") && !name.starts_with("libctx")
}

/// The packages of this workspace that the prelude builds from source paths.
const LOCAL_PACKAGES: [&str; 2] = ["torchbook", "torchbook-display"];

/// True for cargo's freshness records of a local (path) package, e.g.
/// `target/<triple>/debug/.fingerprint/torchbook-<hash>/dep-lib-torchbook`.
fn local_fingerprint(relative: &Path) -> bool {
    let mut components = relative.components().map(|c| c.as_os_str().to_string_lossy());
    while let Some(component) = components.next() {
        if component == ".fingerprint" {
            let Some(unit) = components.next() else { return false };
            return unit
                .rsplit_once('-')
                .is_some_and(|(package, _hash)| LOCAL_PACKAGES.contains(&package));
        }
    }
    false
}

/// Fills `target` (a kernel's evcxr folder) from the cached prelude build.
///
/// Cargo decides a path package is stale when one of its sources is newer than its fingerprint.
/// The cache key already hashes the sources' contents, so a source that was merely touched
/// (a `git checkout` that restores the same text) must not cost every kernel a rebuild of the
/// runtime: the local packages' fingerprints get the seeding time, everything else keeps its own.
pub fn seed(cache: &Path, target: &Path) -> std::io::Result<()> {
    seed_dir(cache, cache, target)
}

fn seed_dir(root: &Path, dir: &Path, target_root: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let relative = path.strip_prefix(root).expect("walk stays under root");
        let dest = target_root.join(relative);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir_all(&dest)?;
            seed_dir(root, &path, target_root)?;
        } else if kind.is_symlink() {
            let _ = std::os::unix::fs::symlink(std::fs::read_link(&path)?, &dest);
        } else {
            // A folder seeded before (a user's own EVCXR_TMPDIR) holds links into the cache:
            // copying onto one would write into the cache's file.
            let _ = std::fs::remove_file(&dest);
            if shareable(relative) {
                if std::fs::hard_link(&path, &dest).is_ok() {
                    continue;
                }
                // A cache this user cannot write (a shared install's): Linux refuses hard links
                // to other users' files (`fs.protected_hardlinks`), and a copy would cost every
                // kernel ≈ 270 MB. A symbolic link shares the file as well, and nothing written
                // through it can reach the cache.
                if !writable(&path) && std::os::unix::fs::symlink(&path, &dest).is_ok() {
                    continue;
                }
            }
            std::fs::copy(&path, &dest)?;
            if local_fingerprint(relative) {
                continue; // a fresh copy is dated now, see `seed`
            }
            // Cargo decides freshness by comparing modification times: a copy must keep them.
            let modified = entry.metadata()?.modified()?;
            std::fs::File::options()
                .write(true)
                .open(&dest)?
                .set_times(std::fs::FileTimes::new().set_modified(modified))?;
        }
    }
    Ok(())
}

/// Whether this process may write `path` (root may write anything).
fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return true };
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// An exclusive `flock` on a file, released when dropped (or when the process dies).
struct BuildLock(#[allow(dead_code)] std::fs::File);

impl BuildLock {
    fn acquire(path: &Path) -> Result<Self, String> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(format!("cannot lock {}: {}", path.display(), std::io::Error::last_os_error()));
        }
        Ok(BuildLock(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prelude_dependency_declared_again_is_the_same_one() {
        let cell = prelude_cell(Path::new("/opt/runtime"));
        assert_eq!(
            prelude_dep_declared_again(&cell).as_deref(),
            Some(":dep torchbook = { path = \"/opt/runtime\", default-features = true }")
        );
        assert_eq!(prelude_dep_declared_again("use std::fmt;"), None);
    }

    #[test]
    fn only_dependency_artifacts_are_shared() {
        assert!(shareable(Path::new("target/debug/deps/libtch-abc.rlib")));
        assert!(shareable(Path::new("target/debug/build/torch-sys-1/out/libtch.a")));
        assert!(!shareable(Path::new("target/debug/deps/libctx.so")));
        assert!(!shareable(Path::new("target/debug/deps/tch-abc.d")));
        assert!(!shareable(Path::new("target/debug/.fingerprint/tch-abc/lib-tch")));
        assert!(!shareable(Path::new("Cargo.lock")));
    }

    #[test]
    fn local_fingerprints_are_recognised() {
        assert!(local_fingerprint(Path::new("target/x86_64-unknown-linux-gnu/debug/.fingerprint/torchbook-d04de56a0e0240c5/dep-lib-torchbook")));
        assert!(local_fingerprint(Path::new("target/debug/.fingerprint/torchbook-display-f00ba5f62b9bc34a/lib-torchbook-display")));
        assert!(!local_fingerprint(Path::new("target/debug/.fingerprint/tch-b31898f866189b8e/lib-tch")));
        assert!(!local_fingerprint(Path::new("target/debug/deps/torchbook-d04de56a0e0240c5.d")));
    }

    #[test]
    fn seeding_links_artifacts_and_copies_the_rest() {
        let root = std::env::temp_dir().join(format!("tb-seed-{}", uuid::Uuid::new_v4()));
        let cache = root.join("cache");
        std::fs::create_dir_all(cache.join("target/debug/deps")).unwrap();
        std::fs::write(cache.join("target/debug/deps/libtch-1.rlib"), b"rlib").unwrap();
        std::fs::write(cache.join("target/debug/deps/tch-1.d"), b"dep-info").unwrap();
        std::fs::write(cache.join("Cargo.lock"), b"lock").unwrap();
        let fingerprint = Path::new("target/debug/.fingerprint/torchbook-1/dep-lib-torchbook");
        std::fs::create_dir_all(cache.join(fingerprint).parent().unwrap()).unwrap();
        std::fs::write(cache.join(fingerprint), b"dep-info").unwrap();
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for file in [cache.join("Cargo.lock"), cache.join(fingerprint)] {
            let file = std::fs::File::options().write(true).open(file).unwrap();
            file.set_times(std::fs::FileTimes::new().set_modified(an_hour_ago)).unwrap();
        }
        let work = root.join("work");
        seed(&cache, &work).unwrap();
        use std::os::unix::fs::MetadataExt;
        let linked = std::fs::metadata(work.join("target/debug/deps/libtch-1.rlib")).unwrap();
        assert_eq!(linked.ino(), std::fs::metadata(cache.join("target/debug/deps/libtch-1.rlib")).unwrap().ino());
        // Rewriting a copied file leaves the cache alone.
        std::fs::write(work.join("target/debug/deps/tch-1.d"), b"changed").unwrap();
        assert_eq!(std::fs::read(cache.join("target/debug/deps/tch-1.d")).unwrap(), b"dep-info");
        assert_eq!(std::fs::read(work.join("Cargo.lock")).unwrap(), b"lock");
        let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
        assert_eq!(mtime(&work.join("Cargo.lock")), mtime(&cache.join("Cargo.lock")), "copies keep mtimes");
        assert!(mtime(&work.join(fingerprint)) > an_hour_ago, "local fingerprints are dated at seeding");
        std::fs::remove_dir_all(root).unwrap();
    }
}

/// Builds the prelude cache in this process (the hidden `torchbook build-prelude` command).
/// Must run before any other thread starts: evcxr reads its folder from the environment.
pub fn build_cache(config: &PreludeConfig, progress: &mut dyn FnMut(&str)) -> Result<PathBuf, String> {
    if let Some(shared) = config.shared_dir() {
        progress(&format!("torchbook prelude already built (shared): {}", shared.display()));
        return Ok(shared);
    }
    // Built into the user's own cache, never into the shared one.
    let final_dir = config.cache_root.join(format!("prelude-{}", config.key()));
    std::fs::create_dir_all(&config.cache_root).map_err(|e| format!("{}: {e}", config.cache_root.display()))?;
    // One builder at a time per key: kernels started together wait for the first one's build
    // instead of all compiling tch at once.
    let _lock = BuildLock::acquire(&config.cache_root.join(format!("prelude-{}.lock", config.key())))?;
    if final_dir.exists() {
        progress(&format!("torchbook prelude already built: {}", final_dir.display()));
        return Ok(final_dir);
    }
    let building = config.cache_root.join(format!("prelude-{}.building-{}", config.key(), std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(&building).map_err(|e| format!("{}: {e}", building.display()))?;
    if let Some(lock) = config.lock_file() {
        std::fs::copy(&lock, building.join("Cargo.lock")).map_err(|e| format!("{}: {e}", lock.display()))?;
    }
    std::env::set_var("EVCXR_TMPDIR", &building);
    // The worker evcxr starts for this build loads the prelude's shared library from there.
    prepare_library_path();
    progress("Building the torchbook prelude (tch and the model API) — first time only, a few minutes…");
    let started = std::time::Instant::now();
    let result = (|| -> Result<(), String> {
        let (mut context, outputs) = evcxr::CommandContext::new().map_err(|e| e.to_string())?;
        let built = (|| {
            context.execute(&prelude_cell(&config.runtime)).map_err(|e| e.to_string())?;
            // No final value: evcxr's own display of one does not work with the prelude loaded
            // (kernels rewrite it, see `final_value`).
            let probe = "let probe = Tensor::ones([2, 2], (Kind::Float, Device::Cpu)).sum(Kind::Float).double_value(&[]);\n\
                         assert_eq!(probe, 4.0, \"the prelude loaded but a tch probe computed {probe} instead of 4.0\");";
            context.execute(probe).map(|_| ()).map_err(|e| e.to_string())?;
            // What a kernel's first completion declares (its check is then in the cache).
            if let Some(again) = prelude_dep_declared_again(&prelude_cell(&config.runtime)) {
                context.execute(&again).map(|_| ()).map_err(|e| e.to_string())?;
            }
            Ok(())
        })();
        // evcxr waits for its worker when the context goes; that wait must end.
        crate::process_watch::drop_context(context);
        // What the worker said before it failed (a library that would not load, a panic).
        built.map_err(|e| {
            let said: Vec<String> = outputs.stderr.try_iter().collect();
            let tail = said[said.len().saturating_sub(20)..].join("\n");
            if tail.trim().is_empty() { e } else { format!("{e}\n{tail}") }
        })
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&building);
        return Err(e);
    }
    if std::fs::rename(&building, &final_dir).is_err() {
        // Another process finished the same build first; theirs is as good as ours.
        let _ = std::fs::remove_dir_all(&building);
    }
    progress(&format!(
        "torchbook prelude built in {:.0} s: {}",
        started.elapsed().as_secs_f64(),
        final_dir.display()
    ));
    Ok(final_dir)
}

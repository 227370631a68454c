//! `torchbook install --shared DIR`: one install that every user of the machine runs (JupyterHub,
//! a lab server), laid out under `DIR` so that each path in the kernelspec is readable by them:
//!
//! - `bin/torchbook`: a copy of this binary;
//! - `src/`: the runtime, display and c10d crates and the lock file, in a workspace of their own (the
//!   prelude compiles them, and the runtime's crate must outlive the build tree it came from);
//! - `libtorch/`: a copy of libtorch (and pip's sibling `nvidia/` folder its RPATH names), unless
//!   `--libtorch` is readable by everyone already;
//! - `toolchain/`: a copy of the cells' toolchain (`bin`, `lib` with `rust-src`, `libexec`, `etc`;
//!   not the documentation), unless `--toolchain` names one everyone can read or the build's own
//!   is readable already; it must be the rustc this binary was built with;
//! - `cargo/`: `CARGO_HOME` for the prelude's build and every kernel: the registry sources the
//!   compiled prelude was built from. Cargo's fingerprints of registry crates hold their source
//!   paths, so kernels must use this very folder, read-only and offline, or cargo would build
//!   tch again;
//! - `cache/`: the prelude, built here once (`TORCHBOOK_SHARED_CACHE` for kernels).
//!
//! Everything is made readable by all and writable by the installing user only. Each user's
//! writable state stays theirs: kernel folders in the temporary folder (mode 0700), spare engines'
//! sockets in `$XDG_RUNTIME_DIR` or `/tmp/torchbook-spares-<uid>`, history in
//! `$XDG_DATA_HOME/torchbook`, and anything a kernel must build in `$XDG_CACHE_HOME/torchbook`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where the parts of a shared install are, once [`prepare`] made them.
#[derive(Debug, Clone)]
pub struct SharedLayout {
    pub root: PathBuf,
    pub binary: PathBuf,
    pub runtime: PathBuf,
    pub libtorch: PathBuf,
    pub toolchain: PathBuf,
    pub cargo_home: PathBuf,
    pub cache: PathBuf,
}

/// The toolchain folders copied for cells (`share/` holds documentation only).
const TOOLCHAIN_PARTS: [&str; 4] = ["bin", "lib", "libexec", "etc"];

/// Lays out `root`, copying what other users could not read, and builds the prelude into
/// `root/cache`. `binary` is this executable; `libtorch` and `toolchain` are what the
/// administrator uses (the toolchain defaults to the one this binary was built with).
pub fn prepare(
    root: &Path,
    binary: &Path,
    libtorch: &Path,
    toolchain: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> Result<SharedLayout, String> {
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    if !root.is_absolute() {
        return Err(format!("--shared needs an absolute folder, not {}", root.display()));
    }
    std::fs::create_dir_all(root).map_err(|e| io(root, e))?;

    // The binary: copied beside and renamed over, so a running kernel keeps its old file.
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| io(&bin, e))?;
    let binary_dest = bin.join("torchbook");
    let staging = bin.join(format!(".torchbook.installing-{}", std::process::id()));
    std::fs::copy(binary, &staging).map_err(|e| io(binary, e))?;
    std::fs::rename(&staging, &binary_dest).map_err(|e| io(&binary_dest, e))?;

    let runtime = copy_sources(root).map_err(|e| format!("copying the runtime's sources: {e}"))?;

    // libtorch: used where it is when everyone can read it.
    if !libtorch.join("lib/libtorch_cpu.so").is_file() {
        return Err(format!("libtorch not found at {} (no lib/libtorch_cpu.so)", libtorch.display()));
    }
    let libtorch = if readable_by_all(&libtorch.join("lib/libtorch_cpu.so")) {
        progress(&format!("libtorch: {} (readable by every user, used in place)", libtorch.display()));
        libtorch.to_owned()
    } else {
        let name = libtorch.file_name().ok_or("--libtorch names no folder")?;
        let dest = root.join("libtorch");
        // pip's layout: libtorch_cpu.so finds the CUDA runtime through an RPATH into `../nvidia`.
        let mut parts = vec![(libtorch.to_owned(), PathBuf::from(name))];
        let nvidia = libtorch.parent().map(|p| p.join("nvidia")).filter(|p| p.is_dir());
        parts.extend(nvidia.map(|n| (n, PathBuf::from("nvidia"))));
        let fresh = copy_once(&dest, &parts, &stamp_of(&libtorch.join("lib/libtorch_cpu.so")))?;
        progress(&format!(
            "libtorch: {} copied to {} ({})",
            libtorch.display(),
            dest.display(),
            if fresh { "copied now" } else { "copied before" }
        ));
        dest.join(name)
    };

    // The cells' toolchain: the same rustc as this binary's (the prelude is compiled by it).
    let build_sysroot = PathBuf::from(crate::engine::cell_build::BUILD_SYSROOT);
    let given = toolchain.map(Path::to_owned);
    let source = given.clone().unwrap_or(build_sysroot);
    let rustc = source.join("bin/rustc");
    let version = std::process::Command::new(&rustc)
        .arg("--version")
        .output()
        .map_err(|e| io(&rustc, e))?;
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let wanted = env!("TORCHBOOK_RUSTC_VERSION");
    if version.split_whitespace().nth(1) != Some(wanted) {
        return Err(format!(
            "{} is {}, but torchbook was built with rustc {wanted}: cells must use the same one",
            rustc.display(),
            version.trim()
        ));
    }
    if !source.join("lib/rustlib/src/rust/library/core").is_dir() {
        return Err(format!("{} has no rust-src (rustup component add rust-src)", source.display()));
    }
    let toolchain = if readable_by_all(&rustc) && readable_by_all(&source.join("lib/rustlib/src/rust/library/Cargo.toml")) {
        progress(&format!("toolchain: {} (readable by every user, used in place)", source.display()));
        source
    } else if given.is_some() {
        return Err(format!("--toolchain {}: not every user can read it", source.display()));
    } else {
        let dest = root.join("toolchain");
        let parts: Vec<(PathBuf, PathBuf)> = TOOLCHAIN_PARTS
            .iter()
            .map(|part| (source.join(part), PathBuf::from(part)))
            .filter(|(from, _)| from.exists())
            .collect();
        let fresh = copy_once(&dest, &parts, version.trim())?;
        progress(&format!(
            "toolchain: {} copied to {} ({})",
            source.display(),
            dest.display(),
            if fresh { "copied now" } else { "copied before" }
        ));
        dest
    };

    let cargo_home = root.join("cargo");
    let cache = root.join("cache");
    for dir in [&cargo_home, &cache] {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    let layout = SharedLayout { root: root.to_owned(), binary: binary_dest, runtime, libtorch, toolchain, cargo_home, cache };

    // The prelude, built by the copied binary with exactly the kernels' settings.
    progress(&format!("building the shared prelude cache in {}", layout.cache.display()));
    let mut command = std::process::Command::new(&layout.binary);
    command.arg("build-prelude");
    for (name, value) in build_env(&layout) {
        command.env(name, value);
    }
    let status = command
        .env_remove("TORCHBOOK_SHARED_CACHE")
        .env_remove("EVCXR_TMPDIR")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .map_err(|e| io(&layout.binary, e))?;
    if !status.success() {
        return Err("the shared prelude cache could not be built (see above)".into());
    }
    readable_by_all_below(root).map_err(|e| format!("making {} readable: {e}", root.display()))?;
    if !readable_by_all(&layout.binary) {
        return Err(format!("other users cannot enter {}: a folder above it is closed to them", root.display()));
    }
    Ok(layout)
}

/// The environment the prelude is built in: the kernels' (`kernel_env`), with the shared cache
/// as the builder's own cache and the registry online.
fn build_env(layout: &SharedLayout) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = kernel_env(layout)
        .into_iter()
        .filter(|(name, _)| name != "TORCHBOOK_SHARED_CACHE" && name != "CARGO_NET_OFFLINE")
        .collect();
    env.push(("TORCHBOOK_CACHE".into(), layout.cache.display().to_string()));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(std::iter::once(layout.toolchain.join("bin")).chain(std::env::split_paths(&path)))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    env.push(("PATH".into(), path));
    env
}

/// What a kernel of the shared install needs in its kernelspec's `env`.
pub fn kernel_env(layout: &SharedLayout) -> Vec<(String, String)> {
    let s = |p: &Path| p.display().to_string();
    vec![
        ("LIBTORCH".into(), s(&layout.libtorch)),
        ("LD_LIBRARY_PATH".into(), s(&layout.libtorch.join("lib"))),
        ("TORCHBOOK_RUNTIME".into(), s(&layout.runtime)),
        ("TORCHBOOK_SHARED_CACHE".into(), s(&layout.cache)),
        (crate::engine::cell_build::TOOLCHAIN_ENV.into(), s(&layout.toolchain)),
        ("CARGO_HOME".into(), s(&layout.cargo_home)),
        // Kernels cannot add to the shared registry; cargo should not try the network.
        ("CARGO_NET_OFFLINE".into(), "true".into()),
    ]
}

/// Copies the crates the prelude compiles ([`crate::prelude::PRELUDE_CRATES`]) and the lock file of the workspace this binary was
/// built from into `root/src`, in a workspace of their own, replacing an earlier copy whole.
/// Returns the runtime crate's folder.
fn copy_sources(root: &Path) -> std::io::Result<PathBuf> {
    let runtime = crate::prelude::default_runtime().canonicalize()?;
    let workspace = runtime.parent().ok_or_else(|| std::io::Error::other("the runtime crate has no parent"))?;
    let src = root.join("src");
    let staging = root.join(format!(".src.installing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    for krate in crate::prelude::PRELUDE_CRATES {
        copy_tree(&workspace.join(krate), &staging.join(krate), &|name| name.starts_with('.') || name == "target")?;
    }
    std::fs::copy(workspace.join("Cargo.lock"), staging.join("Cargo.lock"))?;
    // The crates inherit `version`, `edition`… from the workspace manifest: keep its tables,
    // with only these two crates as members.
    let manifest = std::fs::read_to_string(workspace.join("Cargo.toml"))?;
    std::fs::write(staging.join("Cargo.toml"), with_members(&manifest, &crate::prelude::PRELUDE_CRATES))?;
    if src.exists() {
        let old = root.join(format!(".src.old-{}", std::process::id()));
        std::fs::rename(&src, &old)?;
        std::fs::rename(&staging, &src)?;
        std::fs::remove_dir_all(&old)?;
    } else {
        std::fs::rename(&staging, &src)?;
    }
    Ok(src.join("runtime"))
}

/// The workspace manifest with its `members` list replaced by `members`.
fn with_members(manifest: &str, members: &[&str]) -> String {
    let list = members.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(", ");
    let mut out = String::new();
    let mut skipping = false;
    for line in manifest.lines() {
        let trimmed = line.trim_start();
        if skipping {
            skipping = !trimmed.starts_with(']') && !trimmed.ends_with(']');
            continue;
        }
        if trimmed.starts_with("members") && trimmed.contains('=') {
            out.push_str(&format!("members = [{list}]\n"));
            skipping = !trimmed.ends_with(']');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Copies `parts` (source, name under `dest`) into `dest` unless `dest` already holds a copy
/// with the same `stamp`; a new copy is made beside it and swapped in. Returns whether it copied.
fn copy_once(dest: &Path, parts: &[(PathBuf, PathBuf)], stamp: &str) -> Result<bool, String> {
    let stamp_file = dest.join(".torchbook-copied-from");
    let stamp = format!("{}\n{stamp}\n", parts.iter().map(|(p, _)| p.display().to_string()).collect::<Vec<_>>().join("\n"));
    if std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp) {
        return Ok(false);
    }
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    let parent = dest.parent().ok_or("no parent folder")?;
    let name = dest.file_name().ok_or("no folder name")?.to_string_lossy();
    let staging = parent.join(format!(".{name}.copying-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    for (from, to) in parts {
        copy_tree(from, &staging.join(to), &|_| false).map_err(|e| io(from, e))?;
    }
    std::fs::write(staging.join(".torchbook-copied-from"), &stamp).map_err(|e| io(&staging, e))?;
    if dest.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(dest, &old).map_err(|e| io(dest, e))?;
        std::fs::rename(&staging, dest).map_err(|e| io(dest, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
    } else {
        std::fs::rename(&staging, dest).map_err(|e| io(dest, e))?;
    }
    Ok(true)
}

/// Size and modification time of a file, to tell whether a copy of it is still current.
fn stamp_of(file: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(file).map(|m| format!("{} {}", m.size(), m.mtime())).unwrap_or_default()
}

/// Copies a tree (files with their modes and modification times, symbolic links as links),
/// leaving out entries whose name `skip` accepts.
fn copy_tree(from: &Path, to: &Path, skip: &dyn Fn(&str) -> bool) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if skip(&name.to_string_lossy()) {
            continue;
        }
        let (source, dest) = (entry.path(), to.join(&name));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&source, &dest, skip)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &dest)?;
        } else {
            std::fs::copy(&source, &dest)?;
            let modified = entry.metadata()?.modified()?;
            std::fs::File::options().write(true).open(&dest)?.set_times(std::fs::FileTimes::new().set_modified(modified))?;
        }
    }
    Ok(())
}

/// Whether a user who is neither the owner nor in the group can read `path`: it is readable
/// by others and every folder above it can be entered by others.
pub fn readable_by_all(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else { return false };
    if meta.permissions().mode() & 0o004 == 0 {
        return false;
    }
    path.ancestors()
        .skip(1)
        .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// Everything under `root` readable by everyone (folders and executables enterable and runnable
/// too) and writable by its owner only.
fn readable_by_all_below(root: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(root)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    let executable = meta.is_dir() || mode & 0o100 != 0;
    let wanted = (mode & !0o022) | 0o444 | if executable { 0o111 } else { 0 };
    if wanted != mode {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(wanted))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(root)? {
            readable_by_all_below(&entry?.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_keeps_its_tables_with_two_members() {
        let manifest = "[workspace]\nresolver = \"2\"\nmembers = [\"kernel\", \"runtime\", \"display\"]\n\n[workspace.package]\nversion = \"0.1.0\"\n";
        assert_eq!(
            with_members(manifest, &["runtime", "display"]),
            "[workspace]\nresolver = \"2\"\nmembers = [\"runtime\", \"display\"]\n\n[workspace.package]\nversion = \"0.1.0\"\n"
        );
        let multiline = "[workspace]\nmembers = [\n  \"kernel\",\n  \"runtime\",\n]\nresolver = \"2\"\n";
        assert_eq!(with_members(multiline, &["runtime"]), "[workspace]\nmembers = [\"runtime\"]\nresolver = \"2\"\n");
    }

    #[test]
    fn copies_once_per_stamp_and_makes_everything_readable() {
        let root = std::env::temp_dir().join(format!("tb-shared-{}", uuid::Uuid::new_v4()));
        let source = root.join("source");
        std::fs::create_dir_all(source.join("lib")).unwrap();
        std::fs::write(source.join("lib/a.so"), b"a").unwrap();
        std::fs::set_permissions(source.join("lib/a.so"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("a.so", source.join("lib/b.so")).unwrap();
        let dest = root.join("out/libtorch");
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let parts = [(source.clone(), PathBuf::from("torch"))];
        assert!(copy_once(&dest, &parts, "1").unwrap());
        assert!(!copy_once(&dest, &parts, "1").unwrap(), "the same stamp: not copied again");
        assert_eq!(std::fs::read_link(dest.join("torch/lib/b.so")).unwrap(), PathBuf::from("a.so"));
        std::fs::write(source.join("lib/a.so"), b"new").unwrap();
        assert!(copy_once(&dest, &parts, "2").unwrap());
        assert_eq!(std::fs::read(dest.join("torch/lib/a.so")).unwrap(), b"new");
        readable_by_all_below(&root.join("out")).unwrap();
        let mode = std::fs::metadata(dest.join("torch/lib/a.so")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let left: Vec<_> = std::fs::read_dir(root.join("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, [std::ffi::OsString::from("libtorch")], "no staging folder is left");
        std::fs::remove_dir_all(root).unwrap();
    }
}

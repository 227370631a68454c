//! The kernel's own working folder: evcxr's crate in `evcxr/`, above it the cargo
//! configuration that compiles cells at their own opt-level, and the toolchain folder whose
//! `cargo` builds cells without cargo's overhead (`cell_build`).

/// The kernel's own evcxr working folder (cell crates, build output), removed when the kernel
/// exits so that kernels do not leave gigabytes behind in /tmp. Two kernels never share one.
pub struct WorkDir {
    path: std::path::PathBuf,
    owned: bool,
    /// The folder of our own that holds the cargo stand-in's toolchain when evcxr's folder is
    /// the user's (`EVCXR_TMPDIR`); removed with the kernel.
    private: Option<std::path::PathBuf>,
}

impl WorkDir {
    /// Chooses the folder and points evcxr at it. A user's own `EVCXR_TMPDIR` is respected and
    /// kept as it is; the cargo stand-in's toolchain then lives in a folder of our own beside
    /// it, since cells' variable types depend on the stand-in (`type_probe`). Call before any
    /// thread starts: it sets environment variables (and then starts one thread, which reads
    /// none).
    ///
    /// Our own folder holds evcxr's crate in `evcxr/` and, above it, a cargo configuration that
    /// compiles the cells (evcxr's package `ctx`) at `TORCHBOOK_CELL_OPT_LEVEL` (default 0)
    /// while the runtime and tch stay at evcxr's opt-level 2: measured on the latency bench's
    /// pattern (a cell after one that defined a tensor), rustc takes 190–210 ms at 0 against
    /// 250–350 ms at 2, because each new cell's instantiations are codegenned afresh. Cell code
    /// is glue around the runtime and libtorch; a hot loop written in a cell runs slower.
    pub fn create() -> std::io::Result<WorkDir> {
        let temp = base_folder()?;
        let path = private_folder(&temp)?;
        if let Some(users) = std::env::var_os("EVCXR_TMPDIR") {
            install_cell_toolchain(&path);
            return Ok(WorkDir { path: users.into(), owned: false, private: Some(path) });
        }
        std::fs::create_dir_all(path.join(".cargo"))?;
        std::fs::write(path.join(".cargo/config.toml"), cell_profile(&cell_opt_level()))?;
        let evcxr = path.join("evcxr");
        std::fs::create_dir_all(&evcxr)?;
        std::env::set_var("EVCXR_TMPDIR", &evcxr);
        install_cell_toolchain(&path);
        // In the background: removing a dead kernel's folder takes longer than answering
        // kernel_info; the thread reads no environment variable, so later set_vars are safe.
        let _ = std::thread::Builder::new().name("workdir-sweep".into()).spawn(move || remove_folders_of_dead_kernels(&temp));
        Ok(WorkDir { path, owned: true, private: None })
    }

    /// Where the engine's nth start keeps evcxr's folder. The first uses `evcxr/`; an engine
    /// started after one died gets a fresh sibling, because seeding over the dead engine's
    /// folder would write through the hard links into the prelude cache. A user's own
    /// `EVCXR_TMPDIR` is always used as it is.
    pub fn engine_folder(&self) -> crate::kernel::engine::EngineFolder {
        let (path, owned) = (self.path.clone(), self.owned);
        Box::new(move |start| {
            if !owned || start == 0 {
                return None;
            }
            let folder = path.join(format!("evcxr-{start}"));
            let _ = std::fs::remove_dir_all(path.join(if start == 1 { "evcxr".to_owned() } else { format!("evcxr-{}", start - 1) }));
            std::fs::create_dir_all(&folder).ok()?;
            Some(folder)
        })
    }

    /// Where `:ranks`' engine for `rank` keeps evcxr's folder on its nth start: beside the first
    /// engine's (under the cell profile's cargo configuration), one per rank and start.
    pub fn rank_engine_folders(&self) -> crate::kernel::ranks::RankFolders {
        let (path, owned) = (self.path.clone(), self.owned);
        std::sync::Arc::new(move |rank| {
            let path = path.clone();
            Box::new(move |start| {
                let name = |start: u64| if owned { format!("evcxr-rank{rank}-{start}") } else { format!("rank{rank}-{start}") };
                if start > 0 {
                    let _ = std::fs::remove_dir_all(path.join(name(start - 1)));
                }
                let folder = path.join(name(start));
                std::fs::create_dir_all(&folder).ok()?;
                Some(folder)
            })
        })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn remove(self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.path);
        }
        if let Some(private) = self.private {
            let _ = std::fs::remove_dir_all(private);
        }
    }
}

/// Where kernel folders go: the system's temporary folder, unless a `Cargo.toml` that declares a
/// workspace sits in it or above it. Cargo would then take evcxr's crate for a member of that
/// workspace and refuse to build any cell ("current package believes it's in a workspace when
/// it's not"); evcxr rewrites the crate's manifest, so the crate cannot declare itself a root.
/// The fallbacks are `/var/tmp` and the torchbook cache; if all three are claimed, the error
/// names the manifest to move.
fn base_folder() -> std::io::Result<std::path::PathBuf> {
    let temp = std::env::temp_dir();
    let Some(claimed_by) = enclosing_workspace(&temp) else { return Ok(temp) };
    let cache = crate::prelude::cache_root().join("kernels");
    for fallback in [std::path::PathBuf::from("/var/tmp"), cache] {
        if std::fs::create_dir_all(&fallback).is_ok() && enclosing_workspace(&fallback).is_none() {
            eprintln!(
                "torchbook: {} declares a cargo workspace above the temporary folder {}; kernel folders go to {}",
                claimed_by.display(),
                temp.display(),
                fallback.display()
            );
            return Ok(fallback);
        }
    }
    Err(std::io::Error::other(format!(
        "{} declares a cargo workspace above the temporary folder {}, which would claim the cell crate: \
         move it, or set TMPDIR to a folder outside it",
        claimed_by.display(),
        temp.display()
    )))
}

/// The nearest `Cargo.toml` in `folder` or above it that has a `[workspace]` table, as cargo
/// finds a workspace root; manifests of plain packages do not count.
fn enclosing_workspace(folder: &std::path::Path) -> Option<std::path::PathBuf> {
    folder.ancestors().map(|dir| dir.join("Cargo.toml")).find(|manifest| {
        std::fs::read_to_string(manifest).is_ok_and(|text| {
            text.lines().map(str::trim).any(|line| line == "[workspace]" || line.starts_with("[workspace."))
        })
    })
}

/// A new folder `torchbook-<pid>-<id>` in `temp` that only this user can read: cell sources
/// and build output are the user's code and data. The sweep recognises the name.
fn private_folder(temp: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let path = temp.join(format!("torchbook-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
    std::fs::DirBuilder::new().mode(0o700).create(&path)?;
    Ok(path)
}

fn install_cell_toolchain(folder: &std::path::Path) {
    if let Err(e) = crate::engine::cell_build::install_toolchain(folder) {
        eprintln!("torchbook: cargo will build every cell ({e})");
    }
}

/// Removes the working folders that kernels (or spares) which were killed outright left
/// behind (`torchbook-<pid>-<id>`, ours, whose process is gone): a `SIGKILL`, which
/// `jupyter_client` sends when a kernel is slow to shut down, leaves no chance to clean up.
/// A folder whose pid is alive is kept, whoever has that pid now.
fn remove_folders_of_dead_kernels(temp: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let Ok(entries) = std::fs::read_dir(temp) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("torchbook-")) else { continue };
        let Some((pid, id)) = rest.split_once('-') else { continue };
        let is_ours = id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit());
        let Ok(pid) = pid.parse::<u32>() else { continue };
        let owned = entry.metadata().is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if is_ours && owned && crate::process_watch::Watched::new(pid).has_ended() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// `TORCHBOOK_CELL_OPT_LEVEL` when it names a rustc opt-level, else 0.
fn cell_opt_level() -> String {
    match std::env::var("TORCHBOOK_CELL_OPT_LEVEL") {
        Ok(level) if ["0", "1", "2", "3", "s", "z"].contains(&level.as_str()) => level,
        Ok(other) => {
            eprintln!("torchbook: TORCHBOOK_CELL_OPT_LEVEL={other:?} is not an opt-level; using 0");
            "0".to_owned()
        }
        Err(_) => "0".to_owned(),
    }
}

/// Cargo configuration for evcxr's crate: found by cargo in a parent folder of the crate,
/// merged with the profile evcxr writes into its Cargo.toml; only the cell crate changes.
fn cell_profile(opt_level: &str) -> String {
    let value = if opt_level.parse::<u8>().is_ok() { opt_level.to_owned() } else { format!("{opt_level:?}") };
    format!("# Written by torchbook: cells compile fast, dependencies stay optimised.\n[profile.dev.package.ctx]\nopt-level = {value}\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn folders_of_dead_kernels_go_and_live_ones_stay() {
        let temp = std::env::temp_dir().join(format!("torchbook-sweep-test-{}", std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        let gone = temp.join(format!("torchbook-{dead}-{id}"));
        let alive = temp.join(format!("torchbook-{}-{id}", std::process::id()));
        let other = temp.join(format!("torchbook-{dead}-notours"));
        for dir in [&gone, &alive, &other] {
            std::fs::create_dir_all(dir.join("evcxr")).unwrap();
        }
        super::remove_folders_of_dead_kernels(&temp);
        assert!(!gone.exists() && alive.exists() && other.exists());
        std::fs::remove_dir_all(temp).unwrap();
    }

    #[test]
    fn a_workspace_manifest_above_is_found_and_a_package_manifest_is_not() {
        let root = std::env::temp_dir().join(format!("torchbook-ws-test-{}", std::process::id()));
        let inner = root.join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::write(root.join("a/Cargo.toml"), "[package]\nname = \"p\"\n").unwrap();
        assert_eq!(super::enclosing_workspace(&inner), None);
        std::fs::write(root.join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
        assert_eq!(super::enclosing_workspace(&inner), Some(root.join("Cargo.toml")));
        std::fs::write(root.join("a/Cargo.toml"), "[package]\nname = \"p\"\n[workspace.dependencies]\n").unwrap();
        assert_eq!(super::enclosing_workspace(&inner), Some(root.join("a/Cargo.toml")));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn cell_profile_is_valid_cargo_configuration() {
        assert_eq!(
            super::cell_profile("0"),
            "# Written by torchbook: cells compile fast, dependencies stay optimised.\n[profile.dev.package.ctx]\nopt-level = 0\n"
        );
        assert!(super::cell_profile("s").ends_with("opt-level = \"s\"\n"));
    }
}

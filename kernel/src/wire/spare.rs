//! Spare engines: an engine process started ahead of time, with evcxr, rust-analyzer and the
//! prelude already loaded, which the next kernel takes over instead of starting its own. A fresh
//! engine spends about 9 s (mostly rust-analyzer loading the standard library and tch) before
//! its first tch cell can answer; a spare answers it in well under a second.
//!
//! - A kernel remembers the environment it was started with ([`remember_original`]) before it
//!   changes anything. Spares are keyed by that environment (less the variables that differ
//!   per kernel, [`is_per_kernel`]), the torchbook binary and the prelude cache key, so a spare
//!   only ever serves a kernel that would have built the same engine.
//! - When its own engine is warm, a kernel starts a spare (`torchbook spare`, detached, in a
//!   process group of its own) unless one with the same key already runs: the spare holds a
//!   lock file for as long as it is unclaimed.
//! - The spare listens on a Unix socket in a private folder ([`spare_dir`]). A starting kernel
//!   connects, passes its stderr descriptor (so the engine's log lines reach the kernel's log),
//!   its working directory and its environment; the spare answers with its pid and folder, and
//!   from then on the connection carries the usual engine protocol (`wire::engine`). The engine
//!   moves to the kernel's working directory and runs a hidden cell that sets it and the
//!   per-kernel variables in the worker, where the user's code runs.
//! - A spare that nobody claims exits after `TORCHBOOK_SPARE_IDLE_S` (default 900) seconds.
//!   `TORCHBOOK_SPARE_ENGINE=0` turns spares off (the cost is ≈ 1 GB of memory while one waits).

//!
//! This module is what both sides share: the key, the folder and its files, the claim messages and
//! the locks. The kernel's side (taking one, starting one) is `kernel::spare`; the spare's side
//! (waiting, the one-per-user slot, adoption) is `engine::spare`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The environment and working directory a process started with, before it set anything.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Original {
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

static ORIGINAL: OnceLock<Original> = OnceLock::new();

/// Records this process's environment as it was started. Call first thing, before anything sets
/// a variable (the kernel's `WorkDir` sets several).
pub fn remember_original() {
    ORIGINAL.get_or_init(|| Original {
        env: std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect(),
        cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
    });
}

pub fn original() -> &'static Original {
    remember_original();
    ORIGINAL.get().expect("set above")
}

pub fn original_var(name: &str) -> Option<&'static str> {
    original().env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Whether this kernel uses and makes spares: not when turned off, and not when the user chose
/// evcxr's folder (`EVCXR_TMPDIR`), which a spare could not share.
pub fn enabled() -> bool {
    original_var("TORCHBOOK_SPARE_ENGINE") != Some("0") && original_var("EVCXR_TMPDIR").is_none()
}

/// Variables that differ from one kernel to the next without changing what its engine loads:
/// they are left out of the key and set in the worker when a kernel takes a spare.
pub fn is_per_kernel(name: &str) -> bool {
    name.starts_with("JPY_") || ["PWD", "OLDPWD", "SHLVL", "_", "KERNEL_ID"].contains(&name)
}

/// The key of the spare this process could use: binary, prelude and environment.
pub fn key() -> String {
    let mut hash = Sha256::new();
    if let Ok(exe) = std::env::current_exe() {
        hash.update(exe.to_string_lossy().as_bytes());
        if let Ok(meta) = std::fs::metadata(&exe) {
            hash.update(format!("{} {:?}", meta.len(), meta.modified().ok()).as_bytes());
        }
    }
    let mut env: Vec<&(String, String)> = original().env.iter().filter(|(k, _)| !is_per_kernel(k)).collect();
    env.sort();
    for (name, value) in env {
        hash.update(name.as_bytes());
        hash.update(b"=");
        hash.update(value.as_bytes());
        hash.update(b"\0");
    }
    // Runtime sources edited since the spare started give a new prelude key, hence no match.
    if let Some(prelude) = prelude_key() {
        hash.update(prelude.as_bytes());
    }
    hex::encode(&hash.finalize()[..8])
}

fn prelude_key() -> Option<String> {
    // The variables it reads (LIBTORCH, TORCHBOOK_RUNTIME, the cache's) are never changed by us.
    crate::prelude::PreludeConfig::from_env().ok().map(|config| config.key())
}

/// The private folder for spares' sockets and locks: `TORCHBOOK_SPARE_DIR`, else
/// `$XDG_RUNTIME_DIR/torchbook`, else `<tmp>/torchbook-spares-<uid>`. `None` unless it is a real
/// folder of ours that nobody else can enter: a kernel sends its environment to whatever
/// listens there, and runs its cells in it.
pub fn spare_dir() -> Option<PathBuf> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let dir = match (original_var("TORCHBOOK_SPARE_DIR"), original_var("XDG_RUNTIME_DIR")) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Some(runtime)) => Path::new(runtime).join("torchbook"),
        (None, None) => std::env::temp_dir().join(format!("torchbook-spares-{uid}")),
    };
    let _ = std::fs::create_dir_all(&dir);
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    if !meta.is_dir() || meta.uid() != uid {
        return None;
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).ok()?;
    }
    Some(dir)
}

/// The files of the spare with one key.
pub struct SparePaths {
    pub socket: PathBuf,
    pub lock: PathBuf,
    /// Exists, holding the spare's pid, while a warm spare waits.
    pub ready: PathBuf,
    pub log: PathBuf,
    /// Held by the one spare this user may have waiting, whatever its key ([`take_slot`]).
    pub slot_lock: PathBuf,
    /// The key of the spare that holds the slot.
    pub slot_key: PathBuf,
}

impl SparePaths {
    pub fn for_key(key: &str) -> Option<SparePaths> {
        let dir = spare_dir()?;
        Some(SparePaths {
            socket: dir.join(format!("{key}.sock")),
            lock: dir.join(format!("{key}.lock")),
            ready: dir.join(format!("{key}.ready")),
            log: dir.join(format!("{key}.log")),
            slot_lock: dir.join("slot.lock"),
            slot_key: dir.join("slot.key"),
        })
    }
}

/// What a kernel sends when it takes a spare (after its stderr descriptor).
#[derive(Debug, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub kernel_pid: u32,
    pub original: Original,
    /// Not a claim: a spare for another key asks this one to make room (one spare per user).
    #[serde(default)]
    pub retire: bool,
}

/// The spare's answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClaimReply {
    pub pid: u32,
    /// The spare's own working folder (evcxr's crate, the toolchain folder); the kernel removes
    /// it if the engine dies without doing so.
    pub folder: PathBuf,
    /// Whether the prelude and warm-up were done already.
    pub warm: bool,
}

pub fn lock_is_held(path: &Path) -> bool {
    match try_lock(path) {
        Ok(Some(_released_on_drop)) => false,
        Ok(None) => true,
        Err(_) => true,
    }
}

/// An exclusive lock on `path`, or `None` when another process holds it. Released when the
/// file closes (our descriptors are close-on-exec, so no child keeps it).
pub fn try_lock(path: &Path) -> std::io::Result<Option<File>> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(Some(file))
    } else {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_process_holds_a_spare_lock() {
        let dir = std::env::temp_dir().join(format!("torchbook-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.lock");
        let held = try_lock(&path).unwrap().expect("free at first");
        assert!(lock_is_held(&path));
        drop(held);
        assert!(!lock_is_held(&path));
        let _ = std::fs::remove_dir_all(dir);
    }
}

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
//!   from then on the connection carries the usual engine protocol (`engine_wire`). The engine
//!   moves to the kernel's working directory and runs a hidden cell that sets it and the
//!   per-kernel variables in the worker, where the user's code runs.
//! - A spare that nobody claims exits after `TORCHBOOK_SPARE_IDLE_S` (default 900) seconds.
//!   `TORCHBOOK_SPARE_ENGINE=0` turns spares off (the cost is ≈ 1 GB of memory while one waits).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

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

fn original() -> &'static Original {
    remember_original();
    ORIGINAL.get().expect("set above")
}

fn original_var(name: &str) -> Option<&'static str> {
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

/// A spare engine taken over by this kernel: the engine protocol runs over `stream`.
pub struct Claimed {
    pub stream: UnixStream,
    pub reply: ClaimReply,
}

/// Takes over the waiting spare with this kernel's key, if there is one.
pub fn claim() -> Option<Claimed> {
    if !enabled() {
        return None;
    }
    let paths = SparePaths::for_key(&key())?;
    let stream = UnixStream::connect(&paths.socket).ok()?;
    let attempt = || -> std::io::Result<Claimed> {
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        crate::fd_passing::send_fd(&stream, 2)?;
        let request = ClaimRequest { kernel_pid: std::process::id(), original: original().clone(), retire: false };
        let mut line = serde_json::to_string(&request)?;
        line.push('\n');
        (&stream).write_all(line.as_bytes())?;
        let mut answer = String::new();
        // One byte at a time: what follows the answer is the engine protocol, for another reader.
        let mut byte = [0u8; 1];
        while !answer.ends_with('\n') {
            if std::io::Read::read(&mut &stream, &mut byte)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            answer.push(byte[0] as char);
        }
        let reply: ClaimReply = serde_json::from_str(&answer)?;
        stream.set_read_timeout(None)?;
        Ok(Claimed { stream: stream.try_clone()?, reply })
    };
    match attempt() {
        Ok(claimed) => Some(claimed),
        Err(e) => {
            // Another kernel took it a moment earlier, or it was exiting.
            crate::engine::trace(&format!("could not take the spare engine ({e})"));
            None
        }
    }
}

/// Starts a spare with this kernel's key unless one already runs (or is starting).
pub fn start_spare() {
    if !enabled() {
        return;
    }
    let key = key();
    let Some(paths) = SparePaths::for_key(&key) else {
        eprintln!("torchbook: no spare engine: its folder is not private to this user");
        return;
    };
    if lock_is_held(&paths.lock) {
        return;
    }
    if let Some(why) = too_little_memory() {
        crate::engine::trace(&format!("no spare engine: {why}"));
        return;
    }
    let owners = owners();
    if owners.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let log = File::create(&paths.log).ok();
    let mut command = std::process::Command::new(exe);
    command
        .arg("spare")
        .args(owners.iter().flat_map(|pid| ["--owner".to_owned(), pid.to_string()]))
        .env_clear()
        .envs(original().env.iter().map(|(k, v)| (k, v)))
        .current_dir(paths.log.parent().unwrap_or(Path::new("/")))
        .stdin(std::process::Stdio::null());
    match (log.as_ref().and_then(|l| l.try_clone().ok()), log) {
        (Some(out), Some(err)) => command.stdout(out).stderr(err),
        _ => command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()),
    };
    // Detached from the kernel's process group: a SIGINT for the kernel is not for the spare.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    match command.spawn() {
        Ok(mut child) => {
            crate::engine::trace(&format!("spare engine {} started (key {key})", child.id()));
            // Reaped here if it exits while this kernel runs; adopted by init otherwise.
            let _ = std::thread::Builder::new().name("spare-reaper".into()).spawn(move || child.wait());
        }
        Err(e) => eprintln!("torchbook: cannot start a spare engine: {e}"),
    }
}

/// The processes whose end makes a spare useless: the one that started this kernel (the
/// frontend: a Jupyter server, Zeppelin's bridge, nbclient) and `JPY_PARENT_PID`. A spare
/// serves the next kernel of the same frontend; when that is gone, nobody can use it.
fn owners() -> Vec<u32> {
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() } as u32;
    let mut owners = Vec::new();
    if parent > 1 {
        owners.push(parent);
    }
    if let Some(pid) = original_var("JPY_PARENT_PID").and_then(|v| v.parse::<u32>().ok()).filter(|&p| p > 1 && p != parent) {
        owners.push(pid);
    }
    owners
}

/// Why this machine cannot afford a spare now: less available memory than
/// `TORCHBOOK_SPARE_MIN_AVAILABLE_MB` (default 2048; a waiting spare holds about 0.8 GB).
fn too_little_memory() -> Option<String> {
    let wanted: u64 = std::env::var("TORCHBOOK_SPARE_MIN_AVAILABLE_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(2048);
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available_kb: u64 = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    let available = available_kb / 1024;
    (available < wanted).then(|| format!("{available} MB available, below TORCHBOOK_SPARE_MIN_AVAILABLE_MB={wanted}"))
}

/// Takes the user's one spare slot for `key`: a spare waiting with another key is asked to
/// retire (the newest environment is the likeliest to be used next). Gives up after `patience`.
fn take_slot(paths: &SparePaths, key: &str, patience: Duration) -> std::io::Result<Option<File>> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        if let Some(slot) = try_lock(&paths.slot_lock)? {
            std::fs::write(&paths.slot_key, key)?;
            return Ok(Some(slot));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        let holder = std::fs::read_to_string(&paths.slot_key).unwrap_or_default();
        if let Some(other) = SparePaths::for_key(holder.trim()).filter(|_| holder.trim() != key && !holder.trim().is_empty()) {
            ask_to_retire(&other.socket);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Asks the spare listening on `socket` to exit. Only an unclaimed spare listens, and it reads
/// one request at a time, so this can never end an engine that a kernel took.
fn ask_to_retire(socket: &Path) {
    let Ok(stream) = UnixStream::connect(socket) else { return };
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request = ClaimRequest { kernel_pid: std::process::id(), original: original().clone(), retire: true };
    if crate::fd_passing::send_fd(&stream, 2).is_ok() {
        if let Ok(mut line) = serde_json::to_string(&request) {
            line.push('\n');
            let _ = (&stream).write_all(line.as_bytes());
        }
    }
}

fn lock_is_held(path: &Path) -> bool {
    match try_lock(path) {
        Ok(Some(_released_on_drop)) => false,
        Ok(None) => true,
        Err(_) => true,
    }
}

/// An exclusive lock on `path`, or `None` when another process holds it. Released when the
/// file closes (our descriptors are close-on-exec, so no child keeps it).
fn try_lock(path: &Path) -> std::io::Result<Option<File>> {
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

/// The spare's side: its lock and socket, held until a kernel takes it or it gives up.
pub struct Waiting {
    paths: SparePaths,
    _lock: File,
    _slot: File,
    listener: UnixListener,
}

/// A kernel that took this spare.
pub struct Claim {
    pub reader: BufReader<UnixStream>,
    pub writer: UnixStream,
    pub request: ClaimRequest,
}

impl Waiting {
    /// Takes the lock for this process's key and listens; `None` when another spare has it.
    pub fn open() -> std::io::Result<Option<Waiting>> {
        let paths = SparePaths::for_key(&key())
            .ok_or_else(|| std::io::Error::other("the spare folder is not private to this user"))?;
        let key = key();
        let Some(lock) = try_lock(&paths.lock)? else { return Ok(None) };
        let Some(slot) = take_slot(&paths, &key, Duration::from_secs(30))? else {
            eprintln!("torchbook spare: another spare engine would not make room; exiting");
            return Ok(None);
        };
        // Whoever made these before us is gone: we hold the lock.
        let _ = std::fs::remove_file(&paths.socket);
        let _ = std::fs::remove_file(&paths.ready);
        let listener = UnixListener::bind(&paths.socket)?;
        Ok(Some(Waiting { paths, _lock: lock, _slot: slot, listener }))
    }

    /// Tells benchmarks and tests that a warm spare waits (the file holds our pid).
    pub fn ready_path(&self) -> PathBuf {
        self.paths.ready.clone()
    }

    /// Waits for a kernel, up to `idle`, a SIGTERM, a request to retire, or the end of any of
    /// `owners` (see [`owners`]); `None` when nobody came (the files are removed).
    pub fn wait(self, idle: Duration, owners: &[u32], reply: impl Fn() -> ClaimReply) -> Option<Claim> {
        static TERMINATED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        extern "C" fn on_term(_: libc::c_int) {
            TERMINATED.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t) };
        let deadline = std::time::Instant::now() + idle;
        let owners: Vec<crate::process_watch::Watched> = owners.iter().map(|&pid| crate::process_watch::Watched::new(pid)).collect();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if let Some(gone) = owners.iter().find(|o| o.has_ended()) {
                eprintln!("torchbook spare: process {} that started its kernel is gone; exiting", gone.pid());
                self.remove_files();
                return None;
            }
            if left.is_zero() || TERMINATED.load(std::sync::atomic::Ordering::SeqCst) {
                self.remove_files();
                return None;
            }
            let mut poll = libc::pollfd { fd: self.listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one pollfd that lives across the call. Short waits: the signal may
            // interrupt another thread.
            let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis().min(500) as libc::c_int) };
            if ready <= 0 {
                continue;
            }
            let Ok((stream, _)) = self.listener.accept() else { continue };
            match take_claim(stream, &reply) {
                Ok(claim) if claim.request.retire => {
                    eprintln!("torchbook spare: a spare for another environment takes this one's place; exiting");
                    self.remove_files();
                    return None;
                }
                Ok(claim) => {
                    // SAFETY: restoring the default action; a kernel's engine ends on SIGTERM.
                    unsafe { libc::signal(libc::SIGTERM, libc::SIG_DFL) };
                    // The next kernel's spare may start now: the files go, and the lock with `self`.
                    self.remove_files();
                    return Some(claim);
                }
                Err(e) => eprintln!("torchbook spare: a connection that was not a claim ({e})"),
            }
        }
    }

    fn remove_files(&self) {
        let _ = std::fs::remove_file(&self.paths.socket);
        let _ = std::fs::remove_file(&self.paths.ready);
        let _ = std::fs::remove_file(&self.paths.slot_key);
    }
}

fn take_claim(stream: UnixStream, reply: &dyn Fn() -> ClaimReply) -> std::io::Result<Claim> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let stderr = crate::fd_passing::recv_fd(&stream)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let request: ClaimRequest = serde_json::from_str(&line)?;
    if request.retire {
        return Ok(Claim { reader, writer: stream, request });
    }
    // From now on our log lines (and those of the cargo and rustc we start) go to the kernel's,
    // and no longer to the spare log, which the next spare overwrites.
    // SAFETY: duplicating a descriptor we received onto stdout and stderr.
    unsafe {
        libc::dup2(stderr.as_raw_fd(), 1);
        libc::dup2(stderr.as_raw_fd(), 2);
    }
    let mut answer = serde_json::to_string(&reply())?;
    answer.push('\n');
    (&stream).write_all(answer.as_bytes())?;
    stream.set_read_timeout(None)?;
    Ok(Claim { reader, writer: stream, request })
}

/// Rust for the worker of a taken spare: the kernel's working directory and the variables that
/// differ per kernel (set or removed), as the worker of the kernel's own engine would have had.
pub fn adoption_cell(spare: &Original, kernel: &Original) -> String {
    let mut code = format!("let _ = ::std::env::set_current_dir({:?});\n", kernel.cwd.to_string_lossy());
    let lookup = |env: &[(String, String)], name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut changes = String::new();
    for (name, value) in kernel.env.iter().filter(|(k, _)| is_per_kernel(k)) {
        if lookup(&spare.env, name).as_deref() != Some(value) {
            changes.push_str(&format!("::std::env::set_var({name:?}, {value:?}); "));
        }
    }
    for (name, _) in spare.env.iter().filter(|(k, _)| is_per_kernel(k)) {
        if lookup(&kernel.env, name).is_none() {
            changes.push_str(&format!("::std::env::remove_var({name:?}); "));
        }
    }
    if !changes.is_empty() {
        // `unsafe` is required in edition 2024 (evcxr's) and only a lint in earlier ones.
        code.push_str(&format!("#[allow(unused_unsafe)] unsafe {{ {changes}}};\n"));
    }
    code
}

/// This process's original environment and directory (the spare's, before it claimed).
pub fn original_of_this_process() -> Original {
    original().clone()
}

/// How long an unclaimed spare waits: `TORCHBOOK_SPARE_IDLE_S`, default 900 s.
pub fn idle_limit() -> Duration {
    let seconds = std::env::var("TORCHBOOK_SPARE_IDLE_S").ok().and_then(|v| v.parse().ok()).unwrap_or(900);
    Duration::from_secs(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn per_kernel_variables_are_set_or_removed_in_the_worker() {
        let spare = Original { env: env(&[("JPY_PARENT_PID", "1"), ("JPY_SESSION_NAME", "a.ipynb"), ("HOME", "/h")]), cwd: "/a".into() };
        let kernel = Original { env: env(&[("JPY_PARENT_PID", "2"), ("HOME", "/h"), ("PWD", "/b \"x\"")]), cwd: "/b \"x\"".into() };
        let code = adoption_cell(&spare, &kernel);
        assert!(code.starts_with("let _ = ::std::env::set_current_dir(\"/b \\\"x\\\"\");\n"), "{code}");
        assert!(code.contains("::std::env::set_var(\"JPY_PARENT_PID\", \"2\");"), "{code}");
        assert!(code.contains("::std::env::set_var(\"PWD\", \"/b \\\"x\\\"\");"), "{code}");
        assert!(code.contains("::std::env::remove_var(\"JPY_SESSION_NAME\");"), "{code}");
        assert!(!code.contains("HOME"), "variables in the key are equal already: {code}");
        assert!(code.trim_end().ends_with("};"), "no final value: {code}");
    }

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

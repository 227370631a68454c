//! The spare's side of spare engines (see `wire::spare`): waiting for a kernel with its lock,
//! the user's one spare slot and its socket, until a kernel claims it, another spare asks it to
//! retire, its frontend is gone, or it has waited long enough; then the adoption cell that gives
//! its worker the claiming kernel's directory and variables.

use crate::wire::spare::{is_per_kernel, key, original, try_lock, ClaimReply, ClaimRequest, Original, SparePaths};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    if crate::wire::fd_passing::send_fd(&stream, 2).is_ok() {
        if let Ok(mut line) = serde_json::to_string(&request) {
            line.push('\n');
            let _ = (&stream).write_all(line.as_bytes());
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
    let stderr = crate::wire::fd_passing::recv_fd(&stream)?;
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
}

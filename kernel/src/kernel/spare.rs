//! The kernel's side of spare engines (see `wire::spare`): taking over the waiting spare with
//! this kernel's key, and starting the next one once this kernel's engine is warm.

use crate::trace::trace;
use crate::wire::spare::{enabled, key, lock_is_held, original, original_var, ClaimReply, ClaimRequest, SparePaths};
use std::fs::File;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

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
        crate::wire::fd_passing::send_fd(&stream, 2)?;
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
            trace(&format!("could not take the spare engine ({e})"));
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
        trace(&format!("no spare engine: {why}"));
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
            trace(&format!("spare engine {} started (key {key})", child.id()));
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

//! Timings on stderr (the kernel's log) when `TORCHBOOK_TRACE` is set: the first thing to look
//! at when a cell is slow. Every process writes them (kernel, engine), each line saying which.

use std::sync::atomic::{AtomicBool, Ordering};

/// Timings of the engine's phases on stderr (the kernel's log) when `TORCHBOOK_TRACE` is set:
/// the first thing to look at when a cell is slow. Times count from the start of the process
/// that writes the line, the kernel's or the engine's.
pub fn trace(what: &str) {
    if std::env::var_os("TORCHBOOK_TRACE").is_some() {
        let process = if IN_ENGINE.load(Ordering::Relaxed) { "engine" } else { "kernel" };
        eprintln!("torchbook trace [{process} {:>6} ms]: {what}", PROCESS_START.elapsed().as_millis());
    }
}

/// Set by the engine process, for [`trace`].
pub static IN_ENGINE: AtomicBool = AtomicBool::new(false);

/// The reference for [`trace`]'s timestamps; forced by `main` as soon as the kernel starts.
pub static PROCESS_START: std::sync::LazyLock<std::time::Instant> = std::sync::LazyLock::new(std::time::Instant::now);


//! The cooperative interrupt flag (DESIGN §3). The kernel signals the worker; a handler sets the
//! flag; long loops (`fit`, `evaluate`, `predict`, user code via [`check_interrupt`]) poll it
//! between batches and stop cleanly, keeping the model and what was computed so far.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static HANDLER: Once = Once::new();

extern "C" fn on_sigint(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the SIGINT handler in this process (the notebook worker). Idempotent.
pub fn install_handler() {
    HANDLER.call_once(|| {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
        }
    });
}

/// Requests an interrupt from code (used by tests and by callbacks that want to stop training).
pub fn request_interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// True once if an interrupt was requested since the last call; clears the flag.
pub fn take_interrupt() -> bool {
    INTERRUPTED.swap(false, Ordering::SeqCst)
}

/// Whether an interrupt is pending, without clearing it.
pub fn interrupt_pending() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Returns `Err(Interrupted)` when the user interrupted the cell: call it inside long loops.
pub fn check_interrupt() -> Result<(), Interrupted> {
    if take_interrupt() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}

/// The cell was interrupted by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by the user")]
pub struct Interrupted;

//! The cooperative interrupt flag (DESIGN §3). The kernel signals the worker; a handler sets the
//! flag; long loops (`fit`, `evaluate`, `predict`, user code via [`check_interrupt`]) poll it
//! between batches and stop cleanly, keeping the model and what was computed so far.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Once, OnceLock};

static LOCAL_FLAG: AtomicBool = AtomicBool::new(false);
static HANDLER: Once = Once::new();

/// The flag. In a torchbook worker it is the one the kernel binary exports
/// (`torchbook_interrupt_flag`), shared by every cell: evcxr links this crate into each cell's
/// library, so a static here would exist once per cell. Elsewhere it is this crate's own.
fn flag() -> &'static AtomicBool {
    static SHARED: OnceLock<&'static AtomicBool> = OnceLock::new();
    SHARED.get_or_init(|| {
        // SAFETY: dlsym with a NUL-terminated name; the symbol, when present, is the kernel's
        // `static AtomicBool`, which lives as long as the process.
        let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"torchbook_interrupt_flag".as_ptr()) };
        if symbol.is_null() {
            &LOCAL_FLAG
        } else {
            unsafe { &*(symbol as *const AtomicBool) }
        }
    })
}

extern "C" fn on_sigint(_: libc::c_int) {
    // Only an atomic store (the flag was resolved before the handler was installed).
    flag().store(true, Ordering::SeqCst);
}

/// Installs a SIGINT handler that sets the flag (the torchbook worker already has one; this is
/// for programs using the crate on their own). Idempotent.
pub fn install_handler() {
    flag();
    HANDLER.call_once(|| {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
        }
    });
}

/// Requests an interrupt from code (used by tests and by callbacks that want to stop training).
pub fn request_interrupt() {
    flag().store(true, Ordering::SeqCst);
}

/// True once if an interrupt was requested since the last call; clears the flag.
pub fn take_interrupt() -> bool {
    flag().swap(false, Ordering::SeqCst)
}

/// Whether an interrupt is pending, without clearing it.
pub fn interrupt_pending() -> bool {
    flag().load(Ordering::SeqCst)
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

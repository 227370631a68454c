//! What the engine and the cell worker share beyond evcxr's own protocol: the cell every fresh
//! worker runs first, the answer that ends a cell's read of stdin, and the file by which the
//! worker says it holds libtorch in its global scope.

/// Rust run once in every fresh worker: it routes panics to the side channel so that the kernel
/// can report them as errors (evcxr catches the unwind and would otherwise report success).
pub const WORKER_SETUP: &str = include_str!("../worker/setup_cell.rs");

/// The answer the kernel gives when there is no input to give (allow_stdin false, interrupt):
/// the relay turns it into end-of-file for the reading cell.
pub const INPUT_EOF: &str = "\u{1e}torchbook-input-eof";

/// Written by a worker that loaded libtorch with `RTLD_GLOBAL` (`worker::libtorch`), relative
/// to evcxr's folder; while it exists, the stand-in links cells without libtorch
/// (`engine::cell_link`).
pub const LIBTORCH_GLOBAL_MARKER: &str = "target/torchbook-libtorch-global";

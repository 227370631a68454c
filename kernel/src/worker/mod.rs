//! The cell worker process: this binary as evcxr starts it (`EVCXR_IS_RUNTIME`), which loads
//! and runs the compiled cells and owns the session's variables, tensors and models. Here live
//! the relays between its standard streams and evcxr ([`output`]); `setup_cell.rs` is Rust that
//! the engine runs as the first cell of every fresh worker (see `wire::worker`).

pub mod libtorch;
pub mod output;

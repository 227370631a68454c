//! The torchbook kernel as a library: the binary `torchbook` is glue over these modules, and the
//! integration tests use [`protocol`] to talk to a running kernel.
//!
//! One folder per process, and what they share:
//!
//! - [`kernel`]: the kernel process (sockets, handlers, the kernel's side of the engine);
//! - [`engine`]: the engine process (evcxr, rust-analyzer, cell builds, spare engines);
//! - [`worker`]: the cell worker process (runs compiled cells; output relays);
//! - [`wire`]: what two of them share (the engine pipe, side-channel records, errors, spares);
//! - [`protocol`]: the Jupyter wire format and connection files;
//! - [`launch`]: the kernel started by Jupyter Enterprise Gateway (its launcher contract);
//! - [`run`]: `torchbook run`, a notebook executed headless by the same engine (and its
//!   launcher for data-parallel ranks).
//!
//! The path of an `execute_request`: `kernel::transport` (socket, signature check) →
//! `kernel::handlers::execute` → `kernel::engine` (the kernel's side of the engine process) →
//! `wire::engine` (the pipe) → [`engine`] (the engine process; `engine::session` runs the cell
//! in evcxr, `engine::final_value` rewrites its value, `engine::cell_build` compiles it) → the
//! worker, whose `worker::output` relay turns what the cell prints into `wire::side_channel`
//! records → back over the pipe → `kernel::stream_batcher` → `kernel::transport::Iopub`.
//!
//! ```
//! use torchbook_kernel::protocol::{Content, Message, Signer, WireMessage};
//! use torchbook_kernel::protocol::messages::KernelInfoRequest;
//!
//! let request = Message::new(Content::KernelInfoRequest(KernelInfoRequest {}), None, "session");
//! let frames = WireMessage { identities: vec![], message: request }.encode(&Signer::new("key"));
//! let decoded = WireMessage::decode(frames, &mut Signer::new("key")).unwrap();
//! assert_eq!(decoded.message.header.msg_type, "kernel_info_request");
//! ```

// Without the `engine` feature (on by default) only the parsers are built: `protocol`, the
// `wire` records and `kernel::is_complete` (what the fuzz targets in `fuzz/` exercise).
#[cfg(feature = "engine")]
pub mod engine;
#[cfg(feature = "engine")]
pub mod install;
pub mod kernel;
#[cfg(feature = "engine")]
pub mod launch;
#[cfg(feature = "engine")]
pub mod prelude;
#[cfg(feature = "engine")]
pub mod process_watch;
pub mod protocol;
#[cfg(feature = "engine")]
pub mod run;
#[cfg(feature = "engine")]
pub mod trace;
pub mod wire;
#[cfg(feature = "engine")]
pub mod workdir;
#[cfg(feature = "engine")]
pub mod worker;

//! The torchbook kernel as a library: the binary `torchbook` is glue over these modules, and the
//! integration tests use [`protocol`] to talk to a running kernel.
//!
//! The path of an `execute_request`: [`transport`] (socket, signature check) →
//! [`handlers`] (`handlers/execute.rs`) → [`engine`] (the kernel's side of the engine process) →
//! [`engine_wire`] (the pipe) → [`engine_host`] (the engine process: evcxr, worker output and
//! [`side_channel`] records; [`session`] runs the cell, [`final_value`] rewrites its value) →
//! [`stream_batcher`] → [`transport::Iopub`].
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

pub mod cell_build;
pub mod cell_error;
pub mod comms;
pub mod connection;
pub mod engine;
pub mod engine_host;
pub mod engine_wire;
pub mod fd_passing;
pub mod final_value;
pub mod handlers;
pub mod history;
pub mod install;
pub mod is_complete;
pub mod prelude;
pub mod process_watch;
pub mod protocol;
pub mod question_mark;
pub mod server;
pub mod session;
pub mod spare;
pub mod side_channel;
pub mod stream_batcher;
pub mod transport;
pub mod worker_output;
pub mod workdir;

//! The kernel process (`torchbook kernel`): the five Jupyter sockets ([`transport`], driven by
//! [`server`]), one handler per message type ([`handlers`]), and the kernel's side of the engine
//! process ([`engine`]) and of spare engines ([`spare`]). It holds no compiler and no user code,
//! so it stays small and answers while a cell runs.

pub mod comms;
pub mod engine;
pub mod handlers;
pub mod history;
pub mod is_complete;
pub mod server;
pub mod spare;
pub mod stream_batcher;
pub mod transport;

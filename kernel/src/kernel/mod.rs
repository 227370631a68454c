//! The kernel process (`torchbook kernel`): the five Jupyter sockets ([`transport`], driven by
//! [`server`]), one handler per message type ([`handlers`]), and the kernel's side of the engine
//! process ([`engine`]) and of spare engines ([`spare`]), and what `usage_request` reports
//! ([`usage`]). It holds no compiler and no user code,
//! so it stays small and answers while a cell runs.
//!
//! Without the `engine` feature only [`is_complete`] is built (it needs no process).

#[cfg(feature = "engine")]
pub mod comms;
#[cfg(feature = "engine")]
pub mod engine;
#[cfg(feature = "engine")]
pub mod handlers;
#[cfg(feature = "engine")]
pub mod history;
pub mod is_complete;
#[cfg(feature = "engine")]
pub mod ranks;
#[cfg(feature = "engine")]
pub mod server;
#[cfg(feature = "engine")]
pub mod spare;
#[cfg(feature = "engine")]
pub mod stream_batcher;
#[cfg(feature = "engine")]
pub mod transport;
#[cfg(feature = "engine")]
pub mod usage;
